"""An annotator's inputs: the brush, the start (clicks, strokes, human scribbles) and correction clicks.

These are the robot annotator's primitives. They live in ``probseg`` rather than in the simulator so
that training and evaluation draw inputs with the same code: the simulator
(:mod:`simulator.corrections` re-exports everything here under its old names), the held-out check
(:func:`probseg.data.medical.evaluate_heldout`) and a trainer that simulates sessions all import them
from this module, and ``probseg`` never imports ``simulator``. This module imports nothing from the
rest of ``probseg``, so any part of the package can use it without an import cycle.

Every array here is a bool (H, W) mask unless stated; ``gt`` is the target. A click is labelled from
``gt`` and decides the pixels of a brush disk that share the clicked pixel's ground-truth label, so a
click never introduces an error. Corrections follow RITM's ``Clicker`` (Sofiiuk et al., 2022): click
the deepest pixel of the larger error region, measured by an L2 distance transform with a 1-pixel
zero padding, so the image border counts as the region's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from .lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = [
    "CORRECTION_RULES",
    "START_KINDS",
    "Click",
    "StartInput",
    "apply_click",
    "brush_disk",
    "click_brush",
    "count_strokes",
    "deepest_point",
    "default_brush_radius",
    "error_regions",
    "human_start",
    "next_click",
    "padded_edt",
    "resolve_brush_radius",
    "scribble_start",
    "click_start",
    "simulate_stroke",
]

CORRECTION_RULES = ("ritm", "random-error")
START_KINDS = ("clicks", "scribbles", "human")

# 8-connectivity: a stroke drawn with diagonal steps is one stroke, as an annotator would count it.
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Click:
    """One click: pixel ``(row, col)`` and its label (``positive`` = foreground, read from the target)."""

    row: int
    col: int
    positive: bool


@dataclass
class StartInput:
    """The annotator's first input.

    Attributes:
        mask: bool (H, W), the pixels the input decides.
        seg: bool (H, W), their foreground (``seg ⊆ mask``).
        clicked: bool (H, W), click centres (the correction rule never clicks them again); empty for
            strokes, whose pixels may still be corrected (human strokes can be wrong).
        n_inputs: what the input costs in NoC: 1 per click, 1 per 8-connected stroke.
        clicks: the start clicks (empty for strokes).
    """

    mask: np.ndarray
    seg: np.ndarray
    clicked: np.ndarray
    n_inputs: int
    clicks: list[Click]


def brush_disk(shape: tuple[int, int], center: tuple[int, int], radius: int) -> np.ndarray:
    """Pixels within ``radius`` of ``center``: bool ``shape`` (H, W)."""
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def default_brush_radius(h: int) -> int:
    """The protocol's default brush radius for an image of height ``h``."""
    return max(1, int(round(h / 64)))


def resolve_brush_radius(brush_radius: int | None, shape: tuple[int, int]) -> int:
    """The brush radius to use: ``brush_radius``, or the protocol default max(1, round(H / 64))."""
    if brush_radius is None:
        return default_brush_radius(shape[0])
    if isinstance(brush_radius, bool) or not isinstance(brush_radius, (int, np.integer)) or brush_radius < 0:
        raise ValueError(f"brush_radius: expected None or an integer >= 0, got {brush_radius!r}")
    return int(brush_radius)


def padded_edt(region: np.ndarray) -> np.ndarray:
    """L2 distance of each ``region`` pixel to the nearest pixel outside it: float64 (H, W).

    The region is padded with one ring of False before the transform and cropped back, so pixels on the
    image border are at distance 1 (the border is treated as the region's edge, as RITM does); without
    the padding a region touching the border would have its "deepest" pixel pushed against the border.
    Pixels outside ``region`` are 0.
    """
    padded = np.pad(np.asarray(region, dtype=bool), 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def deepest_point(region: np.ndarray) -> tuple[int, int] | None:
    """The first maximum, in raster order, of :func:`padded_edt` of ``region``; None if it is empty."""
    dt = padded_edt(region)
    if not dt.any():
        return None
    r, c = np.unravel_index(int(np.argmax(dt)), dt.shape)  # argmax returns the first maximum in C order
    return int(r), int(c)


def click_brush(gt: np.ndarray, click: Click, radius: int) -> np.ndarray:
    """The pixels a click decides: the brush disk around it restricted to the clicked pixel's GT label."""
    same_label = gt if gt[click.row, click.col] else ~gt
    return brush_disk(gt.shape, (click.row, click.col), radius) & same_label


def apply_click(
    gt: np.ndarray, mask: np.ndarray, seg: np.ndarray, click: Click, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """A state with ``click`` applied: its brush pixels are decided with their (true) label.

    The brush overrides whatever the state said there: a correction is the annotator's word.
    Returns new ``(mask, seg)``, bool (H, W) each; the inputs are not modified.
    """
    brush = click_brush(gt, click, radius)
    mask = mask | brush
    seg = seg.copy()
    seg[brush] = click.positive
    return mask, seg


def error_regions(
    gt: np.ndarray, mask: np.ndarray, seg: np.ndarray, *, pending_fn: bool = False, pending_fp: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The false-negative and false-positive regions of a state: bool (H, W) each.

    Decided errors are ``FN = mask & ~seg & gt`` and ``FP = seg & ~gt``; undecided pixels are pending,
    not errors, unless ``pending_fn`` (pending target pixels join FN) or ``pending_fp`` (pending
    background pixels join FP) says otherwise.
    """
    fn = mask & ~seg & gt
    fp = seg & ~gt
    if pending_fn:
        fn = fn | (~mask & gt)
    if pending_fp:
        fp = fp | (~mask & ~gt)
    return fn, fp


def next_click(
    gt: np.ndarray,
    fn: np.ndarray,
    fp: np.ndarray,
    clicked: np.ndarray,
    rule: str = "ritm",
    rng: np.random.Generator | None = None,
) -> Click | None:
    """The next correction click on the error regions ``fn`` and ``fp``, or None when there is no error.

    Args:
        gt: bool (H, W), the target (gives the click's label).
        fn, fp: bool (H, W), the regions to correct (see :func:`error_regions`).
        clicked: bool (H, W), pixels clicked before; they are removed from both regions before the
            rule runs, so a pixel is never clicked twice.
        rule: ``ritm`` -- padded L2 distance transform of each region, positive iff the FN maximum is
            strictly larger than the FP maximum (a tie goes negative, as in RITM), the click at the
            first maximum in raster order; ``random-error`` -- a uniformly random pixel of
            ``fn | fp`` (positive iff it is in ``fn``), drawn from ``rng``.
        rng: required by ``random-error``.
    """
    if rule not in CORRECTION_RULES:
        raise ValueError(f"correction_rule: unknown rule {rule!r}; allowed: {list(CORRECTION_RULES)}")
    fn = fn & ~clicked
    fp = fp & ~clicked
    if rule == "random-error":
        if rng is None:
            raise ValueError("rng: the random-error rule needs a numpy Generator")
        candidates = np.flatnonzero(fn | fp)
        if candidates.size == 0:
            return None
        r, c = np.unravel_index(int(candidates[int(rng.integers(candidates.size))]), gt.shape)
        return Click(int(r), int(c), bool(gt[r, c]))
    dt_fn = padded_edt(fn)
    dt_fp = padded_edt(fp)
    max_fn, max_fp = float(dt_fn.max(initial=0.0)), float(dt_fp.max(initial=0.0))
    if max_fn == 0.0 and max_fp == 0.0:
        return None
    positive = max_fn > max_fp
    dt = dt_fn if positive else dt_fp
    r, c = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return Click(int(r), int(c), bool(positive))


def count_strokes(scribble: np.ndarray) -> int:
    """Number of 8-connected components of a scribble channel (each counts 1 input in NoC)."""
    return int(ndimage.label(np.asarray(scribble, dtype=bool), structure=_EIGHT)[1])


def click_start(gt: np.ndarray, radius: int) -> StartInput:
    """One positive click at the target's deepest point and one negative at the background's.

    Deepest = first maximum of :func:`padded_edt` in raster order. A click whose region is empty (an
    empty target, or a target covering the image) is skipped.
    """
    mask = np.zeros_like(gt)
    seg = np.zeros_like(gt)
    clicked = np.zeros_like(gt)
    clicks: list[Click] = []
    for region, positive in ((gt, True), (~gt, False)):
        point = deepest_point(region)
        if point is None:
            continue
        click = Click(point[0], point[1], positive)
        mask, seg = apply_click(gt, mask, seg, click, radius)
        clicked[point] = True
        clicks.append(click)
    return StartInput(mask, seg, clicked, len(clicks), clicks)


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even, which can jump two pixels between consecutive unit steps
    # and break the stroke's 8-connectivity; floor(x + 0.5) moves at most one pixel per unit step.
    return int(np.floor(x + 0.5))


def simulate_stroke(region: np.ndarray, rng: np.random.Generator, radius: int, length: int) -> np.ndarray:
    """A smooth stroke through the middle of ``region``, drawn with a brush: bool (H, W).

    The stroke's centre line starts at the region's deepest point and walks ``length // 2`` unit steps
    each way along a direction drawn from ``rng``, turning by a Normal(0, 0.3 rad) angle per step, and
    stops (each way) before leaving the region. The brush is clipped to ``region``, so a simulated
    stroke is never wrong. Every draw comes from ``rng``: the stroke is a function of the rng state.
    """
    out = np.zeros_like(region)
    start = deepest_point(region)
    if start is None:
        return out
    h, w = region.shape
    out |= brush_disk(region.shape, start, radius)
    base = float(rng.uniform(0.0, 2.0 * np.pi))
    for heading in (base, base + np.pi):
        pos = np.array(start, dtype=np.float64)
        angle = heading
        turns = rng.normal(0.0, 0.3, size=max(0, length // 2))
        for turn in turns:
            angle += float(turn)
            nxt = pos + np.array([np.sin(angle), np.cos(angle)])
            p = (_round_half_up(nxt[0]), _round_half_up(nxt[1]))
            if not (0 <= p[0] < h and 0 <= p[1] < w) or not region[p]:
                break
            pos = nxt
            out |= brush_disk(region.shape, p, radius)
    return out & region


def scribble_start(gt: np.ndarray, rng: np.random.Generator, radius: int) -> StartInput:
    """One simulated positive stroke in the target and one negative stroke in the background.

    Stroke length is max(3, H // 4) steps (see :func:`simulate_stroke`). NoC counts each 8-connected
    component of each channel. No pixel is marked clicked: strokes do not block later corrections.
    """
    length = max(3, gt.shape[0] // 4)
    pos = simulate_stroke(gt, rng, radius, length)
    neg = simulate_stroke(~gt, rng, radius, length)
    return StartInput(pos | neg, pos.copy(), np.zeros_like(gt), count_strokes(pos) + count_strokes(neg), [])


def human_start(gt: np.ndarray, scribbles: tuple[np.ndarray, np.ndarray] | None) -> StartInput:
    """Real annotators' scribbles ``(pos, neg)``, bool (H, W) each, kept exactly as drawn.

    A positive pixel outside the target is decided as foreground anyway (the annotator's mistake stays
    in the state until a correction overrides it).
    """
    if scribbles is None:
        raise ValueError("human_scribbles: start='human' needs the annotators' scribbles as (pos, neg) bool arrays")
    if not isinstance(scribbles, (tuple, list)) or len(scribbles) != 2:
        raise ValueError("human_scribbles: expected a pair (pos, neg) of bool (H, W) arrays")
    pos, neg = (np.asarray(a) for a in scribbles)
    for name, arr in (("pos", pos), ("neg", neg)):
        if arr.dtype != bool or arr.shape != gt.shape:
            raise ValueError(
                f"human_scribbles: {name} must be a bool array of shape {gt.shape}, got {arr.dtype} {arr.shape}"
            )
    if (pos & neg).any():
        raise ValueError("human_scribbles: pos and neg overlap; a pixel cannot be both foreground and background")
    if not (pos | neg).any():
        raise ValueError("human_scribbles: no pixel drawn")
    return StartInput(pos | neg, pos.copy(), np.zeros_like(gt), count_strokes(pos) + count_strokes(neg), [])
