"""The public API: ``ProbSeg.propose`` and ``probseg.load``.

Untrained networks are enough for the contract: the constraints, shapes, determinism and input
checks must hold whatever the weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import probseg
from probseg import ProbSeg, build_network

CONFIG_NAMES = ["paper", "wide", "unet-complete", "wide-complete"]


def _model(name: str) -> ProbSeg:
    torch.manual_seed(0)
    return ProbSeg(build_network(name), name=name)


MODELS = {name: _model(name) for name in CONFIG_NAMES}

# --- input strategies ------------------------------------------------------------------------------

sides = st.integers(5, 40).filter(lambda n: n % 8 != 0)


@st.composite
def images(draw, h: int, w: int):
    """Finite real images of any scale and dtype: scaled noise, or arbitrary finite values."""
    kind = draw(st.sampled_from(["scaled", "raw32", "raw64", "int"]))
    if kind == "scaled":
        seed = draw(st.integers(0, 2**32 - 1))
        exponent = draw(st.integers(-30, 30))
        offset = draw(st.floats(-1e6, 1e6))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        img = np.random.default_rng(seed).normal(size=(h, w)) * 10.0**exponent + offset
        return img.astype(dtype)
    if kind == "raw32":
        return draw(hnp.arrays(np.float32, (h, w), elements=st.floats(allow_nan=False, allow_infinity=False, width=32)))
    if kind == "raw64":
        return draw(hnp.arrays(np.float64, (h, w), elements=st.floats(allow_nan=False, allow_infinity=False)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int64]))
    return draw(hnp.arrays(dtype, (h, w)))


@st.composite
def propose_inputs(draw):
    h, w = draw(sides), draw(sides)
    image = draw(images(h, w))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    mask = rng.random((h, w)) < density
    seg = mask & (rng.random((h, w)) < draw(st.sampled_from([0.0, 0.5, 1.0])))
    return image, mask, seg


def _check_contract(masks, segs, mask, seg, k):
    h, w = mask.shape
    assert masks.shape == (k, h, w) and segs.shape == (k, h, w)
    assert masks.dtype == bool and segs.dtype == bool
    assert (masks | ~mask[None]).all()  # masks ⊇ mask
    assert (segs[:, mask] == seg[mask][None]).all()  # segs == seg on mask
    assert not (segs & ~masks).any()  # segs ⊆ masks


# float64 values beyond float32's range overflow in the cast and the percentiles (see test_proposals_invariant_to_intensity_scale)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", CONFIG_NAMES)
@given(inputs=propose_inputs(), k=st.integers(1, 4), seed=st.integers(0, 2**63 - 1), mean=st.booleans())
@settings(max_examples=30)
def test_propose_contract(name, inputs, k, seed, mean):
    model = MODELS[name]
    image, mask, seg = inputs
    image_before, mask_before, seg_before = image.copy(), mask.copy(), seg.copy()
    masks, segs, scores = model.propose(image, mask, seg, k=k, seed=seed, mean=mean, return_scores=True)
    _check_contract(masks, segs, mask, seg, k)
    if not model.is_partial:
        assert masks.all()  # complete models decide every pixel
    assert scores.shape == (k,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    # inputs are not modified
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(mask, mask_before)
    np.testing.assert_array_equal(seg, seg_before)
    # the same seed gives the same proposals
    masks2, segs2 = model.propose(image, mask, seg, k=k, seed=seed, mean=mean)
    np.testing.assert_array_equal(masks, masks2)
    np.testing.assert_array_equal(segs, segs2)


def test_complete_and_partial_flags():
    assert MODELS["paper"].is_partial and MODELS["wide"].is_partial
    assert not MODELS["unet-complete"].is_partial and not MODELS["wide-complete"].is_partial
    assert MODELS["paper"].is_stochastic and not MODELS["unet-complete"].is_stochastic
    assert "paper" in repr(MODELS["paper"])


def _random_case(seed: int, h: int = 29, w: int = 35):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(h, w)).astype(np.float32)
    image[5:15, 5:15] += 3.0
    mask = np.zeros((h, w), dtype=bool)
    mask[3:12, 3:12] = True
    seg = mask & (image > 1.5)
    return image, mask, seg


@pytest.mark.parametrize("name", ["paper", "wide", "wide-complete"])
def test_different_seeds_differ_for_stochastic_model(name):
    model = MODELS[name]
    differ = False
    for case in range(5):
        image, mask, seg = _random_case(case)
        a = model.propose(image, mask, seg, k=8, seed=0)
        b = model.propose(image, mask, seg, k=8, seed=1)
        if not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
            differ = True
            break
    assert differ


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_mean_is_deterministic(name):
    model = MODELS[name]
    image, mask, seg = _random_case(0)
    a_m, a_s = model.propose(image, mask, seg, k=3, seed=0, mean=True)
    b_m, b_s = model.propose(image, mask, seg, k=3, seed=123, mean=True)
    c_m, c_s = model.propose(image, mask, seg, k=1, mean=True)  # seed=None: fresh entropy, unused
    for arr in (a_m, b_m):
        assert (arr == arr[0]).all()  # all k proposals are the z = 0 proposal
    np.testing.assert_array_equal(a_m, b_m)
    np.testing.assert_array_equal(a_s, b_s)
    np.testing.assert_array_equal(a_m[:1], c_m)
    np.testing.assert_array_equal(a_s[:1], c_s)


def test_deterministic_model_ignores_seed():
    model = MODELS["unet-complete"]
    image, mask, seg = _random_case(2)
    a = model.propose(image, mask, seg, k=4, seed=0)
    b = model.propose(image, mask, seg, k=4, seed=99)
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[1] == a[1][0]).all()


@pytest.mark.parametrize("name", ["paper", "wide"])
def test_numpy_generator_seeds(name):
    model = MODELS[name]
    image, mask, seg = _random_case(1)
    a = model.propose(image, mask, seg, k=6, seed=np.random.default_rng(7))
    b = model.propose(image, mask, seg, k=6, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # numpy integer seeds and k work too
    c = model.propose(image, mask, seg, k=np.int64(6), seed=np.int64(3))
    d = model.propose(image, mask, seg, k=6, seed=3)
    np.testing.assert_array_equal(c[1], d[1])
    # seed=None draws fresh entropy: still satisfies the contract
    _check_contract(*model.propose(image, mask, seg, k=2), mask, seg, 2)


def test_scores_rank_like_log_density():
    model = MODELS["wide"]
    image, mask, seg = _random_case(4)
    _, _, scores = model.propose(image, mask, seg, k=5, seed=0, return_scores=True)
    assert scores.shape == (5,) and np.isfinite(scores).all() and (scores <= 0).all()
    # the mean proposal's latent term is 0, so its score is log p(y_hat | z=0) only
    _, _, s0 = model.propose(image, mask, seg, k=2, mean=True, return_scores=True)
    assert s0[0] == pytest.approx(s0[1])


def test_fully_decided_input_is_returned_unchanged():
    for model in MODELS.values():
        image, _, _ = _random_case(0)
        mask = np.ones(image.shape, dtype=bool)
        seg = image > 0
        masks, segs = model.propose(image, mask, seg, k=2, seed=0)
        assert masks.all()
        np.testing.assert_array_equal(segs, np.broadcast_to(seg, segs.shape))


def test_list_inputs_accepted():
    image, mask, seg = _random_case(0, 9, 11)
    masks, segs = MODELS["paper"].propose(image.tolist(), mask.tolist(), seg.tolist(), k=1, seed=0)
    _check_contract(masks, segs, mask, seg, 1)


# --- bad input -------------------------------------------------------------------------------------


def _ok():
    return _random_case(0, 12, 13)


@pytest.mark.parametrize(
    "mutate, arg",
    [
        (lambda i, m, s: (i[None], m, s), "image"),  # 3-D image
        (lambda i, m, s: (i[0], m, s), "image"),  # 1-D image
        (lambda i, m, s: (np.zeros((0, 0)), np.zeros((0, 0), bool), np.zeros((0, 0), bool)), "image"),
        (lambda i, m, s: (i > 0, m, s), "image"),  # bool image
        (lambda i, m, s: (i.astype(np.complex64), m, s), "image"),
        (lambda i, m, s: (i.astype(str), m, s), "image"),
        (lambda i, m, s: (np.where(m, np.nan, i), m, s), "image"),
        (lambda i, m, s: (np.where(m, np.inf, i), m, s), "image"),
        (lambda i, m, s: (i, m.astype(np.uint8), s), "mask"),
        (lambda i, m, s: (i, m.astype(np.float32), s), "mask"),
        (lambda i, m, s: (i, m[:, :-1], s), "mask"),
        (lambda i, m, s: (i, m[None], s), "mask"),
        (lambda i, m, s: (i, m, s.astype(int)), "seg"),
        (lambda i, m, s: (i, m, s.T), "seg"),
        (lambda i, m, s: (i, m, s | ~m), "seg"),  # foreground outside mask
    ],
)
def test_bad_arrays_raise_naming_argument(mutate, arg):
    image, mask, seg = _ok()
    image, mask, seg = mutate(image, mask, seg)
    with pytest.raises(ValueError, match=f"^{arg}"):
        MODELS["paper"].propose(image, mask, seg, k=1, seed=0)


@pytest.mark.parametrize("k", [0, -1, 2.0, 1.5, "4", True, None, np.float64(3)])
def test_bad_k_raises(k):
    image, mask, seg = _ok()
    with pytest.raises(ValueError, match="^k"):
        MODELS["wide"].propose(image, mask, seg, k=k, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.0, "0", True, [1, 2], np.random.RandomState(0), torch.Generator()])
def test_bad_seed_raises(seed):
    image, mask, seg = _ok()
    with pytest.raises(ValueError, match="^seed"):
        MODELS["wide"].propose(image, mask, seg, k=1, seed=seed)


def test_huge_seed_raises_naming_seed():
    image, mask, seg = _ok()
    with pytest.raises(ValueError, match="^seed"):
        MODELS["wide"].propose(image, mask, seg, k=1, seed=2**64)


# --- probseg.load ----------------------------------------------------------------------------------


def test_load_unknown_name_raises():
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load("no-such-name")


def test_load_missing_path_raises(tmp_path):
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(tmp_path)  # a folder
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(123)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01garbage bytes, not a checkpoint" * 10, b"PK\x03\x04" + b"\x00" * 64],
    ids=["empty", "garbage", "broken-zip"],
)
def test_load_corrupt_file_raises(tmp_path, content):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(path)


def test_available_is_subset_of_registry():
    avail = probseg.available()
    assert set(avail) <= set(probseg.REGISTRY)
    for name in set(probseg.REGISTRY) - set(avail):
        with pytest.raises(ValueError, match="checkpoint.*not installed"):
            probseg.load(name)


# --- intensity scale -------------------------------------------------------------------------------



@pytest.mark.parametrize(
    "scale",
    [
        2.0**-10,
        2.0**20,
        2.0**-40,
        2.0**130,
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_proposals_invariant_to_intensity_scale(scale):
    # powers of two scale exactly, so the normalised image (and the proposals) must be identical
    model = MODELS["paper"]
    image, mask, seg = _random_case(5)
    image = image.astype(np.float64)
    ref = model.propose(image, mask, seg, k=1, mean=True)
    blank = model.propose(np.zeros_like(image), mask, seg, k=1, mean=True)
    assert not np.array_equal(ref[0], blank[0])  # the proposal does depend on the image
    got = model.propose(image * scale, mask, seg, k=1, mean=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
