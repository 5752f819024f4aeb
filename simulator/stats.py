"""Statistics of the report: cluster (image) bootstrap CIs, the Wilcoxon signed-rank test, Holm, and
the minimal detectable difference of a paired design.

Pure functions of NumPy arrays; nothing here knows about runs or arms. Every random draw comes
from ``np.random.default_rng(seed)``, so the same seed gives the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "DEFAULT_N_BOOT",
    "DEFAULT_SEED",
    "bootstrap_weights",
    "cluster_bootstrap",
    "wilcoxon_p",
    "holm",
    "cluster_values",
    "minimal_detectable_difference",
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


def cluster_values(
    values: np.ndarray, clusters: np.ndarray, n_clusters: int | None = None, statistic: str = "mean"
) -> np.ndarray:
    """Per-cluster mean (or sum) of each column, NaN entries left out.

    Args:
        values: float (n,) or (n, m), one row per session.
        clusters: int (n,) in ``0..n_clusters-1``: each session's cluster (image).
        n_clusters: the number of clusters (default: ``clusters.max() + 1``).
        statistic: ``mean`` or ``sum``.
    Returns:
        float64 (n_clusters,) for 1-D ``values``, else (n_clusters, m); NaN where a cluster has no
        finite value in that column.
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.ndim == 1
    if flat:
        v = v[:, None]
    c = np.asarray(clusters, dtype=np.int64)
    if c.shape != (v.shape[0],):
        raise ValueError(f"clusters: expected shape ({v.shape[0]},), got {c.shape}")
    if statistic not in ("mean", "sum"):
        raise ValueError(f"statistic: expected 'mean' or 'sum', got {statistic!r}")
    n = (int(c.max()) + 1 if c.size else 0) if n_clusters is None else int(n_clusters)
    ok = np.isfinite(v)
    sums = np.zeros((n, v.shape[1]))
    counts = np.zeros((n, v.shape[1]))
    np.add.at(sums, c, np.where(ok, v, 0.0))
    np.add.at(counts, c, ok.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums if statistic == "sum" else sums / counts
    out = np.where(counts > 0, out, np.nan)
    return out[:, 0] if flat else out


def minimal_detectable_difference(
    cluster_diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8, statistic: str = "mean"
) -> tuple[float, float, int]:
    """The smallest true difference a paired design detects with the given power (normal approximation).

    ``cluster_diffs`` holds one paired difference per cluster (image): the mean over the image's
    sessions of (arm - reference). With ``n`` finite entries of standard deviation ``sd`` (ddof 1),
    ``MDD = (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)`` for a mean; for a sum over sessions
    (``statistic="sum"``, the NoF counts: pass per-image sums) ``... * sd * sqrt(n)``.

    Returns:
        ``(mdd, sd, n)``; ``mdd`` and ``sd`` are NaN when fewer than 2 clusters have a finite value.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power: must be in (0, 1), got {power}")
    d = np.asarray(cluster_diffs, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n < 2:
        return float("nan"), float("nan"), n
    sd = float(np.std(d, ddof=1))
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    scale = math.sqrt(n) if statistic == "sum" else 1.0 / math.sqrt(n)
    return float(z * sd * scale), sd, n
