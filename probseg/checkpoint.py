"""Checkpoints: weights plus everything needed to rebuild and judge the model.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):
``state_dict``, ``config`` (:class:`~probseg.model.ModelConfig` as a dict), ``data_spec`` (what it was
trained on), ``train`` (training settings and the command), ``metrics`` (what it reached),
``probseg_version`` and ``format_version``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import atomic_write
from .model import ModelConfig, PartialSegNet

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_REQUIRED = ("state_dict", "config", "data_spec", "probseg_version", "metrics")


def save_checkpoint(
    path: str | os.PathLike,
    net: PartialSegNet,
    data_spec: dict[str, Any],
    train: dict[str, Any],
    metrics: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "probseg_version": __version__,
        "config": net.config.to_dict(),
        "data_spec": data_spec,
        "train": train,
        "metrics": metrics,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> tuple[PartialSegNet, dict[str, Any]]:
    """Rebuild the network from a checkpoint file.

    Returns:
        ``(net, meta)``: the network in eval mode and the checkpoint dict without ``state_dict``.
    Raises:
        ValueError: naming ``checkpoint`` when the file is missing, unreadable, or not a probseg
            checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: no such file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"checkpoint: cannot read {path} ({type(exc).__name__}: {first[:200]})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise ValueError(f"checkpoint: {path} is not a probseg checkpoint (missing keys)")
    try:
        # Fields added to ModelConfig later (work_size) take their defaults, which keep the older
        # checkpoints' behaviour.
        config = ModelConfig(**payload["config"])
        net = PartialSegNet(config)
        net.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"checkpoint: {path} does not match its configuration: {exc}") from None
    net.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["path"] = str(path)
    return net, meta
