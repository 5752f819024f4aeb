"""The arms of a report and their metrics.

An :class:`Arm` is one finished run directory (what :func:`simulator.runner.run` writes) as the report
holds it: its config, its sessions and the step columns the report needs. Here too are the metrics
the report knows (:data:`METRICS`, their labels and which way is better), each arm's per-session
metric values and effort counts, its sessions' image clusters for the bootstrap, their tasks, its
start input, and the annotator of a human-start session. Loading run and study directories is
:mod:`simulator.report`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from probseg.lazy import lazy_import

from .metrics import EffortCounts, EffortModel, dice_auc_clicks, effort_counts

pd = lazy_import("pandas")  # imported on first use: commands start faster

__all__ = [
    "METRICS",
    "EXTRA_METRICS",
    "EFFORT_TARGET",
    "Arm",
    "FoldPart",
    "METRIC_LABELS",
    "metric_label",
    "metric_legend",
    "format_metric",
    "lower_is_better",
    "metric_statistic",
    "metric_matrix",
    "arm_effort_counts",
    "image_codes",
    "session_tasks",
    "arm_start",
    "annotator_index",
]

# The metrics of summary.csv and comparison.csv, in order. ``nof_T`` is a count of sessions that
# never reached Dice T (its statistic is a sum); every other metric is a mean over sessions.
METRICS: tuple[str, ...] = (
    "noc_85", "noc_90", "noi_90", "nof_90", "dice_at_clicks_3", "dice_at_clicks_5", "dice_at_clicks_10",
    "dice_at_iter_1", "dice_at_iter_5", "dice_at_iter_10", "dice_auc", "final_hd95", "effort_s",
)
# Further session metrics that may be named as the endpoint (they are then reported too).
EXTRA_METRICS: tuple[str, ...] = (
    "noc_80", "noi_80", "noi_85", "nof_80", "nof_85", "dice_at_iter_20", "final_dice", "dice_auc_clicks",
)
# The Dice up to which effort counts are taken (effort_s and the tie ratio).
EFFORT_TARGET = 0.90

# Each metric's name in tables and figures: the field's notation (NoC@90 as in RITM and SimpleClick).
METRIC_LABELS: dict[str, str] = {
    "noc_80": "NoC@80", "noc_85": "NoC@85", "noc_90": "NoC@90",
    "noi_80": "NoI@80", "noi_85": "NoI@85", "noi_90": "NoI@90",
    "nof_80": "NoF@80", "nof_85": "NoF@85", "nof_90": "NoF@90",
    "dice_at_clicks_3": "Dice@3 clicks", "dice_at_clicks_5": "Dice@5 clicks", "dice_at_clicks_10": "Dice@10 clicks",
    "dice_at_iter_1": "Dice@iter 1", "dice_at_iter_5": "Dice@iter 5", "dice_at_iter_10": "Dice@iter 10",
    "dice_at_iter_20": "Dice@iter 20", "dice_auc": "Dice AUC", "dice_auc_clicks": "Dice AUC clicks 1-5",
    "final_dice": "final Dice",
    "final_hd95": "final HD95 (px)", "effort_s": "effort (s)",
}
# What each kind of metric means, for the one-line legend under a table (T: the threshold).
_MEANINGS = (
    ("noc_", "NoC@T: clicks, start included, until Dice >= T (the cap when never)"),
    ("noi_", "NoI@T: iterations until Dice >= T"),
    ("nof_", "NoF@T: sessions that never reach Dice T (a count)"),
    ("dice_at_clicks_", "Dice@c clicks: Dice after c clicks"),
    ("dice_at_iter_", "Dice@iter i: Dice after iteration i"),
    ("dice_auc_clicks", "Dice AUC clicks 1-5: the area under Dice over clicks 1 to 5, 0 to 4 (the CVPR 2025 "
                        "interactive biomedical segmentation challenge's DSC AUC)"),
    ("dice_auc", "Dice AUC: mean Dice over the iterations"),
    ("final_dice", "final Dice: at the session's end"),
    ("final_hd95", "final HD95: 95th-percentile boundary distance at the end"),
    ("effort_s", f"effort: annotator seconds to Dice {EFFORT_TARGET:.2f}"),
)


def metric_label(metric: str) -> str:
    """The metric's name in tables and figures (``noc_90`` -> ``NoC@90``; unknown names as given)."""
    return METRIC_LABELS.get(metric, metric)


def metric_legend(metrics: Sequence[str]) -> str:
    """One line that says what the labels of ``metrics`` mean, in the order their kinds first appear
    (``NoC@T: clicks, start included, until Dice >= T (the cap when never); ...``)."""
    kinds = []
    for m in metrics:
        meaning = next((text for prefix, text in _MEANINGS if m.startswith(prefix)), None)
        if meaning is not None and meaning not in kinds:
            kinds.append(meaning)
    return "; ".join(kinds) + ("." if kinds else "")


def format_metric(metric: str, value: float | None) -> str:
    """A metric's value as tables print it: NoF a whole count, Dice 3 decimals, others 2; ``–`` for NaN."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric.startswith("nof_"):
        return f"{value:.0f}"
    if metric.startswith("dice") or metric == "final_dice":
        return f"{value:.3f}"
    return f"{value:.2f}"


def lower_is_better(metric: str) -> bool:
    """True for NoC, NoI, NoF, HD95 and effort; False for the Dice metrics."""
    return metric.startswith(("noc_", "noi_", "nof_")) or metric in ("final_hd95", "effort_s")


def metric_statistic(metric: str) -> str:
    """``sum`` for the failure counts ``nof_T``, ``mean`` for every other metric."""
    return "sum" if metric.startswith("nof_") else "mean"


@dataclass(frozen=True)
class FoldPart:
    """One fold's run of an arm pooled over cross-validation folds (a study with ``[folds]``).

    The pooled arm numbers its sessions fold after fold: the fold's session ``i`` is the arm's
    ``first + i``.

    Attributes:
        fold: the fold's name; run_dir: its run directory; first: the arm's number of its session 0;
        n: its sessions; settings: its run settings (its dataset and checkpoint).
    """

    fold: str
    run_dir: Path
    first: int
    n: int
    settings: dict[str, Any]


@dataclass
class Arm:
    """One run directory as an arm of a report.

    Attributes:
        label: the arm's name in tables (unique within a report).
        run_dir: the run directory.
        config: its ``config.json``.
        sessions: ``sessions.parquet``, one row per session, sorted by (session, image, target).
        steps: ``steps.parquet`` (the columns the report needs), sorted by (session, iteration).
        name: groups the same arm across training seeds (default: the label).
        train_seed: the training seed of the arm's checkpoint, where a study gives one.
        variant: the protocol variant (``default`` when none).
        reference: the label of the arm a study compares this one with ("" when the study does not
            say; then the report's single reference is used).
        base: the arm as the study file names it, before the variant and training seed are appended
            (default: the label); figures draw one line per base.
        parts: for an arm pooled over cross-validation folds, each fold's run (:class:`FoldPart`; then
            ``run_dir`` is the folder holding them, and ``sessions``/``steps`` number the sessions fold
            after fold); empty for one run.
    """

    label: str
    run_dir: Path
    config: dict[str, Any]
    sessions: pd.DataFrame
    steps: pd.DataFrame
    name: str = ""
    train_seed: int | None = None
    variant: str = "default"
    reference: str = ""
    base: str = ""
    parts: list[FoldPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.label
        if not self.base:
            self.base = self.label

    def locate(self, session: int) -> tuple[Path, int, dict[str, Any]]:
        """Where session ``session`` of this arm was run: ``(run directory, its index there, its run
        settings)``; for an arm pooled from cross-validation folds, the fold's run (see :class:`FoldPart`)."""
        for part in self.parts:
            if part.first <= session < part.first + part.n:
                return part.run_dir, session - part.first, part.settings
        if self.parts:
            raise ValueError(f"session: arm {self.label!r} has no session {session}")
        return self.run_dir, session, self.settings

    @property
    def settings(self) -> dict[str, Any]:
        """The run's ``RunSettings`` as a dict."""
        return dict(self.config.get("settings", {}))

    @property
    def method(self) -> str:
        return str(self.settings.get("method", self.config.get("method", {}).get("name", "")))

    @property
    def kind(self) -> str:
        return str(self.config.get("method", {}).get("kind", ""))

    @property
    def multi(self) -> bool:
        return bool(self.config.get("method", {}).get("multi", False))

    def effort_model(self) -> EffortModel:
        """The effort constants the run was priced with (its ``config.json`` ``effort``)."""
        e = self.config.get("effort") or {}
        s = self.settings
        default = EffortModel()
        return EffortModel(**{f.name: float(e.get(f.name, s.get(f.name, getattr(default, f.name))))
                              for f in fields(EffortModel)})

    @cached_property
    def session_steps(self) -> list[dict[str, np.ndarray]]:
        """Per session (in ``sessions`` order), its step columns as arrays sorted by iteration.

        Keys: ``iteration`` int64 (n,), ``dice`` float64 (n,), ``clicks_so_far`` int64 (n,),
        ``click_made`` bool (n,), ``n_clicks`` int64 (n,), ``n_candidates`` int64 (n,).
        """
        groups = {int(s): g for s, g in self.steps.groupby("session", sort=True)}
        out = []
        for s in self.sessions["session"].astype(int):
            g = groups.get(int(s))
            if g is None or len(g) == 0:
                where, local, _ = self.locate(int(s))
                raise ValueError(f"paths: {where}/steps.parquet has no steps for session {local}")
            out.append({
                "iteration": g["iteration"].to_numpy(dtype=np.int64),
                "dice": g["dice"].to_numpy(dtype=np.float64),
                "clicks_so_far": g["clicks_so_far"].to_numpy(dtype=np.int64),
                "click_made": g["click_made"].to_numpy(dtype=bool),
                "n_clicks": g["n_clicks"].to_numpy(dtype=np.int64),
                "n_candidates": g["n_candidates"].to_numpy(dtype=np.int64),
            })
        return out


def metric_matrix(arm: Arm, metrics: Sequence[str]) -> np.ndarray:
    """Per-session metric values: float64 (n_sessions, len(metrics)), rows in ``arm.sessions`` order.

    ``nof_T`` is 1.0 where the session never reached Dice T (``reached_T`` False), else 0.0.
    """
    cols = []
    for m in metrics:
        if m.startswith("nof_"):
            reached = "reached_" + m[4:]
            if reached not in arm.sessions.columns:
                raise ValueError(f"endpoint: run {arm.label!r} has no {reached!r} column for {m!r}")
            cols.append((~arm.sessions[reached].astype(bool)).to_numpy(dtype=np.float64))
        elif m == "dice_auc_clicks":
            cols.append(_dice_auc_clicks(arm))
        elif m in arm.sessions.columns:
            cols.append(pd.to_numeric(arm.sessions[m], errors="coerce").to_numpy(dtype=np.float64))
        else:
            cols.append(np.full(len(arm.sessions), np.nan))
    return np.stack(cols, axis=1) if cols else np.zeros((len(arm.sessions), 0))


def _dice_auc_clicks(arm: Arm) -> np.ndarray:
    """``dice_auc_clicks`` per session: float64 (n_sessions,); worked out from the steps for the sessions
    that lack it (chunks or folds run before sessions carried it), so the mean is over every session."""
    have = (pd.to_numeric(arm.sessions["dice_auc_clicks"], errors="coerce").to_numpy(dtype=np.float64)
            if "dice_auc_clicks" in arm.sessions.columns else np.full(len(arm.sessions), np.nan))
    missing = np.flatnonzero(np.isnan(have))
    if missing.size:
        steps = arm.session_steps
        have = have.copy()
        for i in missing:
            have[i] = dice_auc_clicks(steps[i]["dice"], steps[i]["clicks_so_far"])
    return have


def arm_effort_counts(arm: Arm, target: float = EFFORT_TARGET) -> list[EffortCounts]:
    """Per session (``arm.sessions`` order), :func:`simulator.metrics.effort_counts` rebuilt from steps."""
    cache = arm.__dict__.setdefault("_effort_counts", {})
    if target not in cache:
        cache[target] = _effort_counts(arm, target)
    return list(cache[target])


def _effort_counts(arm: Arm, target: float) -> list[EffortCounts]:
    out = []
    for s in arm.session_steps:
        records = [
            {"iteration": int(it), "dice": float(d), "clicks_so_far": int(c), "click_made": bool(cm),
             "n_clicks": int(nc), "candidate_dice": [0.0] * int(k)}
            for it, d, c, cm, nc, k in zip(s["iteration"], s["dice"], s["clicks_so_far"], s["click_made"],
                                            s["n_clicks"], s["n_candidates"])
        ]
        out.append(effort_counts(records, target=target))
    return out


def image_codes(arm: Arm) -> tuple[np.ndarray, int]:
    """Cluster index of each session (images in sorted order): int64 (n_sessions,), and the count."""
    images = arm.sessions["image"].astype(str).to_numpy()
    uniq, codes = np.unique(images, return_inverse=True)
    return codes.astype(np.int64), int(len(uniq))


def session_tasks(arm: Arm) -> np.ndarray:
    """Each session's task (``CAMUS``, ``disks``, ...): str array (n_sessions,), in ``arm.sessions`` order.

    Runs written before sessions carried a ``task`` column count as one task, ``""``.
    """
    if "task" not in arm.sessions.columns:
        return np.full(len(arm.sessions), "", dtype=object)
    return arm.sessions["task"].fillna("").astype(str).to_numpy(dtype=object)


def arm_start(arm: Arm) -> str:
    """The arm's start input (``clicks``, ``scribbles``, ``human``, ...): its settings', else its sessions'."""
    start = arm.settings.get("start")
    if start is None and "start" in arm.sessions.columns and len(arm.sessions):
        start = arm.sessions["start"].iloc[0]
    return "" if start is None else str(start)


_ANNOTATOR = re.compile(r"^annotator-(\d+)$")


def annotator_index(target: str) -> int | None:
    """N of a human-start session's target ``annotator-N``; None for any other target."""
    m = _ANNOTATOR.match(str(target))
    return int(m.group(1)) if m else None
