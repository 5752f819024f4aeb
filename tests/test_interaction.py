"""The interaction primitives (click rule, brush, start inputs) on hand-made masks with hand-computed answers,
and the held-out check's click start shown to be the same function as the simulator's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from probseg.interaction import (
    Click,
    brush_disk,
    apply_click,
    click_brush,
    click_start,
    count_strokes,
    deepest_point,
    default_brush_radius,
    error_regions,
    human_start,
    next_click,
    padded_edt,
    resolve_brush_radius,
    scribble_start,
)


def box(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """bool ``shape`` with rows[0]..rows[1] x cols[0]..cols[1] (inclusive) set."""
    out = np.zeros(shape, dtype=bool)
    out[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return out


NONE = np.zeros((12, 12), dtype=bool)


# --- distance transform -----------------------------------------------------------------------------


def test_padded_edt_counts_the_image_border_as_an_edge():
    dt = padded_edt(np.ones((3, 3), dtype=bool))
    # With the zero ring every border pixel is 1 from outside, the centre 2.
    np.testing.assert_array_equal(dt, [[1, 1, 1], [1, 2, 1], [1, 1, 1]])


def test_deepest_point_is_first_maximum_in_raster_order():
    # A 2x2 block has four equally deep pixels; raster order picks the top-left one.
    assert deepest_point(box((6, 6), (2, 3), (1, 2))) == (2, 1)
    assert deepest_point(np.zeros((4, 4), dtype=bool)) is None


# --- correction rule: polarity, ties, order, exclusions ---------------------------------------------


def test_ritm_click_polarity_follows_the_deeper_region():
    big = box((12, 12), (1, 5), (1, 5))  # 5x5: padded depth 3 at its centre (3, 3)
    small = box((12, 12), (8, 10), (8, 10))  # 3x3: depth 2 at (9, 9)
    gt = big | NONE
    assert next_click(gt, big, small, NONE) == Click(3, 3, True)
    assert next_click(~small, small, big, NONE) == Click(3, 3, False)


def test_ritm_equal_depths_go_negative():
    fn = box((12, 12), (1, 3), (1, 3))
    fp = box((12, 12), (7, 9), (7, 9))
    assert next_click(fn, fn, fp, NONE) == Click(8, 8, False)


def test_ritm_ties_break_in_raster_order_not_column_order():
    # Two identical 3x3 FN squares; the upper-right one comes first in raster order.
    upper_right = box((12, 12), (1, 3), (7, 9))
    lower_left = box((12, 12), (6, 8), (1, 3))
    fn = upper_right | lower_left
    assert next_click(fn, fn, NONE, NONE) == Click(2, 8, True)


def test_no_errors_no_click():
    assert next_click(NONE, NONE, NONE, NONE) is None


def test_a_clicked_pixel_is_never_clicked_again():
    fn = box((12, 12), (2, 4), (2, 4))
    clicked = NONE.copy()
    clicked[3, 3] = True
    # Without its centre the square is a ring of depth 1 everywhere: the first ring pixel in raster order.
    assert next_click(fn, fn, NONE, clicked) == Click(2, 2, True)
    # Clicking every pixel of the region leaves nothing to click.
    assert next_click(fn, fn, NONE, fn) is None


def test_padding_makes_a_border_strip_shallow():
    # FN: the top 4 rows, full width. Padded, its depth is 2 (rows 1-2); unpadded it would be 4 at row 0,
    # beating the FP square's depth 2. With padding the depths tie, so the click is negative.
    fn = box((12, 12), (0, 3), (0, 11))
    fp = box((12, 12), (7, 9), (4, 6))
    gt = fn.copy()
    assert ndimage.distance_transform_edt(fn).max() == 4  # what the padding prevents
    assert padded_edt(fn).max() == 2
    assert next_click(gt, fn, fp, NONE) == Click(8, 5, False)


def test_random_error_rule_is_seeded_and_stays_on_unclicked_errors():
    fn = box((12, 12), (1, 2), (1, 2))
    fp = box((12, 12), (8, 9), (8, 9))
    gt = fn.copy()
    clicked = NONE.copy()
    clicked[1, 1] = True
    clicks = [next_click(gt, fn, fp, clicked, "random-error", np.random.default_rng(s)) for s in range(40)]
    again = [next_click(gt, fn, fp, clicked, "random-error", np.random.default_rng(s)) for s in range(40)]
    assert clicks == again
    for c in clicks:
        assert (fn | fp)[c.row, c.col] and not clicked[c.row, c.col]
        assert c.positive == bool(fn[c.row, c.col])
    assert {(c.row, c.col) for c in clicks} == set(zip(*np.nonzero((fn | fp) & ~clicked)))
    only = NONE.copy()
    only[5, 6] = True
    assert next_click(gt, NONE, only, NONE, "random-error", np.random.default_rng(0)) == Click(5, 6, False)


def test_unknown_rule_and_missing_rng_raise():
    with pytest.raises(ValueError, match="correction_rule"):
        next_click(NONE, NONE, NONE, NONE, "nearest")
    with pytest.raises(ValueError, match="rng"):
        next_click(NONE, NONE, NONE, NONE, "random-error")


# --- error regions and the brush ----------------------------------------------------------------------


def test_error_regions_leave_pending_pixels_out_unless_asked():
    gt = np.array([[1, 1, 0, 0]], dtype=bool)
    mask = np.array([[1, 0, 1, 0]], dtype=bool)
    seg = np.array([[0, 0, 1, 0]], dtype=bool)
    fn, fp = error_regions(gt, mask, seg)
    np.testing.assert_array_equal(fn, [[1, 0, 0, 0]])
    np.testing.assert_array_equal(fp, [[0, 0, 1, 0]])
    fn, fp = error_regions(gt, mask, seg, pending_fn=True, pending_fp=True)
    np.testing.assert_array_equal(fn, [[1, 1, 0, 0]])
    np.testing.assert_array_equal(fp, [[0, 0, 1, 1]])


def test_brush_decides_only_pixels_of_the_clicked_label():
    gt = box((7, 7), (0, 6), (0, 2))  # columns 0-2 are target
    brush = click_brush(gt, Click(3, 2, True), radius=2)
    assert brush[3, 0] and brush[1, 2] and brush[5, 2]
    assert not (brush & ~gt).any()  # the disk reaches columns 3-4, but those are background
    assert brush.sum() == 5 + 3 + 1  # the radius-2 disk's columns 2, 1, 0; columns 3-4 are background
    neg = click_brush(gt, Click(3, 3, False), radius=1)
    np.testing.assert_array_equal(np.argwhere(neg), [[2, 3], [3, 3], [3, 4], [4, 3]])


def test_apply_click_overrides_wrong_labels_and_never_adds_errors():
    gt = box((5, 5), (0, 4), (0, 1))
    mask = np.ones((5, 5), dtype=bool)
    seg = np.ones((5, 5), dtype=bool)  # everything foreground: the 15 pixels of columns 2-4 are FP
    new_mask, new_seg = apply_click(gt, mask, seg, Click(2, 3, False), radius=2)
    # The radius-2 disk around (2, 3) holds 3 + 5 + 3 background pixels (columns 2, 3, 4): all fixed.
    assert not new_seg[0, 3] and not new_seg[4, 3] and not new_seg[1, 2] and not new_seg[3, 4]
    assert new_seg[2, 1]  # a target pixel inside the disk keeps its (correct) foreground
    assert seg.all()  # the input is not modified
    fn, fp = error_regions(gt, new_mask, new_seg)
    assert fp.sum() == 15 - 11 and not fn.any()


def test_brush_radius_default_and_validation():
    assert resolve_brush_radius(None, (32, 32)) == 1
    assert resolve_brush_radius(None, (256, 256)) == 4
    assert resolve_brush_radius(0, (32, 32)) == 0
    with pytest.raises(ValueError, match="brush_radius"):
        resolve_brush_radius(-1, (32, 32))


# --- starts -------------------------------------------------------------------------------------------


def test_click_start_clicks_deepest_target_and_background_points():
    gt = box((8, 16), (0, 7), (0, 7))  # left half target, right half background
    start = click_start(gt, radius=1)
    # Padded depth min(r+1, 8-r, c+1, 8-c) peaks at 4 first at (3, 3); the background's at (3, 11).
    assert start.clicks == [Click(3, 3, True), Click(3, 11, False)]
    assert start.n_inputs == 2
    assert set(zip(*np.nonzero(start.clicked))) == {(3, 3), (3, 11)}
    expected = click_brush(gt, Click(3, 3, True), 1) | click_brush(gt, Click(3, 11, False), 1)
    np.testing.assert_array_equal(start.mask, expected)
    np.testing.assert_array_equal(start.seg, expected & gt)


def test_click_start_on_an_empty_target_makes_only_the_negative_click():
    start = click_start(np.zeros((8, 8), dtype=bool), radius=1)
    assert start.n_inputs == 1 and start.clicks == [Click(3, 3, False)]
    assert not start.seg.any()


def test_scribble_start_is_seeded_correct_and_counts_strokes():
    yy, xx = np.mgrid[:32, :32]
    gt = (yy - 14) ** 2 + (xx - 15) ** 2 <= 36
    a = scribble_start(gt, np.random.default_rng(5), radius=1)
    b = scribble_start(gt, np.random.default_rng(5), radius=1)
    np.testing.assert_array_equal(a.mask, b.mask)
    pos, neg = a.seg, a.mask & ~a.seg
    assert pos.any() and neg.any()
    assert not (pos & ~gt).any() and not (neg & gt).any()  # simulated strokes are never wrong
    assert a.n_inputs == count_strokes(pos) + count_strokes(neg) == 2
    assert pos.sum() > 9  # a stroke, not a single brush dab
    assert not a.clicked.any()


def test_count_strokes_uses_8_connectivity():
    diagonal = np.eye(5, dtype=bool)
    assert count_strokes(diagonal) == 1
    two = np.zeros((5, 5), dtype=bool)
    two[0, 0] = two[0, 2] = True
    assert count_strokes(two) == 2


def test_human_start_keeps_mistakes_and_counts_components():
    gt = box((10, 10), (2, 5), (2, 5))
    pos = box((10, 10), (3, 4), (3, 3)) | box((10, 10), (8, 8), (8, 8))  # second blob lies outside the target
    neg = box((10, 10), (0, 0), (0, 9))
    start = human_start(gt, (pos, neg))
    assert start.seg[8, 8] and start.mask[8, 8]  # decided as foreground, though it is background
    assert start.n_inputs == 3
    np.testing.assert_array_equal(start.mask, pos | neg)


@pytest.mark.parametrize(
    "scribbles, match",
    [
        (None, "human_scribbles"),
        ((np.ones((10, 10), dtype=bool), np.ones((10, 10), dtype=bool)), "overlap"),
        ((np.zeros((10, 10), dtype=bool), np.zeros((10, 10), dtype=bool)), "no pixel"),
        ((np.zeros((10, 10)), np.zeros((10, 10), dtype=bool)), "human_scribbles"),
        ((np.zeros((9, 10), dtype=bool), np.zeros((10, 10), dtype=bool)), "human_scribbles"),
    ],
)
def test_human_start_rejects_bad_scribbles(scribbles, match):
    with pytest.raises(ValueError, match=match):
        human_start(np.zeros((10, 10), dtype=bool), scribbles)


# --- the held-out check's click start is the simulator's ---------------------------------------------


def _legacy_medical_click_start(target: np.ndarray, radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``probseg.data.medical.click_start`` as it was before the held-out check called
    :func:`probseg.interaction.click_start`, kept verbatim (with its own padded distance transform)
    as the oracle: ``evaluate_heldout``'s numbers are recorded in the shipped checkpoints."""
    target = np.asarray(target, dtype=bool)
    r = default_brush_radius(target.shape[0]) if radius is None else radius
    mask = np.zeros_like(target)
    for region in (target, ~target):
        if region.any():
            dt = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
            point = np.unravel_index(int(np.argmax(dt)), dt.shape)
            mask |= brush_disk(target.shape, (int(point[0]), int(point[1])), r) & region
    return mask, mask & target


def _assert_medical_start_is_legacy_and_shared(target: np.ndarray, radius: int | None) -> None:
    """The held-out check's start (the shared :func:`click_start`, as ``evaluate_heldout`` calls it)
    equals the legacy medical start it replaced."""
    old_mask, old_seg = _legacy_medical_click_start(target, radius)
    gt = np.asarray(target, dtype=bool)
    shared = click_start(gt, resolve_brush_radius(radius, gt.shape))
    assert shared.mask.dtype == shared.seg.dtype == np.bool_ and shared.mask.shape == np.shape(target)
    np.testing.assert_array_equal(shared.mask, old_mask)
    np.testing.assert_array_equal(shared.seg, old_seg)


def _blocks(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A union of 1-4 random rectangles, clipped to the image: many touch its border or each other."""
    out = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, 5))):
        r0, c0 = int(rng.integers(-3, shape[0])), int(rng.integers(-3, shape[1]))
        out[max(r0, 0) : r0 + int(rng.integers(1, shape[0] + 1)), max(c0, 0) : c0 + int(rng.integers(1, shape[1] + 1))] = True
    return out


def test_medical_click_start_equals_its_legacy_self_and_the_shared_start_on_many_targets():
    rng = np.random.default_rng(20240613)
    cases: list[np.ndarray] = []
    for shape in ((1, 1), (1, 9), (9, 1), (2, 2), (8, 8), (7, 13), (64, 64), (65, 40)):
        cases += [np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)]  # empty and full targets
        for corner in ((0, 0), (0, shape[1] - 1), (shape[0] - 1, 0), (shape[0] - 1, shape[1] - 1)):
            one = np.zeros(shape, dtype=bool)
            one[corner] = True
            cases += [one, ~one]  # a single border pixel, and everything but it
    for _ in range(400):
        shape = (int(rng.integers(1, 48)), int(rng.integers(1, 48)))
        cases.append(_blocks(rng, shape) if rng.random() < 0.6 else rng.random(shape) < rng.random())
    for i, target in enumerate(cases):
        for radius in (None, 0, 1, 3):
            _assert_medical_start_is_legacy_and_shared(target, radius)
        if i % 7 == 0:  # non-bool targets, cast as the legacy start cast them
            _assert_medical_start_is_legacy_and_shared(target.astype(np.uint8), None)
            _assert_medical_start_is_legacy_and_shared(target.astype(np.float32) * 0.5, 2)


@settings(max_examples=300, deadline=None)
@given(
    target=hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20)),
    radius=st.none() | st.integers(0, 4),
)
def test_medical_click_start_equals_its_legacy_self_on_any_target(target: np.ndarray, radius: int | None):
    _assert_medical_start_is_legacy_and_shared(target, radius)
