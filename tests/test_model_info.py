"""``ProbSeg.info``: the public record the simulator reads instead of probing a model's attributes."""

from __future__ import annotations

import dataclasses
import json

import pytest

import probseg
from probseg import ModelInfo, ProbSeg, build_network
from probseg.registry import CHECKPOINT_DIR, MANIFEST, REGISTRY
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig


@pytest.mark.parametrize("name", ["disks", "disks-unet-complete"])
def test_a_shipped_model_reports_its_kind_tasks_file_and_hash(name: str) -> None:
    if name not in probseg.available():
        pytest.skip(f"shipped checkpoint {name!r} is not installed")
    model = probseg.load(name)
    info = model.info
    assert isinstance(info, ModelInfo) and info is model.info  # computed once
    assert info.name == name and info.config == model.config.name
    assert (info.kind, info.stochastic, info.multi) == (("partial", True, True) if name == "disks" else ("complete", False, False))
    assert info.trained_tasks == tuple(model.trained_tasks)
    assert info.checkpoint_path == str(CHECKPOINT_DIR / REGISTRY[name])
    manifest = json.loads((CHECKPOINT_DIR / MANIFEST).read_text())
    assert info.checkpoint_sha256 == manifest[REGISTRY[name]]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.kind = "complete"  # type: ignore[misc]


def test_a_model_built_in_memory_has_no_file_and_no_hash() -> None:
    info = ProbSeg(build_network("paper-complete"), name="mine").info
    assert (info.name, info.kind, info.stochastic, info.multi, info.config) == ("mine", "complete", True, True, "paper-complete")
    assert (info.trained_tasks, info.checkpoint_path, info.checkpoint_sha256) == ((), "", "")


def test_a_run_records_the_models_file_and_hash_from_info(tmp_path) -> None:
    if "disks-unet-complete" not in probseg.available():
        pytest.skip("shipped checkpoint 'disks-unet-complete' is not installed")
    run(RunSettings(method="unet-complete", policy="first", n_sessions=1,
                    session=SessionConfig(k=1, max_iters=1)), out=tmp_path / "r",
        workers=0, progress=False)
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["method"]
    info = probseg.load("disks-unet-complete").info
    assert (recorded["checkpoint"], recorded["checkpoint_sha256"]) == (info.checkpoint_path, info.checkpoint_sha256)
