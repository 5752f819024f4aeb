"""A user's own folder of 2D images and masks (PNG or NPY), with optional human scribbles.

Layout::

    PATH/images/<name>.png | <name>.npy            the image: grey or RGB(A) (converted to grey)
    PATH/masks/<name>.png | <name>.npy             its target: pixels > 0 (same H, W as the image)
    PATH/scribbles/<name>_<annotator>.npy          optional: float (2, H, W), channel 0 positive,
                                                   channel 1 negative, as in MedScribble

Every image needs a mask and every mask an image. An NPY image is (H, W), (H, W, 3) or (H, W, 4); a
palette PNG mask counts its palette indices (index 0 is background). Images are mapped to [0, 1] by
their own 0.5 and 99.5 percentiles. Files whose names start with ``.`` are ignored; any other file of
another type is refused, so a mistyped name is never skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .examples import Example, read_npy, scribble_pair
from .intensity import normalize_image

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".npy")
# ITU-R 601-2 luma, the weights PIL's own RGB -> L conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114])


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """``{stem: path}`` of the data files in ``folder``; two files of one stem are refused."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if not p.is_file() or p.suffix.lower() not in suffixes:
            raise ValueError(f"{p}: not a {' or '.join(suffixes)} file")
        if p.stem in out:
            raise ValueError(f"{p}: {out[p.stem].name} has the same name; keep one")
        out[p.stem] = p
    return out


def _read_png(path: Path, keep_palette: bool) -> np.ndarray:
    """A PNG's pixels: (H, W) or (H, W, C); palette images as indices when ``keep_palette``."""
    from PIL import Image, UnidentifiedImageError  # imported here: only folder users pay its import time

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P" and not keep_palette:
                img = img.convert("RGBA")
            elif img.mode not in ("1", "L", "LA", "P", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"):
                img = img.convert("RGB")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: unreadable image ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def _read(path: Path, keep_palette: bool) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return read_npy(path)
    return _read_png(path, keep_palette)


def _grey(pixels: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) float64 from (H, W) or (H, W, 1 | 2 | 3 | 4) pixels; alpha is dropped."""
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] in (1, 2):  # grey, or grey + alpha
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3] @ _LUMA
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"{path}: expected a 2-D image (H, W) or (H, W, 3|4), got shape {pixels.shape}")
    return a


def _annotator_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_image_folder(path: str | Path) -> list[Example]:
    """The examples in the folder ``path`` (layout in the module docstring), sorted by name.

    Returns:
        Examples with ``task`` the folder's name, ``example_id`` ``<folder name>/<name>``, ``image``
        float32 (H, W) in [0, 1], ``target`` bool (H, W) (mask > 0) and one ``(pos, neg)`` bool
        pair per scribble file of the image (annotators in name order; an empty list without).
    Raises:
        ValueError: naming the file at fault: a missing, unreadable or unsupported file, a mask
            whose shape differs from its image's, an empty target, a scribble file that names no
            image or has no pixel drawn.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: image folder not found")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise ValueError(f"{root / sub}: folder not found (expected images/ and masks/ under {root})")
    images = _files(root / "images", IMAGE_SUFFIXES)
    masks = _files(root / "masks", IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{root / 'images'}: no image")
    for name in sorted(set(masks) - set(images)):
        raise ValueError(f"{masks[name]}: no image of that name in {root / 'images'}")
    for name in sorted(set(images) - set(masks)):
        raise ValueError(f"{root / 'masks' / name}.png (or .npy): file not found, needed for {images[name]}")
    scribble_files: dict[str, list[tuple[str, Path]]] = {name: [] for name in images}
    if (root / "scribbles").is_dir():
        for stem, p in _files(root / "scribbles", (".npy",)).items():
            name, sep, annotator = stem.rpartition("_")
            if not sep or not annotator or name not in images:
                raise ValueError(f"{p}: expected scribbles/<image name>_<annotator>.npy naming an image in {root / 'images'}")
            scribble_files[name].append((annotator, p))

    task = root.resolve().name
    out = []
    for name in sorted(images):
        image = _grey(_read(images[name], keep_palette=False), images[name])
        mask = _grey(_read(masks[name], keep_palette=True), masks[name])
        if mask.shape != image.shape:
            raise ValueError(f"{masks[name]}: shape {mask.shape} differs from the image {images[name].name}'s {image.shape}")
        target = mask > 0
        if not target.any():
            raise ValueError(f"{masks[name]}: empty target (no pixel > 0)")
        files = sorted(scribble_files[name], key=lambda item: _annotator_key(item[0]))
        out.append(Example(
            task=task,
            example_id=f"{task}/{name}",
            image=normalize_image(image),
            target=target,
            scribbles=[scribble_pair(read_npy(p), str(p), image.shape) for _, p in files],
            annotators=[a for a, _ in files],
        ))
    return out
