"""The paper's metrics on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probseg.metrics import added_dice, added_pixels, dice, dice_at_k, max_subset_dice

B = lambda rows: np.array(rows, dtype=bool)  # noqa: E731


def test_dice_by_hand():
    a = B([[1, 1, 0], [0, 1, 0]])
    b = B([[1, 0, 0], [0, 1, 1]])
    # |a & b| = 2, |a| = 3, |b| = 3
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0  # two empty masks
    assert dice(np.zeros((2, 2), bool), B([[1, 0], [0, 0]])) == 0.0
    assert dice([[1, 0]], [[1, 1]]) == pytest.approx(2 / 3)  # array-likes and ints are cast to bool


def test_dice_shape_mismatch_raises():
    with pytest.raises(ValueError, match="dice"):
        dice(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


@given(a=hnp.arrays(bool, (4, 5)), b=hnp.arrays(bool, (4, 5)))
def test_dice_symmetric_and_bounded(a, b):
    d = dice(a, b)
    assert d == dice(b, a)
    assert 0.0 <= d <= 1.0
    assert (d == 1.0) == np.array_equal(a, b)


def test_added_pixels_by_hand():
    mask = B([[1, 1, 0, 0], [0, 0, 0, 0]])
    new_mask = B([[1, 1, 1, 1], [1, 1, 0, 0]])
    new_seg = B([[1, 0, 1, 0], [1, 0, 0, 0]])
    # added: (0,2) fg, (0,3) bg, (1,0) fg, (1,1) bg; the input's (0,0) fg does not count
    assert added_pixels(mask, new_mask, new_seg) == (2, 2)
    assert added_pixels(mask, mask, mask) == (0, 0)
    fg, bg = added_pixels(mask, new_mask, new_seg)
    assert isinstance(fg, int) and isinstance(bg, int)


def test_added_dice_by_hand():
    mask = B([[1, 1, 0, 0], [0, 0, 0, 0]])
    new_mask = B([[1, 1, 1, 1], [1, 1, 0, 0]])
    new_seg = B([[1, 0, 1, 0], [1, 0, 0, 0]])
    truth = B([[1, 1, 1, 1], [0, 0, 0, 1]])
    # on the added region {(0,2), (0,3), (1,0), (1,1)}: seg = {(0,2), (1,0)}, truth = {(0,2), (0,3)}
    assert added_dice(mask, new_mask, new_seg, truth) == pytest.approx(2 * 1 / 4)
    # truth outside the added region ((1,3), and the input's (0,0), (0,1)) is ignored
    truth2 = truth.copy()
    truth2[1, 3] = False
    truth2[0, :2] = False
    assert added_dice(mask, new_mask, new_seg, truth2) == pytest.approx(0.5)
    # a proposal adding nothing: both sides empty, Dice 1 by convention
    assert added_dice(mask, mask, mask, truth) == 1.0


def test_max_subset_dice_by_hand():
    mask = np.zeros((1, 6), dtype=bool)
    new_mask = B([[1, 1, 1, 1, 0, 0]])
    new_seg = B([[1, 1, 0, 0, 0, 0]])
    truths = np.stack([
        np.zeros((1, 6), bool),  # empty: 0 (the proposal has foreground)
        B([[1, 1, 0, 0, 0, 0]]),  # exact: 1
        B([[1, 1, 1, 1, 0, 0]]),  # 2*2/6
    ])
    assert max_subset_dice(mask, new_mask, new_seg, truths) == 1.0
    assert max_subset_dice(mask, new_mask, new_seg, truths[[0, 2]]) == pytest.approx(4 / 6)
    assert max_subset_dice(mask, new_mask, new_seg, truths[[0]]) == 0.0


def test_dice_at_k_by_hand():
    scores = np.array([[0.1, 0.5, 0.3, 0.9], [0.7, 0.2, 0.8, 0.0]])
    out = dice_at_k(scores, (1, 2, 3, 4))
    assert out == pytest.approx({1: (0.1 + 0.7) / 2, 2: (0.5 + 0.7) / 2, 3: (0.5 + 0.8) / 2, 4: (0.9 + 0.8) / 2})
    assert list(out) == [1, 2, 3, 4]


@given(scores=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=st.floats(0, 1)))
def test_dice_at_k_non_decreasing(scores):
    ks = tuple(range(1, scores.shape[1] + 1))
    vals = list(dice_at_k(scores, ks).values())
    assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))
    assert vals[-1] == pytest.approx(scores.max(axis=1).mean())


def test_dice_at_k_bad_input_raises():
    with pytest.raises(ValueError, match="scores"):
        dice_at_k(np.zeros(4), (1,))
    with pytest.raises(ValueError, match="ks"):
        dice_at_k(np.zeros((2, 3)), (4,))
    with pytest.raises(ValueError, match="ks"):
        dice_at_k(np.zeros((2, 3)), (0,))
