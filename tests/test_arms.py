"""simulator.arms: metric labels, legend and formats, per-session metric values, effort counts, image
clusters, tasks, starts and annotators of hand-made arms; the printed summary of probseg-simulate."""

from __future__ import annotations

import numpy as np
import pytest

from hand_arms import hand_arm
from simulator.arms import (
    EXTRA_METRICS,
    METRIC_LABELS,
    METRICS,
    annotator_index,
    arm_effort_counts,
    arm_start,
    format_metric,
    image_codes,
    lower_is_better,
    metric_label,
    metric_legend,
    metric_matrix,
    metric_statistic,
    session_tasks,
)
from simulator.metrics import EffortCounts


def test_every_metric_has_a_field_label():
    assert set(METRICS) | set(EXTRA_METRICS) <= set(METRIC_LABELS)
    assert metric_label("noc_90") == "NoC@90" and metric_label("nof_90") == "NoF@90"
    assert metric_label("dice_at_clicks_5") == "Dice@5 clicks" and metric_label("unknown") == "unknown"


def test_legend_is_one_line_naming_each_kind_once():
    line = metric_legend(["noc_85", "noc_90", "nof_90", "dice_at_clicks_5"])
    assert "\n" not in line and line.count("NoC@T") == 1
    assert line.index("NoC@T") < line.index("NoF@T") < line.index("Dice@c clicks")
    assert metric_legend([]) == ""


def test_format_metric():
    assert format_metric("nof_90", 17.0) == "17"  # a count, never 17.000
    assert format_metric("dice_at_clicks_5", 0.42345) == "0.423"
    assert format_metric("noc_90", 3.456) == "3.46"
    assert format_metric("effort_s", float("nan")) == "–" and format_metric("noc_90", None) == "–"


def test_direction_and_statistic():
    assert lower_is_better("noc_90") and lower_is_better("effort_s") and lower_is_better("final_hd95")
    assert not lower_is_better("dice_auc")
    assert metric_statistic("nof_90") == "sum" and metric_statistic("noc_90") == "mean"


def _arm():
    return hand_arm([
        {"session": 0, "image": "b", "task": "CAMUS", "noc_90": 4.0, "reached_90": True, "steps": [
            {"dice": 0.5, "clicks_so_far": 2, "n_candidates": 4}, {"dice": 0.95, "clicks_so_far": 3, "n_candidates": 4},
            {"dice": 0.97, "clicks_so_far": 4, "n_candidates": 4}]},
        {"session": 1, "image": "a", "task": "WBC", "noc_90": 7.0, "reached_90": False, "steps": [
            {"dice": 0.2, "clicks_so_far": 2, "n_candidates": 1}, {"dice": 0.4, "clicks_so_far": 3, "n_clicks": 2}]},
        {"session": 2, "image": "b", "task": "CAMUS", "noc_90": 5.0, "reached_90": True, "steps": [
            {"dice": 0.91, "clicks_so_far": 2}]},
    ], settings={"start": "clicks"})


def test_metric_matrix_nof_is_the_failure_indicator_and_unknown_columns_nan():
    m = metric_matrix(_arm(), ["noc_90", "nof_90", "dice_auc"])
    assert m.shape == (3, 3) and m.dtype == np.float64
    np.testing.assert_array_equal(m[:, 0], [4.0, 7.0, 5.0])
    np.testing.assert_array_equal(m[:, 1], [0.0, 1.0, 0.0])
    assert np.isnan(m[:, 2]).all()
    with pytest.raises(ValueError, match="reached_85"):
        metric_matrix(_arm(), ["nof_85"])


def test_effort_counts_hand_computed():
    counts = arm_effort_counts(_arm())
    # Session 0 reaches 0.90 at iteration 2: 3 clicks, 2 inspections, 2 choices of 4 (2 bits each).
    assert counts[0] == EffortCounts(clicks=3.0, iterations=2.0, choices=2.0, choice_bits=4.0)
    # Session 1 never does: every click made (3 so far + the last iteration's 2), no choice.
    assert counts[1] == EffortCounts(clicks=5.0, iterations=2.0, choices=0.0, choice_bits=0.0)
    assert counts[2] == EffortCounts(clicks=2.0, iterations=1.0, choices=0.0, choice_bits=0.0)


def test_images_tasks_start_and_annotators():
    arm = _arm()
    codes, n = image_codes(arm)
    assert n == 2 and codes.tolist() == [1, 0, 1]  # images sorted: a = 0, b = 1
    assert session_tasks(arm).tolist() == ["CAMUS", "WBC", "CAMUS"]
    assert session_tasks(hand_arm([{"session": 0, "image": "x", "steps": [{"dice": 1, "clicks_so_far": 1}]}])
                         ).tolist() == [""]
    assert arm_start(arm) == "clicks"
    assert annotator_index("annotator-2") == 2 and annotator_index("mask") is None


def test_probseg_simulate_prints_field_labels_and_a_legend():
    from simulator.cli import _SUMMARY_ROWS, _format_summary

    summary = {k: 0.5 for k in _SUMMARY_ROWS} | {"nof_90": 17, "noc_90": 3.456}
    lines = _format_summary(summary, "probseg / best-of-k / K=8").splitlines()
    rows = {line.split("  ")[0].strip(): line.split()[-1] for line in lines[1:-1]}
    assert rows["NoF@90"] == "17" and rows["NoC@90"] == "3.46" and rows["Dice@5 clicks"] == "0.500"
    assert not any(k in "\n".join(lines) for k in ("noc_90", "nof_90", "dice_at_clicks_5"))
    assert lines[-1].startswith("NoC@T:")
