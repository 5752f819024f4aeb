"""Statistics of the report: cluster (image) bootstrap CIs, the Wilcoxon signed-rank test and Holm.

Pure functions of NumPy arrays; nothing here knows about runs or arms. Every random draw comes
from ``np.random.default_rng(seed)``, so the same seed gives the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_N_BOOT",
    "DEFAULT_SEED",
    "bootstrap_weights",
    "cluster_bootstrap",
    "wilcoxon_p",
    "holm",
]

DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 0


def bootstrap_weights(n_clusters: int, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """How often each cluster is drawn in each bootstrap resample.

    Returns float64 (n_boot, n_clusters): row b counts cluster j's draws among ``n_clusters`` draws
    with replacement, from ``np.random.default_rng(seed)`` (the same seed gives the same array).
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters: must be >= 1, got {n_clusters}")
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = (idx + np.arange(n_boot, dtype=np.int64)[:, None] * n_clusters).ravel()
    return np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(np.float64)


def cluster_bootstrap(
    values: np.ndarray,
    clusters: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    statistic: str | Sequence[str] = "mean",
    weights: np.ndarray | None = None,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and percentile-bootstrap CI of per-column means (or sums), resampling clusters.

    Args:
        values: float (n,) or (n, m): one row per session; NaN entries are left out (a mean is over
            the non-NaN values of the resample).
        clusters: int (n,) in ``0..n_clusters-1``: each session's cluster (its image); a resample
            draws clusters with replacement and takes all their sessions.
        n_boot, seed: resamples and the seed of ``np.random.default_rng``; ignored when ``weights``
            (float (n_boot, n_clusters), from :func:`bootstrap_weights`) is given.
        statistic: ``mean`` or ``sum``, or one per column.
        level: the CI's coverage.
    Returns:
        ``(estimate, lo, hi)``, float64 (m,) each (scalars' shape (1,) for 1-D ``values``); NaN where a
        column has no finite value.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values: expected shape (n,) or (n, m), got {np.shape(values)}")
    c = np.asarray(clusters, dtype=np.int64)
    if c.shape != (v.shape[0],):
        raise ValueError(f"clusters: expected shape ({v.shape[0]},), got {c.shape}")
    if v.shape[0] == 0:
        raise ValueError("values: need at least one row")
    if c.min() < 0:
        raise ValueError("clusters: must be >= 0")
    n_clusters = int(c.max()) + 1 if weights is None else int(np.shape(weights)[1])
    if c.max() >= n_clusters:
        raise ValueError(f"clusters: index {int(c.max())} outside the {n_clusters} clusters of weights")
    stats = [statistic] * v.shape[1] if isinstance(statistic, str) else list(statistic)
    if len(stats) != v.shape[1] or any(s not in ("mean", "sum") for s in stats):
        raise ValueError(f"statistic: expected 'mean' or 'sum' (one per column), got {statistic!r}")
    w = bootstrap_weights(n_clusters, n_boot, seed) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v)
    sums = np.zeros((n_clusters, v.shape[1]))
    counts = np.zeros((n_clusters, v.shape[1]))
    np.add.at(sums, c, np.where(ok, v, 0.0))
    np.add.at(counts, c, ok.astype(np.float64))
    boot_sum = w @ sums
    boot_n = w @ counts
    total, n = sums.sum(axis=0), counts.sum(axis=0)
    is_sum = np.array([s == "sum" for s in stats])
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.where(is_sum, total, total / n)
        boot = np.where(is_sum[None, :], boot_sum, boot_sum / boot_n)
    est = np.where(n > 0, est, np.nan)
    boot = np.where(n[None, :] > 0, boot, np.nan)
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as documented
        lo, hi = np.nanpercentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return est.astype(np.float64), np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``d`` float (n,).

    ``scipy.stats.wilcoxon(d, zero_method="zsplit")`` on the finite entries; 1.0 when every difference
    is zero, NaN when there is none.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    if not d.any():
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(wilcoxon(d, zero_method="zsplit").pvalue)
    return min(1.0, p) if math.isfinite(p) else float("nan")


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, float64 (m,) in the input order.

    The i-th smallest of the m finite p-values is multiplied by (m - i) (i from 0), made monotone
    (non-decreasing in the sorted order) and capped at 1. NaN entries stay NaN and are not counted.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out
