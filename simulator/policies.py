"""How the robot picks one of a method's K candidates.

A policy returns the chosen candidate's index, or -1 to reject them all and keep the current
segmentation. Oracle policies look at the target; the others do not. Rejection is an oracle
decision (it compares candidates with the current state against the target), so only oracle
policies reject, and only when the session's ``allow_reject`` is on; it is applied identically to
every method, single-proposal ones included.

The oracle judges what a person sees: the foreground on screen. So it never accepts a candidate whose
handed-in segmentation (undecided pixels as background, as in the Dice) has a lower Dice than the
current one, however much correct background that candidate decides (``acceptance="no-worse-dice"``,
the default); among the rest it ranks by :func:`state_score`. ``acceptance="pixel-score"`` is the
first release's rule (rank and accept by the pixel score alone), kept as a protocol variant.

Candidates: ``masks``, ``segs`` bool (k, H, W) with ``segs ⊆ masks``; ``scores`` float (k,) or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from probseg.choice import REJECT, best_of_k, state_score

from .plugins import Registry, check_settings, factory_settings

__all__ = [
    "ACCEPTANCE_RULES",
    "POLICIES",
    "BestOfK",
    "First",
    "ModelRanked",
    "NoisyBestOfK",
    "Policy",
    "RandomOfK",
    "make_policy",
    "policy_defaults",
    "state_score",
]

ACCEPTANCE_RULES = ("no-worse-dice", "pixel-score")


class Policy(Protocol):
    """What the session calls. ``oracle``: whether the policy reads the target."""

    name: ClassVar[str]
    oracle: ClassVar[bool]

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int: ...


def _check_candidates(masks: np.ndarray, segs: np.ndarray, scores: np.ndarray | None) -> int:
    if masks.ndim != 3 or masks.shape != segs.shape or masks.shape[0] < 1:
        raise ValueError(f"masks: expected (k, H, W) with k >= 1 matching segs, got {masks.shape} and {segs.shape}")
    if scores is not None and np.shape(scores) != (masks.shape[0],):
        raise ValueError(f"scores: expected shape ({masks.shape[0]},), got {np.shape(scores)}")
    return masks.shape[0]


@dataclass(frozen=True)
class BestOfK:
    """Oracle: the candidate with the highest :func:`state_score` (ties to the lowest index).

    ``acceptance="no-worse-dice"`` (default): only candidates whose foreground has a Dice against the
    target at least that of the current foreground are eligible. With ``allow_reject`` it returns -1
    when no eligible candidate scores strictly above the current state, so a candidate that adds
    nothing (or adds as much wrong as right, weighted) is not taken. Without ``allow_reject`` it must
    take one: the best eligible candidate, or the best of all when none is eligible.
    ``acceptance="pixel-score"``: every candidate is eligible (the v0.1 rule).
    """

    name: ClassVar[str] = "best-of-k"
    oracle: ClassVar[bool] = True
    error_weight: float = 2.0
    acceptance: str = "no-worse-dice"

    def __post_init__(self) -> None:
        if not np.isfinite(self.error_weight) or self.error_weight < 0:
            raise ValueError(f"error_weight: must be a finite number >= 0, got {self.error_weight!r}")
        if self.acceptance not in ACCEPTANCE_RULES:
            raise ValueError(f"acceptance: unknown rule {self.acceptance!r}; allowed: {list(ACCEPTANCE_RULES)}")

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int:
        _check_candidates(masks, segs, scores)
        # The rule lives in probseg, so that a trainer simulating sessions accepts as this oracle does.
        return best_of_k(
            masks, segs, gt, current_mask, current_seg, error_weight=self.error_weight, allow_reject=allow_reject,
            no_worse_dice=self.acceptance == "no-worse-dice",
        )


@dataclass(frozen=True)
class NoisyBestOfK:
    """Oracle with slips: :class:`BestOfK` (rejection and acceptance rule included) with probability ``1 - epsilon``,
    else a uniformly random candidate (never a rejection). One uniform draw per call, plus one
    integer draw on a slip, all from ``rng``.
    """

    name: ClassVar[str] = "noisy-best-of-k"
    oracle: ClassVar[bool] = True
    epsilon: float = 0.1
    error_weight: float = 2.0
    acceptance: str = "no-worse-dice"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon!r}")
        BestOfK(self.error_weight, self.acceptance)  # validates error_weight and acceptance

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int:
        k = _check_candidates(masks, segs, scores)
        if rng.random() < self.epsilon:
            return int(rng.integers(k))
        return BestOfK(self.error_weight, self.acceptance).choose(
            masks, segs, scores, gt=gt, current_mask=current_mask, current_seg=current_seg,
            allow_reject=allow_reject, rng=rng,
        )


@dataclass(frozen=True)
class RandomOfK:
    """A uniformly random candidate (one integer draw from ``rng``); never rejects."""

    name: ClassVar[str] = "random-of-k"
    oracle: ClassVar[bool] = False

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int:
        return int(rng.integers(_check_candidates(masks, segs, scores)))


@dataclass(frozen=True)
class First:
    """Always candidate 0 (for a single-proposal method, simply its proposal); never rejects."""

    name: ClassVar[str] = "first"
    oracle: ClassVar[bool] = False

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int:
        _check_candidates(masks, segs, scores)
        return 0


@dataclass(frozen=True)
class ModelRanked:
    """No oracle: the candidate the model scores highest (ties to the lowest index); never rejects.

    A single candidate is taken whatever its score. Several candidates without scores (``scores``
    None or any NaN) raise ``ValueError`` naming ``policy``: silently falling back to the first
    candidate would report a model-ranking result that no ranking produced.
    """

    name: ClassVar[str] = "model-ranked"
    oracle: ClassVar[bool] = False

    def choose(
        self,
        masks: np.ndarray,
        segs: np.ndarray,
        scores: np.ndarray | None,
        *,
        gt: np.ndarray,
        current_mask: np.ndarray,
        current_seg: np.ndarray,
        allow_reject: bool,
        rng: np.random.Generator,
    ) -> int:
        k = _check_candidates(masks, segs, scores)
        if k == 1:
            return 0
        values = None if scores is None else np.asarray(scores, dtype=np.float64)
        if values is None or np.isnan(values).any():
            raise ValueError("policy: 'model-ranked' needs a score for every candidate; this method gives none")
        return int(np.argmax(values))


# The shipped policies, each registered under its name in pyproject.toml's ``probseg.policies``
# entry points (a plug-in registers a class or factory there the same way; see simulator.plugins).
SHIPPED_POLICIES = {
    "best-of-k": "simulator.policies:BestOfK",
    "random-of-k": "simulator.policies:RandomOfK",
    "first": "simulator.policies:First",
    "noisy-best-of-k": "simulator.policies:NoisyBestOfK",
    "model-ranked": "simulator.policies:ModelRanked",
}
POLICIES = Registry("policy", "probseg.policies", SHIPPED_POLICIES)


def make_policy(name: str, **settings: Any) -> Policy:
    """A policy by name (:data:`POLICIES`, or ``module.path:factory``) with its settings
    (``error_weight`` and ``acceptance`` for the oracles, ``epsilon`` for noisy).

    Raises ``ValueError`` naming ``policy`` for an unknown name, or the setting a policy does not take.
    """
    factory = POLICIES.load(name)
    check_settings("policy", name, factory, settings)
    return factory(**settings)


def policy_defaults(name: str) -> dict[str, Any] | None:
    """The settings policy ``name`` takes, with their defaults; None for an unknown name.

    A plug-in policy that does not say (``**kwargs``) takes none as far as a report can tell.
    """
    if name not in POLICIES:
        return None
    return factory_settings(POLICIES.load(name)) or {}
