"""Training: :func:`train` (the command ``probseg-train`` is :mod:`probseg.train_cli`; its settings
:mod:`probseg.train_settings`).

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

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint
from .data.disks import N_TRAIN, TRAIN_SEED, DiskSpec, make_disk_dataset, subset_mask
from .data.examples import Example
from .data.intensity import normalize_image
from .data.medical import (
    AugmentSpec,
    build_medical_pool,
    build_medical_target_pool,
    evaluate_heldout,
    heldout_tasks,
    pool_batch_to_float,
)
from .data.medscribble import load_medscribble
from .data.partials import PairSpec, make_partial_pair
from .data.synth import SynthSpec
from .interaction import default_brush_radius
from .interaction_loop import loop_loss
from .losses import partial_seg_loss
from .model import CONFIGS, ModelConfig, PartialSegNet, build_network
from .predictor import ProbSeg
from .train_cli import main
from .train_settings import DATASETS, LoopSpec, TrainSettings

__all__ = ["TrainSettings", "DATASETS", "build_disk_pool", "refit_score_head", "train", "main"]

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


def _draw_batch(pool: torch.Tensor, gen: torch.Generator, batch_size: int) -> torch.Tensor:
    """A batch of the pool under random dihedral transforms: float32 (B, C, H, W), drawn from ``gen``."""
    idx = torch.randint(0, len(pool), (batch_size,), generator=gen)
    codes = torch.randint(0, 8, (batch_size,), generator=gen)
    return _dihedral(pool_batch_to_float(pool[idx]), codes)


def _loop_terms(
    net: torch.nn.Module, batch: torch.Tensor, gen: torch.Generator, step: int, settings: TrainSettings,
    loop_spec: LoopSpec, pair_spec: PairSpec, radius: int, temperature: float, device: torch.device,
) -> dict[str, torch.Tensor]:
    """One interaction-loop step's loss terms for ``batch`` (image, whole target): the number of simulated
    corrections from ``gen``, each example's stream from ``(seed, step, i)``."""
    n_steps = int(torch.randint(0, loop_spec.max_steps + 1, (1,), generator=gen))
    rngs = [np.random.default_rng([settings.seed, step, i]) for i in range(settings.batch_size)]
    return loop_loss(net, batch[:, :1].to(device), batch[:, 1].numpy() > 0.5, rngs, n_steps, loop_spec, pair_spec,
                     radius, temperature)


def _track(running: dict[str, float], terms: dict[str, torch.Tensor]) -> None:
    """Fold a step's loss terms into their running (exponentially weighted) means, in place."""
    for k, v in terms.items():
        val = v.item()
        running[k] = 0.98 * running.get(k, val) + 0.02 * val


def _score_stage(
    net: torch.nn.Module,
    pool: torch.Tensor,
    gen: torch.Generator,
    settings: TrainSettings,
    loop_spec: LoopSpec,
    pair_spec: PairSpec,
    radius: int,
    device: torch.device,
    progress: bool,
    history: list[dict[str, float]],
) -> dict[str, float]:
    """``settings.score_steps`` interaction-loop steps that train the score head alone (see
    :class:`TrainSettings`), the batches drawn from ``gen`` after the main steps'. Returns the running
    loss terms; appends to ``history`` every 500 steps (``stage: score``)."""
    for name, param in net.named_parameters():
        param.requires_grad_(name.startswith("score_head."))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=settings.lr)
    temperature = loop_spec.temperature_at(settings.steps, settings.steps)  # the end of the main steps'
    running: dict[str, float] = {}
    bar = tqdm(range(settings.score_steps), desc="score head", disable=not progress, unit="step")
    for i in bar:
        step = settings.steps + i  # the example streams continue the main steps' numbering
        batch = _draw_batch(pool, gen, settings.batch_size)
        terms = _loop_terms(net, batch, gen, step, settings, loop_spec, pair_spec, radius, temperature, device)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()  # only its score term has a gradient: the rest of the network is frozen
        opt.step()
        _track(running, terms)
        if i % 500 == 0 or i == settings.score_steps - 1:
            history.append({"step": step, "stage": "score", **{k: round(v, 5) for k, v in running.items()}})
    for param in net.parameters():
        param.requires_grad_(True)
    return running


def _score_stage_metrics(running: dict[str, float]) -> dict[str, float]:
    """The score stage's final running losses as checkpoint metrics."""
    out = {"final_score_stage_mse": float(running["score_mse"])}
    if "score_rank" in running:
        out["final_score_stage_rank"] = float(running["score_rank"])
    return out


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
    if settings.score_head is not None:
        config = replace(config, score_head=settings.score_head)
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
        batch = _draw_batch(pool, gen, settings.batch_size)
        if loop_spec is not None:
            terms = _loop_terms(net, batch, gen, step, settings, loop_spec, pair_spec, radius,
                                loop_spec.temperature_at(step, settings.steps), device)
        else:
            warm = min(1.0, (step + 1) / settings.kl_warmup) if settings.kl_warmup else 1.0
            terms = _step_loss(net, batch.to(device, non_blocking=True), config.beta1 * warm, settings.free_bits)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        sched.step()
        _track(running, terms)
        if step % 50 == 0 or step == settings.steps - 1:
            bar.set_postfix(loss=f"{running['loss']:.4f}")
        if step % 500 == 0 or step == settings.steps - 1:
            history.append({"step": step, **{k: round(v, 5) for k, v in running.items()}})
    score_running: dict[str, float] = {}
    if settings.score_steps and loop_spec is not None:  # validate() allows score steps in the loop only
        score_running = _score_stage(net, pool, gen, settings, loop_spec, pair_spec, radius, device, progress, history)
    net.to("cpu")  # evaluated and saved on the CPU, where the shipped models run
    net.eval()
    train_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {f"final_{k}": float(v) for k, v in running.items()}
    if score_running:
        metrics.update(_score_stage_metrics(score_running))
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
    _keep(model, out, data_spec, train_info, metrics)
    return model, metrics


def _keep(
    model: ProbSeg, out: str | Path | None, data_spec: dict[str, Any], train_info: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Record what made ``model`` in its ``meta``; with ``out``, write the checkpoint and the JSON record beside
    it (the command, settings, metrics and config, plus the base's command and SHA-256 of a refit)."""
    config = model.net.config
    model.meta = {"config": config.to_dict(), "data_spec": data_spec, "train": train_info, "metrics": metrics}
    if out is None:
        return
    path = save_checkpoint(out, model.net, data_spec, train_info, metrics)
    model.meta["path"] = str(path)
    record = {"command": train_info["command"], "settings": train_info["settings"], "metrics": metrics,
              "config": config.to_dict()}
    record.update({k: train_info[k] for k in ("base_command", "base_sha256") if k in train_info})
    Path(path).with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")




def refit_score_head(
    base: str | Path,
    out: str | Path | None = None,
    *,
    score_steps: int,
    score_head: str | None = None,
    score_rank_weight: float | None = None,
    seed: int | None = None,
    threads: int = 0,
    device: str = "cpu",
    medscribble: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> tuple[ProbSeg, dict[str, Any]]:
    """Fit a new score head to a trained scored network, the rest of it frozen (``probseg-train --refit-score``).

    The score head only ranks the candidates: the network's candidates, and so best-of-K, do not change.
    So a better score head can be fitted to a checkpoint after the fact. The new head (``score_head``:
    a kind of :data:`~probseg.configs.SCORE_HEADS`, default the base's kind) starts from fresh weights
    drawn from ``seed`` (default the base's) and trains for ``score_steps`` interaction-loop steps on the
    base's own training pool (its recorded settings; ``medscribble`` relocates the dataset), with the
    base's loop settings and ``score_rank_weight`` (default the base's) on the ranking loss.

    Returns:
        ``(model, metrics)``: the base's metrics plus the refit's (``final_score_stage_mse``,
        ``final_score_stage_rank`` when ranked, ``refit_seconds``). The checkpoint's record keeps the
        base's command (``base_command``, ``base_sha256``): the base's command, then this one, rebuild it.
    Raises:
        ValueError: naming the argument at fault (a base with no score head, no interaction-loop record,
            ``score_steps`` < 1, an unknown ``score_head``).
    """
    from .checkpoint import load_checkpoint
    from .registry import file_sha256

    if isinstance(score_steps, bool) or not isinstance(score_steps, int) or score_steps < 1:
        raise ValueError(f"score_steps: must be an integer >= 1, got {score_steps!r}")
    base_net, meta = load_checkpoint(base)
    if not base_net.config.scored:
        raise ValueError(f"base: {base} has one output and no score head to refit")
    known = set(TrainSettings.__dataclass_fields__)
    recorded = (meta.get("train") or {}).get("settings") or {}
    settings = TrainSettings(**{k: v for k, v in recorded.items() if k in known})
    if not settings.interaction_loop:
        raise ValueError(f"base: {base} was not trained in the interaction loop, where the score head learns")
    loop_over = dict(settings.loop_spec)
    if score_rank_weight is not None:
        loop_over["score_rank_weight"] = float(score_rank_weight)
    settings = replace(
        settings, score_steps=score_steps, threads=threads, device=device, loop_spec=loop_over,
        score_head=score_head or base_net.config.score_head,
        seed=settings.seed if seed is None else int(seed),
        medscribble=settings.medscribble if medscribble is None else medscribble,
    )
    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    config = replace(base_net.config, score_head=settings.score_head)
    torch.manual_seed(settings.seed)
    net = build_network(config)  # the fresh score head's weights come from the seed
    kept = {k: v for k, v in base_net.state_dict().items() if not k.startswith("score_head.")}
    missing, _ = net.load_state_dict(kept, strict=False)
    assert all(k.startswith("score_head.") for k in missing)
    t0 = time.perf_counter()
    pair_spec = PairSpec.from_dict({**settings.pair_spec, "mode": config.mode})
    loop_spec = LoopSpec.from_dict(settings.loop_spec)
    pool, data_spec = _target_pool(settings, config, pair_spec, DiskSpec(), loop_spec, progress)
    gen = torch.Generator().manual_seed(settings.seed)
    radius = pair_spec.brush_radius if pair_spec.brush_radius is not None else default_brush_radius(pool.shape[-2])
    dev = resolve_device(settings.device)
    net.to(dev).train()
    history: list[dict[str, float]] = list((meta.get("train") or {}).get("history") or [])
    refit_history: list[dict[str, float]] = []
    running = _score_stage(net, pool, gen, settings, loop_spec, pair_spec, radius, dev, progress, refit_history)
    history += [{**h, "stage": "refit"} for h in refit_history]  # told apart from the base's own score stage
    net.to("cpu").eval()
    metrics: dict[str, Any] = dict(meta.get("metrics") or {})
    metrics.update(_score_stage_metrics(running))
    metrics["refit_seconds"] = float(time.perf_counter() - t0)
    train_info = {
        "settings": asdict(settings), "command": command or "", "history": history,
        "base_command": (meta.get("train") or {}).get("command", ""), "base_sha256": file_sha256(base),
    }
    model = ProbSeg(net, name=config.name)
    _keep(model, out, data_spec, train_info, metrics)
    return model, metrics
