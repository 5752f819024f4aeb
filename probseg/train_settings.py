"""What a training run is told: :class:`TrainSettings` (recorded in the checkpoint) and the
interaction loop's :class:`LoopSpec`.

No torch here, so that ``probseg-train --help`` and a usage error come at once; checking settings
that name a device or the medical augmentation imports what it needs then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .configs import CONFIGS, SCORE_HEADS
from .data.augment import AugmentSpec
from .data.disks import N_TRAIN
from .data.medscribble import DEFAULT_MEDSCRIBBLE, DEFAULT_TRAIN_TASKS, medscribble_tasks
from .data.partials import PairSpec
from .data.synth import SynthSpec

__all__ = ["DATASETS", "LOOP_STARTS", "LoopSpec", "TrainSettings"]

# The starts a simulated training session begins from: the simulator's click and scribble starts, and
# an input drawn like a training pair's.
LOOP_STARTS = ("clicks", "scribbles", "random")


DATASETS = ("disks", "medical")


@dataclass
class TrainSettings:
    """Settings of one training run (all recorded in the checkpoint).

    Attributes:
        config: a name in :data:`probseg.model.CONFIGS`.
        dataset: the training data: ``disks`` (configurations without a working size) or
            ``medical`` (the ``medical*`` configurations).
        steps: optimiser steps.
        batch_size: samples per step.
        lr: Adam learning rate (cosine-decayed to 5% over the run).
        seed: seeds the pool, the weights and the batch order.
        n_pairs: pairs drawn into the pool.
        n_train_images: training images the pairs are cut from (``disks``).
        extra_noise: (max) standard deviation of extra Gaussian noise added per image, so the model
            does not depend on one noise level (``disks``; ``medical`` has its own augmentation).
        eval_images: held-out images evaluated at the end (0: skip); for ``medical`` at most this
            many images of the unseen MedScribble tasks, taken in turn from each task.
        threads: torch threads (0: torch's default).
        beta1: overrides the configuration's KL weight (None: keep it); the checkpoint's config
            records the value used.
        kl_warmup: steps over which the KL weight ramps linearly from 0 to beta1 (0: none), a
            common remedy for posterior collapse.
        free_bits: nats per latent dimension the KL term does not penalise (0: none, the paper);
            another remedy for posterior collapse, see :func:`probseg.losses.kl_divergence`.
        device: where the network trains: ``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when
            available). The pool, the batch order and the final evaluation stay on the CPU, so the
            data a seed gives does not depend on the device; the weights do, slightly (GPU kernels
            round differently), so a CPU run is the one that reproduces bit for bit.
        pair_spec: overrides of :class:`~probseg.data.partials.PairSpec` (``mode`` follows the model).
        medscribble: the MedScribble folder (``medical``).
        train_tasks: the MedScribble tasks trained on (``medical``); every other task under
            ``medscribble`` is held out.
        real_fraction: fraction of pairs from real images (``medical``); the rest are synthetic.
        synth_spec: overrides of :class:`~probseg.data.synth.SynthSpec` (``medical``).
        augment_spec: overrides of :class:`~probseg.data.medical.AugmentSpec` (``medical``).
        interaction_loop: train in the interaction loop (:mod:`probseg.interaction_loop`): the pool
            holds ``n_pairs`` images with whole targets, and each batch simulates a short session
            on the network's own proposals before the step trained on. Deterministic networks only.
        loop_spec: overrides of :class:`LoopSpec` (``interaction_loop``).
        score_steps: after the ``steps``, this many more steps of the interaction loop that train the
            score head alone, the rest of the network frozen (scored configurations): the candidates
            do not change, only how they are ranked. Trained jointly, the score head chases candidates
            that are still moving and learns little; once they stop, it learns to rank them.
        score_head: the score head to build (one of :data:`~probseg.configs.SCORE_HEADS`), or None:
            the configuration's (scored configurations only).
    """

    config: str = "paper"
    dataset: str = "disks"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    n_pairs: int = 20000
    n_train_images: int = N_TRAIN
    extra_noise: float = 0.03
    eval_images: int = 1000
    threads: int = 0
    beta1: float | None = None
    kl_warmup: int = 0
    free_bits: float = 0.0
    device: str = "cpu"
    pair_spec: dict[str, Any] = field(default_factory=dict)
    medscribble: str = DEFAULT_MEDSCRIBBLE
    train_tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TRAIN_TASKS))
    real_fraction: float = 0.5
    synth_spec: dict[str, Any] = field(default_factory=dict)
    augment_spec: dict[str, Any] = field(default_factory=dict)
    interaction_loop: bool = False
    loop_spec: dict[str, Any] = field(default_factory=dict)
    score_steps: int = 0
    score_head: str | None = None

    def validate(self) -> None:
        if self.config not in CONFIGS:
            raise ValueError(f"config: unknown configuration {self.config!r}; known: {', '.join(CONFIGS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        # A working-size model must be trained at its working size on the data it is meant for.
        medical_configs = ", ".join(n for n, c in CONFIGS.items() if c.work_size > 0)
        if self.dataset == "disks" and CONFIGS[self.config].work_size > 0:
            raise ValueError(
                f"dataset: configuration {self.config!r} works at {CONFIGS[self.config].work_size}x"
                f"{CONFIGS[self.config].work_size} on medical images; train it with --dataset medical"
            )
        if self.dataset == "medical" and CONFIGS[self.config].work_size == 0:
            raise ValueError(
                f"config: dataset 'medical' needs a configuration with a working size ({medical_configs}), "
                f"got {self.config!r}"
            )
        for name in ("steps", "batch_size", "n_pairs", "n_train_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.eval_images < 0:
            raise ValueError(f"eval_images: must be >= 0, got {self.eval_images}")
        if self.beta1 is not None and not (self.beta1 >= 0 and np.isfinite(self.beta1)):
            raise ValueError(f"beta1: must be a finite number >= 0, got {self.beta1}")
        if self.kl_warmup < 0:
            raise ValueError(f"kl_warmup: must be >= 0, got {self.kl_warmup}")
        if not (self.free_bits >= 0 and np.isfinite(self.free_bits)):
            raise ValueError(f"free_bits: must be a finite number >= 0, got {self.free_bits}")
        from .train import resolve_device  # torch: only once the settings are checked

        resolve_device(self.device)
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.dataset == "medical":
            self._validate_medical()
        elif self.augment_spec or self.synth_spec:
            name = "augment_spec" if self.augment_spec else "synth_spec"
            raise ValueError(f"{name}: only --dataset medical has real or synthetic medical images to apply it to")
        if CONFIGS[self.config].scored and not self.interaction_loop:
            raise ValueError(
                f"config: {self.config!r} gives several scored candidates (heads or SSN samples), which train in "
                "the interaction loop; add --interaction-loop"
            )
        if isinstance(self.score_steps, bool) or not isinstance(self.score_steps, int) or self.score_steps < 0:
            raise ValueError(f"score_steps: must be an integer >= 0, got {self.score_steps!r}")
        if self.score_steps and not CONFIGS[self.config].scored:
            raise ValueError(f"score_steps: configuration {self.config!r} has no score head to train")
        if self.score_head is not None:
            if self.score_head not in SCORE_HEADS:
                raise ValueError(f"score_head: must be one of {', '.join(SCORE_HEADS)}, got {self.score_head!r}")
            if not CONFIGS[self.config].scored:
                raise ValueError(f"score_head: configuration {self.config!r} has no score head")
        if self.interaction_loop:
            if CONFIGS[self.config].stochastic:
                raise ValueError(
                    f"config: training in the interaction loop needs a deterministic network, {self.config!r} has a latent"
                )
            try:
                LoopSpec.from_dict(self.loop_spec)
            except TypeError as exc:
                raise ValueError(f"loop_spec: {exc}") from None

    def _validate_medical(self) -> None:
        if not (0 <= self.real_fraction <= 1):
            raise ValueError(f"real_fraction: must be in [0, 1], got {self.real_fraction}")
        tasks = list(self.train_tasks)
        if not tasks or any(not isinstance(t, str) or not t for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"train_tasks: expected distinct non-empty task names, got {tasks}")
        from .data.medical import heldout_tasks  # torch: only once the settings are checked

        for name, cls in (("synth_spec", SynthSpec), ("augment_spec", AugmentSpec), ("pair_spec", PairSpec)):
            try:
                cls.from_dict(getattr(self, name))
            except TypeError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if self.real_fraction > 0 or self.eval_images > 0:
            if not Path(self.medscribble).expanduser().is_dir():
                raise ValueError(f"medscribble: MedScribble folder not found: {self.medscribble}")
            available = medscribble_tasks(self.medscribble)
            unknown = [t for t in tasks if t not in available]
            if unknown:
                raise ValueError(f"train_tasks: unknown task {', '.join(unknown)}; available: {', '.join(available)}")
            if self.eval_images > 0 and not heldout_tasks(self.medscribble, tasks):
                raise ValueError("eval_images: every MedScribble task is a training task, none is left to evaluate on")


@dataclass(frozen=True)
class LoopSpec:
    """How training sessions are simulated.

    Attributes:
        max_steps: most correction steps before the trained step (each batch draws 0..max_steps).
        start_weights: probabilities of the starts ``clicks`` (the simulator's click start),
            ``scribbles`` (its scribble start) and ``random`` (an input drawn like a training pair's).
        temperature: the best-candidate loss's soft-minimum temperature at step 0 (multi-head).
        spread: weight kept on every head (see :func:`probseg.losses.best_candidate_weights`).
        score_weight: weight of the score head's squared error.
        score_rank_weight: weight of the score head's listwise ranking loss
            (:func:`probseg.losses.score_rank_loss`; 0, the default of runs before it existed: none).
        score_rank_temperature: that loss's target temperature.
        error_weight: the oracle's weight on wrong pixels (the simulator's default, 2).
    """

    max_steps: int = 3
    start_weights: dict[str, float] = field(default_factory=lambda: {"clicks": 0.35, "scribbles": 0.35, "random": 0.3})
    temperature: float = 0.3
    spread: float = 0.05
    score_weight: float = 1.0
    error_weight: float = 2.0
    score_rank_weight: float = 0.0
    score_rank_temperature: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValueError(f"max_steps: must be an integer >= 0, got {self.max_steps!r}")
        bad = set(self.start_weights) - set(LOOP_STARTS)
        if bad:
            raise ValueError(f"start_weights: unknown starts {sorted(bad)}; allowed: {list(LOOP_STARTS)}")
        if any(v < 0 for v in self.start_weights.values()) or sum(self.start_weights.values()) <= 0:
            raise ValueError("start_weights: weights must be >= 0 and not all zero")
        for name in ("temperature", "score_weight", "error_weight", "score_rank_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.score_rank_temperature > 0:
            raise ValueError(f"score_rank_temperature: must be > 0, got {self.score_rank_temperature}")
        if not 0 <= self.spread <= 1:
            raise ValueError(f"spread: must be in [0, 1], got {self.spread}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopSpec":
        return cls(**d)

    def temperature_at(self, step: int, steps: int) -> float:
        """The soft-minimum temperature at training step ``step`` of ``steps``."""
        half = max(1, steps // 2)
        return self.temperature * max(0.0, 1.0 - step / half)
