"""Partial-segmentation training pairs (Section 3 of the paper, extended with annotator-like inputs).

A pair is an input partial segmentation ``{x_m, x_s}`` and a larger target ``{y_m, y_s}`` of the same
image: ``x_m`` is the decided region, ``x_s = gt & x_m``; ``y_m = x_m | region`` for a second region and
``y_s = gt & y_m``. So ``y_m`` contains ``x_m`` and ``y_s`` agrees with ``x_s`` on ``x_m``.

The paper cuts both regions out of random shapes. A model evaluated from clicks but trained only on
shape partials would be judged on inputs it never saw, so inputs also come as an annotator makes them:
a few click disks, short strokes, and states reached by accepting earlier proposals. The added region
is a random shape or a whole object (a disk, a connected component) grown by a small margin, the step
an annotator would accept. In ``complete`` mode the target decides every pixel (``y_m`` all true):
the same data trains a single-step completion model.

The random click and stroke inputs here are training-data sampling (random positions, a random walk);
the brush they paint with, and the simulator's own deterministic starts and correction clicks, are in
:mod:`probseg.interaction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The brush and its default radius are the simulator's too; they live with the other interaction
# primitives and are re-exported here, where training code has always imported them from.
from ..interaction import brush_disk, default_brush_radius
from ..lazy import lazy_import
from .shapes import crop_near_seed, random_shape_with_area
from .spec_record import SpecRecord

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = [
    "PairSpec",
    "PartialPair",
    "brush_disk",
    "click_input",
    "stroke_input",
    "make_partial_pair",
    "object_masks",
    "pick_kind",
    "random_input",
    "larger_target",
]

INPUT_KINDS = ("shape", "clicks", "strokes", "accepted", "empty")
REGION_KINDS = ("shape", "object", "grow")


@dataclass(frozen=True)
class PairSpec(SpecRecord):
    """How pairs are drawn.

    Attributes:
        input_weights: probabilities of the input kinds ``shape`` (paper), ``clicks``, ``strokes``,
            ``accepted`` (clicks plus earlier accepted expansions) and ``empty``.
        region_weights: probabilities of the added-region kinds ``shape`` (paper: a random shape),
            ``object`` (one undecided object) and ``grow`` (every object the input has started on,
            finished, plus one more object half the time).
        input_area: (min, max) fraction of the image a ``shape`` input covers.
        region_area: (min, max) fraction of the image an added ``shape`` region covers.
        object_margin: (min, max) pixels an added object is grown by, so it brings its border's
            background along; an object larger than ``region_area[1]`` is cropped around a random
            pixel of it.
        target_object_bias: probability that an added object is one of the target's (when the
            target has an undecided one): an annotator grows the foreground, and a proposal that
            only ever decides background would add little.
        max_clicks: most clicks in a ``clicks`` input (at least one positive when the target is not empty).
        brush_radius: click brush radius in pixels; ``None`` = max(1, round(H / 64)).
        mode: ``partial`` (the paper) or ``complete`` (target decides every pixel).
    """

    input_weights: dict[str, float] = field(
        default_factory=lambda: {"shape": 0.3, "clicks": 0.25, "strokes": 0.15, "accepted": 0.25, "empty": 0.05}
    )
    region_weights: dict[str, float] = field(default_factory=lambda: {"shape": 0.3, "object": 0.35, "grow": 0.35})
    input_area: tuple[float, float] = (0.02, 0.35)
    region_area: tuple[float, float] = (0.04, 0.16)
    object_margin: tuple[int, int] = (2, 2)
    target_object_bias: float = 0.75
    max_clicks: int = 4
    brush_radius: int | None = None
    mode: str = "partial"

    def __post_init__(self) -> None:
        for name, weights, allowed in (
            ("input_weights", self.input_weights, INPUT_KINDS),
            ("region_weights", self.region_weights, REGION_KINDS),
        ):
            bad = set(weights) - set(allowed)
            if bad:
                raise ValueError(f"{name}: unknown kinds {sorted(bad)}; allowed: {list(allowed)}")
            if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError(f"{name}: weights must be >= 0 and not all zero")
        if self.mode not in ("partial", "complete"):
            raise ValueError(f"mode must be 'partial' or 'complete', got {self.mode!r}")
        for name in ("input_area", "region_area"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"{name}: need 0 <= min <= max <= 1, got ({lo}, {hi})")
        lo, hi = self.object_margin
        if not 0 <= lo <= hi:
            raise ValueError(f"object_margin: need 0 <= min <= max, got ({lo}, {hi})")
        if not 0 <= self.target_object_bias <= 1:
            raise ValueError(f"target_object_bias: must be in [0, 1], got {self.target_object_bias}")
        if self.max_clicks < 1:
            raise ValueError(f"max_clicks: must be >= 1, got {self.max_clicks}")
        if self.brush_radius is not None and self.brush_radius < 0:
            raise ValueError(f"brush_radius: must be >= 0 or None, got {self.brush_radius}")


@dataclass
class PartialPair:
    """One training pair; every array is bool (H, W)."""

    x_m: np.ndarray
    x_s: np.ndarray
    y_m: np.ndarray
    y_s: np.ndarray


def pick_kind(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One name of ``weights`` (name -> weight >= 0, not all 0), drawn from ``rng`` with probability
    proportional to its weight; names are taken in sorted order, so a draw does not depend on the
    dict's insertion order."""
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def object_masks(gt: np.ndarray) -> np.ndarray:
    """Connected components of ``gt`` and of its background: bool (n, H, W).

    The generic notion of "an object" for data without an object list.
    """
    out = []
    for region in (gt, ~gt):
        lab, n = ndimage.label(region)
        out.extend(lab == i for i in range(1, n + 1))
    if not out:
        return np.zeros((0,) + gt.shape, dtype=bool)
    return np.stack(out)


def click_input(
    rng: np.random.Generator, gt: np.ndarray, n_pos: int, n_neg: int, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random clicks labelled from ``gt``; a click decides the brush pixels of its own label.

    Returns ``(x_m, x_s)``, bool (H, W) each.
    """
    x_m = np.zeros_like(gt)
    for region, n in ((gt, n_pos), (~gt, n_neg)):
        ys, xs = np.nonzero(region)
        if len(ys) == 0:
            continue
        for j in rng.choice(len(ys), size=min(n, len(ys)), replace=False):
            x_m |= brush_disk(gt.shape, (ys[j], xs[j]), radius) & region
    return x_m, x_m & gt


def _stroke(rng: np.random.Generator, region: np.ndarray, length: int, radius: int) -> np.ndarray:
    """A smooth random walk of ``length`` steps inside ``region``, drawn with a brush."""
    ys, xs = np.nonzero(region)
    out = np.zeros_like(region)
    if len(ys) == 0:
        return out
    j = int(rng.integers(len(ys)))
    pos = np.array([ys[j], xs[j]], dtype=np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    h, w = region.shape
    for _ in range(length):
        p = (int(round(pos[0])), int(round(pos[1])))
        if not (0 <= p[0] < h and 0 <= p[1] < w) or not region[p]:
            break
        out |= brush_disk(region.shape, p, radius)
        angle += rng.normal(0, 0.4)
        pos += np.array([np.sin(angle), np.cos(angle)])
    return out & region


def stroke_input(
    rng: np.random.Generator, gt: np.ndarray, n_pos: int, n_neg: int, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Short strokes inside the target and in the background. Returns ``(x_m, x_s)``."""
    h = gt.shape[0]
    x_m = np.zeros_like(gt)
    for region, n in ((gt, n_pos), (~gt, n_neg)):
        for _ in range(n):
            x_m |= _stroke(rng, region, int(rng.integers(max(3, h // 8), max(4, h // 2))), radius)
    return x_m, x_m & gt


def _added_region(
    rng: np.random.Generator, spec: PairSpec, gt: np.ndarray, objects: np.ndarray, x_m: np.ndarray
) -> np.ndarray:
    kind = pick_kind(rng, spec.region_weights)
    max_px = int(spec.region_area[1] * gt.size)
    # Objects not yet fully decided are the useful next steps.
    todo = [i for i in range(len(objects)) if (objects[i] & ~x_m).any()]
    region = np.zeros_like(gt)
    if kind == "grow":
        # Finishing what the input started is the predictable part of a next step: an object the
        # annotator has touched is one they are working on.
        for i in todo:
            if (objects[i] & x_m).any():
                region |= crop_near_seed(rng, objects[i] & ~x_m, max_px)
        if region.any() and rng.random() < 0.5:
            region = _dilate(region, spec, rng)
            kind = "object"  # and one more object
        elif region.any():
            return _dilate(region, spec, rng)
        else:
            kind = "object"
    if kind == "object" and todo:
        in_target = [i for i in todo if (objects[i] & gt).any()]
        if in_target and rng.random() < spec.target_object_bias:
            todo = in_target
        obj = crop_near_seed(rng, objects[todo[int(rng.integers(len(todo)))]] & ~x_m, max_px)
        return region | _dilate(obj, spec, rng)
    return region | random_shape_with_area(rng, gt.shape, *spec.region_area)


def _dilate(region: np.ndarray, spec: PairSpec, rng: np.random.Generator) -> np.ndarray:
    """Grow ``region`` by a margin drawn from ``spec.object_margin``, so it brings its border along."""
    margin = int(rng.integers(spec.object_margin[0], spec.object_margin[1] + 1))
    return ndimage.binary_dilation(region, iterations=margin) if margin > 0 else region


def _input(
    rng: np.random.Generator, spec: PairSpec, gt: np.ndarray, objects: np.ndarray, radius: int
) -> np.ndarray:
    kind = pick_kind(rng, spec.input_weights)
    h = gt.shape[0]
    if kind == "shape":
        return random_shape_with_area(rng, gt.shape, *spec.input_area)
    if kind == "empty":
        return np.zeros_like(gt)
    n_pos = int(rng.integers(1, spec.max_clicks + 1)) if gt.any() else 0
    n_neg = int(rng.integers(0 if n_pos else 1, spec.max_clicks + 1))
    if kind == "clicks":
        return click_input(rng, gt, n_pos, n_neg, radius)[0]
    if kind == "strokes":
        return stroke_input(rng, gt, min(n_pos, 2), min(n_neg, 2), max(1, radius // 2 + (h >= 64)))[0]
    # accepted: the start clicks plus one to three earlier accepted expansions.
    x_m = click_input(rng, gt, min(n_pos, 1), min(n_neg, 1), radius)[0]
    for _ in range(int(rng.integers(1, 4))):
        x_m |= _added_region(rng, spec, gt, objects, x_m)
    return x_m


def make_partial_pair(
    rng: np.random.Generator, gt: np.ndarray, spec: PairSpec = PairSpec(), objects: np.ndarray | None = None
) -> PartialPair:
    """Draw one pair for the target ``gt``.

    Args:
        rng: the generator every draw comes from.
        gt: bool (H, W), the target segmentation.
        spec: how inputs and added regions are drawn.
        objects: bool (n, H, W), the image's objects (for disks: every disk, in the target or not);
            default: the connected components of ``gt`` and of its background.
    """
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 2:
        raise ValueError(f"gt must be 2-D, got shape {gt.shape}")
    objects, radius = _objects_and_radius(gt, spec, objects)
    x_m = _input(rng, spec, gt, objects, radius)
    if spec.mode == "complete":
        y_m = np.ones_like(gt)
    else:
        y_m = x_m | _added_region(rng, spec, gt, objects, x_m)
    return PartialPair(x_m=x_m, x_s=x_m & gt, y_m=y_m, y_s=y_m & gt)


def _objects_and_radius(gt: np.ndarray, spec: PairSpec, objects: np.ndarray | None) -> tuple[np.ndarray, int]:
    objects = object_masks(gt) if objects is None else objects
    radius = spec.brush_radius if spec.brush_radius is not None else default_brush_radius(gt.shape[0])
    return objects, radius


def random_input(
    rng: np.random.Generator, gt: np.ndarray, spec: PairSpec = PairSpec(), objects: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """An input drawn as :func:`make_partial_pair` draws ``x``: ``(x_m, x_s)``, bool (H, W) each, ``x_s = gt & x_m``."""
    gt = np.asarray(gt, dtype=bool)
    objects, radius = _objects_and_radius(gt, spec, objects)
    x_m = _input(rng, spec, gt, objects, radius)
    return x_m, x_m & gt


def larger_target(
    rng: np.random.Generator,
    gt: np.ndarray,
    x_m: np.ndarray,
    x_s: np.ndarray,
    spec: PairSpec = PairSpec(),
    objects: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A larger partial target for the state ``(x_m, x_s)``, drawn as :func:`make_partial_pair` draws ``y``.

    ``y_m = x_m | region`` (every pixel in ``complete`` mode); ``y_s`` keeps the state's own labels on
    ``x_m`` (a state reached in a session may hold errors nobody corrected yet, and the network
    cannot change decided pixels) and the target's elsewhere. Returns bool (H, W) each.
    """
    gt = np.asarray(gt, dtype=bool)
    if spec.mode == "complete":
        y_m = np.ones_like(gt)
    else:
        objects, _ = _objects_and_radius(gt, spec, objects)
        y_m = x_m | _added_region(rng, spec, gt, objects, x_m)
    return y_m, np.where(x_m, x_s, gt) & y_m
