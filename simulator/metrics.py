"""Per-session metrics from a session's step records, and the annotator effort model.

A step record is the dict :func:`simulator.session.run_session` writes per iteration (iterations
1..n, n <= max_iters; there is no iteration-0 row). Its ``dice`` is the chosen segmentation's given the
``clicks_so_far`` clicks (start inputs included) made before it, RITM's convention. A session that
ended early (the annotator was done) keeps its final Dice for the iterations it did not run: every
per-iteration metric carries that value forward, so sessions of any length share one set of columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from probseg.lazy import lazy_import
from probseg.metrics import dice  # one Dice for the model's metrics and the simulator's (re-exported)

from .setting import setting

ndimage = lazy_import("scipy.ndimage")  # imported on first use: --help and usage errors come at once

__all__ = [
    "DICE_THRESHOLDS",
    "EffortCounts",
    "EffortModel",
    "HANDED_IN",
    "carried_dice",
    "dice",
    "dice_auc_clicks",
    "effort_counts",
    "hd95",
    "iou",
    "mean_counts",
    "priced_steps",
    "session_ends",
    "session_metrics",
    "step_counts",
    "step_effort",
    "tie_choose_click_ratio",
]

DICE_THRESHOLDS = (0.80, 0.85, 0.90)
# The stop reasons of a session the annotator handed in before its iteration budget ran out.
HANDED_IN = ("done", "stop-at")
CLICK_BUDGETS = (3, 5, 10)
# The clicks the Dice AUC of the CVPR 2025 interactive biomedical segmentation challenge integrates over.
AUC_CLICKS = 5
ITERATION_MARKS = (1, 5, 10, 20)


def _pair(a: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ: {a.shape} vs {b.shape}")
    return a, b


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape; two empty masks score 1."""
    a, b = _pair(a, b, "iou")
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _boundary(mask: np.ndarray) -> np.ndarray:
    # Pixels removed by a 4-connected erosion with the outside treated as background, so a mask
    # touching the image edge has a boundary there (the convention of medpy's hd95).
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)


def hd95(a: np.ndarray, b: np.ndarray) -> float:
    """95th-percentile Hausdorff distance between the boundaries of ``a`` and ``b``, in pixels.

    The larger of the two directed 95th percentiles of boundary-to-boundary L2 distances (medpy's
    definition). Both empty: 0. Exactly one empty: the image diagonal sqrt(H^2 + W^2), the largest
    distance the image allows, so an empty result is never better than a wrong one.
    """
    a, b = _pair(a, b, "hd95")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float(math.hypot(*a.shape))
    ba, bb = _boundary(a), _boundary(b)
    to_b = ndimage.distance_transform_edt(~bb)[ba]  # distance of each a-boundary pixel to b's boundary
    to_a = ndimage.distance_transform_edt(~ba)[bb]
    return float(max(np.percentile(to_b, 95), np.percentile(to_a, 95)))


@dataclass(frozen=True)
class EffortModel:
    """Annotator time per action, in seconds, from the keystroke-level model (KLM; Card, Moran &
    Newell, 1980) and the Hick-Hyman law (Hick, 1952; Hyman, 1953).

    Attributes:
        c_click: one click or stroke = point (P = 1.1 s) + mental preparation (M = 1.35 s) = 2.45 s;
            the button press itself (KLM BB = 0.2 s) is left out as small beside these.
        c_inspect: looking at the proposal each iteration = M = 1.35 s; every method pays it.
        b_choose: Hick-Hyman slope, 0.15 s per bit: choosing among K candidates costs
            ``b_choose * log2(K)``, zero for K = 1 (the Hick-Hyman intercept is in ``c_inspect``).
    """

    c_click: float = setting(1.1 + 1.35, "per click: pointing + mental preparation (KLM)")
    c_inspect: float = setting(1.35, "per iteration: inspecting the proposal")
    b_choose: float = setting(0.15, "Hick-Hyman slope per bit of choosing among K")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")

    def c_choose(self, k: int) -> float:
        """Seconds to choose one of ``k`` candidates: ``b_choose * log2(k)``."""
        if k < 1:
            raise ValueError(f"k: must be >= 1, got {k}")
        return self.b_choose * math.log2(k)

    def seconds(self, counts: "EffortCounts") -> float:
        """``clicks * c_click + iterations * c_inspect + b_choose * choice_bits``."""
        return counts.clicks * self.c_click + counts.iterations * self.c_inspect + self.b_choose * counts.choice_bits


@dataclass(frozen=True)
class EffortCounts:
    """What an annotator did (or did on average, see :func:`mean_counts`).

    Attributes:
        clicks: clicks and strokes, start included.
        iterations: proposals inspected.
        choices: iterations where the annotator chose among K > 1 candidates.
        choice_bits: sum of log2(K) over iterations (K = candidates shown).
    """

    clicks: float
    iterations: float
    choices: float
    choice_bits: float


def _n_candidates(step: dict[str, Any]) -> int:
    """Candidates shown at a step (``n_shown``; records written before it existed: their candidates' count)."""
    shown = step["n_shown"] if "n_shown" in step else len(step.get("candidate_dice", ()))
    return max(1, int(shown))


def step_counts(steps: Sequence[dict[str, Any]]) -> list[EffortCounts]:
    """Each step's own work, in order: the clicks made since the previous proposal (on iteration 1 the
    start's, later the previous iteration's corrections), one inspection, and the choice among its
    ``n_shown`` candidates. Their running sum at iteration i is the work until iteration i's choice;
    the last step's own corrections are nobody's (no proposal followed them): see :func:`effort_counts`.
    """
    out, before = [], 0
    for s in steps:
        k, so_far = _n_candidates(s), int(s["clicks_so_far"])
        out.append(EffortCounts(clicks=float(so_far - before), iterations=1.0, choices=float(k > 1),
                                choice_bits=math.log2(k)))
        before = so_far
    return out


def step_effort(steps: Sequence[dict[str, Any]], model: EffortModel) -> list[float]:
    """Each step's ``effort_seconds``: its :func:`step_counts` priced by ``model``."""
    return [model.seconds(c) for c in step_counts(steps)]


def priced_steps(steps: Sequence[dict[str, Any]], model: EffortModel) -> list[dict[str, Any]]:
    """The step records with their ``effort_seconds`` (:func:`step_effort`), as steps.parquet stores them."""
    return [{**s, "effort_seconds": e} for s, e in zip(steps, step_effort(steps, model))]


def _clicks_spent(steps: Sequence[dict[str, Any]]) -> int:
    """Every click of the session: those before the last iteration plus the last one's corrections."""
    last = steps[-1]
    return int(last["clicks_so_far"]) + int(last.get("n_clicks", int(bool(last["click_made"]))))


def _first_reaching(steps: Sequence[dict[str, Any]], threshold: float) -> int | None:
    for i, step in enumerate(steps):
        if step["dice"] >= threshold:
            return i
    return None


def effort_counts(steps: Sequence[dict[str, Any]], target: float = 0.90) -> EffortCounts:
    """The work until the first iteration whose Dice reaches ``target``, that iteration included.

    The sum of :func:`step_counts` over iterations 1..i when reached at iteration i (``clicks =
    clicks_so_far`` there, ``iterations = i``, choices over iterations 1..i). Never reached: the whole
    session, with every click actually made -- the sum over every step plus the last iteration's
    corrections -- not the NoC cap: effort is time spent, not a penalty.
    """
    _check_steps(steps)
    i = _first_reaching(steps, target)
    upto = step_counts(steps if i is None else steps[: i + 1])
    tail = _clicks_spent(steps) - int(steps[-1]["clicks_so_far"]) if i is None else 0
    return EffortCounts(
        clicks=float(sum(c.clicks for c in upto) + tail),
        iterations=float(len(upto)),
        choices=float(sum(c.choices for c in upto)),
        choice_bits=float(sum(c.choice_bits for c in upto)),
    )


def mean_counts(counts: Sequence[EffortCounts]) -> EffortCounts:
    """The field-wise mean of several sessions' counts (an arm's average annotator)."""
    if len(counts) == 0:
        raise ValueError("counts: need at least one EffortCounts")
    return EffortCounts(*(float(np.mean([getattr(c, f) for c in counts])) for f in EffortCounts.__dataclass_fields__))


def tie_choose_click_ratio(a: EffortCounts, b: EffortCounts, model: EffortModel = EffortModel()) -> float:
    """The ratio ``c_choose / c_click`` at which arms ``a`` and ``b`` cost the same mean time.

    Each arm's time is ``clicks * c_click + iterations * c_inspect + choices * c_choose``, with one
    ``c_choose`` per choice (meant for a K-candidate arm against a single-proposal arm, or arms with
    the same K); ``c_click`` and ``c_inspect`` come from ``model``. Solving for equality gives
    ``[(clicks_b - clicks_a) + (iterations_b - iterations_a) * c_inspect / c_click] / (choices_a - choices_b)``.
    Below the ratio the arm with more choices is cheaper when it saves clicks; a negative value means
    it is never cheaper (or always, if it also has fewer clicks). NaN when both arms make as many
    choices (the choice cost cannot decide between them) or ``c_click`` is 0.
    """
    d_choices = a.choices - b.choices
    if d_choices == 0 or model.c_click == 0:
        return float("nan")
    saved = (b.clicks - a.clicks) + (b.iterations - a.iterations) * model.c_inspect / model.c_click
    return float(saved / d_choices)


def carried_dice(steps: Sequence[dict[str, Any]], n: int) -> np.ndarray:
    """The Dice of iterations 1..n: float64 (n,), the last record's Dice carried past the session's end.

    A session that stopped early was handed in; its segmentation stays what it was when it stopped.
    """
    dices = np.array([float(s["dice"]) for s in steps], dtype=np.float64)
    if n < len(dices):
        raise ValueError(f"max_iters: {n} is fewer than the {len(dices)} step records")
    return np.concatenate([dices, np.full(n - len(dices), dices[-1])])


def session_ends(sessions: Any) -> dict[str, float]:
    """How an arm's sessions ended, from its session table (a DataFrame of :func:`session_metrics` rows).

    Returns ``steps_per_session`` (mean iterations run), ``n_stopped_early`` (sessions handed in
    before ``max_iters``), ``correction_clicks`` (the robot's corrections per session) and
    ``positive_click_share`` (the positive fraction of those corrections). A value the table cannot
    give (no corrections, or a column that runs made before protocol 0.2 lack) is NaN.
    """
    n = len(sessions)

    def column_sum(name: str) -> float:
        return float(sessions[name].astype(float).sum()) if name in sessions.columns else float("nan")

    corrections = column_sum("correction_clicks")
    return {
        "steps_per_session": column_sum("iterations") / n if n else float("nan"),
        "n_stopped_early": column_sum("stopped_early"),
        "correction_clicks": corrections / n if n else float("nan"),
        "positive_click_share": column_sum("positive_clicks") / corrections if corrections > 0 else float("nan"),
    }


def _check_steps(steps: Sequence[dict[str, Any]]) -> None:
    if len(steps) == 0:
        raise ValueError("steps: a session has at least one step record")
    for key in ("iteration", "dice", "clicks_so_far", "click_made"):
        if key not in steps[0]:
            raise ValueError(f"steps: record lacks {key!r}")


def _dice_at_clicks(dices: Sequence[float], clicks_so_far: Sequence[int], budget: int) -> float:
    """The Dice of the first iteration whose ``clicks_so_far >= budget``, or the last Dice if the session
    never spent that many clicks (it stopped clicking: nothing left to fix)."""
    hit = next((d for d, c in zip(dices, clicks_so_far) if int(c) >= budget), None)
    return float(dices[-1]) if hit is None else float(hit)


def dice_auc_clicks(dices: Sequence[float], clicks_so_far: Sequence[int], n_clicks: int = AUC_CLICKS) -> float:
    """The area under Dice over clicks 1..``n_clicks``, as the CVPR 2025 interactive 3D biomedical
    segmentation challenge scores it (its ``DSC_AUC``): the trapezoid rule at unit spacing over the Dice after
    1, 2, ..., ``n_clicks`` clicks, so it lies in [0, ``n_clicks`` - 1] (4 for 5 clicks).

    Args:
        dices: float (n,), each iteration's Dice; clicks_so_far: int (n,), the clicks spent by then.
    """
    if len(dices) == 0 or len(dices) != len(clicks_so_far):
        raise ValueError(f"dices, clicks_so_far: expected the same non-zero length, got {len(dices)} and {len(clicks_so_far)}")
    if n_clicks < 2:
        raise ValueError(f"n_clicks: must be >= 2, got {n_clicks}")
    at = np.array([_dice_at_clicks(dices, clicks_so_far, c) for c in range(1, n_clicks + 1)])
    return float(at.sum() - (at[0] + at[-1]) / 2)


def session_metrics(
    steps: Sequence[dict[str, Any]],
    *,
    corrections_per_iter: int = 1,
    max_iters: int | None = None,
    effort_model: EffortModel = EffortModel(),
    effort_target: float = 0.90,
) -> dict[str, float | int | bool]:
    """One session's metrics.

    Args:
        steps: the session's step records, iterations 1..n in order.
        corrections_per_iter: the session's setting; sets the NoC cap.
        max_iters: the session's setting (default: the number of records).
        effort_model: per-action times for ``effort_s``.
        effort_target: the Dice that ``effort_s`` is the time to reach.
    Returns:
        ``noc_80/85/90``: ``clicks_so_far`` at the first iteration whose Dice >= 0.80/0.85/0.90; an
        unreached threshold scores the cap ``start clicks + max_iters * corrections_per_iter``.
        ``reached_80/85/90``. ``noi_80/85/90``: that iteration's number (unreached = max_iters).
        ``dice_at_clicks_3/5/10``: the Dice of the first iteration whose ``clicks_so_far >= n``, or the
        last Dice if the session never spent n clicks (it stopped clicking: nothing left to fix).
        ``dice_auc_clicks``: the area under Dice over clicks 1-5 (:func:`dice_auc_clicks`, 0 to 4).
        ``dice_at_iter_1/5/10/20``: the Dice at that iteration, carried forward past an early stop (see
        :func:`carried_dice`); NaN beyond ``max_iters``. ``dice_auc``: mean Dice over iterations
        1..max_iters, carried forward likewise (the area under the Dice-vs-iteration curve,
        normalised). ``final_dice``, ``final_hd95`` (the last record's), ``effort_s``
        (:func:`effort_counts` priced by ``effort_model``), ``clicks_total`` (every click made),
        ``start_clicks``, ``iterations`` (iterations run), ``stop`` (why the session ended: the last
        record's ``stop``, "" for records without one), ``stopped_early`` (``done`` or ``stop-at``),
        ``correction_clicks`` and ``positive_clicks`` (the robot's corrections, and those of them
        that were positive).
    """
    _check_steps(steps)
    if corrections_per_iter < 1:
        raise ValueError(f"corrections_per_iter: must be >= 1, got {corrections_per_iter}")
    n = len(steps) if max_iters is None else int(max_iters)
    if n < len(steps):
        raise ValueError(f"max_iters: {n} is fewer than the {len(steps)} step records")
    start_clicks = int(steps[0]["clicks_so_far"])
    cap = start_clicks + n * corrections_per_iter
    dices = [float(s["dice"]) for s in steps]
    out: dict[str, float | int | bool] = {}
    for t in DICE_THRESHOLDS:
        tag = f"{round(t * 100)}"
        i = _first_reaching(steps, t)
        out[f"noc_{tag}"] = cap if i is None else int(steps[i]["clicks_so_far"])
        out[f"reached_{tag}"] = i is not None
        out[f"noi_{tag}"] = n if i is None else int(steps[i]["iteration"])
    for budget in CLICK_BUDGETS:
        out[f"dice_at_clicks_{budget}"] = _dice_at_clicks(dices, [int(s["clicks_so_far"]) for s in steps], budget)
    out["dice_auc_clicks"] = dice_auc_clicks(dices, [int(s["clicks_so_far"]) for s in steps])
    carried = carried_dice(steps, n)
    for it in ITERATION_MARKS:
        out[f"dice_at_iter_{it}"] = float(carried[it - 1]) if it <= n else float("nan")
    out["dice_auc"] = float(np.mean(carried))
    out["final_dice"] = dices[-1]
    out["final_hd95"] = float(steps[-1].get("hd95", float("nan")))
    out["effort_s"] = effort_model.seconds(effort_counts(steps, effort_target))
    out["clicks_total"] = _clicks_spent(steps)
    out["start_clicks"] = start_clicks
    out["iterations"] = len(steps)
    stop = str(steps[-1].get("stop", "") or "")
    out["stop"] = stop
    out["stopped_early"] = stop in HANDED_IN
    corrections = [c for s in steps for c in (s.get("clicks") or [])]
    out["correction_clicks"] = len(corrections)
    out["positive_clicks"] = int(sum(int(c[2]) for c in corrections))
    return out
