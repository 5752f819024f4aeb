"""Atomic writes: all or nothing, and shared file permissions."""

from __future__ import annotations

import stat

import pytest

from probseg.atomic import atomic_write


def test_writes_the_file_readable_by_all(tmp_path):
    path = atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp: str) -> None:
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
