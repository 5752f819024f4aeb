"""Checkpoints: roundtrip, format, and rejection of files that are not probseg checkpoints."""

from __future__ import annotations

import fractions
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import probseg
from probseg import ProbSeg, build_network
from probseg.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint

REQUIRED = ("state_dict", "config", "data_spec", "probseg_version", "metrics")


def _case(h: int = 27, w: int = 30):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(h, w)).astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    mask[4:14, 6:16] = True
    seg = mask & (rng.random((h, w)) > 0.5)
    return image, mask, seg


@pytest.mark.parametrize("name", ["paper", "wide", "unet-complete"])
def test_roundtrip_gives_identical_proposals(tmp_path, name):
    torch.manual_seed(3)
    net = build_network(name)
    before = ProbSeg(net)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", net, {"tasks": ["disks"]}, {"steps": 0}, {"max_dice": 0.5})
    assert path == tmp_path / "sub" / "m.pt" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]  # no temporary file left behind
    after = probseg.load(path)
    assert after.config == before.config
    image, mask, seg = _case()
    for kwargs in ({"k": 6, "seed": 11}, {"k": 2, "mean": True}):
        a = before.propose(image, mask, seg, **kwargs, return_scores=True)
        b = after.propose(image, mask, seg, **kwargs, return_scores=True)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for key, value in net.state_dict().items():
        assert torch.equal(value, after.net.state_dict()[key])
    assert not after.net.training
    assert after.trained_tasks == ["disks"]
    assert after.meta["metrics"] == {"max_dice": 0.5}
    assert after.name == str(path)


def test_file_format(tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    assert isinstance(payload, dict)
    for key in REQUIRED:
        assert key in payload
    assert payload["probseg_version"] == probseg.__version__
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["config"] == probseg.CONFIGS["paper"].to_dict()
    assert payload["data_spec"]["tasks"] == ["disks"]
    assert payload["data_spec"]["pair_spec"]["mode"] == "partial"
    assert payload["train"]["command"] == "tiny"
    assert payload["train"]["settings"]["steps"] == 3
    assert "final_loss" in payload["metrics"] and np.isfinite(payload["metrics"]["final_loss"])
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    # the JSON record beside it
    record = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert record["command"] == "tiny" and record["config"]["name"] == "paper"


def test_load_checkpoint_returns_meta_without_weights(tiny_checkpoint):
    net, meta = load_checkpoint(tiny_checkpoint)
    assert "state_dict" not in meta
    assert meta["path"] == str(tiny_checkpoint)
    for key in ("config", "data_spec", "probseg_version", "metrics", "train"):
        assert key in meta
    assert not net.training


@pytest.mark.parametrize("missing", REQUIRED)
def test_dict_missing_keys_raises(tmp_path, tiny_checkpoint, missing):
    payload = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    del payload[missing]
    path = tmp_path / "partial.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="^checkpoint.*missing keys"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "payload",
    [torch.zeros(3), [1, 2, 3], {"a": 1}],
    ids=["tensor", "list", "other-dict"],
)
def test_not_a_checkpoint_raises(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="^checkpoint"):
        probseg.load(path)


def test_config_and_weights_mismatch_raises(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    # weights of the paper net under the wide configuration
    bad = dict(payload, config=probseg.CONFIGS["wide"].to_dict())
    torch.save(bad, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="^checkpoint.*configuration"):
        load_checkpoint(tmp_path / "mismatch.pt")
    # an invalid configuration
    bad = dict(payload, config={**payload["config"], "arch": "resnet"})
    torch.save(bad, tmp_path / "badcfg.pt")
    with pytest.raises(ValueError, match="^checkpoint"):
        load_checkpoint(tmp_path / "badcfg.pt")
    # an unknown configuration field
    bad = dict(payload, config={**payload["config"], "depth": 3})
    torch.save(bad, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="^checkpoint"):
        load_checkpoint(tmp_path / "extra.pt")


def test_pickled_object_is_rejected_not_executed(tmp_path):
    # weights_only loading refuses arbitrary pickled objects
    path = tmp_path / "evil.pt"
    obj = fractions.Fraction(1, 3)  # picklable, but not on torch's weights_only allow-list
    torch.save({"state_dict": {}, "config": obj, "data_spec": {}, "probseg_version": "0", "metrics": {}}, path)
    with pytest.raises(ValueError, match="^checkpoint"):
        load_checkpoint(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ValueError, match="^checkpoint.*no such file"):
        load_checkpoint(tmp_path / "nope.pt")


# --- files that are not checkpoints at all (issue 16) ----------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _bad_file(tmp_path: Path, kind: str) -> Path:
    """A file a user might pass as a checkpoint by mistake."""
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("this is a README, not a checkpoint\nsecond line\n")
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign-torch-file":
        torch.save({"a": 1}, path)
    return path


BAD_KINDS = ["text", "random-bytes", "empty", "foreign-torch-file"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_is_a_value_error_naming_checkpoint(tmp_path, kind):
    with pytest.raises(ValueError, match="^checkpoint: ") as info:
        probseg.load(_bad_file(tmp_path, kind))
    message = str(info.value)
    assert "not a probseg checkpoint" in message and "\n" not in message
    assert "weights_only" not in message  # torch's advice to load unsafely must never reach the user


def test_bad_file_says_what_it_is_not(tmp_path):
    with pytest.raises(ValueError, match="not a PyTorch zip archive"):
        load_checkpoint(_bad_file(tmp_path, "text"))
    with pytest.raises(ValueError, match="empty"):
        load_checkpoint(_bad_file(tmp_path, "empty"))
    with pytest.raises(ValueError, match="lacks state_dict"):
        load_checkpoint(_bad_file(tmp_path, "foreign-torch-file"))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_simulate_cli_bad_checkpoint_is_one_line_exit_2(tmp_path, kind):
    """A real process, so that anything printed to stderr (warnings, tracebacks) is seen."""
    argv = ["--checkpoint", str(_bad_file(tmp_path, kind)), "--workers", "0", "--n-sessions", "1",
            "--max-iters", "1", "--out", str(tmp_path / "out"), "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", *argv], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and err[0].startswith("probseg-simulate: error: checkpoint: "), err
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr
