"""Checkpoints: weights plus everything needed to rebuild and judge the model.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):
``state_dict``, ``config`` (:class:`~probseg.model.ModelConfig` as a dict), ``data_spec`` (what it was
trained on), ``train`` (training settings and the command), ``metrics`` (what it reached),
``probseg_version`` and ``format_version``.
"""

from __future__ import annotations

import os
import pickle
import warnings
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


def _read_payload(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, every failure a ``ValueError`` saying what the file is not.

    PyTorch's own messages are never quoted: for a file its safe loader refuses they advise
    ``weights_only=False``, which would let the file run code, and for a file that is no archive at
    all its unpickler fails with unrelated errors (``IndexError: pop from empty list``).
    """
    try:
        empty = path.stat().st_size == 0
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise ValueError(f"checkpoint: cannot read {path}: {exc.strerror or exc}") from None
    if empty:
        raise ValueError(f"checkpoint: {path} is empty, not a probseg checkpoint")
    # torch.save has written zip archives since PyTorch 1.6 and save_checkpoint never wrote anything
    # else; refusing other files here keeps text, random bytes and truncated files from the unpickler.
    if not is_zip:
        raise ValueError(f"checkpoint: {path} is not a probseg checkpoint (not a PyTorch zip archive)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                f"checkpoint: {path} is not a probseg checkpoint: its data is damaged or holds objects other than "
                "tensors and plain data, which probseg does not load"
            ) from None
        except OSError as exc:
            raise ValueError(f"checkpoint: cannot read {path}: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - a damaged archive fails anywhere in torch's reader, with any type
            raise ValueError(
                f"checkpoint: {path} is not a probseg checkpoint: a damaged or foreign zip archive "
                f"({type(exc).__name__} while reading it)"
            ) from None
    # Warnings about a file that failed to load are noise beside the error; a loaded file's are kept.
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return payload


def load_checkpoint(path: str | os.PathLike) -> tuple[PartialSegNet, dict[str, Any]]:
    """Rebuild the network from a checkpoint file (read with ``torch.load(..., weights_only=True)``).

    Returns:
        ``(net, meta)``: the network in eval mode and the checkpoint dict without ``state_dict``.
    Raises:
        ValueError: naming ``checkpoint`` when the file is missing, unreadable, or not a probseg
            checkpoint (empty, not a PyTorch zip archive, damaged, or lacking the probseg keys).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: no such file: {path}")
    payload = _read_payload(path)
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint: {path} is not a probseg checkpoint: it holds a {type(payload).__name__}, not a dict")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"checkpoint: {path} is not a probseg checkpoint: it lacks {', '.join(missing)} (missing keys)")
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
