"""Shipped checkpoints by name (``name -> file``), in the manner of Segment Anything's model registry.

Each shipped file lives in ``probseg/checkpoints/`` beside a JSON record of the command that trained
it; ``CHECKPOINTS.md`` there lists them. ``SHA256SUMS.json`` there records each shipped file's
SHA-256, and loading by name refuses a file that does not match (a damaged download, an overwritten
file). After a deliberate retrain into ``probseg/checkpoints/``, record the new files with
:func:`write_manifest` (``python -c "import probseg.registry as r; r.write_manifest()"``) and commit
the manifest with them. A checkpoint loaded by path is the user's own and is not checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .predictor import ProbSeg

__all__ = ["CHECKPOINT_DIR", "MANIFEST", "REGISTRY", "available", "file_sha256", "resolve", "load", "write_manifest"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = "SHA256SUMS.json"  # in CHECKPOINT_DIR: {file name: SHA-256 hex digest}

# Files already found to match the manifest: (path, size, mtime_ns, expected digest). A shipped file is
# hashed once per process; one rewritten since (new size or time) is hashed again.
_VERIFIED: set[tuple[str, int, int, str]] = set()

REGISTRY: dict[str, str] = {
    "disks": "disks.pt",
    "disks-paper": "disks-paper.pt",
    "disks-complete": "disks-complete.pt",
    "disks-unet-complete": "disks-unet-complete.pt",
    # The multi-hypothesis families of issue 13 on disks (configurations heads, heads-complete, ssn,
    # ssn-complete), trained in the interaction loop with the cVAE's budget.
    "disks-heads": "disks-heads.pt",
    "disks-heads-complete": "disks-heads-complete.pt",
    "disks-ssn": "disks-ssn.pt",
    "disks-ssn-complete": "disks-ssn-complete.pt",
    # Real 2D medical images (configurations medical, medical-complete, medical-unet-complete),
    # trained on the MedScribble tasks ACDC, BTCV, HipXRay and STARE; listed by available() once
    # their files are installed.
    "medical": "medical.pt",
    "medical-complete": "medical-complete.pt",
    "medical-unet-complete": "medical-unet-complete.pt",
}


def available() -> list[str]:
    """Names whose checkpoint file is installed."""
    return [n for n, f in REGISTRY.items() if (CHECKPOINT_DIR / f).is_file()]


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file behind a registry name or a path; ``ValueError`` naming ``checkpoint`` otherwise."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"checkpoint: expected a name or a path, got {type(name_or_path).__name__}")
    key = str(name_or_path)
    if key in REGISTRY:
        path = CHECKPOINT_DIR / REGISTRY[key]
        if not path.is_file():
            raise ValueError(f"checkpoint: {key!r} is registered but its file {path} is not installed")
        return path
    path = Path(key)
    if path.suffix == ".pt" or os.sep in key or path.exists():
        if not path.is_file():
            raise ValueError(f"checkpoint: no such file: {path}")
        return path
    raise ValueError(f"checkpoint: unknown name {key!r}; known names: {', '.join(REGISTRY)} (or a path to a .pt file)")


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256 hex digest, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_digests(folder: Path) -> dict[str, str]:
    """The manifest in ``folder``: ``{file name: digest}``; ``ValueError`` naming ``checkpoint`` if unreadable."""
    path = folder / MANIFEST
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint: cannot read the manifest of the shipped checkpoints {path} ({exc}); "
                         "reinstall probseg or restore it with git checkout") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"checkpoint: {path} is not a manifest (expected {{file name: SHA-256}})")
    return recorded


def _verify_shipped(name: str, path: Path) -> None:
    """Refuse a shipped checkpoint whose bytes differ from the SHA-256 the manifest records for it."""
    expected = _recorded_digests(path.parent).get(path.name)
    if expected is None:
        raise ValueError(f"checkpoint: {name!r} ({path}) has no SHA-256 in {path.parent / MANIFEST}; after a "
                         "deliberate retrain record it with probseg.registry.write_manifest()")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _VERIFIED:
        return
    if file_sha256(path) != expected:
        raise ValueError(
            f"checkpoint: the shipped file of {name!r} ({path}) is corrupt or was changed (its SHA-256 differs "
            f"from {MANIFEST}); restore it by reinstalling probseg or with git checkout -- {path}. If you "
            "retrained it on purpose, record it with probseg.registry.write_manifest()"
        )
    _VERIFIED.add(key)


def write_manifest(folder: str | os.PathLike | None = None) -> Path:
    """Record the SHA-256 of every installed registered checkpoint in ``folder/SHA256SUMS.json``.

    Run it after a deliberate retrain into ``probseg/checkpoints/`` and commit the manifest with the
    new files; ``tests/test_registry.py`` fails while the two disagree.

    Args:
        folder: the checkpoints folder (default :data:`CHECKPOINT_DIR`).
    Returns:
        The manifest's path.
    """
    folder = Path(folder) if folder is not None else CHECKPOINT_DIR
    digests = {f: file_sha256(folder / f) for f in sorted(set(REGISTRY.values())) if (folder / f).is_file()}
    text = json.dumps(digests, indent=2) + "\n"
    return atomic_write(folder / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def load(name_or_path: str | os.PathLike = "disks") -> ProbSeg:
    """Load a shipped checkpoint by name (checked against ``SHA256SUMS.json``), or any probseg checkpoint by path.

    Raises:
        ValueError: naming ``checkpoint`` for an unknown name, a missing or unreadable file, a file that
            is not a probseg checkpoint, or a shipped file whose bytes differ from the manifest.

    >>> import probseg
    >>> model = probseg.load("disks")
    >>> masks, segs = model.propose(image, mask, seg, k=8, seed=0)  # doctest: +SKIP
    """
    path = resolve(name_or_path)
    if str(name_or_path) in REGISTRY:
        _verify_shipped(str(name_or_path), path)
    net, meta = load_checkpoint(path)
    return ProbSeg(net, meta, name=str(name_or_path))
