"""Dice curves of an arm: per-session Dice against clicks, iterations and annotator seconds.

Each function returns a float64 matrix with one row per session (in ``arm.sessions`` order) and one
column per grid point; :mod:`simulator.figures` draws their means with bootstrap bands.
"""

from __future__ import annotations

import numpy as np

from .arms import Arm
from .metrics import EffortCounts, EffortModel

__all__ = [
    "dice_at_clicks_matrix",
    "dice_by_iteration_matrix",
    "cumulative_effort",
    "dice_by_effort_matrix",
]


def dice_at_clicks_matrix(arm: Arm, n_clicks: int) -> np.ndarray:
    """Dice after c clicks, c = 0..n_clicks: float64 (n_sessions, n_clicks + 1).

    Per session, the Dice of the first iteration whose ``clicks_so_far >= c``, else the last Dice (the
    rule of ``session_metrics``' ``dice_at_clicks``).
    """
    out = np.empty((len(arm.session_steps), n_clicks + 1))
    grid = np.arange(n_clicks + 1)
    for i, s in enumerate(arm.session_steps):
        idx = np.searchsorted(s["clicks_so_far"], grid, side="left")  # clicks_so_far is non-decreasing
        out[i] = s["dice"][np.minimum(idx, len(s["dice"]) - 1)]
    return out


def dice_by_iteration_matrix(arm: Arm, n_iters: int) -> np.ndarray:
    """Dice at iterations 1..n_iters: float64 (n_sessions, n_iters).

    A session that ended early (the annotator was done) keeps its last Dice up to the run's
    ``max_iters`` (the rule of ``session_metrics``); NaN beyond ``max_iters``, where no session ran.
    """
    out = np.full((len(arm.session_steps), n_iters), np.nan)
    max_iters = arm.settings.get("max_iters")
    for i, s in enumerate(arm.session_steps):
        it = s["iteration"]
        keep = (it >= 1) & (it <= n_iters)
        out[i, it[keep] - 1] = s["dice"][keep]
        last = int(it.max())
        until = n_iters if max_iters is None else min(n_iters, int(max_iters))
        if last < until:
            out[i, last:until] = s["dice"][np.argmax(it)]
    return out


def cumulative_effort(s: dict[str, np.ndarray], model: EffortModel) -> np.ndarray:
    """Seconds spent up to and including each iteration i: clicks_so_far * c_click + i * c_inspect
    + b_choose * sum of log2(K) over iterations 1..i. float64 (n_iterations,).

    ``s`` is one session's step arrays (an entry of :attr:`Arm.session_steps`).
    """
    k = np.maximum(1, s["n_candidates"])
    # The running sums of the steps' counts, priced by the one pricing rule (EffortModel.seconds works on arrays).
    running = EffortCounts(clicks=s["clicks_so_far"], iterations=np.arange(1, len(s["dice"]) + 1),
                           choices=np.cumsum(k > 1), choice_bits=np.cumsum(np.log2(k)))
    return model.seconds(running)


def dice_by_effort_matrix(arm: Arm, grid: np.ndarray) -> np.ndarray:
    """Dice on screen after t annotator seconds, t in ``grid`` float (G,): float64 (n_sessions, G).

    Per session, the Dice of the last iteration whose cumulative effort (see
    :func:`cumulative_effort`, priced with the run's constants) is <= t; 0 before the first
    proposal (nothing is segmented yet); the final Dice after the last iteration.
    """
    grid = np.asarray(grid, dtype=np.float64)
    model = arm.effort_model()
    out = np.zeros((len(arm.session_steps), grid.size))
    for i, s in enumerate(arm.session_steps):
        cum = cumulative_effort(s, model)
        idx = np.searchsorted(cum, grid, side="right") - 1
        out[i] = np.where(idx >= 0, s["dice"][np.maximum(idx, 0)], 0.0)
    return out
