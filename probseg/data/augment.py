"""Augmentation of a real training example at the medical models' working size: a random dihedral
transform, a random crop resized to the working size, random gamma, contrast and noise, and (with a
set probability) a pseudo-task's target instead of the expert's (:mod:`probseg.data.superpixels`).

No torch here: ``probseg-train --help`` reads :class:`AugmentSpec`'s defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configs import MEDICAL_WORK_SIZE
from ..lazy import lazy_import
from .intensity import normalize_image
from .spec_record import SpecRecord

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = ["AugmentSpec", "augment_example"]


@dataclass(frozen=True)
class AugmentSpec(SpecRecord):
    """Augmentation of a real example; every ``(lo, hi)`` pair is a uniform range.

    Attributes:
        zoom: (min, max) fraction of each side the crop keeps (drawn per side, so the aspect ratio
            varies too).
        gamma: (min, max) gamma exponent on the [0, 1] image, drawn log-uniformly.
        contrast: (min, max) factor the deviations from the mean are scaled by.
        noise: (min, max) standard deviation of added Gaussian noise.
        dihedral: apply a random flip / 90-degree rotation.
        min_target_kept: a crop must keep at least this fraction of the target (else another crop
            is drawn, and after a few tries the whole image is used).
        pseudo_fraction: probability that the augmented image's target is replaced by a pseudo-task's,
            a region of its superpixels (:func:`probseg.data.superpixels.superpixel_target`), as
            ScribblePrompt trains half of the time; 0 (the default) never draws one, so pools made
            before this option are unchanged.
    """

    zoom: tuple[float, float] = (0.8, 1.0)
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.25)
    noise: tuple[float, float] = (0.0, 0.04)
    dihedral: bool = True
    min_target_kept: float = 0.5
    pseudo_fraction: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.zoom
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"zoom: need 0 < min <= max <= 1, got ({lo}, {hi})")
        for name in ("gamma", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: need 0 < min <= max, got ({lo}, {hi})")
        lo, hi = self.noise
        if not 0 <= lo <= hi:
            raise ValueError(f"noise: need 0 <= min <= max, got ({lo}, {hi})")
        for name in ("min_target_kept", "pseudo_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")


def _resample(array: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Bilinear resampling of the box (top, left, height, width) of a float (H, W) array to (size, size).

    Antialiased like scikit-image's ``resize``: a Gaussian of sigma ``(scale - 1) / 2`` first.
    """
    top, left, bh, bw = box
    sy, sx = bh / size, bw / size
    sigma = (max(0.0, (sy - 1) / 2), max(0.0, (sx - 1) / 2))
    if max(sigma) > 0:
        array = ndimage.gaussian_filter(array, sigma, mode="nearest")
    yy = top + (np.arange(size) + 0.5) * sy - 0.5
    xx = left + (np.arange(size) + 0.5) * sx - 0.5
    coords = np.stack(np.meshgrid(yy, xx, indexing="ij"))
    return ndimage.map_coordinates(array, coords, order=1, mode="nearest", prefilter=False)


def augment_example(
    rng: np.random.Generator, image: np.ndarray, target: np.ndarray, size: int = MEDICAL_WORK_SIZE, spec: AugmentSpec = AugmentSpec()
) -> tuple[np.ndarray, np.ndarray]:
    """A random augmentation of one real example at the working size.

    Args:
        rng: every draw comes from it.
        image: float (H, W) in [0, 1].
        target: bool (H, W), not empty.
        size: the output side.
        spec: the augmentation ranges.
    Returns:
        ``image`` float32 (size, size) normalised to [0, 1] as at inference, and ``target`` bool
        (size, size), not empty (a target lost to the resampling is kept as the pixels it overlaps).
    """
    image = np.asarray(image, dtype=np.float32)
    target = np.asarray(target, dtype=bool)
    if spec.dihedral:
        code = int(rng.integers(8))
        if code & 4:
            image, target = image[:, ::-1], target[:, ::-1]
        image, target = np.rot90(image, code & 3), np.rot90(target, code & 3)
    h, w = image.shape
    total = max(int(target.sum()), 1)
    box = (0.0, 0.0, float(h), float(w))
    for _ in range(5):
        bh, bw = h * rng.uniform(*spec.zoom), w * rng.uniform(*spec.zoom)
        top, left = rng.uniform(0, h - bh), rng.uniform(0, w - bw)
        r0, r1 = int(np.floor(top)), int(np.ceil(top + bh))
        c0, c1 = int(np.floor(left)), int(np.ceil(left + bw))
        if target[r0:r1, c0:c1].sum() >= spec.min_target_kept * total:
            box = (top, left, bh, bw)
            break
    img = _resample(np.ascontiguousarray(image), box, size)
    tgt_f = _resample(np.ascontiguousarray(target, dtype=np.float32), box, size)
    tgt = tgt_f >= 0.5
    if not tgt.any():  # a thin target can fall below one half everywhere: keep what it overlaps
        tgt = tgt_f > 0
    if not tgt.any():
        tgt[np.unravel_index(int(np.argmax(tgt_f)), tgt_f.shape)] = True
    # Intensity: gamma, contrast around the mean, noise; then the inference normalisation.
    img = np.clip(img, 0.0, 1.0) ** float(np.exp(rng.uniform(np.log(spec.gamma[0]), np.log(spec.gamma[1]))))
    mean = float(img.mean())
    img = (img - mean) * rng.uniform(*spec.contrast) + mean
    img = img + rng.normal(0.0, rng.uniform(*spec.noise), size=img.shape)
    return normalize_image(img), tgt
