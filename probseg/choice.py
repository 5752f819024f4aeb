"""The robot annotator's choice among K candidates: the best-of-K oracle's rule.

It lives in ``probseg`` so that a trainer that simulates sessions (:mod:`probseg.interaction_loop`)
accepts a proposal exactly as the simulator's ``best-of-k`` policy does (:class:`simulator.policies.BestOfK`
with its default ``no-worse-dice`` acceptance), and ``probseg`` never imports ``simulator``.

Candidates: ``masks``, ``segs`` bool (K, H, W) with ``segs ⊆ masks``; a state is ``(mask, seg)``, bool (H, W).
"""

from __future__ import annotations

import numpy as np

from .metrics import dice

__all__ = ["REJECT", "state_score", "best_of_k"]

REJECT = -1


def state_score(mask: np.ndarray, seg: np.ndarray, gt: np.ndarray, error_weight: float) -> float:
    """``correct - error_weight * wrong`` over the decided pixels of one state (bool (H, W) each).

    Undecided pixels score 0: a partial state is neither rewarded nor punished for what it leaves
    open. A complete state decides every pixel, so for it this ranks by error count alone.
    """
    correct = int((mask & (seg == gt)).sum())
    wrong = int((mask & (seg != gt)).sum())
    return correct - error_weight * wrong


def best_of_k(
    masks: np.ndarray,
    segs: np.ndarray,
    gt: np.ndarray,
    current_mask: np.ndarray,
    current_seg: np.ndarray,
    *,
    error_weight: float = 2.0,
    allow_reject: bool = True,
    no_worse_dice: bool = True,
) -> int:
    """The index of the candidate the oracle takes, or :data:`REJECT` (-1).

    With ``no_worse_dice`` only candidates whose foreground Dice against ``gt`` is at least the
    current foreground's are eligible; among them the highest :func:`state_score` wins (ties to the
    lowest index). With ``allow_reject`` it rejects when no candidate is eligible or when the best
    does not score strictly above the current state; without it, it takes the best eligible
    candidate, or the best of all when none is eligible. ``no_worse_dice=False`` is the first
    release's rule (every candidate eligible).
    """
    k = masks.shape[0]
    values = np.array([state_score(masks[i], segs[i], gt, error_weight) for i in range(k)], dtype=np.float64)
    if no_worse_dice:
        floor = dice(current_seg, gt)
        eligible = np.array([dice(segs[i], gt) >= floor for i in range(k)])
        if eligible.any():
            values = np.where(eligible, values, -np.inf)
        elif allow_reject:
            return REJECT
    best = int(np.argmax(values))  # argmax: first maximum, i.e. ties to the lowest index
    if allow_reject and values[best] <= state_score(current_mask, current_seg, gt, error_weight):
        return REJECT
    return best
