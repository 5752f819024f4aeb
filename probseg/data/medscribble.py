"""MedScribble: real 2D biomedical images with an expert segmentation and three human scribble sets.

Layout (the ``MedScribble/`` folder of the ScribblePrompt repository)::

    PATH/<dataset>/<subset>/<example>/img.npy        float32 (256, 256), in [0, 1]
                                     /seg.npy        float32 (256, 256), ground truth (0/1, resized)
                                     /scribble_0.npy float32 (2, 256, 256): channel 0 positive, 1 negative
                                     /scribble_1.npy ...

The task of an example is its ``<dataset>`` folder (``ACDC``, ``BTCV``, ...). The collection resized
the segmentations and rendered the scribbles with anti-aliasing, so both are thresholded at 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .examples import Example, read_npy, scribble_pair

__all__ = ["DEFAULT_MEDSCRIBBLE", "DEFAULT_TRAIN_TASKS", "load_medscribble", "medscribble_tasks"]

# The default split: train on these four MedScribble tasks; the other four are never seen.
DEFAULT_TRAIN_TASKS: tuple[str, ...] = ("ACDC", "BTCV", "HipXRay", "STARE")
# Relative to the working directory: the project's layout keeps the data beside the repository.
DEFAULT_MEDSCRIBBLE = "../shared/medscribble"

_SCRIBBLE = re.compile(r"scribble_(\d+)\.npy")


def _subdirs(path: Path) -> list[Path]:
    # Hidden folders (.git, .ipynb_checkpoints) are never data.
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_root(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: MedScribble folder not found")
    return root


def medscribble_tasks(path: str | Path) -> list[str]:
    """The task folders (first level) under the MedScribble folder ``path``, sorted."""
    return [d.name for d in _subdirs(_check_root(path))]


def _load_example(task: str, folder: Path, example_id: str) -> Example:
    image = read_npy(folder / "img.npy")
    if image.ndim != 2:
        raise ValueError(f"{folder / 'img.npy'}: expected a 2-D image (H, W), got shape {image.shape}")
    seg = read_npy(folder / "seg.npy")
    if seg.shape != image.shape:
        raise ValueError(f"{folder / 'seg.npy'}: shape {seg.shape} differs from img.npy's {image.shape}")
    target = seg > 0.5
    if not target.any():
        raise ValueError(f"{folder / 'seg.npy'}: empty target")
    files = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _SCRIBBLE.fullmatch(p.name)) and p.is_file()
    )
    scribbles = [scribble_pair(read_npy(p), str(p), image.shape) for _, p in files]
    return Example(
        task=task,
        example_id=example_id,
        # The collection already scaled each image to [0, 1]; re-stretching would change the inputs
        # published results were measured on, so only clip.
        image=np.clip(image.astype(np.float32), 0.0, 1.0),
        target=target,
        scribbles=scribbles,
        annotators=[str(n) for n, _ in files],
    )


def load_medscribble(path: str | Path, tasks: Iterable[str] | None = None) -> list[Example]:
    """Every example under the MedScribble folder ``path``, sorted by ``example_id``.

    Args:
        path: the collection's root (holding ``ACDC/``, ``BTCV/``, ...).
        tasks: keep only these first-level folders (case-sensitive); None keeps all.
    Returns:
        Examples with ``example_id`` ``<dataset>/<subset>/<example>``, ``image`` float32 (H, W) in
        [0, 1], ``target`` bool (H, W) (``seg > 0.5``) and one ``(pos, neg)`` bool pair per
        ``scribble_<n>.npy`` (annotator ``<n>``), in file-number order.
    Raises:
        ValueError: naming the file at fault (missing, unreadable, wrong shape, empty target), or
            ``tasks`` with an unknown task, listing the available ones.
    """
    root = _check_root(path)
    available = medscribble_tasks(root)
    if tasks is None:
        chosen = available
    else:
        chosen = sorted(set(tasks))
        unknown = [t for t in chosen if t not in available]
        if unknown or not chosen:
            raise ValueError(
                f"tasks: unknown task {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"available in {root}: {', '.join(available)}"
            )
    examples = []
    for task in chosen:
        for subset in _subdirs(root / task):
            for folder in _subdirs(subset):
                examples.append(_load_example(task, folder, f"{task}/{subset.name}/{folder.name}"))
    if not examples:
        raise ValueError(f"{root}: no examples (expected <dataset>/<subset>/<example>/img.npy)")
    return sorted(examples, key=lambda e: e.example_id)
