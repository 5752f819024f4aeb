"""Training: ``probseg-train`` and :func:`train`.

Pairs are drawn once into a pool (deterministic from the seed) and served in random order with a
random dihedral transform per sample, so a pool of ``n_pairs`` gives ``8 * n_pairs`` distinct
samples. The checkpoint records the configuration, the data spec, the training settings with the
command line, and the held-out metrics the model reached.

Datasets: ``disks`` (the paper's synthetic disks, for the ``paper``/``wide`` configurations) and
``medical`` (SynthMorph-style synthetic images mixed with augmented MedScribble images of the
training tasks, at the working size of the ``medical*`` configurations; see
:mod:`probseg.data.medical`). A medical run ends with a cheap check on the MedScribble tasks it
never saw (:func:`probseg.data.medical.evaluate_heldout`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint
from .cli import ArgumentParser, cli_entry
from .data.disks import N_TRAIN, TRAIN_SEED, DiskSpec, make_disk_dataset, subset_mask
from .data.examples import Example
from .data.intensity import normalize_image
from .data.medical import (
    DEFAULT_MEDSCRIBBLE,
    DEFAULT_TRAIN_TASKS,
    AugmentSpec,
    build_medical_pool,
    build_medical_target_pool,
    evaluate_heldout,
    heldout_tasks,
    pool_batch_to_float,
)
from .data.medscribble import load_medscribble, medscribble_tasks
from .data.partials import PairSpec, make_partial_pair
from .data.synth import SynthSpec
from .interaction import default_brush_radius
from .interaction_loop import LoopSpec, loop_loss
from .losses import partial_seg_loss
from .model import CONFIGS, ModelConfig, PartialSegNet, build_network
from .predictor import ProbSeg

__all__ = ["TrainSettings", "DATASETS", "build_disk_pool", "train", "main"]

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
        loop_spec: overrides of :class:`~probseg.interaction_loop.LoopSpec` (``interaction_loop``).
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
        resolve_device(self.device)
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.dataset == "medical":
            self._validate_medical()
        if CONFIGS[self.config].scored and not self.interaction_loop:
            raise ValueError(
                f"config: {self.config!r} gives several scored candidates (heads or SSN samples), which train in "
                "the interaction loop; add --interaction-loop"
            )
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


def resolve_device(device: str) -> torch.device:
    """The torch device named by ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``).

    Raises:
        ValueError: naming ``device`` when the name is unknown or CUDA is not available.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device: expected cpu, cuda, cuda:N or auto, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected cpu, cuda, cuda:N or auto, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} asked for, but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def build_disk_pool(
    n_pairs: int,
    seed: int,
    pair_spec: PairSpec,
    disk_spec: DiskSpec = DiskSpec(),
    n_images: int = N_TRAIN,
    extra_noise: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Training pairs from the disk training split: float32 (n_pairs, 5, H, W).

    Channels: normalised image, x_m, x_s, y_m, y_s. Pair ``j`` depends only on ``(seed, j)``. Its
    target is a uniformly drawn non-empty subset of the image's disks (the empty subset, 1 in 10).
    """
    images = make_disk_dataset(n_images, TRAIN_SEED, disk_spec)
    size = disk_spec.size
    pool = np.zeros((n_pairs, 5, size, size), dtype=np.float32)
    n_disks = disk_spec.n_disks
    for j in tqdm(range(n_pairs), desc="pairs", disable=not progress, unit="pair", leave=False):
        rng = np.random.default_rng([seed, j])
        disk, target = _draw_disk_target(rng, images, n_disks)
        pair = make_partial_pair(rng, target, pair_spec, disk.disks)
        pool[j] = np.stack([_noisy_image(rng, disk.image, extra_noise), pair.x_m, pair.x_s, pair.y_m, pair.y_s])
    return torch.from_numpy(pool)


def _draw_disk_target(rng: np.random.Generator, images: list, n_disks: int) -> tuple[Any, np.ndarray]:
    """A training image and a uniformly drawn non-empty subset of its disks (the empty one, 1 in 10)."""
    disk = images[int(rng.integers(len(images)))]
    bits = 0 if rng.random() < 0.1 else int(rng.integers(1, 2**n_disks))
    return disk, subset_mask(disk.disks, [d for d in range(n_disks) if bits >> d & 1])


def _noisy_image(rng: np.random.Generator, image: np.ndarray, extra_noise: float) -> np.ndarray:
    """The normalised image, with Gaussian noise of a standard deviation drawn in [0, extra_noise]."""
    if extra_noise > 0:
        image = image + rng.normal(0.0, rng.uniform(0.0, extra_noise), size=image.shape)
    return normalize_image(image)


def build_disk_target_pool(
    n_images: int, seed: int, disk_spec: DiskSpec = DiskSpec(), n_train: int = N_TRAIN, extra_noise: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Images and whole targets for training in the interaction loop: float32 (n_images, 2, H, W).

    Channels: the normalised image and the target (a subset of the image's disks, drawn as
    :func:`build_disk_pool` draws its targets). Image ``j`` depends only on ``(seed, j)``.
    """
    images = make_disk_dataset(n_train, TRAIN_SEED, disk_spec)
    size = disk_spec.size
    pool = np.zeros((n_images, 2, size, size), dtype=np.float32)
    for j in tqdm(range(n_images), desc="images", disable=not progress, unit="image", leave=False):
        rng = np.random.default_rng([seed, j])
        disk, target = _draw_disk_target(rng, images, disk_spec.n_disks)
        pool[j] = np.stack([_noisy_image(rng, disk.image, extra_noise), target])
    return torch.from_numpy(pool)


def _medical_pool(
    settings: TrainSettings, config: ModelConfig, pair_spec: PairSpec, progress: bool, whole_targets: bool = False
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ``medical`` pool (uint8) and its data spec: training pairs (see
    :func:`~probseg.data.medical.build_medical_pool`), or with ``whole_targets`` images with their
    whole targets for the interaction loop (:func:`~probseg.data.medical.build_medical_target_pool`)."""
    synth_spec = replace(SynthSpec.from_dict(settings.synth_spec), size=config.work_size)
    augment_spec = AugmentSpec.from_dict(settings.augment_spec)
    tasks = list(settings.train_tasks)
    examples = load_medscribble(settings.medscribble, tasks=tasks) if settings.real_fraction > 0 else []
    if whole_targets:
        pool = build_medical_target_pool(
            settings.n_pairs, settings.seed, tasks, settings.medscribble, settings.real_fraction, synth_spec,
            augment_spec, size=config.work_size, examples=examples or None, progress=progress,
        )
    else:
        pool = build_medical_pool(
            settings.n_pairs, settings.seed, tasks, settings.medscribble, settings.real_fraction, pair_spec,
            synth_spec, augment_spec, size=config.work_size, examples=examples or None, dtype=torch.uint8,
            progress=progress,
        )
    data_spec = {
        "dataset": "medical",
        "tasks": tasks,
        "heldout_tasks": heldout_tasks(settings.medscribble, tasks) if Path(settings.medscribble).expanduser().is_dir() else [],
        "medscribble": str(settings.medscribble),
        "train_examples": [e.example_id for e in examples],
        "real_fraction": settings.real_fraction,
        "work_size": config.work_size,
        "synth_spec": synth_spec.to_dict(),
        "augment_spec": augment_spec.to_dict(),
        "pair_spec": pair_spec.to_dict(),
    }
    return pool, data_spec


def _disk_data_spec(settings: TrainSettings, disk_spec: DiskSpec, pair_spec: PairSpec) -> dict[str, Any]:
    return {
        "dataset": settings.dataset,
        "tasks": ["disks"],
        "disk_spec": disk_spec.to_dict(),
        "pair_spec": pair_spec.to_dict(),
        "train_seed": TRAIN_SEED,
        "n_train_images": settings.n_train_images,
        "extra_noise": settings.extra_noise,
    }


def _target_pool(
    settings: TrainSettings, config: ModelConfig, pair_spec: PairSpec, disk_spec: DiskSpec, loop_spec: LoopSpec,
    progress: bool,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The interaction loop's pool of images with whole targets, and its data spec."""
    if settings.dataset == "medical":
        pool, data_spec = _medical_pool(settings, config, pair_spec, progress, whole_targets=True)
    else:
        pool = build_disk_target_pool(
            settings.n_pairs, settings.seed, disk_spec, settings.n_train_images, settings.extra_noise, progress
        )
        data_spec = _disk_data_spec(settings, disk_spec, pair_spec)
    data_spec["interaction_loop"] = loop_spec.to_dict()
    return pool, data_spec


def _heldout_examples(settings: TrainSettings) -> list[Example]:
    """At most ``eval_images`` examples of the unseen tasks, taken in turn from each task."""
    tasks = heldout_tasks(settings.medscribble, settings.train_tasks)
    by_task = [load_medscribble(settings.medscribble, tasks=[t]) for t in tasks]
    out = []
    for i in range(max(len(g) for g in by_task)):
        out.extend(g[i] for g in by_task if i < len(g))
    return out[: settings.eval_images]


def _dihedral(batch: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 dihedral transforms per sample (code in 0..7) to (B, C, H, W)."""
    out = batch.clone()
    for code in range(8):
        idx = (codes == code).nonzero(as_tuple=True)[0]
        if len(idx) == 0:
            continue
        t = batch[idx]
        if code & 4:
            t = t.flip(-1)
        out[idx] = torch.rot90(t, code & 3, dims=(-2, -1))
    return out


def _step_loss(
    net: PartialSegNet, batch: torch.Tensor, beta1: float | None = None, free_bits: float = 0.0
) -> dict[str, torch.Tensor]:
    image, x_m, x_s, y_m, y_s = (batch[:, c : c + 1] for c in range(5))
    out = net(image, x_m, x_s, y_m, y_s)
    cfg = net.config
    return partial_seg_loss(
        y_m[:, 0], y_s[:, 0], x_m[:, 0], out["pred_m"], out["pred_s"], out["mu"], out["logvar"], cfg.beta0,
        cfg.beta1 if beta1 is None else beta1, free_bits,
    )


def train(
    settings: TrainSettings,
    out: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> tuple[ProbSeg, dict[str, Any]]:
    """Train a model; write a checkpoint to ``out`` when given.

    Returns:
        ``(model, metrics)``: the trained model and the metrics recorded in its checkpoint
        (``final_loss`` and friends, held-out metrics when ``eval_images`` > 0, ``train_seconds``).
    """
    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    config: ModelConfig = CONFIGS[settings.config]
    if settings.beta1 is not None:
        config = replace(config, beta1=settings.beta1)
    pair_spec = PairSpec.from_dict({**settings.pair_spec, "mode": config.mode})
    disk_spec = DiskSpec()
    device = resolve_device(settings.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(settings.seed)
    net = build_network(config)  # initialised on the CPU, so the initial weights do not depend on the device
    t0 = time.perf_counter()
    loop_spec = LoopSpec.from_dict(settings.loop_spec) if settings.interaction_loop else None
    if loop_spec is not None:
        pool, data_spec = _target_pool(settings, config, pair_spec, disk_spec, loop_spec, progress)
    elif settings.dataset == "medical":
        pool, data_spec = _medical_pool(settings, config, pair_spec, progress)
    else:
        pool = build_disk_pool(
            settings.n_pairs, settings.seed, pair_spec, disk_spec, settings.n_train_images, settings.extra_noise, progress
        )
        data_spec = _disk_data_spec(settings, disk_spec, pair_spec)
    gen = torch.Generator().manual_seed(settings.seed)
    radius = pair_spec.brush_radius if pair_spec.brush_radius is not None else default_brush_radius(pool.shape[-2])
    net.to(device)  # before the optimiser is built, so its state lives beside the weights
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.steps, eta_min=settings.lr * 0.05)
    net.train()
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    bar = tqdm(range(settings.steps), desc=f"train {config.name}", disable=not progress, unit="step")
    for step in bar:
        idx = torch.randint(0, len(pool), (settings.batch_size,), generator=gen)
        codes = torch.randint(0, 8, (settings.batch_size,), generator=gen)
        batch = _dihedral(pool_batch_to_float(pool[idx]), codes)
        if loop_spec is not None:
            n_steps = int(torch.randint(0, loop_spec.max_steps + 1, (1,), generator=gen))
            rngs = [np.random.default_rng([settings.seed, step, i]) for i in range(settings.batch_size)]
            terms = loop_loss(
                net, batch[:, :1].to(device), batch[:, 1].numpy() > 0.5, rngs, n_steps, loop_spec, pair_spec,
                radius, loop_spec.temperature_at(step, settings.steps),
            )
        else:
            warm = min(1.0, (step + 1) / settings.kl_warmup) if settings.kl_warmup else 1.0
            terms = _step_loss(net, batch.to(device, non_blocking=True), config.beta1 * warm, settings.free_bits)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        sched.step()
        for k, v in terms.items():
            val = v.item()
            running[k] = 0.98 * running.get(k, val) + 0.02 * val
        if step % 50 == 0 or step == settings.steps - 1:
            bar.set_postfix(loss=f"{running['loss']:.4f}")
        if step % 500 == 0 or step == settings.steps - 1:
            history.append({"step": step, **{k: round(v, 5) for k, v in running.items()}})
    net.to("cpu")  # evaluated and saved on the CPU, where the shipped models run
    net.eval()
    train_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {f"final_{k}": float(v) for k, v in running.items()}
    metrics["train_seconds"] = float(train_seconds)
    metrics["train_device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model = ProbSeg(net, name=config.name)
    if settings.eval_images > 0 and settings.dataset == "medical":
        t_eval = time.perf_counter()
        metrics.update(evaluate_heldout(model, _heldout_examples(settings), k=8, seed=0))
        metrics["heldout_seconds"] = float(time.perf_counter() - t_eval)
    elif settings.eval_images > 0:
        from .evaluate import evaluate_disks  # late import: evaluation is not needed to train

        metrics.update(evaluate_disks(model, settings.eval_images, seed=0, progress=progress))
    train_info = {"settings": asdict(settings), "command": command or "", "history": history}
    model.meta = {"config": config.to_dict(), "data_spec": data_spec, "train": train_info, "metrics": metrics}
    if out is not None:
        path = save_checkpoint(out, net, data_spec, train_info, metrics)
        model.meta["path"] = str(path)
        record = {"command": command or "", "settings": asdict(settings), "metrics": metrics, "config": config.to_dict()}
        Path(path).with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return model, metrics


def _parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = ArgumentParser(
        prog="probseg-train",
        description="Train a probabilistic partial-segmentation model (synthetic disks, or synthetic and real "
        "medical images) and write a checkpoint.",
    )
    p.add_argument("--config", default=d.config, help=f"model configuration, one of: {', '.join(CONFIGS)}")
    p.add_argument("--dataset", default=d.dataset, help=f"training data, one of: {', '.join(DATASETS)}")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds data, weights and batch order")
    p.add_argument("--n-pairs", type=int, default=d.n_pairs, help="training pairs drawn into the pool")
    p.add_argument("--eval-images", type=int, default=d.eval_images, help="held-out images evaluated at the end (0: skip)")
    p.add_argument("--beta1", type=float, default=None, help="KL weight (default: the configuration's)")
    p.add_argument("--kl-warmup", type=int, default=d.kl_warmup, help="steps of linear KL-weight warm-up from 0 (0: none)")
    p.add_argument(
        "--free-bits", type=float, default=d.free_bits,
        help="nats per latent dimension the KL term does not penalise (0: none, as in the paper)",
    )
    p.add_argument(
        "--device", default=d.device,
        help="where the network trains: cpu, cuda, cuda:N or auto; the data and the final evaluation stay on the CPU",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    p.add_argument("--medscribble", default=d.medscribble, help="MedScribble folder (--dataset medical)")
    p.add_argument(
        "--train-tasks", default=",".join(d.train_tasks),
        help="comma-separated MedScribble tasks to train on (--dataset medical); the others are held out",
    )
    p.add_argument(
        "--real-fraction", type=float, default=d.real_fraction,
        help="fraction of training pairs from real images (--dataset medical); the rest are synthetic",
    )
    p.add_argument(
        "--interaction-loop", action="store_true",
        help="train in the interaction loop: each batch simulates a short session (start, corrections at the "
        "model's own errors) before the step trained on; needed by the multi-head and SSN configurations",
    )
    p.add_argument(
        "--loop-max-steps", type=int, default=LoopSpec().max_steps,
        help="most simulated correction steps before the trained one (--interaction-loop)",
    )
    p.add_argument("--out", required=True, help="checkpoint path (.pt); a .json record is written beside it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


@cli_entry("probseg-train")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-train``."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".pt":
        raise ValueError(f"--out: expected a .pt path, got {out}")
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"--out: {out.parent} is not a folder")
    settings = TrainSettings(
        config=args.config,
        dataset=args.dataset,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        n_pairs=args.n_pairs,
        eval_images=args.eval_images,
        threads=args.threads,
        beta1=args.beta1,
        kl_warmup=args.kl_warmup,
        free_bits=args.free_bits,
        device=args.device,
        medscribble=args.medscribble,
        train_tasks=[t.strip() for t in args.train_tasks.split(",") if t.strip()],
        real_fraction=args.real_fraction,
        interaction_loop=args.interaction_loop,
        loop_spec={"max_steps": args.loop_max_steps} if args.interaction_loop else {},
    )
    settings.validate()
    command = "probseg-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    _, metrics = train(settings, out, progress=not args.no_progress, command=command)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
