"""SynthMorph-style synthetic images for training the medical models (Hoffmann et al., the paper's [2]).

An image is rendered from a random label map (:func:`probseg.data.shapes.random_label_map`): each
label gets a random mean intensity and a random amount of smooth texture, then the image is blurred
(partial-volume effect), multiplied by a smooth bias field, gamma-transformed, given Gaussian noise
and normalised the way :meth:`probseg.ProbSeg.propose` normalises any input. Nothing in it looks like
a particular modality; that is the point: a network that segments whatever contrast it is shown
cannot lean on one modality's appearance, which is what the unseen tasks demand.

The target is one label, a union of labels, or one connected piece of a label. The image's
*objects* (what ``object`` and ``grow`` added regions in
:func:`probseg.data.partials.make_partial_pair` are made of) are the connected pieces of every
label: an annotator's "next object" is a connected thing, and a label of the map is often several
blobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lazy import lazy_import
from .intensity import normalize_image
from .partials import pick_kind
from .shapes import random_label_map, smooth_noise
from .spec_record import SpecRecord

ndimage = lazy_import("scipy.ndimage")  # imported on first use: commands start faster

__all__ = ["SynthSpec", "SynthExample", "make_synth_example", "label_objects"]


@dataclass(frozen=True)
class SynthSpec(SpecRecord):
    """How synthetic images are drawn; every ``(lo, hi)`` pair is a uniform range.

    Attributes:
        size: side of the square image (the models' working size).
        n_labels: (min, max) labels per map, inclusive.
        scales: the noise-grid choices of the label map (one drawn per image); smaller grids give
            larger blobs.
        warp: (min, max) standard deviation in pixels of the label map's smooth deformation.
        texture: (min, max) standard deviation of a label's smooth texture, in the [0, 1] intensity units.
        blur: (min, max) Gaussian blur sigma in pixels.
        bias: (min, max) standard deviation of the log of the multiplicative bias field.
        gamma: (min, max) gamma exponent, drawn log-uniformly.
        noise: (min, max) standard deviation of the additive Gaussian noise.
        target_kinds: probabilities of a target that is one ``label``, a ``union`` of 2-3 labels, or
            one connected ``piece`` of a label.
        min_target_frac: smallest target, as a fraction of the image.
        min_object_px: connected pieces smaller than this are not offered as objects (they remain in
            the image and the target).
    """

    size: int = 128
    n_labels: tuple[int, int] = (4, 16)
    scales: tuple[tuple[int, ...], ...] = ((2, 4, 8), (3, 6, 12), (4, 8, 16))
    warp: tuple[float, float] = (0.0, 4.0)
    texture: tuple[float, float] = (0.0, 0.1)
    blur: tuple[float, float] = (0.0, 1.5)
    bias: tuple[float, float] = (0.0, 0.3)
    gamma: tuple[float, float] = (0.6, 1.6)
    noise: tuple[float, float] = (0.0, 0.06)
    # Mostly one connected piece: real targets are usually one organ or structure, while a label
    # of the map is often a scatter of blobs.
    target_kinds: dict[str, float] = field(default_factory=lambda: {"label": 0.35, "union": 0.2, "piece": 0.45})
    min_target_frac: float = 0.005
    min_object_px: int = 16

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size: must be >= 16, got {self.size}")
        lo, hi = self.n_labels
        if not 2 <= lo <= hi:
            raise ValueError(f"n_labels: need 2 <= min <= max, got ({lo}, {hi})")
        if not self.scales or any(not s or min(s) < 1 for s in self.scales):
            raise ValueError(f"scales: need non-empty tuples of grid sides >= 1, got {self.scales}")
        for name in ("warp", "texture", "blur", "bias", "noise", "gamma"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name == "gamma" and lo <= 0):
                raise ValueError(f"{name}: need 0 <= min <= max (gamma > 0), got ({lo}, {hi})")
        bad = set(self.target_kinds) - {"label", "union", "piece"}
        if bad or any(v < 0 for v in self.target_kinds.values()) or sum(self.target_kinds.values()) <= 0:
            raise ValueError(f"target_kinds: weights >= 0, not all 0, of 'label', 'union', 'piece'; got {self.target_kinds}")
        if not 0 <= self.min_target_frac < 1:
            raise ValueError(f"min_target_frac: must be in [0, 1), got {self.min_target_frac}")
        if self.min_object_px < 1:
            raise ValueError(f"min_object_px: must be >= 1, got {self.min_object_px}")


@dataclass
class SynthExample:
    """One synthetic training image.

    Attributes:
        image: float32 (S, S), normalised to [0, 1] (percentiles, as at inference).
        labels: int64 (S, S), the label map it was rendered from.
        target: bool (S, S), not empty.
        objects: bool (n, S, S), the connected pieces of every label (n >= 1).
    """

    image: np.ndarray
    labels: np.ndarray
    target: np.ndarray
    objects: np.ndarray


def label_objects(labels: np.ndarray, min_px: int = 1) -> np.ndarray:
    """The connected pieces (4-connectivity) of every label of ``labels``, int (H, W): bool (n, H, W).

    Pieces smaller than ``min_px`` are left out unless that would leave none.
    """
    out = []
    for lab in np.unique(labels):
        comp, n = ndimage.label(labels == lab)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        out.extend(comp == i for i in range(1, n + 1) if sizes[i] >= min_px)
    if not out:
        # Every piece is tiny (a degenerate map): fall back to the labels themselves.
        out = [labels == lab for lab in np.unique(labels)]
    return np.stack(out)


def _target(rng: np.random.Generator, labels: np.ndarray, objects: np.ndarray, spec: SynthSpec) -> np.ndarray:
    """A non-empty target of at least ``min_target_frac`` of the image (the largest label otherwise)."""
    min_px = max(1, int(np.ceil(spec.min_target_frac * labels.size)))
    counts = np.bincount(labels.ravel())
    big = np.flatnonzero(counts >= min_px)
    kind = pick_kind(rng, spec.target_kinds)
    if kind == "piece":
        sizes = objects.reshape(len(objects), -1).sum(1)
        ok = np.flatnonzero(sizes >= min_px)
        if len(ok):
            return objects[int(ok[rng.integers(len(ok))])].copy()
        kind = "label"
    if len(big) == 0:  # cannot happen for min_target_frac < 1 / n_labels; kept for odd specs
        return labels == int(np.argmax(counts))
    n = 1 if kind == "label" else min(len(big), int(rng.integers(2, 4)))
    chosen = rng.choice(big, size=n, replace=False)
    return np.isin(labels, chosen)


def make_synth_example(rng: np.random.Generator, spec: SynthSpec = SynthSpec()) -> SynthExample:
    """Draw one synthetic image with its label map, target and objects (every draw from ``rng``)."""
    s = spec.size
    shape = (s, s)
    n_labels = int(rng.integers(spec.n_labels[0], spec.n_labels[1] + 1))
    scales = spec.scales[int(rng.integers(len(spec.scales)))]
    labels = random_label_map(rng, shape, n_labels, scales, float(rng.uniform(*spec.warp)))
    # Intensities: a mean per label and a texture whose strength differs per label.
    means = rng.uniform(0.0, 1.0, n_labels).astype(np.float32)
    tex_std = rng.uniform(*spec.texture, n_labels).astype(np.float32)
    image = means[labels]
    if spec.texture[1] > 0:
        # Fine texture as filtered white noise, rescaled to unit variance (a fine smooth_noise grid
        # would be a large matrix product, which a multi-threaded BLAS slows down on a busy machine).
        grain = float(rng.uniform(0.5, 2.0))
        tex = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), grain, mode="wrap")
        image = image + tex_std[labels] * tex / max(float(tex.std()), 1e-6)
    sigma = float(rng.uniform(*spec.blur))
    if sigma > 0.05:
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    # A smooth multiplicative bias field (MRI-like shading), log-normal around 1.
    log_bias = rng.uniform(*spec.bias) * smooth_noise(rng, shape, (2, 3)) / np.sqrt(2.0)
    image = image * np.exp(log_bias)
    lo, hi = float(image.min()), float(image.max())
    image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    gamma = float(np.exp(rng.uniform(np.log(spec.gamma[0]), np.log(spec.gamma[1]))))
    image = image**gamma
    image = image + rng.normal(0.0, rng.uniform(*spec.noise), size=shape)
    objects = label_objects(labels, spec.min_object_px)
    target = _target(rng, labels, objects, spec)
    return SynthExample(image=normalize_image(image), labels=labels, target=target, objects=objects)
