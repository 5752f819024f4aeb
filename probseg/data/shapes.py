"""SynthMorph-style random shapes (Hoffmann et al., reference [2] of the paper).

A label map is the argmax over ``J`` channels of smooth multi-scale noise, optionally warped by a
smooth random displacement field; a random subset of its labels is a binary shape. Shapes are blobby,
of random topology and size, and tile the image: the partial-segmentation pairs are cut out of them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ..lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = ["smooth_noise", "random_label_map", "random_shape", "random_shape_with_area", "crop_near_seed"]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scales: tuple[int, ...] = (2, 4, 8)) -> np.ndarray:
    """Sum of Gaussian noise drawn on coarse grids and upsampled: float32 ``shape``.

    ``scales`` are the coarse grids' sides; the noise at each scale has unit variance before summing.
    """
    h, w = shape
    out = np.zeros(shape, dtype=np.float32)
    for s in scales:
        coarse = rng.standard_normal((s, s)).astype(np.float32)
        out += _upsampler(s, h) @ coarse @ _upsampler(s, w).T
    return out


@lru_cache(maxsize=64)
def _upsampler(n: int, m: int) -> np.ndarray:
    """Linear interpolation from ``n`` to ``m`` samples as a float32 (m, n) matrix.

    Two matrix products upsample a whole grid, far faster than ``ndimage.zoom`` on small images.
    """
    pos = (np.arange(m) + 0.5) * n / m - 0.5
    pos = np.clip(pos, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    mat = np.zeros((m, n), dtype=np.float32)
    mat[np.arange(m), lo] += 1 - frac
    mat[np.arange(m), hi] += frac
    mat.setflags(write=False)
    return mat


def random_label_map(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_labels: int = 8,
    scales: tuple[int, ...] = (2, 4, 8),
    warp: float = 0.0,
) -> np.ndarray:
    """A random label map: int64 ``shape`` with values in ``[0, n_labels)``.

    Args:
        rng: the generator every draw comes from.
        shape: (H, W).
        n_labels: J, the number of noise channels (labels).
        scales: coarse grid sides of the multi-scale noise; smaller scales give bigger blobs.
        warp: standard deviation in pixels of a smooth random displacement applied to the map (0: none).
    """
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    channels = np.stack([smooth_noise(rng, shape, scales) for _ in range(n_labels)])
    labels = np.argmax(channels, axis=0)
    if warp > 0:
        h, w = shape
        disp = [smooth_noise(rng, shape, (3,)) * warp for _ in range(2)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        labels = ndimage.map_coordinates(labels, [yy + disp[0], xx + disp[1]], order=0, mode="nearest")
    return labels.astype(np.int64)


def random_shape(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_labels: int = 8,
    scales: tuple[int, ...] = (2, 4, 8),
    warp: float = 0.0,
    n_chosen: int | None = None,
) -> np.ndarray:
    """A binary shape: the union of ``n_chosen`` random labels of a random label map. bool ``shape``."""
    labels = random_label_map(rng, shape, n_labels, scales, warp)
    k = int(rng.integers(1, n_labels)) if n_chosen is None else n_chosen
    chosen = rng.choice(n_labels, size=k, replace=False)
    return np.isin(labels, chosen)


def random_shape_with_area(
    rng: np.random.Generator,
    shape: tuple[int, int],
    min_frac: float,
    max_frac: float,
    n_labels: int = 12,
    scales: tuple[int, ...] = (3, 6),
    warp: float = 0.0,
) -> np.ndarray:
    """A random shape covering between ``min_frac`` and ``max_frac`` of the image: bool ``shape``.

    Labels of one map are added in random order until the area is in range; a label that would
    overshoot ``max_frac`` is cropped to the pixels nearest a random seed pixel in it, so the area never exceeds ``max_frac`` and the
    result is empty only when ``max_frac * H * W < 1``.
    """
    if not 0 <= min_frac <= max_frac <= 1:
        raise ValueError(f"need 0 <= min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
    total = shape[0] * shape[1]
    labels = random_label_map(rng, shape, n_labels, scales, warp)
    out = np.zeros(shape, dtype=bool)
    for lab in rng.permutation(n_labels):
        piece = labels == lab
        if (out | piece).sum() > max_frac * total:
            room = int(max_frac * total - out.sum())
            if room <= 0:
                break
            piece = crop_near_seed(rng, piece & ~out, room)
        out |= piece
        if out.sum() >= min_frac * total:
            break
    return out


def crop_near_seed(rng: np.random.Generator, region: np.ndarray, max_px: int) -> np.ndarray:
    """The ``max_px`` pixels of ``region`` nearest a random seed pixel in it: bool, like ``region``.

    Returns ``region`` itself when it is small enough.
    """
    ys, xs = np.nonzero(region)
    if len(ys) <= max_px:
        return region
    j = int(rng.integers(len(ys)))
    d2 = (ys - ys[j]) ** 2 + (xs - xs[j]) ** 2
    keep = np.argsort(d2, kind="stable")[:max_px]
    out = np.zeros_like(region)
    out[ys[keep], xs[keep]] = True
    return out
