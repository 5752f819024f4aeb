"""simulator.stats: bootstrap weights and CIs against a direct NumPy computation, Holm, Wilcoxon and the
minimal detectable difference against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.stats import (
    bootstrap_weights,
    cluster_bootstrap,
    cluster_values,
    holm,
    minimal_detectable_difference,
    wilcoxon_p,
)


def _direct_draws(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """The clusters each resample draws: int (n_boot, n_clusters), the same generator calls as the code."""
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def test_bootstrap_weights_count_the_direct_draws():
    w = bootstrap_weights(4, 50, seed=7)
    draws = _direct_draws(4, 50, 7)
    expected = np.stack([np.bincount(row, minlength=4) for row in draws]).astype(np.float64)
    np.testing.assert_array_equal(w, expected)
    assert w.dtype == np.float64 and (w.sum(axis=1) == 4).all()
    assert not np.array_equal(w, bootstrap_weights(4, 50, seed=8))
    with pytest.raises(ValueError, match="n_clusters"):
        bootstrap_weights(0, 10)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_weights(3, 0)


def test_cluster_bootstrap_ci_matches_a_direct_resampling():
    # Six sessions on four images (two images hold two sessions each).
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    clusters = np.array([0, 0, 1, 1, 2, 3])
    n_boot, seed = 400, 11
    est, lo, hi = cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed)
    members = [values[clusters == c] for c in range(4)]
    means = np.array([np.concatenate([members[c] for c in row]).mean() for row in _direct_draws(4, n_boot, seed)])
    assert est[0] == pytest.approx(3.5)
    np.testing.assert_allclose([lo[0], hi[0]], np.percentile(means, [2.5, 97.5]), rtol=0, atol=1e-12)
    # The sum statistic: the resample's total.
    _, lo_s, hi_s = cluster_bootstrap(values, clusters, n_boot=n_boot, seed=seed, statistic="sum")
    sums = np.array([np.concatenate([members[c] for c in row]).sum() for row in _direct_draws(4, n_boot, seed)])
    np.testing.assert_allclose([lo_s[0], hi_s[0]], np.percentile(sums, [2.5, 97.5]), rtol=0, atol=1e-12)


def test_cluster_bootstrap_two_images_gives_0_half_or_1():
    ww = bootstrap_weights(2, 500, seed=0)
    est, lo, hi = cluster_bootstrap(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]), weights=ww)
    assert (est[0], lo[0], hi[0]) == (0.5, 0.0, 1.0)


def test_cluster_bootstrap_nan_sum_columns_and_errors():
    v = np.array([[1.0, np.nan, np.nan], [0.0, 2.0, np.nan], [1.0, 4.0, np.nan]])
    est, lo, _ = cluster_bootstrap(v, np.arange(3), n_boot=50, statistic=["sum", "mean", "mean"])
    assert est[0] == 2.0 and est[1] == 3.0 and np.isnan(est[2]) and np.isnan(lo[2])
    with pytest.raises(ValueError, match="clusters"):
        cluster_bootstrap(np.ones(3), np.array([0, 1]))
    with pytest.raises(ValueError, match="statistic"):
        cluster_bootstrap(np.ones(3), np.arange(3), statistic="median")
    with pytest.raises(ValueError, match="clusters"):
        cluster_bootstrap(np.ones(3), np.array([0, 1, 5]), weights=bootstrap_weights(3, 10))


def test_holm_hand_computed():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # 1.0 and 0.6 -> capped, monotone
    out = holm([0.02, float("nan"), 0.01])  # NaN is not counted: m = 2
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert np.isnan(out[1])
    assert holm([]).shape == (0,)


def test_wilcoxon_exact_p_hand_computed():
    # n = 5, no ties: 2^5 = 32 equally likely sign patterns under H0.
    assert wilcoxon_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)  # only T- = 0, two-sided
    assert wilcoxon_p(np.array([-1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(4 / 32)  # T- <= 1: 2 patterns
    assert wilcoxon_p(np.zeros(6)) == 1.0
    assert math.isnan(wilcoxon_p(np.array([np.nan])))
    assert wilcoxon_p(np.arange(1.0, 21.0)) < 0.001


def test_cluster_values_hand_computed():
    v = np.array([1.0, 3.0, 5.0, np.nan, 7.0])
    c = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(cluster_values(v, c), [2.0, 6.0])
    np.testing.assert_allclose(cluster_values(v, c, statistic="sum"), [4.0, 12.0])
    out = cluster_values(np.array([[1.0, np.nan], [3.0, np.nan]]), np.array([0, 0]), n_clusters=2)
    np.testing.assert_allclose(out[0, 0], 2.0)
    assert np.isnan(out[0, 1]) and np.isnan(out[1]).all()


def test_minimal_detectable_difference_hand_computed():
    d = np.array([0.1, 0.3, 0.2, 0.4])  # mean 0.25, squared deviations sum 0.05, sd = sqrt(0.05 / 3)
    sd = math.sqrt(0.05 / 3)
    z = 1.959963984540054 + 0.8416212335729143
    mdd, got_sd, n = minimal_detectable_difference(d)
    assert n == 4 and got_sd == pytest.approx(sd) and mdd == pytest.approx(z * sd / 2)
    assert minimal_detectable_difference(d, statistic="sum")[0] == pytest.approx(z * sd * 2)
    assert math.isnan(minimal_detectable_difference(np.array([0.3, np.nan]))[0])
    with pytest.raises(ValueError, match="alpha"):
        minimal_detectable_difference(d, alpha=1.5)
    with pytest.raises(ValueError, match="power"):
        minimal_detectable_difference(d, power=0.0)
