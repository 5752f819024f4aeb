"""2D examples cut from 3D NIfTI volumes, listed in a CSV manifest.

The manifest's header is exactly ``image,label,label_values,axis,slices``; each row names:

* ``image``, ``label``: NIfTI files (``.nii`` / ``.nii.gz``) of the same shape, relative paths being
  relative to the manifest's folder;
* ``label_values``: the label values whose union is the target, ``71`` or ``71;72``;
* ``axis``: the array axis slices are taken along, 0, 1 or 2 (array order: volumes are not
  reoriented);
* ``slices``: ``largest`` (the slice with the most target voxels), ``all:N`` (every slice with at
  least N target voxels, counted before resampling) or explicit indices ``40;41;52``.

Each slice is first resampled to square pixels at the finer of its two in-plane voxel spacings
(image: linear, label: nearest), then the image is mapped to [0, 1] by the 0.5 and 99.5 percentiles of
its whole volume, so every slice of a volume shares one intensity window. The examples carry no
scribbles.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .examples import Example
from ..lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = ["load_nifti_manifest", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ("image", "label", "label_values", "axis", "slices")
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class _Row:
    line: int
    image: Path
    label: Path
    image_cell: str
    values: tuple[int, ...]
    axis: int
    slices: str


@dataclass
class _Volume:
    data: np.ndarray
    spacing: tuple[float, float, float]
    window: tuple[float, float]


def _stem(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _int(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{where}: expected an integer, got {text.strip()!r}") from None


def _parse_row(manifest: Path, line: int, cells: list[str]) -> _Row:
    where = f"{manifest}: row {line}"
    if len(cells) != len(MANIFEST_COLUMNS):
        raise ValueError(f"{where}: expected {len(MANIFEST_COLUMNS)} cells ({','.join(MANIFEST_COLUMNS)}), got {len(cells)}")
    cell = dict(zip(MANIFEST_COLUMNS, (c.strip() for c in cells)))
    paths = {}
    for col in ("image", "label"):
        if not cell[col]:
            raise ValueError(f"{where}, column {col}: empty path")
        p = Path(cell[col]).expanduser()
        paths[col] = p if p.is_absolute() else manifest.parent / p
        if not paths[col].is_file():
            raise ValueError(f"{where}, column {col}: {paths[col]}: file not found")
    if not cell["label_values"]:
        raise ValueError(f"{where}, column label_values: empty; expected e.g. 71 or 71;72")
    values = tuple(sorted({_int(v, f"{where}, column label_values") for v in cell["label_values"].split(";")}))
    axis = _int(cell["axis"], f"{where}, column axis")
    if axis not in (0, 1, 2):
        raise ValueError(f"{where}, column axis: expected 0, 1 or 2, got {axis}")
    slices = cell["slices"]
    if slices.startswith("all:"):
        n = _int(slices[4:], f"{where}, column slices (all:N)")
        if n < 1:
            raise ValueError(f"{where}, column slices: all:N needs N >= 1, got {n}")
    elif slices != "largest":
        if not slices:
            raise ValueError(f"{where}, column slices: empty; expected largest, all:N or indices like 40;41")
        for s in slices.split(";"):
            if _int(s, f"{where}, column slices (expected largest, all:N or indices)") < 0:
                raise ValueError(f"{where}, column slices: negative index {s.strip()}")
    return _Row(line, paths["image"], paths["label"], cell["image"], values, axis, slices)


def _read_manifest(manifest: Path) -> list[_Row]:
    if not manifest.is_file():
        raise ValueError(f"{manifest}: manifest not found")
    try:
        # utf-8-sig: spreadsheet programs often write a byte-order mark before the header.
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != MANIFEST_COLUMNS:
                got = ",".join(header) if header else "(empty file)"
                raise ValueError(f"{manifest}: header must be exactly {','.join(MANIFEST_COLUMNS)}, got {got}")
            rows = []
            for cells in reader:
                if any(c.strip() for c in cells):  # blank lines are layout, not rows
                    rows.append(_parse_row(manifest, reader.line_num, cells))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{manifest}: unreadable CSV ({exc})") from None
    if not rows:
        raise ValueError(f"{manifest}: no rows after the header")
    return rows


def _load_volume(path: Path, dtype: type | None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The volume in ``path`` (X, Y, Z), as ``dtype`` (None: as stored), and its voxel spacing."""
    import nibabel as nib  # imported here: only NIfTI users pay its import time

    try:
        img = nib.load(str(path))
        # A label map keeps its stored integer type: float64 would cost 8 bytes a voxel for nothing.
        data = np.asarray(img.dataobj) if dtype is None else np.asarray(img.dataobj, dtype=dtype)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise ValueError(f"{path}: unreadable NIfTI file ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    while data.ndim > 3 and data.shape[-1] == 1:  # a 4-D file with one frame is a volume
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    spacing = zooms[:3]
    if len(spacing) < 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{path}: voxel spacing must be positive, got {zooms}")
    return data, (spacing[0], spacing[1], spacing[2])


def _window(data: np.ndarray, path: Path) -> tuple[float, float]:
    """The intensity window (low, high) of a volume; high > low unless the volume is constant."""
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: image holds non-finite values")
    lo, hi = (float(v) for v in np.percentile(data, PERCENTILES))
    if not hi > lo:  # mostly constant (e.g. a padded CT): fall back to the full range
        lo, hi = float(data.min()), float(data.max())
    return lo, hi


def _square_pixels(plane: np.ndarray, spacing: tuple[float, float], order: int) -> np.ndarray:
    """``plane`` resampled to square pixels at the finer spacing (the coarser axis is upsampled)."""
    finest = min(spacing)
    factors = (spacing[0] / finest, spacing[1] / finest)
    if factors == (1.0, 1.0):
        return plane
    return ndimage.zoom(plane, factors, order=order, mode="nearest", grid_mode=True)


def _slice_indices(row: _Row, manifest: Path, counts: np.ndarray) -> list[int]:
    where = f"{row.label} (manifest {manifest} row {row.line})"
    if row.slices == "largest":
        return [int(np.argmax(counts))]
    if row.slices.startswith("all:"):
        n = int(row.slices[4:])
        chosen = [int(i) for i in np.flatnonzero(counts >= n)]
        if not chosen:
            raise ValueError(f"{where}: no slice on axis {row.axis} has >= {n} target voxels (most: {int(counts.max())})")
        return chosen
    chosen = sorted({int(s) for s in row.slices.split(";")})
    for i in chosen:
        if i >= len(counts):
            raise ValueError(
                f"{manifest}: row {row.line}, column slices: slice {i} out of range for {row.image} "
                f"(axis {row.axis} has {len(counts)} slices)"
            )
        if counts[i] == 0:
            raise ValueError(f"{where}: slice {i} on axis {row.axis} holds no voxel of label {_values_text(row.values)}")
    return chosen


def _values_text(values: tuple[int, ...]) -> str:
    return "+".join(str(v) for v in values)


def load_nifti_manifest(manifest_csv: str | Path) -> list[Example]:
    """The 2D examples the manifest ``manifest_csv`` lists, in manifest row order, then slice order.

    Returns:
        Examples with ``task`` the image file's stem, ``example_id``
        ``<image path as written, without .nii(.gz)>:axis<a>:slice<i>``, ``target_name``
        ``label-<v1>+<v2>``, ``image`` float32 (H', W') in [0, 1] and ``target`` bool (H', W'), where
        (H', W') is the slice's in-plane shape resampled to square pixels; no scribbles.
    Raises:
        ValueError: naming the manifest (with row and column) or the volume at fault: a missing or
            unreadable file, a bad header or cell, image and label shapes that differ, a label value
            absent from the volume, a slice index out of range or a slice without target, a
            duplicated row.
    """
    manifest = Path(manifest_csv).expanduser()
    rows = _read_manifest(manifest)
    images: dict[Path, _Volume] = {}
    labels: dict[Path, np.ndarray] = {}
    seen: dict[tuple[str, str], int] = {}
    out: list[Example] = []
    for row in rows:
        if row.image not in images:
            data, spacing = _load_volume(row.image, np.float32)
            images[row.image] = _Volume(data, spacing, _window(data, row.image))
        vol = images[row.image]
        if row.label not in labels:
            labels[row.label] = _load_volume(row.label, None)[0]
        label = labels[row.label]
        if label.shape != vol.data.shape:
            raise ValueError(f"{row.label}: shape {label.shape} differs from the image {row.image}'s {vol.data.shape}")
        target3d = np.zeros(label.shape, dtype=bool)
        missing = []
        for v in row.values:
            voxels = label == v
            if not voxels.any():
                missing.append(str(v))
            target3d |= voxels
        if missing:
            raise ValueError(f"{row.label}: label value {', '.join(missing)} not present (manifest row {row.line})")
        others = tuple(a for a in range(3) if a != row.axis)
        indices = _slice_indices(row, manifest, target3d.sum(axis=others))
        spacing = (vol.spacing[others[0]], vol.spacing[others[1]])
        lo, hi = vol.window
        for i in indices:
            plane = _square_pixels(np.take(vol.data, i, axis=row.axis), spacing, order=1)
            target = _square_pixels(np.take(target3d, i, axis=row.axis).astype(np.uint8), spacing, order=0) > 0
            if hi > lo:
                image = np.clip((plane.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
            else:
                image = np.zeros(plane.shape, dtype=np.float32)
            example_id = f"{_stem(row.image_cell)}:axis{row.axis}:slice{i}"
            target_name = f"label-{_values_text(row.values)}"
            if (example_id, target_name) in seen:
                raise ValueError(
                    f"{manifest}: row {row.line} repeats {example_id} {target_name} of row {seen[example_id, target_name]}"
                )
            seen[example_id, target_name] = row.line
            out.append(Example(
                task=_stem(row.image.name), example_id=example_id, image=image, target=target,
                target_name=target_name,
            ))
    return out
