"""Shipped checkpoints are checked against the committed SHA-256 manifest when loaded by name."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest

import probseg
from probseg import registry

REPO = Path(__file__).resolve().parents[1]


def _flip_bytes(path: Path, offset: int, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped checkpoints folder (with its manifest) that the registry reads instead."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(registry.CHECKPOINT_DIR, folder)
    monkeypatch.setattr(registry, "CHECKPOINT_DIR", folder)
    return folder


def test_committed_manifest_matches_every_shipped_file():
    """A retrain that does not run registry.write_manifest() fails here, not silently at a user's."""
    recorded = json.loads((registry.CHECKPOINT_DIR / registry.MANIFEST).read_text())
    shipped = sorted(p.name for p in registry.CHECKPOINT_DIR.glob("*.pt"))
    assert sorted(recorded) == shipped
    assert {registry.REGISTRY[n] for n in registry.available()} == set(shipped)
    for name in shipped:
        digest = hashlib.sha256((registry.CHECKPOINT_DIR / name).read_bytes()).hexdigest()
        assert recorded[name] == digest, f"{name} differs from {registry.MANIFEST}; run registry.write_manifest()"


def test_manifest_is_installed_as_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["probseg"]
    assert any(fnmatch.fnmatch(f"checkpoints/{registry.MANIFEST}", p) for p in patterns)


def test_changed_shipped_file_is_refused_by_name_and_the_others_still_load(shipped_copy):
    target = shipped_copy / registry.REGISTRY["disks-paper"]
    _flip_bytes(target, target.stat().st_size // 2)  # inside the weights: torch alone would load it
    with pytest.raises(ValueError, match="^checkpoint: .*'disks-paper'.*corrupt or was changed") as info:
        probseg.load("disks-paper")
    assert "git checkout" in str(info.value) and "reinstall" in str(info.value)
    assert probseg.load("disks").name == "disks"
    assert probseg.load("disks-complete").name == "disks-complete"
    # The same file by path is a user's own checkpoint: it is not checked against the manifest.
    assert probseg.load(target).name == str(target)


def test_shipped_file_missing_from_the_manifest_is_refused(shipped_copy):
    manifest = shipped_copy / registry.MANIFEST
    recorded = json.loads(manifest.read_text())
    del recorded[registry.REGISTRY["disks-paper"]]
    manifest.write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="^checkpoint: 'disks-paper'.*no SHA-256.*write_manifest"):
        probseg.load("disks-paper")


def test_write_manifest_records_a_deliberate_retrain(shipped_copy):
    # "Retrain" disks-paper: another valid checkpoint under its name.
    shutil.copyfile(shipped_copy / "disks-complete.pt", shipped_copy / "disks-paper.pt")
    with pytest.raises(ValueError, match="^checkpoint: .*corrupt or was changed"):
        probseg.load("disks-paper")
    assert registry.write_manifest() == shipped_copy / registry.MANIFEST
    assert probseg.load("disks-paper").config.name == probseg.load("disks-complete").config.name


def test_shipped_file_is_hashed_once_per_process(shipped_copy, monkeypatch):
    calls: list[Path] = []
    real = registry.file_sha256
    monkeypatch.setattr(registry, "file_sha256", lambda path: calls.append(path) or real(path))
    probseg.load("disks-paper")
    probseg.load("disks-paper")
    assert calls == [shipped_copy / "disks-paper.pt"]
