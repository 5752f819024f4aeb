"""The effort model from people: per-click, per-inspection and per-choice seconds fitted to a study's log.

Times come from the page's clock (``performance.now()``, in ms). For each proposal of a study case
(practice cases are left out):

* choosing: from the candidates being painted (the ``painted`` event) to the first choice. Fitted
  against K, the candidates shown, three ways by least squares: ``a + b log2(K)`` (the simulator's
  :class:`~simulator.metrics.EffortModel`: ``a`` is ``c_inspect``, ``b`` is ``b_choose``), ``a + b
  log2(K + 1)`` (Hick-Hyman with the "none" option counted) and ``a + c K`` (linear);
* a correction (click or stroke): the time since the previous action of the proposal (its choice, a
  correction or an undo): ``c_click`` is their mean.

Confidence intervals are 95% percentile bootstraps that resample participants (all of a person's
proposals move together). The slopes need arms with at least two values of K.

The effort file (JSON) holds ``effort`` (``c_click``, ``c_inspect``, ``b_choose``: what
``probseg-simulate --effort-model FILE`` uses), ``fits`` (each form's coefficients with their CIs)
and the counts they came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from probseg.atomic import atomic_write
from simulator.metrics import EffortModel

from .study import UserStudy

__all__ = ["FORMS", "fit_effort", "load_effort_file", "observations", "write_effort_file"]

# The choice-time forms: name -> (the regressor of K, the slope's name).
FORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "log2(K)": (lambda k: np.log2(k), "b"),
    "log2(K+1)": (lambda k: np.log2(k + 1.0), "b"),
    "K": (lambda k: k.astype(np.float64), "c"),
}


def observations(events: Sequence[dict[str, Any]], study: UserStudy) -> tuple[list[tuple[int, int, float]],
                                                                            list[tuple[int, float]]]:
    """The timed observations in a log: ``(choices, corrections)``.

    Returns ``choices``: ``(participant, K, seconds from painting to the first choice)`` per proposal,
    and ``corrections``: ``(participant, seconds since the previous action)`` per click or stroke.
    """
    choices: list[tuple[int, int, float]] = []
    corrections: list[tuple[int, float]] = []
    painted: dict[tuple[int, int, int], float] = {}
    last: dict[tuple[int, int, int], float] = {}
    chose: set[tuple[int, int, int]] = set()
    for e in events:
        pid, task_index = e["participant"], e["task"]
        if task_index < 0 or study.plan(pid)[task_index].kind != "study":
            continue
        iteration = int(e["result"].get("iteration", 0))
        key = (pid, task_index, iteration)
        t = float(e["payload"]["t"]) / 1000.0
        kind = e["type"]
        if kind == "painted":
            painted.setdefault(key, t)
            last.setdefault(key, t)
        elif kind == "choose" and key in painted and key not in chose:
            chose.add(key)
            k = len(e["result"].get("order") or []) or 1
            choices.append((pid, k, t - painted[key]))
            last[key] = t
        elif kind in ("click", "stroke") and key in last:
            corrections.append((pid, t - last[key]))
            last[key] = t
        elif key in last:
            last[key] = t
    return choices, corrections


def _fit(choices: list[tuple[int, int, float]], corrections: list[tuple[int, float]]) -> dict[str, float]:
    k = np.array([c[1] for c in choices], dtype=np.float64)
    y = np.array([c[2] for c in choices], dtype=np.float64)
    out: dict[str, float] = {"c_click": float(np.mean([c[1] for c in corrections])) if corrections else math.nan}
    for form, (f, slope) in FORMS.items():
        x = f(k)
        if len(np.unique(x)) < 2:
            out[f"{form}.a"] = out[f"{form}.{slope}"] = math.nan
            continue
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), y, rcond=None)
        out[f"{form}.a"], out[f"{form}.{slope}"] = float(a), float(b)
    return out


def fit_effort(events: Sequence[dict[str, Any]], study: UserStudy, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Fit the effort model to a study's log (see the module docstring); returns the effort file's content.

    Raises:
        ValueError: naming ``db`` when the log holds no timed choice or correction, or arms with only one K.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    choices, corrections = observations(events, study)
    if not choices or not corrections:
        raise ValueError("db: the log holds no timed choice and correction of a study case yet")
    if len({k for _, k, _ in choices}) < 2:
        raise ValueError("db: the choice time's slope needs proposals with at least two values of K "
                         f"(the log has K = {choices[0][1]} only); add an arm with another K")
    point = _fit(choices, corrections)
    people = sorted({p for p, _, _ in choices} | {p for p, _ in corrections})
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        draw = rng.choice(people, size=len(people), replace=True)
        bc = [c for p in draw for c in choices if c[0] == p]
        bk = [c for p in draw for c in corrections if c[0] == p]
        boots.append(_fit(bc, bk) if bc and bk else {key: math.nan for key in point})
    fits: dict[str, Any] = {}
    for key, value in point.items():
        column = np.array([b[key] for b in boots], dtype=np.float64)
        column = column[np.isfinite(column)]
        lo, hi = (np.percentile(column, [2.5, 97.5]) if column.size else (math.nan, math.nan))
        fits[key] = {"estimate": value, "ci95": [float(lo), float(hi)]}
    effort = EffortModel(c_click=max(0.0, point["c_click"]), c_inspect=max(0.0, point["log2(K).a"]),
                         b_choose=max(0.0, point["log2(K).b"]))
    return {
        "effort": {"c_click": effort.c_click, "c_inspect": effort.c_inspect, "b_choose": effort.b_choose},
        "fits": fits, "n_participants": len(people), "n_choices": len(choices), "n_corrections": len(corrections),
        "n_boot": n_boot, "seed": seed, "study": study.name,
    }


def write_effort_file(fit: dict[str, Any], path: Path) -> None:
    """Write ``fit`` as strict JSON (an undefined number is ``null``)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(fit), indent=2, allow_nan=False) + "\n"
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:
        raise ValueError(f"out: cannot write {path}: {exc.strerror or exc}") from None


def load_effort_file(path: str | Path) -> EffortModel:
    """The :class:`~simulator.metrics.EffortModel` of an effort file (its ``effort`` object).

    Raises:
        ValueError: naming ``effort_model`` for an unreadable file or a missing or bad constant.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"effort_model: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"effort_model: {path} is not valid JSON") from None
    effort = data.get("effort") if isinstance(data, dict) else None
    if not isinstance(effort, dict):
        raise ValueError(f"effort_model: {path} has no 'effort' object (write one with probseg-annotate fit-effort)")
    values = {}
    for key in (f.name for f in fields(EffortModel)):
        v = effort.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"effort_model: {path}: effort.{key} must be a number of seconds, got {v!r}")
        values[key] = float(v)
    try:
        return EffortModel(**values)
    except ValueError as exc:
        raise ValueError(f"effort_model: {path}: {exc}") from None
