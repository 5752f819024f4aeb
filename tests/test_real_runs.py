"""Runs on real images: medical defaults, the refusal to evaluate on training tasks, tuned baselines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probseg.checkpoint import save_checkpoint
from probseg.model import CONFIGS, build_network
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig
from simulator.study import parse_study

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"
pytestmark = pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")


def _dataset(tasks: str) -> str:
    return f"medscribble:{MEDSCRIBBLE}?tasks={tasks}"


@pytest.fixture(scope="module")
def acdc_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained medical network whose checkpoint says it was trained on ACDC."""
    torch.manual_seed(0)
    net = build_network(CONFIGS["medical-unet-complete"])
    path = tmp_path_factory.mktemp("ckpt") / "acdc.pt"
    save_checkpoint(path, net, {"dataset": "medical", "tasks": ["ACDC"]}, {"command": "test"}, {})
    return path


def test_a_checkpoint_is_refused_on_a_task_it_was_trained_on(acdc_checkpoint: Path, tmp_path: Path) -> None:
    settings = RunSettings(dataset=_dataset("ACDC,WBC"), method="unet-complete",
                           checkpoint=str(acdc_checkpoint), policy="first", n_sessions=1,
                           session=SessionConfig(k=1, max_iters=1))
    with pytest.raises(ValueError, match=r"^checkpoint: .*trained on ACDC"):
        run(settings, out=tmp_path / "run", workers=0, progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_same_checkpoint_runs_on_unseen_tasks(acdc_checkpoint: Path, tmp_path: Path) -> None:
    settings = RunSettings(dataset=_dataset("WBC"), method="unet-complete", checkpoint=str(acdc_checkpoint),
                           policy="first", n_sessions=2,
                           session=SessionConfig(k=1, max_iters=2, start="human"))
    _, sessions, _ = run(settings, out=tmp_path / "run", workers=0, progress=False)
    assert list(sessions["task"]) == ["WBC", "WBC"]
    assert list(sessions["target"]) == ["annotator-0", "annotator-1"]


def test_real_data_defaults_to_the_medical_checkpoints() -> None:
    rs = RunSettings(dataset=_dataset("WBC"), method="probseg-complete")
    assert rs.real_data
    assert rs.make_method()._source == "medical-complete"
    assert RunSettings(method="probseg-complete").make_method()._source == "disks-complete"


def test_real_data_walker_uses_the_beta_tuned_on_its_folds_training_tasks() -> None:
    from simulator.baselines import tuned_beta, walker_entry

    assert walker_entry(_dataset("WBC")) == "medical-A"  # WBC is unseen by fold A (trained on ACDC, ...)
    assert walker_entry(_dataset("ACDC,STARE")) == "medical-B"
    rs = RunSettings(dataset=_dataset("WBC"), method="random-walker")
    assert rs.make_method().beta == tuned_beta("random-walker", "medical-A")


def test_real_data_walker_uses_the_solver_tuned_with_its_beta() -> None:
    from simulator.baselines import tuned_mode

    for method in ("random-walker", "random-walker-partial"):
        assert RunSettings(dataset=_dataset("WBC"), method=method).make_method().mode == tuned_mode(method, "medical-A")


def test_tuned_mode_prefers_the_walkers_own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from simulator import baselines

    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"d": {"mode": "bf", "random-walker": {"beta": 1.0, "mode": "cg_j"},
                                      "random-walker-partial": {"beta": 2.0}}}))
    monkeypatch.setattr(baselines, "TUNED_PATH", path)
    assert baselines.tuned_mode("random-walker", "d") == "cg_j"
    assert baselines.tuned_mode("random-walker-partial", "d") == "bf"
    assert baselines.tuned_mode("random-walker", "other") == "cg_j"


def test_tune_cli_rejects_an_unknown_solver(capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.baselines import main as tune_main

    assert tune_main(["--mode", "bf,amg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probseg-tune-baselines: ") and "--mode" in err and len(err.splitlines()) == 1


def test_study_refuses_a_dataset_holding_a_training_task() -> None:
    raw = {
        "name": "x", "reference": "rw", "dataset": _dataset("ACDC,WBC"), "train_tasks": ["ACDC", "BTCV"],
        "arms": [{"label": "rw", "method": "random-walker", "policy": "first", "k": 1}],
    }
    with pytest.raises(ValueError, match=r"^dataset: includes the training task\(s\) ACDC"):
        parse_study(raw)
    raw["dataset"] = _dataset("WBC")
    assert parse_study(raw).train_tasks == ["ACDC", "BTCV"]
