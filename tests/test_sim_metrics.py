"""Session metrics on hand-made step records, the effort model, and the mask helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.metrics import (
    EffortCounts,
    EffortModel,
    dice,
    dice_auc_clicks,
    effort_counts,
    hd95,
    iou,
    mean_counts,
    session_metrics,
    tie_choose_click_ratio,
)


def steps_from(dices: list[float], clicks_so_far: list[int], n_clicks: list[int] | None = None, k: int = 1) -> list[dict]:
    """Hand-made step records with only the fields the metrics read."""
    n_clicks = [1] * len(dices) if n_clicks is None else n_clicks
    return [
        {
            "iteration": i + 1,
            "dice": d,
            "clicks_so_far": c,
            "n_clicks": n,
            "click_made": n > 0,
            "candidate_dice": [d] * k,
            "hd95": 1.5 * (i + 1),
        }
        for i, (d, c, n) in enumerate(zip(dices, clicks_so_far, n_clicks))
    ]


# Start = 2 clicks, one correction per iteration; 0.80 is reached at iteration 3, 0.85 at 4, 0.90 never.
CLIMB = steps_from([0.5, 0.7, 0.82, 0.86, 0.88], [2, 3, 4, 5, 6])


# --- mask helpers -------------------------------------------------------------------------------------


def test_dice_and_iou_hand_values():
    a = np.array([[1, 1, 1, 0]], dtype=bool)
    b = np.array([[0, 1, 1, 1]], dtype=bool)
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert iou(a, b) == pytest.approx(2 / 4)
    empty = np.zeros((1, 4), dtype=bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(a, empty) == 0.0 and iou(a, empty) == 0.0
    with pytest.raises(ValueError, match="dice"):
        dice(a, np.zeros((2, 2), dtype=bool))


def test_hd95_hand_values():
    a = np.zeros((5, 5), dtype=bool)
    b = np.zeros((5, 5), dtype=bool)
    a[0, 0] = True
    b[0, 3] = True
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0
    assert hd95(a, np.zeros((5, 5), dtype=bool)) == pytest.approx(math.hypot(5, 5))
    assert hd95(np.zeros((5, 5), dtype=bool), np.zeros((5, 5), dtype=bool)) == 0.0
    # A 5x5 square against the same square grown by one pixel: every boundary pixel of the larger
    # square is 1 from the smaller one's boundary (corners sqrt(2)), and the reverse is 1 everywhere.
    small = np.zeros((9, 9), dtype=bool)
    small[2:7, 2:7] = True
    big = np.zeros((9, 9), dtype=bool)
    big[1:8, 1:8] = True
    assert hd95(small, big) == pytest.approx(np.percentile([1.0] * 20 + [math.sqrt(2)] * 4, 95))


# --- NoC, NoI, Dice at clicks / iterations, AUC ---------------------------------------------------------


def test_noc_and_noi_with_the_cap():
    m = session_metrics(CLIMB)
    assert (m["noc_80"], m["noi_80"], m["reached_80"]) == (4, 3, True)
    assert (m["noc_85"], m["noi_85"], m["reached_85"]) == (5, 4, True)
    assert (m["noc_90"], m["noi_90"], m["reached_90"]) == (2 + 5 * 1, 5, False)
    m = session_metrics(CLIMB, max_iters=20, corrections_per_iter=2)
    assert (m["noc_90"], m["noi_90"]) == (2 + 20 * 2, 20)
    assert m["start_clicks"] == 2


def test_noc_counts_clicks_before_the_reaching_iteration():
    # Reached at iteration 1: only the start's clicks were spent.
    m = session_metrics(steps_from([0.95, 0.97], [3, 4]))
    assert (m["noc_90"], m["noi_90"]) == (3, 1)


def test_dice_at_clicks_and_iterations():
    m = session_metrics(CLIMB)
    assert m["dice_at_clicks_3"] == 0.7  # first iteration with clicks_so_far >= 3 is iteration 2
    assert m["dice_at_clicks_5"] == 0.86
    assert m["dice_at_clicks_10"] == 0.88  # never spent: the last Dice
    assert m["dice_at_iter_1"] == 0.5 and m["dice_at_iter_5"] == 0.88
    assert math.isnan(m["dice_at_iter_10"]) and math.isnan(m["dice_at_iter_20"])
    # A start that already costs 5 inputs answers every smaller budget with iteration 1.
    m = session_metrics(steps_from([0.6, 0.9], [5, 6]))
    assert m["dice_at_clicks_3"] == m["dice_at_clicks_5"] == 0.6


def test_dice_auc_over_clicks_1_to_5_is_the_challenges_trapezoid():
    # CLIMB: Dice after 1..5 clicks is 0.5 (iteration 1 already has 2), 0.5, 0.7, 0.82, 0.86; the trapezoid
    # at unit spacing: 0.5/2 + 0.5 + 0.7 + 0.82 + 0.86/2.
    assert session_metrics(CLIMB)["dice_auc_clicks"] == pytest.approx(0.25 + 0.5 + 0.7 + 0.82 + 0.43)
    # Done at once: every budget is answered with that Dice, the most a session can score is 4.
    assert dice_auc_clicks([1.0], [2]) == pytest.approx(4.0)
    assert dice_auc_clicks([0.2, 0.4], [1, 2], n_clicks=2) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="^dices, clicks_so_far: "):
        dice_auc_clicks([0.5], [1, 2])
    with pytest.raises(ValueError, match="^n_clicks: "):
        dice_auc_clicks([0.5], [1], n_clicks=1)


def test_auc_final_values_and_totals():
    m = session_metrics(CLIMB)
    assert m["dice_auc"] == pytest.approx((0.5 + 0.7 + 0.82 + 0.86 + 0.88) / 5)
    assert m["final_dice"] == 0.88
    assert m["final_hd95"] == pytest.approx(7.5)
    assert m["clicks_total"] == 7  # 6 before the last iteration plus its correction
    assert m["iterations"] == 5


# --- effort -------------------------------------------------------------------------------------------


def test_effort_model_defaults():
    e = EffortModel()
    assert e.c_click == pytest.approx(2.45) and e.c_inspect == pytest.approx(1.35)
    assert e.c_choose(1) == 0.0
    assert e.c_choose(8) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="k"):
        e.c_choose(0)
    with pytest.raises(ValueError, match="c_click"):
        EffortModel(c_click=-1.0)


def test_effort_with_k1_and_k8():
    # 0.90 reached at iteration 4 with 5 clicks spent.
    dices, clicks = [0.5, 0.7, 0.85, 0.92, 0.95], [2, 3, 4, 5, 6]
    k1 = session_metrics(steps_from(dices, clicks, k=1))
    assert k1["effort_s"] == pytest.approx(5 * 2.45 + 4 * 1.35)
    k8 = session_metrics(steps_from(dices, clicks, k=8))
    assert k8["effort_s"] == pytest.approx(5 * 2.45 + 4 * 1.35 + 4 * 0.15 * 3)
    assert effort_counts(steps_from(dices, clicks, k=8)) == EffortCounts(5, 4, 4, 12)


def test_effort_of_an_unreached_session_counts_every_click_made():
    m = session_metrics(CLIMB)
    assert m["effort_s"] == pytest.approx(7 * 2.45 + 5 * 1.35)
    counts = effort_counts(steps_from([0.5, 0.6], [2, 3], n_clicks=[1, 0], k=4))
    assert counts == EffortCounts(clicks=3, iterations=2, choices=2, choice_bits=4)


def test_tie_ratio_balances_the_two_arms():
    probseg = EffortCounts(clicks=4, iterations=5, choices=5, choice_bits=15)
    baseline = EffortCounts(clicks=6, iterations=5, choices=0, choice_bits=0)
    assert tie_choose_click_ratio(probseg, baseline) == pytest.approx(2 / 5)
    fast = EffortCounts(clicks=4, iterations=3, choices=3, choice_bits=9)
    model = EffortModel()
    r = tie_choose_click_ratio(fast, baseline, model)
    assert r == pytest.approx((2 + 2 * 1.35 / 2.45) / 3)
    c_choose = r * model.c_click

    def cost(c: EffortCounts) -> float:
        return c.clicks * model.c_click + c.iterations * model.c_inspect + c.choices * c_choose

    assert cost(fast) == pytest.approx(cost(baseline))
    assert math.isnan(tie_choose_click_ratio(baseline, baseline))


def test_mean_counts():
    m = mean_counts([EffortCounts(2, 4, 4, 12), EffortCounts(4, 6, 0, 0)])
    assert m == EffortCounts(3, 5, 2, 6)
    with pytest.raises(ValueError, match="counts"):
        mean_counts([])


def test_bad_steps_raise():
    with pytest.raises(ValueError, match="steps"):
        session_metrics([])
    with pytest.raises(ValueError, match="steps"):
        session_metrics([{"iteration": 1, "dice": 0.5}])
    with pytest.raises(ValueError, match="max_iters"):
        session_metrics(CLIMB, max_iters=3)
    with pytest.raises(ValueError, match="corrections_per_iter"):
        session_metrics(CLIMB, corrections_per_iter=0)
