"""Shipped checkpoints by name (``name -> file``), in the manner of Segment Anything's model registry.

Each shipped file lives in ``probseg/checkpoints/`` beside a JSON record of the command that trained
it; ``CHECKPOINTS.md`` there lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import load_checkpoint
from .predictor import ProbSeg

__all__ = ["CHECKPOINT_DIR", "REGISTRY", "available", "resolve", "load"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

REGISTRY: dict[str, str] = {
    "disks": "disks.pt",
    "disks-paper": "disks-paper.pt",
    "disks-complete": "disks-complete.pt",
    "disks-unet-complete": "disks-unet-complete.pt",
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


def load(name_or_path: str | os.PathLike = "disks") -> ProbSeg:
    """Load a shipped checkpoint by name, or any probseg checkpoint by path.

    >>> import probseg
    >>> model = probseg.load("disks")
    >>> masks, segs = model.propose(image, mask, seg, k=8, seed=0)  # doctest: +SKIP
    """
    path = resolve(name_or_path)
    net, meta = load_checkpoint(path)
    return ProbSeg(net, meta, name=str(name_or_path))
