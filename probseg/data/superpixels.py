"""Pseudo-tasks from superpixels: a training image's own regions as targets.

A handful of expert labels per training task teaches a model those tasks' shapes. ScribblePrompt
(Wong et al., 2024) trains on a synthetic label half of the time: a superpixel region of the image
instead of the dataset's label, so the model learns to follow what the image and the clicks say
rather than which organ a task usually wants. :func:`superpixel_target` draws such a region:
scikit-image's SLIC or Felzenszwalb superpixels of the image, with drawn parameters, one superpixel
of a plausible size, and up to a few of its neighbours merged into it. The region is connected
(both methods give connected superpixels and only adjacent ones are merged).

Every draw comes from the generator passed in, so a pool stays a function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..lazy import lazy_import
from .spec_record import SpecRecord

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = ["SUPERPIXEL_METHODS", "SuperpixelSpec", "superpixel_labels", "superpixel_target"]

SUPERPIXEL_METHODS = ("slic", "felzenszwalb", "either")


@dataclass(frozen=True)
class SuperpixelSpec(SpecRecord):
    """How a pseudo-target is drawn; every ``(lo, hi)`` pair is a uniform range.

    Attributes:
        method: ``slic``, ``felzenszwalb`` or ``either`` (each with probability 1/2).
        n_segments: (min, max) SLIC superpixels asked for (drawn as an integer).
        compactness: (min, max) SLIC compactness on the [0, 1] grey image (drawn log-uniformly);
            small values follow intensity edges, large ones give square cells.
        scale: (min, max) Felzenszwalb scale (drawn log-uniformly): larger gives larger regions.
        area: (min, max) fraction of the image a target may cover.
        max_merge: most neighbouring superpixels merged into the first (drawn from 0..max_merge).
    """

    method: str = "either"
    n_segments: tuple[int, int] = (16, 96)
    compactness: tuple[float, float] = (0.02, 0.3)
    scale: tuple[float, float] = (50.0, 400.0)
    area: tuple[float, float] = (0.01, 0.4)
    max_merge: int = 3

    def __post_init__(self) -> None:
        if self.method not in SUPERPIXEL_METHODS:
            raise ValueError(f"method: expected one of {', '.join(SUPERPIXEL_METHODS)}, got {self.method!r}")
        lo, hi = self.n_segments
        if not 2 <= lo <= hi:
            raise ValueError(f"n_segments: need 2 <= min <= max, got ({lo}, {hi})")
        for name in ("compactness", "scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: need 0 < min <= max, got ({lo}, {hi})")
        lo, hi = self.area
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"area: need 0 < min <= max <= 1, got ({lo}, {hi})")
        if isinstance(self.max_merge, bool) or not isinstance(self.max_merge, int) or self.max_merge < 0:
            raise ValueError(f"max_merge: must be an integer >= 0, got {self.max_merge!r}")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def superpixel_labels(rng: np.random.Generator, image: np.ndarray, spec: SuperpixelSpec = SuperpixelSpec()) -> np.ndarray:
    """Superpixels of ``image`` (float (H, W), values in [0, 1]) with drawn parameters: int (H, W)
    labels 0..n-1, each label one connected region."""
    from skimage.measure import label as connected
    from skimage.segmentation import felzenszwalb, slic

    image = np.asarray(image, dtype=np.float64)
    method = spec.method if spec.method != "either" else ("slic", "felzenszwalb")[int(rng.integers(2))]
    if method == "slic":
        n = int(rng.integers(spec.n_segments[0], spec.n_segments[1] + 1))
        labels = slic(image, n_segments=n, compactness=_log_uniform(rng, *spec.compactness), channel_axis=None,
                      start_label=0, enforce_connectivity=True)
    else:
        # sigma 1: the augmented images are noisy, and noise would make ragged regions.
        labels = felzenszwalb(image, scale=_log_uniform(rng, *spec.scale), sigma=1.0, min_size=max(4, image.size // 1000))
    # Both methods' superpixels are connected as a rule; relabelling the connected pieces makes it so.
    return connected(labels, background=-1, connectivity=1) - 1


def superpixel_target(rng: np.random.Generator, image: np.ndarray, spec: SuperpixelSpec = SuperpixelSpec()) -> np.ndarray:
    """A pseudo-target: bool (H, W), one connected region of superpixels of ``image``.

    Args:
        rng: every draw comes from it.
        image: float (H, W) in [0, 1] (a normalised training image).
        spec: the superpixels and the target's size.
    Returns:
        A non-empty region without holes: a superpixel whose area is within ``spec.area`` (one off
        the image border when there is one; the one closest to the range when none is within it),
        then up to ``max_merge`` adjacent superpixels while the area stays within the range.
    """
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"image: expected a 2-D array of at least 2 x 2, got shape {image.shape}")
    labels = superpixel_labels(rng, image, spec)
    areas = np.bincount(labels.ravel()) / labels.size
    lo, hi = spec.area
    # Superpixels away from the border first: those on it are mostly padding and background.
    border = np.zeros(areas.size, dtype=bool)
    border[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    fits = np.flatnonzero((areas >= lo) & (areas <= hi) & ~border)
    if not fits.size:
        fits = np.flatnonzero((areas >= lo) & (areas <= hi))
    if fits.size:
        first = int(fits[int(rng.integers(fits.size))])
    else:
        first = int(np.argmin(np.maximum(lo - areas, areas - hi)))
    region = labels == first
    area = areas[first]
    for _ in range(int(rng.integers(spec.max_merge + 1))):
        ring = np.zeros_like(region)  # the 4-neighbours of the region outside it
        ring[1:] |= region[:-1]
        ring[:-1] |= region[1:]
        ring[:, 1:] |= region[:, :-1]
        ring[:, :-1] |= region[:, 1:]
        neighbours = np.unique(labels[ring & ~region])
        neighbours = neighbours[area + areas[neighbours] <= hi]
        if neighbours.size == 0:
            break
        pick = int(neighbours[int(rng.integers(neighbours.size))])
        region |= labels == pick
        area += areas[pick]
    # An object has no holes: superpixels it encloses are part of it.
    return ndimage.binary_fill_holes(region)
