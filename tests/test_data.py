"""Synthetic data: disks, random shapes, partial-segmentation pairs, intensity normalisation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from probseg.data import (
    DiskSpec,
    PairSpec,
    all_subset_masks,
    brush_disk,
    click_input,
    make_disk_dataset,
    make_disk_image,
    make_partial_pair,
    normalize_image,
    object_masks,
    random_label_map,
    random_shape,
    random_shape_with_area,
    stroke_input,
    subset_mask,
)
from probseg.data.shapes import crop_near_seed

seeds = st.integers(min_value=0, max_value=2**32 - 1)

# --- disks -----------------------------------------------------------------------------------------


def _check_disk_image(d, spec: DiskSpec) -> None:
    size = spec.size
    assert d.image.shape == (size, size) and d.image.dtype == np.float32
    assert d.disks.shape == (spec.n_disks, size, size) and d.disks.dtype == bool
    # every disk is non-empty and the disks are pairwise disjoint
    assert d.disks.reshape(spec.n_disks, -1).any(axis=1).all()
    assert (d.disks.sum(axis=0) <= 1).all()
    # ...and, as circles, separated by at least min_gap between rims
    for i, j in itertools.combinations(range(spec.n_disks), 2):
        dist = np.hypot(*(d.centers[i] - d.centers[j]))
        assert dist >= d.radii[i] + d.radii[j] + spec.min_gap
    # every disk lies entirely inside the image (not clipped by the border)
    assert (d.centers - d.radii[:, None] >= 0).all()
    assert (d.centers + d.radii[:, None] <= size - 1).all()
    assert ((spec.radius_min <= d.radii) & (d.radii <= spec.radius_max)).all()
    # each mask is exactly the pixels within the radius of its centre
    yy, xx = np.mgrid[0:size, 0:size]
    for disk, (cy, cx), r in zip(d.disks, d.centers, d.radii):
        np.testing.assert_array_equal(disk, (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2)
    # intensities in range and pairwise at least min_intensity_gap apart
    assert ((spec.intensity_min <= d.intensities) & (d.intensities <= spec.intensity_max)).all()
    if spec.n_disks > 1:
        gaps = np.abs(d.intensities[:, None] - d.intensities[None, :])[~np.eye(spec.n_disks, dtype=bool)]
        assert gaps.min() >= spec.min_intensity_gap


@given(seed=seeds)
@settings(max_examples=60)
def test_disk_image_invariants_default_spec(seed):
    spec = DiskSpec()
    _check_disk_image(make_disk_image(np.random.default_rng(seed), spec), spec)


@given(
    seed=seeds,
    size=st.integers(24, 48),
    n_disks=st.integers(1, 4),
    gap=st.floats(0.0, 0.2),
    min_gap=st.floats(0.0, 2.0),
)
@settings(max_examples=40)
def test_disk_image_invariants_other_specs(seed, size, n_disks, gap, min_gap):
    spec = DiskSpec(size=size, n_disks=n_disks, radius_min=2.0, radius_max=4.0, min_intensity_gap=gap, min_gap=min_gap)
    _check_disk_image(make_disk_image(np.random.default_rng(seed), spec), spec)


def test_disk_image_without_noise_is_piecewise_constant():
    spec = DiskSpec(noise_sigma=0.0)
    d = make_disk_image(np.random.default_rng(5), spec)
    for disk, v in zip(d.disks, d.intensities):
        np.testing.assert_allclose(d.image[disk], v, rtol=1e-6)
    assert (d.image[~d.disks.any(axis=0)] == 0).all()


def test_disk_image_noise_level():
    spec = DiskSpec(noise_sigma=0.05)
    d = make_disk_image(np.random.default_rng(6), spec)
    background = d.image[~d.disks.any(axis=0)]
    assert abs(background.mean()) < 0.02
    assert 0.035 < background.std() < 0.065


def test_disk_dataset_deterministic_and_prefix_stable():
    a = make_disk_dataset(5, seed=3)
    b = make_disk_dataset(3, seed=3)
    c = make_disk_dataset(5, seed=3)
    for x, y in zip(a[:3], b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.disks, y.disks)
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x.image, y.image)
    # images differ from one another and from another seed's
    assert not np.array_equal(a[0].image, a[1].image)
    assert not np.array_equal(a[0].image, make_disk_dataset(1, seed=4)[0].image)
    assert make_disk_dataset(0, seed=3) == []


def test_make_disk_image_same_rng_state_same_image():
    a = make_disk_image(np.random.default_rng(11))
    b = make_disk_image(np.random.default_rng(11))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.centers, b.centers)


def test_disk_dataset_negative_n_raises():
    with pytest.raises(ValueError, match="n must"):
        make_disk_dataset(-1, seed=0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"size": 4}, "size"),
        ({"n_disks": 0}, "n_disks"),
        ({"radius_min": 0.0}, "radius_min"),
        ({"radius_min": 5.0, "radius_max": 4.0}, "radius_min"),
        ({"intensity_min": 0.9, "intensity_max": 0.1}, "intensity_min"),
        ({"min_intensity_gap": 0.5}, "min_intensity_gap"),
        ({"noise_sigma": -0.1}, "noise_sigma"),
    ],
)
def test_disk_spec_bad_values_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DiskSpec(**kwargs)


def test_disk_spec_radius_too_large_for_image_raises():
    with pytest.raises(ValueError, match="radius_max"):
        spec = DiskSpec(size=8, n_disks=1, radius_min=5.0, radius_max=5.0)
        make_disk_image(np.random.default_rng(0), spec)


def test_subset_masks():
    d = make_disk_image(np.random.default_rng(2))
    masks = all_subset_masks(d.disks)
    n = d.disks.shape[0]
    assert masks.shape == (2**n, *d.disks.shape[1:]) and masks.dtype == bool
    assert not masks[0].any()
    np.testing.assert_array_equal(masks[-1], d.disks.any(axis=0))
    # all subsets distinct (the disks are non-empty and disjoint)
    assert len({m.tobytes() for m in masks}) == 2**n
    # every mask is a union of whole disks, and each single disk appears
    for m in masks:
        for disk in d.disks:
            assert (m & disk).sum() in (0, disk.sum())
    for disk in d.disks:
        assert any(np.array_equal(m, disk) for m in masks)
    np.testing.assert_array_equal(subset_mask(d.disks, (0, 2)), d.disks[0] | d.disks[2])
    assert not subset_mask(d.disks, ()).any()


# --- shapes ----------------------------------------------------------------------------------------


@given(
    seed=seeds,
    h=st.integers(8, 64),
    w=st.integers(8, 64),
    lo=st.floats(0.01, 0.5),
    span=st.floats(0.0, 0.4),
)
@settings(max_examples=80)
def test_random_shape_with_area_in_range(seed, h, w, lo, span):
    hi = min(1.0, lo + span)
    assume(hi * h * w >= 1)  # otherwise no non-empty shape fits under max_frac
    shape = random_shape_with_area(np.random.default_rng(seed), (h, w), lo, hi)
    total = h * w
    assert shape.shape == (h, w) and shape.dtype == bool
    area = int(shape.sum())
    assert area > 0  # never empty when min_frac > 0
    # documented: the area reaches min_frac (up to one pixel of rounding) and the last label may
    # overshoot max_frac only slightly
    assert area >= lo * total - 1
    assert area <= hi * total + 1


def test_random_shape_with_area_deterministic():
    a = random_shape_with_area(np.random.default_rng(9), (32, 32), 0.05, 0.2)
    b = random_shape_with_area(np.random.default_rng(9), (32, 32), 0.05, 0.2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lo, hi", [(-0.1, 0.2), (0.3, 0.2), (0.1, 1.5)])
def test_random_shape_with_area_bad_fractions(lo, hi):
    with pytest.raises(ValueError, match="min_frac"):
        random_shape_with_area(np.random.default_rng(0), (16, 16), lo, hi)


def test_random_label_map_and_shape():
    rng = np.random.default_rng(4)
    labels = random_label_map(rng, (20, 30), n_labels=5)
    assert labels.shape == (20, 30) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 5
    warped = random_label_map(rng, (20, 30), n_labels=5, warp=2.0)
    assert warped.min() >= 0 and warped.max() < 5
    s = random_shape(rng, (20, 30), n_labels=4, n_chosen=4)
    assert s.all()  # all labels chosen: the whole image
    with pytest.raises(ValueError, match="n_labels"):
        random_label_map(rng, (8, 8), n_labels=0)


@given(seed=seeds, max_px=st.integers(1, 120))
@settings(max_examples=60)
def test_crop_near_seed(seed, max_px):
    rng = np.random.default_rng(seed)
    region = random_shape(rng, (16, 16))
    out = crop_near_seed(rng, region, max_px)
    assert out.dtype == bool and out.shape == region.shape
    assert not (out & ~region).any()
    n = int(region.sum())
    if n <= max_px:
        np.testing.assert_array_equal(out, region)
        return
    assert out.sum() == max_px
    # the kept pixels are the max_px nearest to some kept pixel (the seed)
    ys, xs = np.nonzero(out)
    ry, rx = np.nonzero(region & ~out)
    ok = False
    for y, x in zip(ys, xs):
        inside = ((ys - y) ** 2 + (xs - x) ** 2).max()
        outside = ((ry - y) ** 2 + (rx - x) ** 2).min()
        if inside <= outside:
            ok = True
            break
    assert ok


# --- partial pairs ---------------------------------------------------------------------------------

INPUT_KINDS = ["shape", "clicks", "strokes", "accepted", "empty"]
REGION_KINDS = ["shape", "object"]


@st.composite
def pair_specs(draw):
    one_input = draw(st.sampled_from(INPUT_KINDS + ["mix"]))
    one_region = draw(st.sampled_from(REGION_KINDS + ["mix"]))
    kw = {"mode": draw(st.sampled_from(["partial", "complete"]))}
    if one_input != "mix":
        kw["input_weights"] = {one_input: 1.0}
    if one_region != "mix":
        kw["region_weights"] = {one_region: 1.0}
    kw["brush_radius"] = draw(st.sampled_from([None, 1, 2]))
    kw["object_margin"] = draw(st.sampled_from([(0, 0), (0, 2), (1, 3)]))
    return PairSpec(**kw)


def _check_pair(pair, gt, spec: PairSpec) -> None:
    for a in (pair.x_m, pair.x_s, pair.y_m, pair.y_s):
        assert a.shape == gt.shape and a.dtype == bool
    assert not (pair.x_m & ~pair.y_m).any()  # x_m ⊆ y_m
    np.testing.assert_array_equal(pair.x_s, gt & pair.x_m)
    np.testing.assert_array_equal(pair.y_s, gt & pair.y_m)
    np.testing.assert_array_equal(pair.y_s[pair.x_m], pair.x_s[pair.x_m])  # agrees on x_m
    if spec.mode == "complete":
        assert pair.y_m.all()


@given(seed=seeds, spec=pair_specs(), subset_bits=st.integers(0, 7))
@settings(max_examples=120)
def test_partial_pair_invariants_on_disks(seed, spec, subset_bits):
    d = make_disk_image(np.random.default_rng(seed))
    gt = subset_mask(d.disks, [i for i in range(3) if subset_bits >> i & 1])
    pair = make_partial_pair(np.random.default_rng([seed, 1]), gt, spec, d.disks)
    _check_pair(pair, gt, spec)
    again = make_partial_pair(np.random.default_rng([seed, 1]), gt, spec, d.disks)
    for f in ("x_m", "x_s", "y_m", "y_s"):
        np.testing.assert_array_equal(getattr(pair, f), getattr(again, f))


@given(seed=seeds, spec=pair_specs(), h=st.integers(8, 40), w=st.integers(8, 40))
@settings(max_examples=60)
def test_partial_pair_invariants_default_objects(seed, spec, h, w):
    rng = np.random.default_rng(seed)
    gt = random_shape(rng, (h, w)) if seed % 4 else np.zeros((h, w), dtype=bool)
    _check_pair(make_partial_pair(rng, gt, spec), gt, spec)


def test_partial_pair_partial_mode_adds_pixels_and_leaves_some_undecided():
    d = make_disk_image(np.random.default_rng(0))
    gt = d.disks[0] | d.disks[1]
    added, undecided = [], []
    for i in range(30):
        p = make_partial_pair(np.random.default_rng(i), gt, PairSpec(), d.disks)
        added.append((p.y_m & ~p.x_m).sum())
        undecided.append((~p.y_m).sum())
    assert np.mean(added) > 0 and min(undecided) > 0


def test_partial_pair_accepts_non_bool_gt_and_rejects_3d():
    gt = np.zeros((16, 16), dtype=np.uint8)
    gt[4:9, 4:9] = 1
    pair = make_partial_pair(np.random.default_rng(0), gt)
    np.testing.assert_array_equal(pair.y_s, gt.astype(bool) & pair.y_m)
    with pytest.raises(ValueError, match="gt"):
        make_partial_pair(np.random.default_rng(0), np.zeros((2, 8, 8), dtype=bool))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"input_weights": {"taps": 1.0}}, "input_weights"),
        ({"input_weights": {"shape": -1.0, "clicks": 2.0}}, "input_weights"),
        ({"input_weights": {"shape": 0.0}}, "input_weights"),
        ({"region_weights": {"blob": 1.0}}, "region_weights"),
        ({"region_weights": {"object": 0.0, "shape": 0.0}}, "region_weights"),
        ({"mode": "full"}, "mode"),
    ],
)
def test_pair_spec_bad_values_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PairSpec(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"input_area": (0.5, 0.2)}, "input_area"),
        ({"region_area": (0.1, 1.5)}, "region_area"),
        ({"max_clicks": 0}, "max_clicks"),
        ({"object_margin": (2, 0)}, "object_margin"),
    ],
)
def test_pair_spec_unvalidated_fields_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PairSpec(**kwargs)


def test_pair_spec_dict_roundtrip():
    spec = PairSpec(input_weights={"clicks": 1.0}, input_area=(0.1, 0.2), mode="complete", brush_radius=2)
    assert PairSpec.from_dict(spec.to_dict()) == spec


# --- inputs and objects ----------------------------------------------------------------------------


def test_brush_disk_by_hand():
    b = brush_disk((5, 5), (2, 2), 1)
    expected = np.zeros((5, 5), dtype=bool)
    expected[2, 1:4] = expected[1:4, 2] = True  # a plus: 5 pixels
    np.testing.assert_array_equal(b, expected)
    assert brush_disk((5, 5), (0, 0), 2).sum() == 6  # quarter of the radius-2 disk (13 px) near a corner
    assert brush_disk((5, 5), (2, 2), 0).sum() == 1


def test_object_masks_partition_image():
    gt = np.zeros((10, 10), dtype=bool)
    gt[1:3, 1:3] = True
    gt[6:9, 6:9] = True
    objs = object_masks(gt)
    assert objs.shape == (3, 10, 10)  # two foreground components, one background
    np.testing.assert_array_equal(objs.sum(axis=0), np.ones((10, 10)))
    assert object_masks(np.zeros((4, 4), dtype=bool)).shape == (1, 4, 4)


@given(seed=seeds, n_pos=st.integers(0, 4), n_neg=st.integers(0, 4), radius=st.integers(1, 3))
@settings(max_examples=40)
def test_click_and_stroke_inputs_respect_labels(seed, n_pos, n_neg, radius):
    rng = np.random.default_rng(seed)
    d = make_disk_image(rng)
    gt = d.disks[0]
    for fn in (click_input, stroke_input):
        x_m, x_s = fn(rng, gt, n_pos, n_neg, radius)
        np.testing.assert_array_equal(x_s, x_m & gt)
        if n_pos == 0:
            assert not x_s.any()
        if n_neg == 0:
            assert not (x_m & ~gt).any()
    x_m, x_s = click_input(rng, gt, n_pos, n_neg, radius)
    if n_pos:
        assert x_s.any()
    if n_neg:
        assert (x_m & ~gt).any()


# --- intensity -------------------------------------------------------------------------------------


def test_normalize_image_range_and_dtype():
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 30.0, size=(20, 20))
    out = normalize_image(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0


@given(scale=st.floats(1e-6, 1e6), rel_offset=st.floats(-100, 100), seed=seeds)
def test_normalize_image_affine_invariant(scale, rel_offset, seed):
    # the offset is relative to the scale: float32 cannot resolve a tiny range far from zero
    img = np.random.default_rng(seed).normal(size=(12, 12))
    np.testing.assert_allclose(normalize_image(img * scale + rel_offset * scale), normalize_image(img), atol=1e-3)


def test_normalize_image_constant_and_integer():
    np.testing.assert_array_equal(normalize_image(np.full((4, 4), 7.0)), np.zeros((4, 4), np.float32))
    img8 = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = normalize_image(img8)
    assert out.dtype == np.float32 and out[0, 0] == 0 and out[-1, -1] == 1
    assert (np.diff(out.ravel()) >= 0).all()  # monotone
