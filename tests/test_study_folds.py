"""Studies with cross-validation folds: each arm runs once per fold, on that fold's unseen tasks with the
fold's own checkpoint, and the report pools the folds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probseg.checkpoint import save_checkpoint
from probseg.model import CONFIGS, build_network
from simulator.report.load import load_study_results
from simulator.study import parse_study, run_study

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"
pytestmark = pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")

FOLD_A = ["ACDC", "BTCV", "HipXRay", "STARE"]
FOLD_B = ["CAMUS", "OASIS", "OCTA500", "WBC"]


@pytest.fixture(scope="module")
def fold_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained medical U-Nets, one per fold, whose checkpoints say they were trained on the fold's tasks."""
    root = tmp_path_factory.mktemp("folds")
    for fold, tasks in (("A", FOLD_A), ("B", FOLD_B)):
        torch.manual_seed(0)
        net = build_network(CONFIGS["medical-unet-complete"])
        (root / fold).mkdir()
        save_checkpoint(root / fold / "unet.pt", net, {"dataset": "medical", "tasks": tasks}, {"command": "test"}, {})
    return root


def _raw(ckpts: Path, **over: object) -> dict:
    raw = {
        "name": "folds-test",
        "dataset": f"medscribble:{MEDSCRIBBLE}",
        "folds": {"A": FOLD_A, "B": FOLD_B},
        "sessions": 2,
        "reference": "unet",
        "primary_endpoint": "dice_at_clicks_5",
        "protocol": {"max_iters": 2, "start": "clicks"},
        "bootstrap": {"n_boot": 100},
        "arms": [
            {"label": "unet", "method": "unet-complete", "policy": "first", "k": 1,
             "checkpoint": str(ckpts / "{fold}" / "unet.pt")},
            {"label": "walker", "method": "random-walker-partial", "policy": "first", "k": 1},
        ],
    }
    raw.update(over)
    return raw


def test_each_arm_runs_per_fold_on_its_unseen_tasks_with_its_own_checkpoint(fold_checkpoints: Path) -> None:
    study = parse_study(_raw(fold_checkpoints))
    unet = study.arm("unet")
    assert set(unet.folds) == {"A", "B"}
    assert unet.folds["A"]["dataset"] == f"medscribble:{MEDSCRIBBLE}?tasks=CAMUS,OASIS,OCTA500,WBC"
    assert unet.folds["B"]["dataset"] == f"medscribble:{MEDSCRIBBLE}?tasks=ACDC,BTCV,HipXRay,STARE"
    assert unet.folds["A"]["checkpoint"] == str(fold_checkpoints / "A" / "unet.pt")
    assert unet.folds["B"]["checkpoint"] == str(fold_checkpoints / "B" / "unet.pt")
    assert "checkpoint" not in study.arm("walker").folds["A"]


@pytest.mark.parametrize(
    "over, match",
    [
        ({"folds": {"A": FOLD_A, "B": FOLD_B[:3]}}, r"^folds: task 'WBC' is unseen by folds A, B"),
        ({"folds": {"A": FOLD_A, "B": FOLD_A}}, r"^folds: task 'ACDC' is unseen by no fold"),
        ({"folds": {"A": ["ACDC", "Nope"]}}, r"^folds.A: 'Nope' is not a task"),
        ({"folds": {"A": []}}, r"^folds.A: expected a non-empty list"),
        ({"train_tasks": FOLD_A}, r"^train_tasks: a study with \[folds\]"),
        ({"dataset": "disks"}, r"^folds: needs a medscribble:PATH dataset"),
        ({"training": {"seeds": [0, 1], "retrain": ["disks"]}}, r"^training.seeds: a study with \[folds\]"),
    ],
)
def test_bad_folds_are_refused_naming_the_field(fold_checkpoints: Path, over: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_study(_raw(fold_checkpoints, **over))


def test_a_model_arm_must_name_each_folds_checkpoint(fold_checkpoints: Path) -> None:
    raw = _raw(fold_checkpoints)
    raw["arms"][0]["checkpoint"] = str(fold_checkpoints / "A" / "unet.pt")
    with pytest.raises(ValueError, match=r"^arms\[0\].checkpoint: method 'unet-complete' needs each fold's own model"):
        parse_study(raw)
    del raw["arms"][0]["checkpoint"]  # the shipped default was trained on every task
    with pytest.raises(ValueError, match=r"^arms\[0\].checkpoint: .*\{fold\}"):
        parse_study(raw)


def test_a_missing_fold_checkpoint_is_refused_before_any_arm_runs(fold_checkpoints: Path, tmp_path: Path) -> None:
    raw = _raw(fold_checkpoints)
    raw["arms"][0]["checkpoint"] = str(tmp_path / "{fold}" / "missing.pt")
    with pytest.raises(ValueError, match=r"^checkpoint: .*A.*missing.pt \(fold A of arm 'unet'\) does not exist"):
        run_study(parse_study(raw), tmp_path / "out", workers=0, progress=False, report=False)
    assert not (tmp_path / "out" / "runs").exists()


def test_the_report_pools_the_folds(fold_checkpoints: Path, tmp_path: Path) -> None:
    out = run_study(parse_study(_raw(fold_checkpoints)), tmp_path / "out", workers=0, progress=False)
    for arm in ("unet", "walker"):
        assert (out / "runs" / arm / "fold-A" / "sessions.parquet").is_file()
        assert (out / "runs" / arm / "fold-B" / "sessions.parquet").is_file()
    record, arms = load_study_results(out)
    assert record["folds"] == {"A": FOLD_A, "B": FOLD_B}
    unet = next(a for a in arms if a.label == "unet")
    # Two sessions per fold, numbered fold after fold; each fold's sessions on its unseen tasks.
    assert unet.sessions["session"].tolist() == [0, 1, 2, 3]
    assert unet.sessions["fold"].tolist() == ["A", "A", "B", "B"]
    assert set(unet.sessions["task"][:2]) <= set(FOLD_B) and set(unet.sessions["task"][2:]) <= set(FOLD_A)
    assert sorted(unet.steps["session"].unique().tolist()) == [0, 1, 2, 3]
    assert unet.settings["dataset"] == f"medscribble:{MEDSCRIBBLE}"
    assert unet.settings["checkpoint"] == str(fold_checkpoints / "{fold}" / "unet.pt")
    run_dir, local, settings = unet.locate(2)
    assert run_dir == out / "runs" / "unet" / "fold-B" and local == 0
    assert settings["checkpoint"] == str(fold_checkpoints / "B" / "unet.pt")
    summary = (out / "summary.csv").read_text()
    assert "unet" in summary and "walker" in summary
    assert json.loads((out / "runs" / "unet" / "fold-A" / "config.json").read_text())["settings"]["dataset"].endswith(
        "?tasks=CAMUS,OASIS,OCTA500,WBC")
    assert (out / "filmstrip-unet-complete.png").is_file()  # drawn from the fold's stored states
    report = (out / "report.md").read_text()
    assert "- Folds: A trains on ACDC, BTCV, HipXRay, STARE, evaluated on CAMUS, OASIS, OCTA500, WBC (2 sessions); B" in report
    assert "| `unet` | unet-complete | complete | {fold}/unet.pt |" in report
    # Each fold's walker is the one tuned on that fold's training tasks.
    assert "beta 32000, bf (A); beta 8000, bf (B)" in report


def test_a_pooled_arm_missing_a_folds_run_is_refused(fold_checkpoints: Path, tmp_path: Path) -> None:
    import shutil

    out = run_study(parse_study(_raw(fold_checkpoints)), tmp_path / "out", workers=0, progress=False, report=False)
    shutil.rmtree(out / "runs" / "walker" / "fold-B")
    with pytest.raises(ValueError, match=r"^paths: .*walker has no run of fold B"):
        load_study_results(out)


def test_show_says_what_each_fold_trains_on_and_runs_on(fold_checkpoints: Path, tmp_path: Path, capsys) -> None:
    from simulator.study import main

    ckpt = str(fold_checkpoints / "{fold}" / "unet.pt")
    path = tmp_path / "folds.toml"
    path.write_text(f"""name = "folds-test"
dataset = "medscribble:{MEDSCRIBBLE}"
reference = "unet"
[folds]
A = {FOLD_A!r}
B = {FOLD_B!r}
[[arms]]
label = "unet"
method = "unet-complete"
policy = "first"
k = 1
checkpoint = "{ckpt}"
""".replace("'", '"'))
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fold A: trains on ACDC, BTCV, HipXRay, STARE; every arm runs on CAMUS, OASIS, OCTA500, WBC" in out
    assert "fold B: trains on CAMUS, OASIS, OCTA500, WBC; every arm runs on ACDC, BTCV, HipXRay, STARE" in out


def test_stray_or_mismatched_fold_runs_are_refused(fold_checkpoints: Path, tmp_path: Path) -> None:
    import shutil

    from simulator.report.load import load_run

    out = run_study(parse_study(_raw(fold_checkpoints)), tmp_path / "out", workers=0, progress=False, report=False)
    walker = out / "runs" / "walker"
    shutil.copytree(walker / "fold-B", walker / "fold-C")  # a fold of an older version of the study
    with pytest.raises(ValueError, match=r"^paths: .*walker holds fold-C, which the study does not name"):
        load_study_results(out)
    with pytest.raises(ValueError, match=r"^paths: .*folds B and C|^paths: .*fold C does not run other tasks"):
        load_run(walker)  # alone, without the study: B and C ran the same tasks
    with pytest.raises(ValueError, match=r"^out: .*walker holds fold-C, a fold this study does not name"):
        run_study(parse_study(_raw(fold_checkpoints)), out, workers=0, progress=False, report=False)
    shutil.rmtree(walker / "fold-C")
    # A study turned into one with folds over a folder holding the arm's single run.
    single = tmp_path / "single"
    raw = _raw(fold_checkpoints)
    run_study(parse_study(raw), single, workers=0, progress=False, report=False)
    shutil.copy(single / "runs" / "walker" / "fold-A" / "sessions.parquet", single / "runs" / "walker")
    with pytest.raises(ValueError, match=r"^out: .*walker holds a run of arm 'walker' made without folds"):
        run_study(parse_study(raw), single, workers=0, progress=False, report=False)


def test_a_k_candidate_arm_pooled_over_folds_reads_each_folds_candidates(fold_checkpoints: Path, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    raw = _raw(fold_checkpoints)
    raw["arms"].append({"label": "tta", "method": "unet-tta", "policy": "best-of-k", "k": 2,
                        "checkpoint": str(fold_checkpoints / "{fold}" / "unet.pt")})
    out = run_study(parse_study(raw), tmp_path / "out", workers=0, progress=False)
    row = pd.read_csv(out / "candidates.csv").set_index("label").loc["tta"]
    steps = pd.concat([pd.read_parquet(out / "runs" / "tta" / f"fold-{f}" / "steps.parquet") for f in ("A", "B")])
    first = steps[steps["iteration"] == 1]
    assert row["n_sessions"] == len(first) == 4
    assert row["best_dice"] == pytest.approx(np.mean([max(d) for d in first["candidate_dice"]]))
