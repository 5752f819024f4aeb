"""The report's table of the first proposal's candidates: a quick study's table checked against its own
steps.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.study import parse_study, run_study


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
    assert row["first_dice"] == pytest.approx(np.mean([d[0] for d in first["candidate_dice"]]))
    assert row["pairwise_dice"] == pytest.approx(1.0 - first["diversity"].mean())
    assert 0.0 < row["pairwise_dice"] < 1.0  # the disk model's candidates differ, and overlap
    assert "## Candidates of the first proposal" in (out / "report.md").read_text()
