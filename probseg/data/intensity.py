"""Intensity normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np

__all__ = ["normalize_image"]


def normalize_image(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the ``low``/``high`` percentiles of ``image`` to 0/1 and clip: float32 (H, W) in [0, 1].

    Robust to outliers and to any intensity scale (CT units, 8-bit, [0, 1]); a constant image maps
    to zeros.
    """
    # float64 throughout: any finite input scale (1e-40 or 1e300) normalises the same way.
    image = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(image, [low, high])
    if not hi > lo:
        lo, hi = float(image.min()), float(image.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        return np.zeros(image.shape, dtype=np.float32)
    span = hi - lo
    if not np.isfinite(span):  # the range itself overflows: rescale first
        image, lo, hi = image / 2.0, lo / 2.0, hi / 2.0
        span = hi - lo
    return np.clip((image - lo) / span, 0.0, 1.0).astype(np.float32)
