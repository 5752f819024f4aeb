"""Training pairs and a held-out check for the medical models (real and synthetic 2D images).

A pool mixes two sources at the models' working size (128 x 128):

* **synthetic** SynthMorph-style images (:mod:`probseg.data.synth`): a random target made of the
  label map's labels, whose connected pieces are the objects ``object``/``grow`` regions are made of;
* **real** MedScribble examples of the training tasks (by default ACDC, BTCV, HipXRay, STARE; the
  other four, CAMUS, OASIS, OCTA500 and WBC, are never seen), target = the expert segmentation,
  objects = its connected components and those of its background (the default of
  :func:`~probseg.data.partials.make_partial_pair`). With only a handful of real images per task,
  each draw is augmented: a random dihedral transform, a random crop of 80-100% of each side
  (so the aspect ratio varies a little, as when :meth:`probseg.ProbSeg.propose` resizes a
  non-square image) resized to the working size, and random gamma, contrast and noise.

Pairs come from :func:`~probseg.data.partials.make_partial_pair` with the same :class:`PairSpec`
mix for every configuration (only ``mode`` follows the model). Pair ``j`` depends only on
``(seed, j)`` and the examples, so a smaller pool is a prefix of a larger one.

The held-out check (:func:`evaluate_heldout`) starts each image from the simulator's click start,
drawn by :func:`probseg.interaction.click_start`, the code the simulator runs.

Everything here is single-threaded NumPy/SciPy (no large BLAS products, no torch kernels): a pool is
built while training jobs share the cores, where multi-threaded kernels stall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import interaction
from ..metrics import dice
from ..configs import MEDICAL_WORK_SIZE
from .augment import AugmentSpec, augment_example
from .examples import Example
from .medscribble import DEFAULT_MEDSCRIBBLE, DEFAULT_TRAIN_TASKS, load_medscribble, medscribble_tasks
from .partials import PairSpec, make_partial_pair
from .superpixels import superpixel_target
from .synth import SynthSpec, make_synth_example

__all__ = [
    "DEFAULT_TRAIN_TASKS",
    "DEFAULT_MEDSCRIBBLE",
    "AugmentSpec",  # from probseg.data.augment
    "augment_example",
    "build_medical_pool",
    "build_medical_target_pool",
    "evaluate_heldout",
    "heldout_tasks",
]



def _by_task(examples: Sequence[Example]) -> list[list[Example]]:
    tasks: dict[str, list[Example]] = {}
    for ex in examples:
        tasks.setdefault(ex.task, []).append(ex)
    return [tasks[t] for t in sorted(tasks)]


def _draw_example(
    rng: np.random.Generator,
    by_task: list[list[Example]],
    real_fraction: float,
    synth_spec: SynthSpec,
    augment_spec: AugmentSpec,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One training image: real (a task drawn uniformly, then one of its examples, augmented, its
    target a pseudo-task's with probability ``augment_spec.pseudo_fraction``) with probability
    ``real_fraction``, else synthetic. Returns ``image`` float32 (size, size), ``target``
    bool (size, size) and the objects (bool (n, size, size); None for a real image: the default of
    :func:`~probseg.data.partials.make_partial_pair`)."""
    if by_task and rng.random() < real_fraction:
        group = by_task[int(rng.integers(len(by_task)))]
        ex = group[int(rng.integers(len(group)))]
        image, target = augment_example(rng, ex.image, ex.target, size, augment_spec)
        if augment_spec.pseudo_fraction > 0 and rng.random() < augment_spec.pseudo_fraction:
            target = superpixel_target(rng, image)
        return image, target, None
    syn = make_synth_example(rng, synth_spec)
    return syn.image, syn.target, syn.objects


def _check_pool_args(n: int, real_fraction: float, dtype: torch.dtype, size: int) -> None:
    if n < 1:
        raise ValueError(f"n_pairs: must be >= 1, got {n}")
    if not 0 <= real_fraction <= 1:
        raise ValueError(f"real_fraction: must be in [0, 1], got {real_fraction}")
    if dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"dtype: must be torch.float32 or torch.uint8, got {dtype}")
    if size < 16 or size % 8:
        raise ValueError(f"size: must be a multiple of 8 >= 16, got {size}")


def _real_by_task(
    real_fraction: float, examples: Sequence[Example] | None, medscribble_path: str | Path, train_tasks: Sequence[str]
) -> list[list[Example]]:
    if real_fraction <= 0:
        return []
    if examples is None:
        examples = load_medscribble(medscribble_path, tasks=list(train_tasks))
    by_task = _by_task(examples)
    if not by_task:
        raise ValueError("examples: no real examples, but real_fraction > 0")
    return by_task


def build_medical_pool(
    n_pairs: int,
    seed: int,
    train_tasks: Sequence[str] = DEFAULT_TRAIN_TASKS,
    medscribble_path: str | Path = DEFAULT_MEDSCRIBBLE,
    real_fraction: float = 0.5,
    pair_spec: PairSpec = PairSpec(),
    synth_spec: SynthSpec = SynthSpec(),
    augment_spec: AugmentSpec = AugmentSpec(),
    size: int = MEDICAL_WORK_SIZE,
    examples: Sequence[Example] | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Training pairs from synthetic and real images: (n_pairs, 5, size, size).

    Channels: normalised image, x_m, x_s, y_m, y_s. Pair ``j`` depends only on ``(seed, j)`` and the
    real examples: it is real with probability ``real_fraction`` (then a task is drawn uniformly,
    so every task weighs the same whatever its number of images, and one of its examples), else
    synthetic.

    Args:
        n_pairs: pairs to draw (>= 1).
        seed: seeds every draw.
        train_tasks: MedScribble tasks the real examples come from.
        medscribble_path: the MedScribble folder (read only when ``real_fraction`` > 0 and
            ``examples`` is None).
        real_fraction: probability that a pair comes from a real image, in [0, 1].
        pair_spec: how inputs and added regions are drawn (its ``mode`` follows the model).
        synth_spec: the synthetic images (its ``size`` is replaced by ``size``).
        augment_spec: the real images' augmentation.
        size: the working size.
        examples: real examples to use instead of reading ``medscribble_path`` (all of them; no
            task filter).
        dtype: ``torch.float32``, or ``torch.uint8`` for a 4x smaller pool (image x 255, rounded;
            masks 0/1): a 20,000-pair float pool is 6.5 GB, the uint8 one 1.6 GB.
        progress: show a progress bar.
    Returns:
        float32 (values in [0, 1]) or uint8 (image 0-255, masks 0/1) tensor (n_pairs, 5, size, size).
    Raises:
        ValueError: naming the argument at fault.
    """
    _check_pool_args(n_pairs, real_fraction, dtype, size)
    by_task = _real_by_task(real_fraction, examples, medscribble_path, train_tasks)
    synth_spec = replace(synth_spec, size=size)
    pool = np.zeros((n_pairs, 5, size, size), dtype=np.uint8 if dtype == torch.uint8 else np.float32)
    for j in tqdm(range(n_pairs), desc="pairs", disable=not progress, unit="pair", leave=False):
        rng = np.random.default_rng([seed, j])
        image, target, objects = _draw_example(rng, by_task, real_fraction, synth_spec, augment_spec, size)
        pair = make_partial_pair(rng, target, pair_spec, objects)
        if dtype == torch.uint8:
            pool[j, 0] = np.round(image * 255.0).astype(np.uint8)
            pool[j, 1:] = np.stack([pair.x_m, pair.x_s, pair.y_m, pair.y_s])
        else:
            pool[j] = np.stack([image, pair.x_m, pair.x_s, pair.y_m, pair.y_s])
    return torch.from_numpy(pool)


def pool_batch_to_float(batch: torch.Tensor) -> torch.Tensor:
    """A pool batch as float32 (B, 5, S, S) in [0, 1], whichever dtype the pool holds."""
    if batch.dtype == torch.uint8:
        out = batch.float()
        out[:, 0] /= 255.0
        return out
    return batch


def build_medical_target_pool(
    n_images: int,
    seed: int,
    train_tasks: Sequence[str] = DEFAULT_TRAIN_TASKS,
    medscribble_path: str | Path = DEFAULT_MEDSCRIBBLE,
    real_fraction: float = 0.5,
    synth_spec: SynthSpec = SynthSpec(),
    augment_spec: AugmentSpec = AugmentSpec(),
    size: int = MEDICAL_WORK_SIZE,
    examples: Sequence[Example] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images and whole targets for training in the interaction loop: uint8 (n_images, 2, size, size).

    Channels: the normalised image x 255 (rounded) and the target (0/1). Image ``j`` is drawn as
    :func:`build_medical_pool` draws pair ``j``'s image (real with probability ``real_fraction``,
    augmented; else synthetic), from ``(seed, j)`` alone; the inputs and targets a model trains on
    are drawn later, in the loop, from the model's own proposals (:mod:`probseg.interaction_loop`).
    """
    _check_pool_args(n_images, real_fraction, torch.uint8, size)
    by_task = _real_by_task(real_fraction, examples, medscribble_path, train_tasks)
    synth_spec = replace(synth_spec, size=size)
    pool = np.zeros((n_images, 2, size, size), dtype=np.uint8)
    for j in tqdm(range(n_images), desc="images", disable=not progress, unit="image", leave=False):
        rng = np.random.default_rng([seed, j])
        image, target, _ = _draw_example(rng, by_task, real_fraction, synth_spec, augment_spec, size)
        pool[j, 0] = np.round(image * 255.0).astype(np.uint8)
        pool[j, 1] = target
    return torch.from_numpy(pool)


# --- held-out check ---------------------------------------------------------------------------------


def heldout_tasks(medscribble_path: str | Path, train_tasks: Sequence[str]) -> list[str]:
    """The MedScribble tasks under ``medscribble_path`` that are not training tasks, sorted."""
    return [t for t in medscribble_tasks(medscribble_path) if t not in set(train_tasks)]


def evaluate_heldout(model: Any, examples: Sequence[Example], k: int = 8, seed: int = 0) -> dict[str, Any]:
    """A small, honest check on images of tasks the model never saw, from the simulator's click start.

    For each example: the start (one positive, one negative click), then ``k`` sampled proposals and
    the z = 0 proposal. Undecided pixels count as background in every Dice.

    Args:
        model: a :class:`probseg.ProbSeg`.
        examples: the held-out examples (e.g. the unseen MedScribble tasks').
        k: sampled proposals per image.
        seed: seeds the samples (image ``i`` uses ``seed + i``).
    Returns:
        ``heldout_n_images``; ``heldout_tasks``; ``heldout_start_dice`` (the clicks alone, for
        calibration); ``heldout_dice_z0`` (the z = 0 proposal); ``heldout_dice_best_of_k`` (the best
        of the k samples); ``heldout_added_px`` (newly decided pixels per proposal, mean over the k
        samples); ``heldout_added_accuracy`` (the fraction of those pixels labelled as the target
        labels them, pooled over all samples); ``heldout_pairwise_dice`` (the mean Dice between two
        of the k proposals' foregrounds: 1 when they are all the same); ``heldout_dice_z0_by_task``;
        ``heldout_k``. For a multi-head model "z = 0" is its top-scored head; for an SSN its mean logits.
    """
    if not examples:
        raise ValueError("examples: no held-out examples")
    start_d, z0_d, best_d, added, right, by_task, pairwise = [], [], [], [], 0, {}, []
    total_added = 0
    for i, ex in enumerate(examples):
        start = interaction.click_start(ex.target, interaction.default_brush_radius(ex.target.shape[0]))
        mask, seg = start.mask, start.seg
        start_d.append(dice(seg, ex.target))
        m0, s0 = model.propose(ex.image, mask, seg, k=1, mean=True)
        z0 = dice(s0[0], ex.target)
        z0_d.append(z0)
        by_task.setdefault(ex.task, []).append(z0)
        masks, segs = model.propose(ex.image, mask, seg, k=k, seed=seed + i)
        best_d.append(max(dice(s, ex.target) for s in segs))
        pairwise.extend(dice(segs[a], segs[b]) for a in range(len(segs)) for b in range(a + 1, len(segs)))
        new = masks & ~mask[None]
        added.append(float(new.sum(axis=(1, 2)).mean()))
        total_added += int(new.sum())
        right += int((new & (segs == ex.target[None])).sum())
    return {
        "heldout_n_images": len(examples),
        "heldout_tasks": sorted(by_task),
        "heldout_k": int(k),
        "heldout_start_dice": float(np.mean(start_d)),
        "heldout_dice_z0": float(np.mean(z0_d)),
        "heldout_dice_best_of_k": float(np.mean(best_d)),
        "heldout_added_px": float(np.mean(added)),
        "heldout_added_accuracy": float(right / total_added) if total_added else float("nan"),
        "heldout_pairwise_dice": float(np.mean(pairwise)) if pairwise else 1.0,
        "heldout_dice_z0_by_task": {t: float(np.mean(v)) for t, v in sorted(by_task.items())},
    }
