"""Study files: parsing, validation errors that name the field, arm expansion, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.session import TIMING_KEYS
from simulator.study import ENDPOINTS, find_study, list_studies, read_study, main, parse_study

SHIPPED = ("paper", "disks-k-sweep", "noisy-annotator", "protocol")


def _minimal(**extra: object) -> dict:
    raw = {
        "name": "tiny",
        "reference": "rw",
        "arms": [
            {"label": "rw", "method": "random-walker", "policy": "first", "k": 1},
            {"label": "probseg best-of-{k}", "method": "probseg", "policy": "best-of-k", "k": [2, 4]},
        ],
    }
    raw.update(extra)
    return raw


def test_shipped_studies_are_listed_and_valid() -> None:
    names = {p.stem for p in list_studies()}
    assert set(SHIPPED) <= names
    for name in SHIPPED:
        study = read_study(name)
        assert study.name == name
        assert study.primary_endpoint in ENDPOINTS
        labels = [a.label for a in study.arms]
        assert len(labels) == len(set(labels))
        for arm in study.arms:
            assert arm.reference in labels


def test_list_prints_one_line_per_study(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list_studies())
    assert any(line.startswith("noisy-annotator") for line in lines)


def test_list_expansion_and_labels() -> None:
    study = parse_study(_minimal())
    assert [a.label for a in study.arms] == ["rw", "probseg best-of-2", "probseg best-of-4"]
    assert [a.settings["k"] for a in study.arms] == [1, 2, 4]
    assert all(a.reference == "rw" for a in study.arms)
    assert study.arms[1].run_dir == "runs/probseg-best-of-2"


def test_variants_multiply_arms_and_pair_references_within_a_variant() -> None:
    study = parse_study(_minimal(variants=[{"name": "default"}, {"name": "3c", "corrections_per_iter": 3}]))
    assert len(study.arms) == 6
    three = [a for a in study.arms if a.variant == "3c"]
    assert {a.settings["corrections_per_iter"] for a in three} == {3}
    assert all(a.reference == "rw | 3c" for a in three)


def test_training_seeds_label_and_checkpoint() -> None:
    study = parse_study(_minimal(training={"seeds": [0, 1], "retrain": ["disks"]}))
    labels = [a.label for a in study.arms]
    # The random walker has no checkpoint: it runs once and serves both seeds as reference.
    assert labels == ["rw", "probseg best-of-2 | seed 0", "probseg best-of-2 | seed 1",
                      "probseg best-of-4 | seed 0", "probseg best-of-4 | seed 1"]
    by = {a.label: a for a in study.arms}
    assert by["probseg best-of-2 | seed 0"].settings["checkpoint"] == "disks"
    assert by["probseg best-of-2 | seed 1"].settings["checkpoint"] == "checkpoints/disks-seed1.pt"
    assert by["probseg best-of-2 | seed 1"].name == "probseg best-of-2"
    assert by["rw"].train_seed is None


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        (_minimal(color="red"), "color", "allowed:"),
        (_minimal(primary_endpoint="speed"), "primary_endpoint", "noc_90"),
        (_minimal(reference="nobody"), "reference", "rw"),
        (_minimal(thresholds=[0.95]), "thresholds", "0.9"),
        (_minimal(sessions=0), "sessions", ">= 1"),
        (_minimal(protocol={"start": "telepathy"}), "protocol.start", "clicks, scribbles, human"),
        (_minimal(protocol={"max_iters": "many"}), "protocol.max_iters", "integer"),
        (_minimal(effort={"c_click": -1}), "effort", "c_click"),
        (_minimal(training={"seeds": [0, 1]}), "training.retrain", "retrain"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "probseg", "policy": "bestofk"}]},
         "arms[0].policy", "best-of-k"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "magic"}]}, "arms[0].method", "probseg"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "probseg", "speed": 1}]}, "arms[0].speed", "allowed"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "probseg", "k": []}]}, "arms[0].k", "empty"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "probseg", "k": [1, 2]}]}, "arms", "label"),
        ({"name": "x", "reference": "a", "arms": [{"label": "a", "method": "random-walker", "checkpoint": "disks"}]},
         "arms[0]", "checkpoint"),
        ({"name": "x", "arms": [{"label": "a", "method": "probseg"}]}, "reference", "missing"),
        ({"name": "x"}, "arms", "reproduce"),
        ({"name": "x", "reproduce": {"n_images": 5000}}, "reproduce.n_images", "1..1000"),
        ({"arms": []}, "name", "missing"),
    ],
)
def test_broken_study_names_the_field(raw: dict, field: str, hint: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_study(raw)
    msg = str(info.value)
    assert msg.startswith(field + ":"), msg
    assert hint in msg, msg
    assert "\n" not in msg


def test_cli_broken_study_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nreference = "a"\n[[arms]]\nlabel = "a"\nmethod = "probseg"\npolicy = "nope"\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arms[0].policy" in err[0] and "best-of-k" in err[0]


def test_cli_unknown_study_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-study"]) == 2
    err = capsys.readouterr().err
    assert "no-such-study" in err and "noisy-annotator" in err


def test_cli_not_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("name = [unclosed\n")
    assert main(["show", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_find_study_by_name_and_path() -> None:
    p = find_study("protocol")
    assert p.name == "protocol.toml"
    assert find_study(str(p)) == p


def test_show_quick_caps_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "disks-k-sweep", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "sessions 6" in out
    assert "seed 1" not in out  # --quick keeps the first training seed only


def test_quick_run_writes_study_json(tmp_path: Path) -> None:
    from simulator.study import run_study

    out = run_study(parse_study(_minimal()), tmp_path / "s", quick=True, workers=0, progress=False, report=False)
    record = json.loads((out / "study.json").read_text())
    assert record["quick"] is True
    assert [a["label"] for a in record["arms"]] == ["rw", "probseg best-of-2", "probseg best-of-4"]
    for arm in record["arms"]:
        assert (out / arm["run_dir"] / "sessions.parquet").exists()
        assert arm["settings"]["n_sessions"] == 6


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_runs_quick_end_to_end(name: str, tmp_path: Path) -> None:
    """Every shipped study runs whole (arms, reproduction, report, figures) at --quick size."""
    out = tmp_path / name
    assert main(["run", name, "--quick", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    record = json.loads((out / "study.json").read_text())
    report = (out / "report.md").read_text()
    assert record["quick"] is True and "Quick study" in report
    if record["arms"]:
        summary = pd.read_csv(out / "summary.csv")
        assert list(summary["label"]) == [a["label"] for a in record["arms"]]
        assert (out / "comparison.csv").exists() and (out / "noc90.png").stat().st_size > 0
    if record["reproduce"]:
        repro = pd.read_csv(out / "reproduce.csv")
        assert set(repro["checkpoint"]) == set(read_study(name).reproduce["checkpoints"])
        for fig in record["reproduce"]["figures"]:
            assert (out / fig).stat().st_size > 0


@pytest.mark.skipif(not Path("../shared/medscribble").is_dir(), reason="../shared/medscribble not present")
def test_medscribble_study_runs_quick_end_to_end(tmp_path: Path) -> None:
    """The two-fold real-image study runs whole at --quick size, with its per-task and start tables: each
    fold's arms run on that fold's unseen tasks only, so the tasks seen come from both folds."""
    out = tmp_path / "medscribble"
    assert main(["run", "medscribble", "--quick", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    record = json.loads((out / "study.json").read_text())
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["label"]) == [a["label"] for a in record["arms"]]
    assert len(record["arms"]) == 33  # 11 arms x 3 starts
    per_task = pd.read_csv(out / "per_task.csv")
    tasks = set(per_task["task"])
    assert tasks <= {"ACDC", "BTCV", "HipXRay", "STARE", "CAMUS", "OASIS", "OCTA500", "WBC"}
    assert tasks & {"ACDC", "BTCV", "HipXRay", "STARE"} and tasks & {"CAMUS", "OASIS", "OCTA500", "WBC"}
    assert (out / "starts.csv").exists() and (out / "per_annotator.csv").exists()


def test_quick_study_twice_gives_identical_tables(tmp_path: Path) -> None:
    """Reproducibility: the same study run twice gives byte-identical tables (timings are not in them)."""
    from simulator.study import run_study

    study = parse_study(_minimal(arms=[
        {"label": "rw", "method": "random-walker", "policy": "first", "k": 1},
        {"label": "probseg best-of-{k}", "method": "probseg", "policy": "noisy-best-of-k", "k": 4, "epsilon": 0.3},
    ]))
    a = run_study(study, tmp_path / "a", quick=True, workers=0, progress=False)
    b = run_study(study, tmp_path / "b", quick=True, workers=0, progress=False)
    for name in ("summary.csv", "comparison.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    steps_a = pd.read_parquet(a / "runs" / "probseg-best-of-4" / "steps.parquet").drop(columns=list(TIMING_KEYS))
    steps_b = pd.read_parquet(b / "runs" / "probseg-best-of-4" / "steps.parquet").drop(columns=list(TIMING_KEYS))
    pd.testing.assert_frame_equal(steps_a, steps_b)


def test_seed_retrain_of_a_gpu_recipe_runs_without_a_gpu(tmp_path, monkeypatch):
    """A recipe recorded with ``--device cuda`` retrains here (``auto``), not fails on a CPU machine."""
    import types

    import probseg.registry as registry
    from simulator.study import _train_seed_checkpoints

    record = {
        "command": "probseg-train --config paper --steps 2 --seed 0 --device cuda --out x.pt",
        "settings": {"config": "paper", "steps": 2, "batch_size": 2, "n_pairs": 4, "n_train_images": 5,
                     "eval_images": 0, "threads": 1, "device": "cuda", "free_bits": 0.05},
    }
    (tmp_path / "gpu.json").write_text(json.dumps(record))
    monkeypatch.setattr(registry, "resolve", lambda name: str(tmp_path / f"{name}.pt"))
    arm = types.SimpleNamespace(settings={"checkpoint": "checkpoints/gpu-seed1.pt"}, train_seed=1)
    _train_seed_checkpoints(types.SimpleNamespace(arms=[arm]), tmp_path / "out", progress=False)
    written = json.loads((tmp_path / "out" / "checkpoints" / "gpu-seed1.json").read_text())
    assert written["settings"]["seed"] == 1 and written["settings"]["free_bits"] == 0.05
    assert written["settings"]["device"] == "auto"
    assert written["command"] == "probseg-train --config paper --steps 2 --seed 1 --device auto --out x.pt"


def _tiny_study_file(folder: Path, name: str) -> Path:
    """A one-arm random-walker study that runs in seconds with --quick."""
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndataset = "disks"\nreference = "rw"\nquick_sessions = 2\nquick_max_iters = 2\n'
        '[[arms]]\nlabel = "rw"\nmethod = "random-walker"\npolicy = "first"\nk = 1\n'
    )
    return path


def test_out_holding_another_study_is_refused_and_the_same_study_resumes(tmp_path: Path) -> None:
    from simulator.study import run_study

    out = tmp_path / "out"
    alpha, beta = _tiny_study_file(tmp_path, "alpha"), _tiny_study_file(tmp_path, "beta")
    run_study(alpha, out, quick=True, workers=0, progress=False, report=False)
    record = (out / "study.json").read_bytes()
    with pytest.raises(ValueError, match=f"^out: {out} holds the study 'alpha'; choose another --out$"):
        run_study(beta, out, quick=True, workers=0, progress=False, report=False)
    assert (out / "study.json").read_bytes() == record and (out / "study.toml").read_text() == alpha.read_text()
    assert run_study(alpha, out, quick=True, workers=0, progress=False, report=False) == out  # resumes
    # A run that stopped before writing study.json still marks the folder with its study.toml.
    (out / "study.json").unlink()
    with pytest.raises(ValueError, match="^out: .* holds the study 'alpha'"):
        run_study(beta, out, quick=True, workers=0, progress=False, report=False)


def test_cli_out_holding_another_study_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    common = ["--quick", "--workers", "0", "--no-progress", "--no-report", "--out", str(out)]
    assert main(["run", str(_tiny_study_file(tmp_path, "alpha")), *common]) == 0
    capsys.readouterr()
    assert main(["run", str(_tiny_study_file(tmp_path, "beta")), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"probseg-study: error: out: {out} holds the study 'alpha'; choose another --out"]
    assert json.loads((out / "study.json").read_text())["name"] == "alpha"


def test_list_and_show_say_what_a_study_needs_when_its_data_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the medscribble study's ../shared/medscribble does not resolve from here
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("medscribble"))
    assert "(needs data)" in line and "(invalid)" not in line
    assert "needs the MedScribble collection" in line and "at ../shared/medscribble" in line
    assert main(["show", "medscribble"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probseg-study: error: dataset: needs the MedScribble collection")


def test_secondary_metrics_are_reported_and_read_from_steps_for_older_runs(tmp_path: Path) -> None:
    from simulator.report import write_report
    from simulator.study import run_study

    with pytest.raises(ValueError, match="^secondary_metrics: expected a list from"):
        parse_study(_minimal(secondary_metrics=["auc"]))
    out = run_study(parse_study(_minimal(secondary_metrics=["dice_auc_clicks"])), tmp_path / "s", quick=True,
                    workers=0, progress=False)
    summary = pd.read_csv(out / "summary.csv")
    assert {"dice_auc_clicks", "dice_auc_clicks_lo", "dice_auc_clicks_hi"} <= set(summary.columns)
    assert summary["dice_auc_clicks"].between(0, 4).all()
    assert "Dice AUC clicks 1-5" in (out / "report.md").read_text()
    # A run made before sessions carried the column: the report works it out from steps.parquet alike.
    for arm in json.loads((out / "study.json").read_text())["arms"]:
        path = out / arm["run_dir"] / "sessions.parquet"
        pd.read_parquet(path).drop(columns=["dice_auc_clicks"]).to_parquet(path)
    write_report([out], out=out)
    again = pd.read_csv(out / "summary.csv")
    pd.testing.assert_series_equal(again["dice_auc_clicks"], summary["dice_auc_clicks"])
    # Some sessions with it and some without (a run resumed across the change): every session counts.
    for arm in json.loads((out / "study.json").read_text())["arms"]:
        path = out / arm["run_dir"] / "sessions.parquet"
        df = pd.read_parquet(path)
        df["dice_auc_clicks"] = np.where(df["session"] % 2 == 0, np.nan, 9.0)  # 9: not what the steps give
        df.to_parquet(path)
    write_report([out], out=out)
    mixed = pd.read_csv(out / "summary.csv")
    # The 9s count, and the NaNs are filled from the steps, not left out (which would give exactly 9).
    assert (mixed["dice_auc_clicks"] > summary["dice_auc_clicks"]).all()
    assert (mixed["dice_auc_clicks"] < 9.0).all()
