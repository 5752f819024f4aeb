"""The report's table of the first proposal's candidates: hand values, and a quick study's table checked
against its own steps.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.report.candidates import pairwise_dice
from simulator.study import parse_study, run_study


def test_pairwise_dice_hand_values() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 pixels, 4 shared with a
    empty = np.zeros((4, 4), bool)
    assert pairwise_dice(np.stack([a, a])) == 1.0
    assert pairwise_dice(np.stack([a, ~a])) == 0.0
    assert pairwise_dice(np.stack([a, b])) == pytest.approx(0.5)
    assert pairwise_dice(np.stack([empty, empty])) == 1.0  # nothing against nothing agrees
    # Three candidates: the mean over the pairs (a, b) 0.5, (a, empty) 0, (b, empty) 0.
    assert pairwise_dice(np.stack([a, b, empty])) == pytest.approx(0.5 / 3)


def test_a_quick_studys_candidate_table_matches_its_steps(tmp_path: Path) -> None:
    raw = {
        "name": "cands", "reference": "z0",
        "arms": [
            {"label": "z0", "method": "probseg-mean", "policy": "first", "k": 1},
            {"label": "best-of-4", "method": "probseg", "policy": "best-of-k", "k": 4},
        ],
    }
    out = run_study(parse_study(raw), tmp_path / "s", quick=True, workers=0, progress=False)
    table = pd.read_csv(out / "candidates.csv")
    assert table["label"].tolist() == ["best-of-4"]  # one candidate has nothing to compare
    row = table.iloc[0]
    arm = next(a for a in json.loads((out / "study.json").read_text())["arms"] if a["label"] == "best-of-4")
    steps = pd.read_parquet(out / arm["run_dir"] / "steps.parquet")
    first = steps[steps["iteration"] == 1]
    assert row["n_sessions"] == len(first) == 6
    best = np.mean([max(d) for d in first["candidate_dice"]])
    top = np.mean([d[int(np.argmax(s))] for d, s in zip(first["candidate_dice"], first["candidate_scores"])])
    assert row["best_dice"] == pytest.approx(best) and row["top_scored_dice"] == pytest.approx(top)
    assert row["best_minus_top"] == pytest.approx(best - top) and row["best_minus_top"] >= 0
    assert row["best_dice_lo"] <= row["best_dice"] <= row["best_dice_hi"]
    assert 0.0 <= row["pairwise_dice"] <= 1.0
    assert "## Candidates of the first proposal" in (out / "report.md").read_text()
