"""Losses against hand-computed values (MONAI style) and bad-input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probseg.losses import kl_divergence, partial_seg_loss, soft_dice_loss, weighted_soft_dice_loss

T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


def _np_wdl(t, p, w, smooth=1.0):
    """Reference weighted soft Dice loss in numpy: per sample over all but axis 0, then batch mean."""
    t, p, w = (np.asarray(a, dtype=np.float64) for a in (t, p, w))
    axes = tuple(range(1, t.ndim))
    num = 2 * (w * t * p).sum(axes) + smooth
    den = (w * t).sum(axes) + (w * p).sum(axes) + smooth
    return float(np.mean(1 - num / den))


# --- soft Dice -------------------------------------------------------------------------------------


def test_soft_dice_single_sample_by_hand():
    target = T([[[1.0, 0.0], [1.0, 1.0]]])
    pred = T([[[0.5, 0.2], [0.9, 0.1]]])
    # intersection 0.5 + 0.9 + 0.1 = 1.5; sum t = 3; sum p = 1.7; smooth 1
    expected = 1 - (2 * 1.5 + 1) / (3 + 1.7 + 1)
    assert soft_dice_loss(target, pred).item() == pytest.approx(expected, abs=1e-12)


def test_soft_dice_is_batch_mean_of_per_sample_losses():
    target = T([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    pred = T([[[0.5, 0.2], [0.9, 0.1]], [[0.3, 0.0], [0.0, 0.6]]])
    l0 = 1 - (2 * 1.5 + 1) / (3 + 1.7 + 1)
    l1 = 1 - (2 * 0.6 + 1) / (1 + 0.9 + 1)
    assert soft_dice_loss(target, pred).item() == pytest.approx((l0 + l1) / 2, abs=1e-12)


def test_soft_dice_perfect_and_empty():
    t = T([[[1.0, 0.0], [0.0, 1.0]]])
    # perfect binary prediction: (2*2 + 1) / (2 + 2 + 1) = 1 -> loss 0
    assert soft_dice_loss(t, t.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # nothing to match and nothing predicted: smooth makes it 0, not NaN
    z = torch.zeros(1, 2, 2, dtype=torch.float64)
    assert soft_dice_loss(z, z).item() == pytest.approx(0.0, abs=1e-12)
    # nothing to match, 0.5 + 0.5 predicted: 1 - 1 / (1 + 1)
    p = T([[[0.5, 0.0], [0.0, 0.5]]])
    assert soft_dice_loss(z, p).item() == pytest.approx(0.5, abs=1e-12)


def test_soft_dice_smooth_argument():
    target = T([[[1.0, 0.0], [1.0, 1.0]]])
    pred = T([[[0.5, 0.2], [0.9, 0.1]]])
    expected = 1 - (2 * 1.5 + 1e-5) / (3 + 1.7 + 1e-5)
    assert soft_dice_loss(target, pred, smooth=1e-5).item() == pytest.approx(expected, abs=1e-9)


def test_soft_dice_reduces_over_all_non_batch_axes():
    rng = np.random.default_rng(0)
    t = (rng.random((3, 1, 4, 5)) > 0.5).astype(np.float64)
    p = rng.random((3, 1, 4, 5))
    assert soft_dice_loss(T(t), T(p)).item() == pytest.approx(_np_wdl(t, p, np.ones_like(t)), abs=1e-12)


# --- weighted soft Dice ----------------------------------------------------------------------------


def test_weighted_soft_dice_by_hand():
    target = T([[[1.0, 1.0], [0.0, 1.0]]])
    pred = T([[[0.8, 0.4], [0.6, 1.0]]])
    weight = T([[[1.0, 0.0], [2.0, 0.5]]])
    # sum w t p = 1*0.8 + 0 + 0 + 0.5*1.0 = 1.3
    # sum w t   = 1 + 0 + 0 + 0.5 = 1.5
    # sum w p   = 0.8 + 0 + 1.2 + 0.5 = 2.5
    expected = 1 - (2 * 1.3 + 1) / (1.5 + 2.5 + 1)
    assert weighted_soft_dice_loss(target, pred, weight).item() == pytest.approx(expected, abs=1e-12)


def test_weighted_soft_dice_zero_weight_pixels_are_ignored():
    target = T([[[1.0, 0.0], [0.0, 1.0]]])
    weight = T([[[1.0, 0.0], [0.0, 1.0]]])
    good = T([[[1.0, 0.0], [0.0, 1.0]]])
    # wrong predictions only where the weight is 0: the loss does not move
    bad_outside = T([[[1.0, 1.0], [1.0, 1.0]]])
    a = weighted_soft_dice_loss(target, good, weight).item()
    b = weighted_soft_dice_loss(target, bad_outside, weight).item()
    assert a == pytest.approx(0.0, abs=1e-12)
    assert b == pytest.approx(a, abs=1e-12)


def test_weighted_soft_dice_all_zero_weight_is_zero_loss():
    target = T([[[1.0, 0.0], [0.0, 1.0]]])
    pred = T([[[0.0, 1.0], [1.0, 0.0]]])
    assert weighted_soft_dice_loss(target, pred, torch.zeros_like(target)).item() == pytest.approx(0.0, abs=1e-12)


@given(
    data=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(0, 1)),
    pred=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(0, 1)),
    weight=hnp.arrays(np.float64, (2, 3, 4), elements=st.floats(0, 3)),
)
def test_weighted_soft_dice_matches_numpy_and_is_bounded(data, pred, weight):
    target = (data > 0.5).astype(np.float64)
    got = weighted_soft_dice_loss(T(target), T(pred), T(weight)).item()
    assert got == pytest.approx(_np_wdl(target, pred, weight), abs=1e-9)
    assert -1e-12 <= got <= 1.0


def test_soft_dice_equals_weighted_with_unit_weights():
    rng = np.random.default_rng(3)
    t = (rng.random((2, 5, 5)) > 0.5).astype(np.float64)
    p = rng.random((2, 5, 5))
    a = soft_dice_loss(T(t), T(p)).item()
    b = weighted_soft_dice_loss(T(t), T(p), torch.ones(2, 5, 5, dtype=torch.float64)).item()
    assert a == pytest.approx(b, abs=1e-15)


# --- KL --------------------------------------------------------------------------------------------


def test_kl_by_hand():
    mu = T([[0.5, -1.0]])
    logvar = T([[0.0, math.log(2.0)]])
    # 0.5 * (mu^2 + e^lv - 1 - lv) summed: 0.5*(0.25 + 1 - 1 - 0) + 0.5*(1 + 2 - 1 - ln 2)
    expected = 0.125 + 0.5 * (2.0 - math.log(2.0))
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, abs=1e-12)


def test_kl_zero_at_prior_and_batch_mean():
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == pytest.approx(0.0, abs=1e-12)
    mu = T([[1.0, 0.0], [0.0, 0.0]])  # sample 0: 0.5; sample 1: 0
    assert kl_divergence(mu, torch.zeros(2, 2, dtype=torch.float64)).item() == pytest.approx(0.25, abs=1e-12)


def test_kl_sums_over_spatial_latent():
    mu = torch.full((2, 1, 2, 2), 1.0, dtype=torch.float64)  # 4 latent entries, 0.5 each
    assert kl_divergence(mu, torch.zeros_like(mu)).item() == pytest.approx(2.0, abs=1e-12)


def test_kl_free_bits_by_hand():
    mu = T([[1.0, 0.0], [0.0, 0.0]])  # per-element KL [[0.5, 0], [0, 0]]; batch means [0.25, 0]
    lv = torch.zeros(2, 2, dtype=torch.float64)
    # Each dimension's batch mean is raised to the floor: max(0.25, 0.1) + max(0, 0.1).
    assert kl_divergence(mu, lv, free_bits=0.1).item() == pytest.approx(0.35, abs=1e-12)
    # A floor above every dimension's KL makes the term constant: 2 dims x 0.3.
    assert kl_divergence(mu, lv, free_bits=0.3).item() == pytest.approx(0.6, abs=1e-12)
    assert kl_divergence(mu, lv, free_bits=0.0).item() == pytest.approx(0.25, abs=1e-12)


def test_kl_free_bits_stops_the_gradient_below_the_floor():
    mu = T([[0.1, 2.0]]).requires_grad_()
    kl_divergence(mu, torch.zeros(1, 2, dtype=torch.float64), free_bits=0.5).backward()
    # dimension 0 carries 0.005 nats < 0.5: no pull to the prior; dimension 1 (2 nats): d/dmu = mu.
    assert mu.grad.tolist() == [[0.0, 2.0]]


def test_kl_rejects_negative_free_bits():
    with pytest.raises(ValueError, match="free_bits"):
        kl_divergence(torch.zeros(1, 2), torch.zeros(1, 2), free_bits=-0.1)


@given(
    mu=hnp.arrays(np.float64, (2, 3), elements=st.floats(-5, 5)),
    logvar=hnp.arrays(np.float64, (2, 3), elements=st.floats(-5, 5)),
)
def test_kl_nonnegative_and_matches_numpy(mu, logvar):
    got = kl_divergence(T(mu), T(logvar)).item()
    ref = float(np.mean((0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).sum(1)))
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert got >= -1e-12


# --- Eq. (3) ---------------------------------------------------------------------------------------


def _eq3_inputs():
    y_m = T([[[1.0, 1.0], [1.0, 0.0]]])
    y_s = T([[[1.0, 0.0], [1.0, 0.0]]])
    x_m = T([[[1.0, 0.0], [0.0, 0.0]]])
    pred_m = T([[[1.0, 0.7], [0.6, 0.2]]])
    pred_s = T([[[1.0, 0.1], [0.5, 0.1]]])
    mu = T([[0.5, -1.0]])
    logvar = T([[0.0, math.log(2.0)]])
    return y_m, y_s, x_m, pred_m, pred_s, mu, logvar


def test_partial_seg_loss_eq3_by_hand_with_default_betas():
    y_m, y_s, x_m, pred_m, pred_s, mu, logvar = _eq3_inputs()
    # WDL weight = y_m - x_m = [[0, 1], [1, 0]]
    # sum w t p = 0*.. + 1*0*0.1 + 1*1*0.5 + 0 = 0.5 ; sum w t = 1 ; sum w p = 0.1 + 0.5 = 0.6
    wdl = 1 - (2 * 0.5 + 1) / (1 + 0.6 + 1)
    # DL(y_m, pred_m): inter = 1 + 0.7 + 0.6 = 2.3 ; sum t = 3 ; sum p = 2.5
    dl = 1 - (2 * 2.3 + 1) / (3 + 2.5 + 1)
    kl = 0.125 + 0.5 * (2.0 - math.log(2.0))
    out = partial_seg_loss(y_m, y_s, x_m, pred_m, pred_s, mu, logvar)
    assert out["wdl"].item() == pytest.approx(wdl, abs=1e-12)
    assert out["dl"].item() == pytest.approx(dl, abs=1e-12)
    assert out["kl"].item() == pytest.approx(kl, abs=1e-12)
    # defaults: beta0 = 1, beta1 = 1e-3
    assert out["loss"].item() == pytest.approx(wdl + 1.0 * dl + 1e-3 * kl, abs=1e-12)


def test_partial_seg_loss_betas():
    args = _eq3_inputs()
    base = partial_seg_loss(*args)
    out = partial_seg_loss(*args, beta0=0.25, beta1=2.0)
    expected = base["wdl"] + 0.25 * base["dl"] + 2.0 * base["kl"]
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-12)
    # beta0 = beta1 = 0 leaves the weighted Dice term alone
    assert partial_seg_loss(*args, beta0=0.0, beta1=0.0)["loss"].item() == pytest.approx(base["wdl"].item(), abs=1e-12)


def test_partial_seg_loss_free_bits_changes_the_loss_not_the_logged_kl():
    args = _eq3_inputs()
    base = partial_seg_loss(*args)
    floor = 10.0  # above every dimension's KL: the term becomes n_dims * floor
    out = partial_seg_loss(*args, beta1=2.0, free_bits=floor)
    n_dims = args[5][0].numel()
    assert out["kl"].item() == pytest.approx(base["kl"].item(), abs=1e-12)
    expected = base["wdl"].item() + base["dl"].item() + 2.0 * n_dims * floor
    assert out["loss"].item() == pytest.approx(expected, abs=1e-12)


def test_partial_seg_loss_weight_never_negative():
    # x_m outside y_m (not a valid pair) must not produce negative weights: clamped to 0
    y_m = T([[[0.0, 1.0]]])
    y_s = T([[[0.0, 1.0]]])
    x_m = T([[[1.0, 0.0]]])
    pred = T([[[1.0, 1.0]]])
    out = partial_seg_loss(y_m, y_s, x_m, pred, pred, torch.zeros(1, 1), torch.zeros(1, 1))
    # weight [0, 1]: inter 1, sum w t 1, sum w p 1 -> loss 0
    assert out["wdl"].item() == pytest.approx(0.0, abs=1e-12)


def test_partial_seg_loss_is_differentiable():
    y_m, y_s, x_m, pred_m, pred_s, mu, logvar = _eq3_inputs()
    leaves = [t.clone().requires_grad_(True) for t in (pred_m, pred_s, mu, logvar)]
    out = partial_seg_loss(y_m, y_s, x_m, *leaves)
    out["loss"].backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


# --- bad input -------------------------------------------------------------------------------------


def test_weighted_dice_shape_mismatch_raises():
    a = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="pred"):
        weighted_soft_dice_loss(a, torch.zeros(2, 3, 4), a)
    with pytest.raises(ValueError, match="weight"):
        weighted_soft_dice_loss(a, a, torch.zeros(2, 3))


def test_soft_dice_shape_mismatch_raises():
    with pytest.raises(ValueError, match="pred"):
        soft_dice_loss(torch.zeros(2, 4, 4), torch.zeros(1, 4, 4))


def test_kl_shape_mismatch_raises():
    with pytest.raises(ValueError, match="logvar"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


def test_partial_seg_loss_shape_mismatch_raises():
    y_m, y_s, x_m, pred_m, pred_s, mu, logvar = _eq3_inputs()
    with pytest.raises(ValueError, match="pred"):
        partial_seg_loss(y_m, y_s, x_m, pred_m, pred_s[:, :1], mu, logvar)
    with pytest.raises(ValueError, match="logvar"):
        partial_seg_loss(y_m, y_s, x_m, pred_m, pred_s, mu, logvar[:, :1])
