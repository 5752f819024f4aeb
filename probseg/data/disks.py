"""Synthetic disk images (Section 3 of the paper).

Each image is ``size x size`` with ``n_disks`` non-overlapping disks of distinct random intensities on
a dark background, plus Gaussian noise. The ground truths of an image are the ``2**n_disks`` subsets of
its disks (the empty subset included): which disks an annotator wants is ambiguous by construction.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["DiskSpec", "DiskImage", "make_disk_image", "make_disk_dataset", "subset_mask", "all_subset_masks"]


@dataclass(frozen=True)
class DiskSpec:
    """Parameters of the disk generator; defaults match the paper's 32x32, three-disk images.

    Attributes:
        size: image side in pixels.
        n_disks: disks per image.
        radius_min, radius_max: disk radius range in pixels (inclusive, drawn uniformly as floats).
        intensity_min, intensity_max: disk intensity range; the background is 0.
        min_intensity_gap: the disks' intensities differ pairwise by at least this much.
        noise_sigma: standard deviation of the additive Gaussian noise.
        min_gap: minimum distance in pixels between the rims of two disks (0 = they may touch).
    """

    size: int = 32
    n_disks: int = 3
    radius_min: float = 3.0
    radius_max: float = 7.0
    intensity_min: float = 0.2
    intensity_max: float = 1.0
    min_intensity_gap: float = 0.1
    noise_sigma: float = 0.03
    min_gap: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        if self.n_disks < 1:
            raise ValueError(f"n_disks must be >= 1, got {self.n_disks}")
        if not 0 < self.radius_min <= self.radius_max:
            raise ValueError(f"radius_min/radius_max must satisfy 0 < min <= max, got {self.radius_min}, {self.radius_max}")
        if 2 * self.radius_max + 1 > self.size:
            raise ValueError(f"radius_max: a disk of radius {self.radius_max} does not fit a {self.size}-px image")
        if not self.intensity_min <= self.intensity_max:
            raise ValueError("intensity_min must be <= intensity_max")
        span = self.intensity_max - self.intensity_min
        if self.n_disks > 1 and self.min_intensity_gap * (self.n_disks - 1) > span + 1e-9:
            raise ValueError("min_intensity_gap is too large for the intensity range and n_disks")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DiskImage:
    """One synthetic image.

    Attributes:
        image: float32 (H, W).
        disks: bool (n_disks, H, W), one mask per disk, pairwise disjoint.
        centers: float64 (n_disks, 2), (row, col).
        radii: float64 (n_disks,).
        intensities: float64 (n_disks,).
    """

    image: np.ndarray
    disks: np.ndarray
    centers: np.ndarray
    radii: np.ndarray
    intensities: np.ndarray


def _draw_intensities(rng: np.random.Generator, spec: DiskSpec) -> np.ndarray:
    # Rejection sampling keeps the distribution uniform on the allowed set; the gap constraint
    # is loose enough at the defaults that this ends within a few tries.
    for _ in range(10_000):
        vals = rng.uniform(spec.intensity_min, spec.intensity_max, size=spec.n_disks)
        if spec.n_disks == 1 or np.min(np.diff(np.sort(vals))) >= spec.min_intensity_gap:
            return vals
    raise RuntimeError("could not draw intensities satisfying min_intensity_gap")


def make_disk_image(rng: np.random.Generator, spec: DiskSpec = DiskSpec()) -> DiskImage:
    """Draw one image of non-overlapping disks.

    Args:
        rng: the generator every draw comes from.
        spec: generator parameters.
    Returns:
        A :class:`DiskImage`; disks lie entirely inside the image.
    """
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(1000):
        centers: list[tuple[float, float]] = []
        radii: list[float] = []
        ok = True
        for _d in range(spec.n_disks):
            placed = False
            for _try in range(200):
                r = rng.uniform(spec.radius_min, spec.radius_max)
                c = rng.uniform(r, size - 1 - r, size=2)
                if all(np.hypot(*(c - np.asarray(c2))) >= r + r2 + spec.min_gap + 1.0 for c2, r2 in zip(centers, radii)):
                    centers.append((float(c[0]), float(c[1])))
                    radii.append(float(r))
                    placed = True
                    break
            if not placed:
                ok = False
                break
        if ok:
            break
    else:  # pragma: no cover - only reachable with an impossible spec
        raise RuntimeError("could not place non-overlapping disks; reduce radius_max or n_disks")
    centers_a = np.asarray(centers)
    radii_a = np.asarray(radii)
    disks = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2 for (cy, cx), r in zip(centers_a, radii_a)])
    intensities = _draw_intensities(rng, spec)
    image = np.zeros((size, size), dtype=np.float64)
    for d, v in zip(disks, intensities):
        image[d] = v
    image += rng.normal(0.0, spec.noise_sigma, size=image.shape)
    return DiskImage(image.astype(np.float32), disks, centers_a, radii_a, intensities)


def make_disk_dataset(n: int, seed: int, spec: DiskSpec = DiskSpec()) -> list[DiskImage]:
    """``n`` images; image ``i`` depends only on ``(seed, i)``, so any prefix is stable."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [make_disk_image(np.random.default_rng([seed, i]), spec) for i in range(n)]


def subset_mask(disks: np.ndarray, subset: tuple[int, ...] | list[int]) -> np.ndarray:
    """Union of the chosen disks: bool (H, W)."""
    out = np.zeros(disks.shape[1:], dtype=bool)
    for i in subset:
        out |= disks[i]
    return out


def all_subset_masks(disks: np.ndarray) -> np.ndarray:
    """Every subset's mask, the empty one first: bool (2**n, H, W)."""
    n = disks.shape[0]
    subsets = [s for k in range(n + 1) for s in itertools.combinations(range(n), k)]
    return np.stack([subset_mask(disks, s) for s in subsets])


# The default split of the paper: 1,000 training and 1,000 held-out images.
TRAIN_SEED = 0
HELDOUT_SEED = 1
N_TRAIN = 1000
N_HELDOUT = 1000
