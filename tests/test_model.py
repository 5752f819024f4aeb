"""The network: configurations, forward shapes, output constraints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probseg.model import CONFIGS, SIZE_MULTIPLE, ModelConfig, PartialSegNet, build_network


def _inputs(b: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 1, h, w, generator=g)
    y_m = (torch.rand(b, 1, h, w, generator=g) > 0.3).float()
    x_m = y_m * (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    gt = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    return image, x_m, x_m * gt, y_m, y_m * gt


@pytest.mark.parametrize("name", sorted(n for n, c in CONFIGS.items() if not c.scored))  # heads, SSN: test_multi_head.py
def test_every_config_builds_and_forwards(name):
    torch.manual_seed(0)
    net = build_network(name)
    cfg = CONFIGS[name]
    assert isinstance(net, PartialSegNet) and net.config == cfg
    assert build_network(cfg).config == cfg
    b, h, w = 2, 16, 24
    image, x_m, x_s, y_m, y_s = _inputs(b, h, w)
    out = net(image, x_m, x_s, y_m, y_s)
    assert out["pred_m"].shape == (b, h, w) and out["pred_s"].shape == (b, h, w)
    latent = net.latent_shape(h, w)
    if cfg.stochastic:
        assert out["mu"].shape == (b, *latent) and out["logvar"].shape == (b, *latent)
    else:
        assert out["mu"].shape == (b, 0) and out["logvar"].shape == (b, 0)
    # both architectures use a spatial latent on the coarsest grid
    assert latent == (cfg.latent_dim, h // SIZE_MULTIPLE, w // SIZE_MULTIPLE)
    for key in ("pred_m", "pred_s"):
        assert torch.isfinite(out[key]).all() and (out[key] >= 0).all() and (out[key] <= 1).all()
    # output constraints hold on the training pass too
    xm, xs = x_m[:, 0], x_s[:, 0]
    assert (out["pred_m"] >= xm).all() and (out["pred_s"] <= out["pred_m"]).all()
    assert torch.equal(out["pred_s"][xm == 1], xs[xm == 1])
    if cfg.mode == "complete":
        assert (out["pred_m"] == 1).all()
    # a gradient reaches every parameter
    (out["pred_m"].sum() + out["pred_s"].sum() + out["mu"].sum()).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize("name", sorted(n for n, c in CONFIGS.items() if not c.scored))
def test_decode_shapes_and_latent_effect(name):
    torch.manual_seed(0)
    net = build_network(name).eval()
    cfg = net.config
    h, w = 24, 16
    image, x_m, x_s, _, _ = _inputs(1, h, w, seed=1)
    k = 3
    z = torch.randn(k, *net.latent_shape(h, w)) * 3 if cfg.stochastic else None
    with torch.no_grad():
        pred_m, pred_s = net.decode(image, x_m, x_s, z)
    assert pred_m.shape == (1 if z is None else k, h, w) and pred_s.shape == pred_m.shape
    if cfg.stochastic:
        # different latent samples give different predictions
        assert not torch.allclose(pred_s[0], pred_s[1])
        # decode with the training-pass decoder on the same z gives the same result
        with torch.no_grad():
            logits = net.decoder(torch.cat([image, x_m, x_s], 1).expand(k, -1, -1, -1), z)
            ref_m, ref_s = net.constrain(logits, x_m.expand(k, -1, -1, -1), x_s.expand(k, -1, -1, -1), cfg.mode == "complete")
        torch.testing.assert_close(pred_m, ref_m, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pred_s, ref_s, rtol=1e-5, atol=1e-6)


def test_forward_samples_latent_by_reparameterisation():
    torch.manual_seed(0)
    net = build_network("wide")
    inputs = _inputs(2, 16, 16)
    torch.manual_seed(1)
    a = net(*inputs)
    torch.manual_seed(1)
    b = net(*inputs)
    torch.manual_seed(2)
    c = net(*inputs)
    assert torch.equal(a["pred_s"], b["pred_s"])  # same noise, same output
    assert torch.equal(a["mu"], c["mu"])  # the posterior does not depend on the noise
    assert not torch.equal(a["pred_s"], c["pred_s"])  # the sample does


def test_deterministic_config_ignores_noise():
    torch.manual_seed(0)
    net = build_network("unet-complete")
    assert net.encoder is None and not net.config.stochastic
    inputs = _inputs(2, 16, 16)
    torch.manual_seed(1)
    a = net(*inputs)
    torch.manual_seed(2)
    b = net(*inputs)
    assert torch.equal(a["pred_s"], b["pred_s"])


logit_arrays = hnp.arrays(
    np.float32, st.tuples(st.integers(1, 3), st.just(2), st.integers(1, 6), st.integers(1, 6)),
    elements=st.floats(-50, 50, width=32),
)


@given(logits=logit_arrays, data=st.data(), complete=st.booleans())
@settings(max_examples=150)
def test_constrain_invariants(logits, data, complete):
    b, _, h, w = logits.shape
    bools = hnp.arrays(bool, (b, 1, h, w))
    x_m = data.draw(bools)
    x_s = x_m & data.draw(bools)
    xm_t, xs_t = torch.from_numpy(x_m.astype(np.float32)), torch.from_numpy(x_s.astype(np.float32))
    pred_m, pred_s = PartialSegNet.constrain(torch.from_numpy(logits), xm_t, xs_t, complete)
    assert pred_m.shape == (b, h, w) and pred_s.shape == (b, h, w)
    assert (pred_m >= xm_t[:, 0]).all()
    assert (pred_s <= pred_m).all()
    assert ((pred_s >= 0) & (pred_m <= 1)).all()
    on = torch.from_numpy(x_m[:, 0])
    assert torch.equal(pred_s[on], xs_t[:, 0][on])  # exactly the input labels
    assert torch.equal(pred_m[on], torch.ones_like(pred_m[on]))
    if complete:
        assert (pred_m == 1).all()
    # undecided input pixels follow the logits: p_m * p_fg
    off = ~on
    p_m = torch.ones_like(pred_m) if complete else torch.sigmoid(torch.from_numpy(logits[:, 0]))
    p_fg = torch.sigmoid(torch.from_numpy(logits[:, 1]))
    torch.testing.assert_close(pred_s[off], (p_m * p_fg)[off])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"arch": "resnet"}, "arch"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"arch": "paper", "latent_dim": 0}, "latent_dim"),
        ({"mode": "full"}, "mode"),
    ],
)
def test_model_config_bad_values_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_build_network_unknown_name_raises():
    with pytest.raises(ValueError, match="config"):
        build_network("no-such-config")


def test_config_properties_and_dict_roundtrip():
    for cfg in CONFIGS.values():
        assert ModelConfig(**cfg.to_dict()) == cfg
        assert cfg.stochastic == (cfg.latent_dim > 0)
    assert CONFIGS["paper"].beta0 == 1.0 and CONFIGS["paper"].beta1 == 1e-3


@pytest.mark.parametrize("skip_batch", [1, 3])
def test_the_inference_upsample_and_concatenation_equal_torchs_bit_for_bit(skip_batch):
    """The wide decoder's no-grad path writes the upsampled map into the result; a proposal must not move."""
    from torch.nn import functional as F

    from probseg.model import _up_cat

    gen = torch.Generator().manual_seed(0)
    d = torch.randn(3, 5, 4, 6, generator=gen)
    skip = torch.randn(skip_batch, 2, 8, 12, generator=gen)
    want = torch.cat([F.interpolate(d, scale_factor=2, mode="nearest"), skip.expand(3, -1, -1, -1)], 1)
    with torch.no_grad():
        got = _up_cat(d, skip.expand(3, -1, -1, -1))
    assert got.is_contiguous() and torch.equal(got, want)
    d.requires_grad_(True)
    _up_cat(d, skip.expand(3, -1, -1, -1)).sum().backward()  # with autograd: torch's own ops
    assert torch.equal(d.grad, torch.full_like(d, 4.0))
