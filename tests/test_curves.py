"""simulator.curves: Dice against clicks, iterations and annotator seconds of a hand-made two-session arm."""

from __future__ import annotations

import math

import numpy as np

from hand_arms import hand_arm
from simulator.curves import cumulative_effort, dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from simulator.metrics import EffortModel


def _arm():
    """Session 0 runs 3 iterations (K = 1, 2, 4 candidates), session 1 ends early after 2; max_iters 4."""
    return hand_arm([
        {"session": 0, "image": "a", "steps": [
            {"dice": 0.5, "clicks_so_far": 2, "n_candidates": 1},
            {"dice": 0.7, "clicks_so_far": 3, "n_candidates": 2},
            {"dice": 0.9, "clicks_so_far": 4, "n_candidates": 4}]},
        {"session": 1, "image": "b", "steps": [
            {"dice": 0.4, "clicks_so_far": 2},
            {"dice": 0.8, "clicks_so_far": 4}]},
    ], settings={"max_iters": 4}, effort={"c_click": 1.0, "c_inspect": 2.0, "b_choose": 0.5})


def test_dice_at_clicks_is_the_first_iteration_with_that_many_clicks_else_the_last():
    m = dice_at_clicks_matrix(_arm(), 5)
    assert m.shape == (2, 6) and m.dtype == np.float64
    np.testing.assert_array_equal(m[0], [0.5, 0.5, 0.5, 0.7, 0.9, 0.9])
    np.testing.assert_array_equal(m[1], [0.4, 0.4, 0.4, 0.8, 0.8, 0.8])


def test_dice_by_iteration_carries_an_early_end_to_max_iters_then_nan():
    m = dice_by_iteration_matrix(_arm(), 5)
    np.testing.assert_array_equal(m[0, :4], [0.5, 0.7, 0.9, 0.9])
    np.testing.assert_array_equal(m[1, :4], [0.4, 0.8, 0.8, 0.8])
    assert np.isnan(m[:, 4]).all()  # beyond max_iters no session ran


def test_cumulative_effort_hand_computed():
    s = _arm().session_steps[0]
    model = EffortModel(c_click=1.0, c_inspect=2.0, b_choose=0.5)
    # clicks 2, 3, 4; inspections 1, 2, 3 (x 2 s); bits log2(1), +log2(2), +log2(4) = 0, 1, 3 (x 0.5 s)
    np.testing.assert_allclose(cumulative_effort(s, model), [2 + 2 + 0.0, 3 + 4 + 0.5, 4 + 6 + 1.5])


def test_dice_by_effort_shows_nothing_before_the_first_proposal():
    arm = _arm()
    # session 1 (K = 1): cumulative seconds 2 + 2 = 4 and 4 + 4 = 8
    m = dice_by_effort_matrix(arm, np.array([0.0, 4.0, 5.0, 8.0, 11.5, 20.0]))
    np.testing.assert_array_equal(m[0], [0.0, 0.5, 0.5, 0.7, 0.9, 0.9])
    np.testing.assert_array_equal(m[1], [0.0, 0.4, 0.4, 0.8, 0.8, 0.8])
    assert not any(math.isnan(x) for x in m.ravel())
