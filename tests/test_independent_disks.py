"""The shipped disk models on disks from a generator written apart from ``probseg.data.disks``.

Issue 2 asks that the model not depend on one exact setting of our generator: it is checked on disks
with radii 3-7 px, intensities in [0.2, 1.0] at least 0.1 apart and Gaussian noise sigma 0.03. This
generator differs from ours on purpose (integer centres, ``distance <= r`` inside, a zero
background, its own rejection rules); only the input partial and the metrics are probseg's, the
same code as ``probseg-reproduce``. Measured on 1,000 such images, `disks` adds 42.4 + 23.8 px at
max Dice 0.999 with target Dice@1 0.850 and @8 1.000 (CHECKPOINTS.md); 100 images here.
"""

from __future__ import annotations

import numpy as np
import pytest

import probseg
from probseg.data.disks import DiskImage, subset_mask
from probseg.data.partials import make_partial_pair
from probseg.evaluate import EVAL_PAIRS, HeldoutCase, evaluate_disks


def independent_disk_image(rng: np.random.Generator, sigma: float = 0.03) -> DiskImage:
    """Three disjoint disks on a 32x32 zero background: float32 image, bool (3, 32, 32) masks."""
    yy, xx = np.mgrid[:32, :32]
    while True:
        r = rng.uniform(3.0, 7.0, 3)
        c = rng.integers(0, 32, (3, 2))
        if any(np.hypot(*(c[i] - c[j])) < r[i] + r[j] + 1 for i in range(3) for j in range(i)):
            continue
        masks = np.stack([(yy - c[i, 0]) ** 2 + (xx - c[i, 1]) ** 2 <= r[i] ** 2 for i in range(3)])
        if (masks.sum((1, 2)) < 9).any():  # a disk cut off by the border to a sliver
            continue
        v = rng.uniform(0.2, 1.0, 3)
        if min(abs(v[i] - v[j]) for i in range(3) for j in range(i)) < 0.1:
            continue
        image = (masks * v[:, None, None]).sum(0) + rng.normal(0.0, sigma, (32, 32))
        return DiskImage(image.astype(np.float32), masks, c.astype(np.float64), r, v)


def independent_cases(n: int, seed: int = 99) -> list[HeldoutCase]:
    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        disk = independent_disk_image(rng)
        bits = int(rng.integers(1, 8))
        subset = tuple(j for j in range(3) if bits >> j & 1)
        target = subset_mask(disk.disks, subset)
        pair = make_partial_pair(rng, target, EVAL_PAIRS, disk.disks)
        cases.append(HeldoutCase(disk, subset, target, pair.x_m, pair.x_s))
    return cases


def test_independent_generator_meets_the_spec():
    for i in range(50):
        d = independent_disk_image(np.random.default_rng([7, i]))
        assert d.image.shape == (32, 32) and d.disks.shape == (3, 32, 32)
        assert d.disks.sum(0).max() == 1  # disjoint
        assert ((d.radii >= 3) & (d.radii <= 7)).all()
        v = np.sort(d.intensities)
        assert v[0] >= 0.2 and v[-1] <= 1.0 and np.diff(v).min() >= 0.1


def test_shipped_disks_model_meets_the_target_on_independent_disks():
    if "disks" not in probseg.available():
        pytest.skip("shipped checkpoint 'disks' is not installed")
    m = evaluate_disks(probseg.load("disks"), 100, seed=0, cases=independent_cases(100))
    assert m["added_fg_px"] >= 36 and m["added_bg_px"] >= 18  # a margin below 42 / 24 on 1,000 images
    assert m["added_fg_px"] + m["added_bg_px"] <= 250
    assert m["max_dice"] >= 0.95
    assert m["target_dice_at_8"] - m["target_dice_at_1"] >= 0.08  # sampling helps
