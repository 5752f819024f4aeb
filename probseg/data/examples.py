"""One real 2D example (image, target, human scribbles), as every real-data loader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Example", "read_npy", "scribble_pair", "SCRIBBLE_THRESHOLD"]

# Scribble and MedScribble label files are anti-aliased 8-bit renderings stored as floats (k / 255):
# a pixel belongs to a stroke where the brush covered more than half of it.
SCRIBBLE_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class Example:
    """A 2D image with its target and the scribbles human annotators drew on it.

    Attributes:
        task: the collection the example belongs to (e.g. ``ACDC``); used to filter and to group results.
        example_id: a stable identifier, unique within what one loader call returns for one target
            (e.g. ``ACDC/Challenge2017/patient004_axis2_maxslice`` or ``ct01:axis2:slice41``).
        image: float32 (H, W), values in [0, 1].
        target: bool (H, W), not empty.
        scribbles: one ``(pos, neg)`` pair per annotator, bool (H, W) each, disjoint; empty when the
            source has none.
        annotators: the annotators' names, parallel to ``scribbles`` (default ``"0"``, ``"1"``, ...).
        target_name: what the target is within the image (e.g. ``label-71+72``); ``target`` when the
            source has one target per image.
    """

    task: str
    example_id: str
    image: np.ndarray
    target: np.ndarray
    scribbles: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    annotators: list[str] = field(default_factory=list)
    target_name: str = "target"

    def __post_init__(self) -> None:
        # Loaders build these; a broken one would corrupt every session silently, so check here.
        image, target = self.image, self.target
        if image.ndim != 2 or image.dtype != np.float32:
            raise ValueError(f"image: expected float32 (H, W) for {self.example_id}, got {image.dtype} {image.shape}")
        if target.dtype != bool or target.shape != image.shape:
            raise ValueError(f"target: expected bool {image.shape} for {self.example_id}, got {target.dtype} {target.shape}")
        for pos, neg in self.scribbles:
            if pos.dtype != bool or neg.dtype != bool or pos.shape != image.shape or neg.shape != image.shape:
                raise ValueError(f"scribbles: expected bool {image.shape} pairs for {self.example_id}")
        if not self.annotators:
            object.__setattr__(self, "annotators", [str(i) for i in range(len(self.scribbles))])
        if len(self.annotators) != len(self.scribbles):
            raise ValueError(f"annotators: {len(self.annotators)} names for {len(self.scribbles)} scribble sets")

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.image.shape  # type: ignore[return-value]


def scribble_pair(array: np.ndarray, source: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative scribbles from a float (2, H, W) array (channel 0 positive, 1 negative).

    Args:
        array: float (2, H, W), stroke coverage in [0, 1] (0/1 or anti-aliased).
        source: the file it came from, named in errors.
        shape: the image's (H, W).
    Returns:
        ``(pos, neg)``, bool (H, W) each, disjoint.
    Raises:
        ValueError: naming ``source`` for a wrong shape or a set with no pixel drawn.
    """
    array = np.asarray(array)
    numeric = array.dtype == bool or np.issubdtype(array.dtype, np.number)
    if array.shape != (2, *shape) or not numeric:
        raise ValueError(f"{source}: expected scribbles of shape (2, {shape[0]}, {shape[1]}), got {array.dtype} {array.shape}")
    a = array.astype(np.float32)
    # Anti-aliased strokes of both labels can overlap by a few pixels; a pixel has one label, so
    # it goes to the stroke that covers it more (an exact tie is left undecided).
    pos = (a[0] > SCRIBBLE_THRESHOLD) & (a[0] > a[1])
    neg = (a[1] > SCRIBBLE_THRESHOLD) & (a[1] > a[0])
    if not (pos | neg).any():
        raise ValueError(f"{source}: no scribble pixel drawn")
    return pos, neg


def read_npy(path: Path) -> np.ndarray:
    """The numeric array in the ``.npy`` file ``path``.

    Raises:
        ValueError: naming the file when it is missing, unreadable, not a numeric array or holds
            non-finite values.
    """
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        # allow_pickle=False: a data folder must never be able to run code.
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable .npy file ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if not isinstance(array, np.ndarray) or not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{path}: expected a numeric array")
    if np.issubdtype(array.dtype, np.complexfloating) or not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: expected finite real values")
    return array
