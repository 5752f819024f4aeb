"""Held-out evaluation on disks: the paper's numbers and the honest ones beside them.

For held-out image ``i`` the target is a non-empty subset of its disks and the input is a paper-style
shape partial of it (a random shape ``x_m``, ``x_s = target & x_m``), all drawn from the stream
``(seed, i)``: every model sees the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu
from tqdm.auto import tqdm

from .data.disks import HELDOUT_SEED, DiskImage, DiskSpec, all_subset_masks, make_disk_image, subset_mask
from .data.partials import PairSpec, make_partial_pair
from .metrics import added_dice, added_pixels, dice_at_k, max_subset_dice
from .predictor import ProbSeg

__all__ = ["HeldoutCase", "heldout_cases", "evaluate_disks", "threshold_proposal", "PAPER_VALUES", "K_VALUES"]

PAPER_VALUES = {"added_fg_px": 52.0, "added_bg_px": 31.0, "max_dice": 0.87}
K_VALUES = (1, 4, 8, 16)
EVAL_PAIRS = PairSpec(input_weights={"shape": 1.0})


@dataclass
class HeldoutCase:
    """One held-out input: the disk image, its target subset, and the input partial segmentation."""

    disk: DiskImage
    subset: tuple[int, ...]
    target: np.ndarray
    x_m: np.ndarray
    x_s: np.ndarray


def heldout_cases(n: int, seed: int = HELDOUT_SEED, spec: DiskSpec = DiskSpec()) -> list[HeldoutCase]:
    """The first ``n`` held-out cases; case ``i`` depends only on ``(seed, i)``."""
    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        disk = make_disk_image(rng, spec)
        subsets = [s for s in range(1, 2**spec.n_disks)]
        bits = subsets[int(rng.integers(len(subsets)))]
        subset = tuple(j for j in range(spec.n_disks) if bits >> j & 1)
        target = subset_mask(disk.disks, subset)
        pair = make_partial_pair(rng, target, EVAL_PAIRS, disk.disks)
        cases.append(HeldoutCase(disk, subset, target, pair.x_m, pair.x_s))
    return cases


def threshold_proposal(image: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The calibration baseline: Otsu's threshold decides every undecided pixel. bool (H, W) each."""
    new_seg = image > threshold_otsu(image)
    new_seg[mask] = seg[mask]
    return np.ones_like(mask), new_seg


def evaluate_disks(
    model: ProbSeg,
    n: int = 1000,
    seed: int = 0,
    ks: tuple[int, ...] = K_VALUES,
    progress: bool = False,
    cases: list[HeldoutCase] | None = None,
) -> dict[str, float]:
    """Reproduce the paper's table and the honest metrics beside it.

    Args:
        model: the model to evaluate.
        n: number of held-out images.
        seed: the sampling seed (sample streams are ``(seed, i)``).
        ks: the K of target Dice@K; the largest K samples are drawn per image.
        progress: show a progress bar.
        cases: precomputed :func:`heldout_cases` (must hold at least ``n``).
    Returns:
        ``added_fg_px``, ``added_bg_px``, ``max_dice`` (first sample per image, the paper's metric),
        ``threshold_max_dice``, ``target_dice_at_K`` for each K, ``mean_target_dice`` (z = 0),
        ``mean_added_fg_px``, ``mean_added_bg_px`` (the z = 0 proposal's size), ``n_images``.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    cases = heldout_cases(n) if cases is None else cases[:n]
    kmax = max(ks)
    fg, bg, mdice, thr, mean_dice, mean_fg, mean_bg = [], [], [], [], [], [], []
    target_scores = np.zeros((n, kmax))
    for i, case in enumerate(tqdm(cases, desc="evaluate", disable=not progress, unit="img")):
        image, x_m, x_s = case.disk.image, case.x_m, case.x_s
        truths = all_subset_masks(case.disk.disks)
        masks, segs = model.propose(image, x_m, x_s, k=kmax, seed=np.random.default_rng([seed, i]))
        a_fg, a_bg = added_pixels(x_m, masks[0], segs[0])
        fg.append(a_fg)
        bg.append(a_bg)
        mdice.append(max_subset_dice(x_m, masks[0], segs[0], truths))
        target_scores[i] = [added_dice(x_m, m, s, case.target) for m, s in zip(masks, segs)]
        t_m, t_s = threshold_proposal(image, x_m, x_s)
        thr.append(max_subset_dice(x_m, t_m, t_s, truths))
        m0, s0 = model.propose(image, x_m, x_s, k=1, mean=True)
        mean_dice.append(added_dice(x_m, m0[0], s0[0], case.target))
        a_fg, a_bg = added_pixels(x_m, m0[0], s0[0])
        mean_fg.append(a_fg)
        mean_bg.append(a_bg)
    out: dict[str, float] = {
        "added_fg_px": float(np.mean(fg)),
        "added_bg_px": float(np.mean(bg)),
        "max_dice": float(np.mean(mdice)),
        "threshold_max_dice": float(np.mean(thr)),
    }
    out.update({f"target_dice_at_{k}": v for k, v in dice_at_k(target_scores, ks).items()})
    out["mean_target_dice"] = float(np.mean(mean_dice))
    out["mean_added_fg_px"] = float(np.mean(mean_fg))
    out["mean_added_bg_px"] = float(np.mean(mean_bg))
    out["n_images"] = n
    return out
