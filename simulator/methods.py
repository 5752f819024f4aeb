"""The methods a session compares, behind one small protocol.

A method's ``kind`` decides what the session feeds it (see :mod:`simulator.session`): a ``partial``
method gets the accepted state (chosen proposal plus corrections), a ``complete`` method only the
annotator's own input (start plus corrections) and re-predicts every pixel from it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any, Literal, Protocol

import numpy as np
from skimage.segmentation import random_walker

import probseg
from probseg import ProbSeg

from .metrics import dice

__all__ = [
    "METHODS",
    "Method",
    "ProbSegMethod",
    "RW_MODES",
    "RandomWalkerMethod",
    "TTAMethod",
    "make_method",
    "walker_probabilities",
]

Kind = Literal["partial", "complete"]
Proposals = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class Method(Protocol):
    """What a session calls.

    Attributes:
        name: the method's name in results.
        kind: ``partial`` (leaves pixels undecided, fed the accepted state) or ``complete`` (decides
            every pixel, fed only the annotator's input).
        multi: whether it gives K different proposals (else the session asks for K = 1).
    """

    name: str

    @property
    def kind(self) -> Kind: ...

    @property
    def multi(self) -> bool: ...

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> Proposals:
        """``k`` proposals from ``image`` float (H, W) and the state ``mask``, ``seg`` bool (H, W).

        Returns ``masks``, ``segs`` bool (k, H, W) with ``masks ⊇ mask``, ``segs == seg`` on ``mask``,
        ``segs ⊆ masks``, and ``scores`` float64 (k,) (higher = more likely) or None.
        """
        ...


class ProbSegMethod:
    """A probseg model as a method.

    Args:
        model: a :class:`probseg.ProbSeg`, or a checkpoint name/path loaded on first use (so a method
            can be named before its checkpoint exists).
        mean: propose the z = 0 proposal only (K = 1).
        name: the name in results (default: the model's name, ``-mean`` appended when ``mean``).
        expect_kind: if given, loading a model of the other kind raises ``ValueError`` naming
            ``checkpoint`` (catches e.g. a partial checkpoint passed to ``probseg-complete``).

    ``kind`` follows ``model.is_partial``; ``multi`` is False for ``mean`` and for deterministic
    networks (their K proposals would be identical). Scores are the model's own.
    """

    def __init__(
        self,
        model: ProbSeg | str | os.PathLike,
        mean: bool = False,
        name: str | None = None,
        expect_kind: Kind | None = None,
    ) -> None:
        if not isinstance(model, (ProbSeg, str, os.PathLike)):
            raise ValueError(f"model: expected a ProbSeg or a checkpoint name/path, got {type(model).__name__}")
        if expect_kind not in (None, "partial", "complete"):
            raise ValueError(f"expect_kind: must be None, 'partial' or 'complete', got {expect_kind!r}")
        self._model = model if isinstance(model, ProbSeg) else None
        self._source = model
        self.mean = bool(mean)
        self.expect_kind = expect_kind
        base = name if name is not None else (model.name if isinstance(model, ProbSeg) else str(model))
        self.name = base if name is not None or not mean else f"{base}-mean"

    @property
    def model(self) -> ProbSeg:
        """The model, loaded from its checkpoint the first time it is needed."""
        if self._model is None:
            self._model = probseg.load(self._source)  # ValueError naming checkpoint if it is missing
        model = self._model
        kind = "partial" if model.is_partial else "complete"
        if self.expect_kind is not None and kind != self.expect_kind:
            raise ValueError(
                f"checkpoint: {self._source if not isinstance(self._source, ProbSeg) else model.name!r} is a {kind} "
                f"model but method {self.name!r} needs a {self.expect_kind} one"
            )
        return model

    @property
    def kind(self) -> Kind:
        return "partial" if self.model.is_partial else "complete"

    @property
    def multi(self) -> bool:
        return self.model.is_stochastic and not self.mean

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> Proposals:
        """See :meth:`Method.propose`; a single-proposal model returns ``k`` identical copies."""
        model = self.model
        n = k if self.multi else 1
        masks, segs, scores = model.propose(image, mask, seg, k=n, seed=rng, mean=self.mean, return_scores=True)
        if n != k:
            masks, segs, scores = (np.repeat(a, k, axis=0) for a in (masks, segs, scores))
        return masks, segs, np.asarray(scores, dtype=np.float64)

    def __repr__(self) -> str:
        return f"ProbSegMethod(name={self.name!r}, mean={self.mean})"


def _dihedral(shape: tuple[int, int]) -> list[tuple[int, bool]]:
    """The test-time transforms as ``(quarter turns, flip left-right)``: the 8 symmetries of a square
    image, or the 4 that keep a non-square image's shape (identity first)."""
    turns = (0, 1, 2, 3) if shape[0] == shape[1] else (0, 2)
    return [(t, f) for f in (False, True) for t in turns]


def _forward(a: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    a = np.fliplr(a) if flip else a
    return np.ascontiguousarray(np.rot90(a, turns))


def _inverse(a: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, -turns)
    return np.ascontiguousarray(np.fliplr(a) if flip else a)


class TTAMethod:
    """K candidates from one deterministic model under test-time augmentation: a free diversity.

    Candidate 0 is the model's own prediction, so K = 1 is exactly the model. Candidate i >= 1 sees
    the image, and the annotation, under symmetry ``i mod n`` (the 8 rotations and flips of a square
    image, the 4 of a non-square one) and its intensities, min-max scaled to [0, 1], raised to a
    gamma exp(N(0, ``gamma_sd``)) drawn from the session's generator; its prediction is mapped back.
    Every transform is a permutation of pixels, so the annotator's input survives it exactly. It is a
    control for the learned diversity of multi-candidate models: what K candidates give without any
    training for diversity.

    Scores: each candidate's Dice against the pixel-wise majority of all K candidates (ties count
    as foreground), so the most typical candidate ranks first; for K = 1 the score is 1.

    Args:
        model: a deterministic :class:`ProbSegMethod` (its K proposals would otherwise be its own).
        gamma_sd: the standard deviation of log gamma (0 = geometric transforms only).
        name: the name in results.
    """

    def __init__(self, model: ProbSegMethod, gamma_sd: float = 0.25, name: str = "unet-tta") -> None:
        if not isinstance(model, ProbSegMethod):
            raise ValueError(f"model: expected a ProbSegMethod, got {type(model).__name__}")
        if isinstance(gamma_sd, bool) or not isinstance(gamma_sd, (int, float)) or not 0 <= gamma_sd < 5:
            raise ValueError(f"gamma_sd: expected a number in [0, 5), got {gamma_sd!r}")
        self.base = model
        self.gamma_sd = float(gamma_sd)
        self.name = name

    @property
    def model(self) -> ProbSeg:
        return self.base.model

    @property
    def kind(self) -> Kind:
        return self.base.kind

    @property
    def multi(self) -> bool:
        return True

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> Proposals:
        """See :meth:`Method.propose`; one forward pass of the model per candidate."""
        if self.model.is_stochastic:
            raise ValueError(f"method: {self.name!r} wraps a deterministic model; {self.model.name!r} samples")
        transforms = _dihedral(image.shape)
        unit = _normalise01(image)
        masks = np.empty((k, *mask.shape), dtype=bool)
        segs = np.empty((k, *mask.shape), dtype=bool)
        for i in range(k):
            turns, flip = transforms[i % len(transforms)]
            # The gamma is drawn for every candidate after the first, so candidate i is the same for any K.
            gamma = 1.0 if i == 0 else float(np.exp(rng.normal(0.0, self.gamma_sd)))
            view = image if i == 0 else _forward(unit ** gamma, turns, flip)
            m, s, _ = self.base.propose(view, _forward(mask, turns, flip), _forward(seg, turns, flip), 1, rng)
            masks[i], segs[i] = _inverse(m[0], turns, flip), _inverse(s[0], turns, flip)
        majority = 2 * segs.sum(axis=0) >= k
        scores = np.array([dice(segs[i], majority) for i in range(k)], dtype=np.float64)
        return masks, segs, scores

    def __repr__(self) -> str:
        return f"TTAMethod(name={self.name!r}, gamma_sd={self.gamma_sd})"


def _normalise01(image: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (float64); a constant image becomes 0 everywhere.

    The random walker's edge weights are exp(-beta * gradient^2): without a fixed intensity range
    the same beta would mean different things on different images.
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 0:
        return np.zeros_like(image)
    return (image - lo) / (hi - lo)


RW_MODES = ("bf", "cg", "cg_j", "cg_mg")  # scikit-image's random-walker solvers; bf is the converged one


def walker_probabilities(image: np.ndarray, labels: np.ndarray, beta: float, mode: str = "bf",
                         tol: float = 1e-3) -> np.ndarray:
    """The two-label random walker's foreground share ``p1 / (p1 + p2)``: float64 (H, W).

    Args:
        image: float (H, W), min-max scaled to [0, 1] here (see :func:`_normalise01`).
        labels: int (H, W): 1 foreground seed, 2 background seed, 0 unlabelled; both labels present.
        beta, mode, tol: passed to ``skimage.segmentation.random_walker``.

    scikit-image solves one system per label. Only an exact solve (``bf``) gives ``p1 + p2 = 1``; an
    unconverged conjugate-gradient solve (``cg_mg`` stops after 30 iterations) leaves both short of
    it far from the seeds, where ``p1 > 0.5`` reads "background" although foreground is the likelier
    label. The share decides by the larger of the two, as scikit-image's own labelling (its argmax)
    does, and is a probability whatever the solver. A constant image has no edges to weigh (and
    scikit-image would divide by its zero spread), so every edge gets the same weight: the walker
    runs on a ramp at a negligible beta, which leaves each weight within 1e-9 of the others.
    """
    unit = _normalise01(image)
    if unit.max() <= 0:
        unit, beta = np.indices(unit.shape).sum(axis=0) / max(sum(unit.shape) - 2, 1), 1e-9
    with warnings.catch_warnings():
        # The iterative solvers overshoot [0, 1] slightly at large beta; the share is clipped below.
        warnings.filterwarnings("ignore", message="The probability range is outside", category=UserWarning)
        full = random_walker(unit, labels, beta=beta, mode=mode, tol=tol, return_full_prob=True)
    fg, bg = np.clip(full[0], 0.0, None), np.clip(full[1], 0.0, None)
    total = fg + bg
    # Where a capped solve reached neither label (both 0) nothing favours either: an even share.
    return np.divide(fg, total, out=np.full(fg.shape, 0.5), where=total > 0)


class RandomWalkerMethod:
    """scikit-image's random walker (Grady, 2006) seeded with the state it is given.

    Seeds: label 1 = ``mask & seg`` (foreground), label 2 = ``mask & ~seg`` (background). With no
    foreground seed the foreground probability is 0 everywhere (all background); with foreground but
    no background seed it is 1 everywhere (the walker needs two labels to say anything else). Each
    pixel takes the label more likely to reach it first: the foreground share
    ``p_fg / (p_fg + p_bg)`` of :func:`walker_probabilities` is > 0.5.

    Args:
        beta: the walker's edge penalty on the [0, 1]-normalised image (tune it on training images
            with :func:`simulator.baselines.tune_random_walker_beta`; 130 is scikit-image's default).
        partial: ``False`` -- ``random-walker``, a complete method deciding every pixel with
            ``seg = share > 0.5``; ``True`` -- ``random-walker-partial``, deciding only the seeds and the
            pixels whose foreground share is > ``1 - confidence`` or < ``confidence``. Being
            partial, it is fed the accepted state, so every accepted decided pixel becomes a seed.
        confidence: the partial variant's margin (0.05 by the protocol).
        mode, tol: passed to ``skimage.segmentation.random_walker``. ``bf`` (the default) is a sparse
            direct solve: converged, 0.4-0.9 s on a 256x256 image here, and the one the tuned records
            use. The conjugate-gradient solvers stop at ``tol`` (relative residual), which at the large
            betas real images need is far from converged: ``cg_mg`` (multigrid through pyamg) is also
            capped at 30 iterations by scikit-image, and ``cg_j`` once took 19 minutes on one solve.
            They stay for reproducing older runs (the walkers of results before this change used
            ``cg_mg`` and ``cg_j`` read as ``p_fg > 0.5``).
    The walker is deterministic: ``multi`` is False and there are no scores.
    """

    multi = False

    def __init__(
        self,
        beta: float = 130.0,
        partial: bool = False,
        confidence: float = 0.05,
        mode: str = "bf",
        tol: float = 1e-3,
        name: str | None = None,
    ) -> None:
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta: must be a finite number > 0, got {beta!r}")
        if not 0 < confidence < 0.5:
            raise ValueError(f"confidence: must be in (0, 0.5), got {confidence!r}")
        if mode not in RW_MODES:
            raise ValueError(f"mode: must be one of {', '.join(map(repr, RW_MODES))}, got {mode!r}")
        if mode == "cg_mg" and importlib.util.find_spec("pyamg") is None:
            # scikit-image would warn and quietly solve with cg_j instead: a different baseline.
            raise ValueError("mode: 'cg_mg' needs the pyamg package (python3 -m pip install pyamg)")
        self.beta = float(beta)
        self.partial = bool(partial)
        self.confidence = float(confidence)
        self.mode = mode
        self.tol = float(tol)
        self.name = name if name is not None else ("random-walker-partial" if partial else "random-walker")

    @property
    def kind(self) -> Kind:
        return "partial" if self.partial else "complete"

    def foreground_probability(self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """The walker's foreground share: float64 (H, W) in [0, 1], exactly ``seg`` on ``mask``."""
        fg, bg = mask & seg, mask & ~seg
        if not fg.any():
            return np.zeros(mask.shape, dtype=np.float64)
        if not bg.any():
            return np.ones(mask.shape, dtype=np.float64)
        if mask.all():
            return seg.astype(np.float64)
        labels = np.zeros(mask.shape, dtype=np.int32)
        labels[fg] = 1
        labels[bg] = 2
        prob = walker_probabilities(image, labels, self.beta, self.mode, self.tol)
        prob[mask] = seg[mask]
        return prob

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> Proposals:
        """See :meth:`Method.propose`; ``rng`` is unused (deterministic); ``k`` identical copies."""
        mask = np.asarray(mask, dtype=bool)
        seg = np.asarray(seg, dtype=bool)
        prob = self.foreground_probability(image, mask, seg)
        if self.partial:
            new_mask = mask | (prob > 1.0 - self.confidence) | (prob < self.confidence)
        else:
            new_mask = np.ones_like(mask)
        new_seg = new_mask & (prob > 0.5)
        new_seg[mask] = seg[mask]  # seeds keep their label exactly, whatever the solver's tolerance
        return np.repeat(new_mask[None], k, axis=0), np.repeat(new_seg[None], k, axis=0), None

    def __repr__(self) -> str:
        return f"RandomWalkerMethod(name={self.name!r}, beta={self.beta}, partial={self.partial}, mode={self.mode!r})"


# The probseg methods' default checkpoints (loaded on first proposal) and the walkers' variant.
# ``checkpoint``: the default on synthetic disks; ``real_checkpoint``: the default on real images
# (the medical models, trained on other tasks than those a real-data study evaluates).
METHODS: dict[str, dict[str, Any]] = {
    "probseg": {"checkpoint": "disks", "real_checkpoint": "medical", "mean": False, "kind": "partial"},
    "probseg-mean": {"checkpoint": "disks", "real_checkpoint": "medical", "mean": True, "kind": "partial"},
    "probseg-complete": {"checkpoint": "disks-complete", "real_checkpoint": "medical-complete", "mean": False,
                         "kind": "complete"},
    "unet-complete": {"checkpoint": "disks-unet-complete", "real_checkpoint": "medical-unet-complete", "mean": False,
                      "kind": "complete"},
    # The U-Net's K candidates under test-time augmentation: a diversity control (see TTAMethod).
    "unet-tta": {"checkpoint": "disks-unet-complete", "real_checkpoint": "medical-unet-complete", "mean": False,
                 "kind": "complete", "tta": True},
    "random-walker": {"partial": False},
    "random-walker-partial": {"partial": True},
}


def make_method(name: str, checkpoint: str | os.PathLike | ProbSeg | None = None, **kw: Any) -> Method:
    """A method by its study-design name.

    Args:
        name: one of :data:`METHODS`.
        checkpoint: for the probseg methods, a registry name, a ``.pt`` path or a loaded
            :class:`~probseg.ProbSeg` replacing the default checkpoint; loading is deferred to the
            first proposal. Not accepted by the random walkers.
        kw: settings of the random walkers (``beta``, ``confidence``, ``mode``, ``tol``).
    Raises:
        ValueError: naming ``method`` for an unknown name, or the argument a method does not take.
    """
    if name not in METHODS:
        raise ValueError(f"method: unknown method {name!r}; allowed: {list(METHODS)}")
    spec = METHODS[name]
    if "checkpoint" in spec:
        if kw:
            raise ValueError(f"{sorted(kw)[0]}: not a setting of method {name!r}; it takes only checkpoint")
        source = spec["checkpoint"] if checkpoint is None else checkpoint
        if spec.get("tta"):
            return TTAMethod(ProbSegMethod(source, name=f"{name}-base", expect_kind=spec["kind"]), name=name)
        return ProbSegMethod(source, mean=spec["mean"], name=name, expect_kind=spec["kind"])
    if checkpoint is not None:
        raise ValueError(f"checkpoint: method {name!r} has no checkpoint")
    allowed = {"beta", "confidence", "mode", "tol"}
    bad = sorted(set(kw) - allowed)
    if bad:
        raise ValueError(f"{bad[0]}: not a setting of method {name!r}; its settings: {sorted(allowed)}")
    return RandomWalkerMethod(partial=spec["partial"], name=name, **kw)
