"""The paper's metrics on proposals: added pixels, Dice on the added region, max Dice over subsets."""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "added_pixels", "added_dice", "max_subset_dice", "dice_at_k"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool masks of the same shape; two empty masks score 1."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"dice: shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((a & b).sum()) / total


def added_pixels(mask: np.ndarray, new_mask: np.ndarray, new_seg: np.ndarray) -> tuple[int, int]:
    """(foreground, background) pixels that a proposal decides beyond the input ``mask``.

    Args:
        mask: bool (H, W), the input's decided pixels.
        new_mask, new_seg: bool (H, W), one proposal.
    """
    added = new_mask & ~mask
    return int((added & new_seg).sum()), int((added & ~new_seg).sum())


def added_dice(mask: np.ndarray, new_mask: np.ndarray, new_seg: np.ndarray, truth: np.ndarray) -> float:
    """Dice between a proposal's foreground and ``truth`` on the added region ``new_mask & ~mask``."""
    added = new_mask & ~mask
    return dice(new_seg & added, truth & added)


def max_subset_dice(mask: np.ndarray, new_mask: np.ndarray, new_seg: np.ndarray, truths: np.ndarray) -> float:
    """The paper's metric: the best :func:`added_dice` over candidate ground truths ``truths`` (n, H, W)."""
    return max(added_dice(mask, new_mask, new_seg, t) for t in truths)


def dice_at_k(scores: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """Mean over rows of the best of the first K columns, for each K.

    Args:
        scores: float (n_images, n_samples), e.g. the target Dice of each sample.
        ks: the K values, each <= n_samples.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected (n_images, n_samples), got shape {scores.shape}")
    out = {}
    for k in ks:
        if not 1 <= k <= scores.shape[1]:
            raise ValueError(f"ks: K={k} outside 1..{scores.shape[1]}")
        out[k] = float(scores[:, :k].max(axis=1).mean())
    return out
