"""The methods a session compares, behind one small protocol.

A method's ``kind`` decides what the session feeds it (see :mod:`simulator.session`): a ``partial``
method gets the accepted state (chosen proposal plus corrections), a ``complete`` method only the
annotator's own input (start plus corrections) and re-predicts every pixel from it.

Any object with the :class:`Method` protocol is a method: name its factory as ``module.path:factory``
or register it in the ``probseg.methods`` entry-point group (:mod:`simulator.plugins`), as the
shipped methods are. :func:`make_method` makes every method and wraps it in :class:`CheckedMethod`,
which refuses an answer that breaks the protocol's rules.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

import numpy as np

import probseg

from .metrics import dice
from .plugins import Registry, check_settings

if TYPE_CHECKING:
    from probseg import ProbSeg

__all__ = [
    "METHODS",
    "CheckedMethod",
    "Method",
    "ProbSegMethod",
    "RW_MODES",
    "RandomWalkerMethod",
    "TTAMethod",
    "checked",
    "make_method",
    "walker_probabilities",
]

Kind = Literal["partial", "complete"]
Proposals = tuple[np.ndarray, np.ndarray, np.ndarray | None]
# One proposal request: the arguments of Method.propose, (image, mask, seg, k, rng).
ProposeArgs = tuple[np.ndarray, np.ndarray, np.ndarray, int, np.random.Generator]


class Method(Protocol):
    """What a session calls; a plug-in method implements exactly this (README: "Your own method").

    Attributes:
        name: the method's name in results.
        kind: ``partial`` (leaves pixels undecided, fed the accepted state) or ``complete`` (decides
            every pixel, fed only the annotator's input).
        multi: whether it gives K different proposals (else the session asks for K = 1).

    A factory (the object a name or ``module:factory`` stands for: a class or a function) is called
    with the method's settings: ``checkpoint=`` when a run gives one, nothing otherwise. It may say
    its default checkpoints in attributes ``checkpoint`` (on disks) and ``real_checkpoint`` (on real
    images). A method may expose the :class:`~probseg.ProbSeg` it runs as ``model``: the run then
    records its checkpoint (``model.info``) and refuses a dataset with one of its training tasks.
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


def _is_model(obj: Any) -> bool:
    """``isinstance(obj, ProbSeg)`` without importing torch: a ProbSeg exists only once it is imported."""
    predictor = sys.modules.get("probseg.predictor")
    return predictor is not None and isinstance(obj, predictor.ProbSeg)


class ProbSegMethod:
    """A probseg model as a method.

    Args:
        model: a :class:`probseg.ProbSeg`, or a checkpoint name/path loaded on first use (so a method
            can be named before its checkpoint exists).
        mean: propose the z = 0 proposal only (K = 1).
        name: the name in results (default: the model's name, ``-mean`` appended when ``mean``).
        expect_kind: if given, loading a model of the other kind raises ``ValueError`` naming
            ``checkpoint`` (catches e.g. a partial checkpoint passed to ``probseg-complete``).

    ``kind`` follows ``model.is_partial``; ``multi`` is False for ``mean`` and for single-output
    deterministic networks (their K proposals would be identical). Scores are the model's own (a
    multi-head model's: each head's predicted Dice).
    """

    def __init__(
        self,
        model: ProbSeg | str | os.PathLike,
        mean: bool = False,
        name: str | None = None,
        expect_kind: Kind | None = None,
    ) -> None:
        if not (_is_model(model) or isinstance(model, (str, os.PathLike))):
            raise ValueError(f"model: expected a ProbSeg or a checkpoint name/path, got {type(model).__name__}")
        if expect_kind not in (None, "partial", "complete"):
            raise ValueError(f"expect_kind: must be None, 'partial' or 'complete', got {expect_kind!r}")
        self._model = model if _is_model(model) else None
        self._source = model
        self.mean = bool(mean)
        self.expect_kind = expect_kind
        base = name if name is not None else (model.name if _is_model(model) else str(model))
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
                f"checkpoint: {self._source if not _is_model(self._source) else model.name!r} is a {kind} "
                f"model but method {self.name!r} needs a {self.expect_kind} one"
            )
        return model

    @property
    def kind(self) -> Kind:
        return "partial" if self.model.is_partial else "complete"

    @property
    def multi(self) -> bool:
        return self.model.is_multi and not self.mean

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

    def propose_batch(self, requests: Sequence[ProposeArgs]) -> list[Proposals]:
        """:meth:`propose` of many ``(image, mask, seg, k, rng)`` requests (one per session) in one
        batched forward pass per k; result i equals ``propose(*requests[i])`` bit for bit (see
        :meth:`probseg.ProbSeg.propose_batch`), each rng drawn from as :meth:`propose` draws from it."""
        model = self.model
        out: list[Proposals | None] = [None] * len(requests)
        for k in dict.fromkeys(r[3] for r in requests):
            rows = [i for i, r in enumerate(requests) if r[3] == k]
            n = k if self.multi else 1
            got = model.propose_batch([requests[i][0] for i in rows], [requests[i][1] for i in rows],
                                      [requests[i][2] for i in rows], k=n, seeds=[requests[i][4] for i in rows],
                                      mean=self.mean, return_scores=True)
            for i, (masks, segs, scores) in zip(rows, got):
                if n != k:
                    masks, segs, scores = (np.repeat(a, k, axis=0) for a in (masks, segs, scores))
                out[i] = (masks, segs, np.asarray(scores, dtype=np.float64))
        return out  # type: ignore[return-value]

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
        if isinstance(model, CheckedMethod):  # what make_method returns: the model inside is what counts
            model = model.__dict__["method"]
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
    from skimage.segmentation import random_walker  # scikit-image's import is slow; only the walker needs it

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


@dataclass(frozen=True)
class ModelMethodFactory:
    """A shipped model method's factory: ``factory(checkpoint=None)`` makes the method.

    Attributes:
        name: the method's name.
        checkpoint: the default checkpoint on synthetic disks.
        real_checkpoint: the default on real images (the medical models, trained on other tasks
            than those a real-data study evaluates).
        kind: the kind its checkpoint must have.
        mean: propose the z = 0 proposal only.
        tta: the model's K candidates under test-time augmentation (see :class:`TTAMethod`).
    Nothing is loaded until the method's first proposal.
    """

    name: str
    checkpoint: str
    real_checkpoint: str
    kind: Kind
    mean: bool = False
    tta: bool = False

    def __call__(self, checkpoint: str | os.PathLike | ProbSeg | None = None) -> Method:
        source = self.checkpoint if checkpoint is None else checkpoint
        if self.tta:
            return TTAMethod(ProbSegMethod(source, name=f"{self.name}-base", expect_kind=self.kind), name=self.name)
        return ProbSegMethod(source, mean=self.mean, name=self.name, expect_kind=self.kind)


@dataclass(frozen=True)
class WalkerFactory:
    """A shipped random walker's factory: ``factory(beta=..., confidence=..., mode=..., tol=...)``."""

    name: str
    partial: bool

    def __call__(self, **settings: Any) -> Method:
        if "checkpoint" in settings:
            raise ValueError(f"checkpoint: method {self.name!r} has no checkpoint")
        allowed = {"beta", "confidence", "mode", "tol"}
        bad = sorted(set(settings) - allowed)
        if bad:
            raise ValueError(f"{bad[0]}: not a setting of method {self.name!r}; its settings: {sorted(allowed)}")
        return RandomWalkerMethod(partial=self.partial, name=self.name, **settings)


# The shipped methods' factories, each registered under its name in pyproject.toml's
# ``probseg.methods`` entry points (the names below are what those entry points load).
PROBSEG = ModelMethodFactory("probseg", "disks", "medical", "partial")
PROBSEG_MEAN = ModelMethodFactory("probseg-mean", "disks", "medical", "partial", mean=True)
PROBSEG_COMPLETE = ModelMethodFactory("probseg-complete", "disks-complete", "medical-complete", "complete")
UNET_COMPLETE = ModelMethodFactory("unet-complete", "disks-unet-complete", "medical-unet-complete", "complete")
# The U-Net's K candidates under test-time augmentation: a diversity control (see TTAMethod).
UNET_TTA = ModelMethodFactory("unet-tta", "disks-unet-complete", "medical-unet-complete", "complete", tta=True)
RANDOM_WALKER = WalkerFactory("random-walker", partial=False)
RANDOM_WALKER_PARTIAL = WalkerFactory("random-walker-partial", partial=True)

SHIPPED_METHODS = {
    "probseg": "simulator.methods:PROBSEG",
    "probseg-mean": "simulator.methods:PROBSEG_MEAN",
    "probseg-complete": "simulator.methods:PROBSEG_COMPLETE",
    "unet-complete": "simulator.methods:UNET_COMPLETE",
    "unet-tta": "simulator.methods:UNET_TTA",
    "random-walker": "simulator.methods:RANDOM_WALKER",
    "random-walker-partial": "simulator.methods:RANDOM_WALKER_PARTIAL",
}


class MethodRegistry(Registry):
    """:data:`METHODS`: ``registry[name]`` gives the method's default checkpoints,
    ``{"checkpoint": ..., "real_checkpoint": ...}`` (None for a method without one), read from its
    factory's attributes of those names; :meth:`load` gives the factory itself."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        factory = super().__getitem__(name)
        return {"checkpoint": getattr(factory, "checkpoint", None),
                "real_checkpoint": getattr(factory, "real_checkpoint", None)}


METHODS = MethodRegistry("method", "probseg.methods", SHIPPED_METHODS)


def make_method(name: str, checkpoint: str | os.PathLike | ProbSeg | None = None, **kw: Any) -> Method:
    """A method by name, checked against the :class:`Method` contract at every proposal.

    Args:
        name: a registered name (:data:`METHODS`: the shipped methods and every installed
            ``probseg.methods`` entry point) or ``module.path:factory``.
        checkpoint: passed to the factory when given (the probseg methods: a registry name, a ``.pt``
            path or a loaded :class:`~probseg.ProbSeg` replacing the default checkpoint; loading is
            deferred to the first proposal). Refused by a factory that takes none.
        kw: the factory's settings (the random walkers: ``beta``, ``confidence``, ``mode``, ``tol``).
    Returns:
        The factory's method wrapped in :class:`CheckedMethod`.
    Raises:
        ValueError: naming ``method`` for an unknown name or a factory that cannot be imported, or
            the setting a factory does not take.
    """
    factory = METHODS.load(name)
    settings = dict(kw) if checkpoint is None else {"checkpoint": checkpoint, **kw}
    check_settings("method", name, factory, settings)
    return checked(factory(**settings), name)


def checked(method: Any, name: str | None = None) -> CheckedMethod:
    """``method`` wrapped in :class:`CheckedMethod` (labelled ``name``, default its own name), or
    ``method`` itself when it is one already: wrapping twice would check every answer twice.

    Raises:
        ValueError: naming ``method`` when it has no name or no ``propose``.
    """
    return method if isinstance(method, CheckedMethod) else CheckedMethod(method, name)


class CheckedMethod:
    """A method whose every answer is checked against the :class:`Method` contract.

    Every method :func:`make_method` makes is wrapped in one, so a method that breaks a rule stops
    the run with one line naming it and the rule, instead of producing tables from impossible
    states. The rules (``mask``, ``seg`` the state it was given, ``k`` the candidates asked for):

    * ``name`` is a string, ``kind`` is ``partial`` or ``complete``, ``multi`` is a bool;
    * ``propose`` returns ``(masks, segs, scores)``; ``masks`` and ``segs`` are bool (k, H, W);
    * ``scores`` is None or k finite-or-NaN real numbers;
    * ``masks ⊇ mask`` (no decided pixel is undecided again), ``segs == seg`` on ``mask`` (no
      decided pixel changes its label), ``segs ⊆ masks`` (no undecided pixel is foreground);
    * a ``complete`` method decides every pixel (``masks`` all True).

    ``propose_batch`` answers many requests at once (by the wrapped method's own ``propose_batch``
    when it has one) and checks each answer by the same rules. The wrapped method gets copies of
    ``mask`` and ``seg``: it can neither edit its caller's state nor pass a check by editing its
    arguments. Any other attribute is the wrapped method's (``model``, ``beta``, ...). ``scores``
    come back as float64 (k,).
    """

    def __init__(self, method: Any, name: str | None = None) -> None:
        self.__dict__["method"] = method
        self.__dict__["label"] = name if name is not None else str(getattr(method, "name", type(method).__name__))
        if not isinstance(getattr(method, "name", None), str):
            self._broke("it has no name (a str attribute 'name')")
        if not callable(getattr(method, "propose", None)):
            self._broke("it has no propose(image, mask, seg, k, rng) method")

    def _broke(self, rule: str) -> NoReturn:
        raise ValueError(f"method: {self.__dict__['label']!r} breaks the Method contract: {rule}")

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes the wrapper lacks; during unpickling __dict__ is still empty.
        if attr.startswith("__") or "method" not in self.__dict__:
            raise AttributeError(attr)
        return getattr(self.__dict__["method"], attr)

    @property
    def name(self) -> str:
        return self.__dict__["method"].name

    @property
    def kind(self) -> Kind:
        kind = self.__dict__["method"].kind
        if kind not in ("partial", "complete"):
            self._broke(f"kind must be 'partial' or 'complete', got {kind!r}")
        return kind

    @property
    def multi(self) -> bool:
        multi = self.__dict__["method"].multi
        if not isinstance(multi, (bool, np.bool_)):
            self._broke(f"multi must be True or False, got {multi!r}")
        return bool(multi)

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> Proposals:
        """The wrapped method's proposals, after checking them (see the class docstring)."""
        out = self.__dict__["method"].propose(image, mask.copy(), seg.copy(), k, rng)
        return check_proposals(self.__dict__["label"], self.kind, out, k, mask, seg)

    def propose_batch(self, requests: Sequence[ProposeArgs]) -> list[Proposals]:
        """:meth:`propose` of each ``(image, mask, seg, k, rng)`` request, checked one by one.

        A wrapped method with ``propose_batch`` answers two or more requests in one call (result i
        must equal ``propose(*requests[i])``); otherwise each request is proposed alone.
        """
        inner = self.__dict__["method"]
        batch = getattr(inner, "propose_batch", None)
        if batch is None or len(requests) == 1:
            return [self.propose(*r) for r in requests]
        outs = batch([(image, mask.copy(), seg.copy(), k, rng) for image, mask, seg, k, rng in requests])
        if not isinstance(outs, (list, tuple)) or len(outs) != len(requests):
            self._broke(f"propose_batch must return one answer per request ({len(requests)}), "
                        f"got {len(outs) if isinstance(outs, (list, tuple)) else type(outs).__name__}")
        kind = self.kind
        return [check_proposals(self.__dict__["label"], kind, out, k, mask, seg)
                for (_, mask, seg, k, _), out in zip(requests, outs)]

    def __repr__(self) -> str:
        return f"CheckedMethod({self.__dict__['method']!r})"


def check_proposals(label: str, kind: Kind, out: Any, k: int, mask: np.ndarray, seg: np.ndarray) -> Proposals:
    """``out``, a method's answer to ``propose(image, mask, seg, k, rng)``, checked against the
    :class:`Method` contract (see :class:`CheckedMethod`); scores come back as float64 (k,).

    Raises:
        ValueError: ``method: LABEL breaks the Method contract: RULE``, naming the first rule broken.
    """
    def broke(rule: str) -> NoReturn:
        raise ValueError(f"method: {label!r} breaks the Method contract: {rule}")

    if not isinstance(out, tuple) or len(out) != 3:
        broke("propose must return a tuple (masks, segs, scores)")
    masks, segs, scores = out
    shape = (k, *np.shape(mask))
    for what, a in (("masks", masks), ("segs", segs)):
        if not isinstance(a, np.ndarray) or a.dtype != bool:
            broke(f"{what} must be a bool numpy array, got {getattr(a, 'dtype', type(a).__name__)}")
        if a.shape != shape:
            broke(f"{what} must have shape (k, H, W) = {shape} for k = {k}, got {a.shape}")
    if (segs & ~masks).any():
        broke("segs must lie inside masks (an undecided pixel is never foreground)")
    if (mask[None] & ~masks).any():
        broke("masks must contain mask (a decided pixel stays decided)")
    if (mask[None] & (segs != seg[None])).any():
        broke("segs must equal seg on mask (a decided pixel keeps its label)")
    if kind == "complete" and not masks.all():
        broke("a complete method must decide every pixel (masks all True)")
    if scores is not None:
        values = np.asarray(scores)
        if values.shape != (k,) or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
            broke(f"scores must be None or k = {k} real numbers, got {values.dtype} {values.shape}")
        scores = values.astype(np.float64)
    return masks, segs, scores
