"""The public inference API: :class:`ProbSeg` and its :meth:`ProbSeg.propose`.

The predictor wraps a trained :class:`~probseg.model.PartialSegNet`, checks inputs, normalises the
image, brings it to the network's resolution, draws all K latent samples in one batched forward
pass, and returns boolean proposals that satisfy the paper's constraints exactly.

Two ways to reach the network's resolution, chosen by the configuration's ``work_size``:

* 0 (the disk models): the input is padded to a multiple of ``SIZE_MULTIPLE`` and the output cropped.
* > 0 (the medical models): the input is resized to ``work_size`` x ``work_size`` (the aspect ratio is
  not kept; training crops vary it, see :mod:`probseg.data.medical`). The normalised image is resized
  bilinearly with antialiasing (an area-like average when shrinking). The annotation is resized so
  that **no decided pixel is lost**: a working pixel is decided when any input pixel it covers is,
  and it is foreground when at least half of its decided input pixels are (a one-pixel click
  survives a 2x reduction; nearest-neighbour or area > 0.5 would drop it). The output probabilities
  are resized back bilinearly and the constraints are applied at the input resolution, so the
  returned ``masks`` contain ``mask`` and ``segs`` equal ``seg`` on ``mask`` exactly. (A working
  pixel that holds a decided input pixel is decided with its majority label, so a proposal may also
  decide a rim of up to about one working pixel around the input's strokes, with their label.)
  Scores are computed at the input resolution from the resized probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data.intensity import normalize_image
from .model import SIZE_MULTIPLE, ModelConfig, PartialSegNet

__all__ = ["ModelInfo", "ProbSeg", "check_inputs", "resize_to_work"]

SeedLike = int | np.random.Generator | None


def check_inputs(image: Any, mask: Any, seg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``propose`` inputs; raise ``ValueError`` naming the argument at fault.

    Returns ``image`` as float64 (H, W) (float32 could overflow before normalisation) and ``mask``,
    ``seg`` as bool (H, W).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D array (H, W), got shape {image.shape}")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise ValueError(f"image: expected a real-valued (float or integer) array, got dtype {image.dtype}")
    if min(image.shape) < 1:
        raise ValueError(f"image: empty array of shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("image: contains NaN or infinite values")
    out = []
    for name, arr in (("mask", mask), ("seg", seg)):
        arr = np.asarray(arr)
        if arr.dtype != bool:
            raise ValueError(f"{name}: expected a bool array, got dtype {arr.dtype} (use {name}.astype(bool))")
        if arr.shape != image.shape:
            raise ValueError(f"{name}: shape {arr.shape} differs from image shape {image.shape}")
        out.append(arr)
    mask, seg = out
    if np.any(seg & ~mask):
        raise ValueError("seg: has foreground outside mask (undecided pixels are never foreground)")
    return image.astype(np.float64), mask, seg


def _torch_generator(seed: SeedLike) -> torch.Generator:
    gen = torch.Generator()
    if isinstance(seed, np.random.Generator):
        gen.manual_seed(int(seed.integers(0, 2**63 - 1)))
    elif seed is None:
        gen.seed()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed: must be in [0, 2**63), got {seed}")
        gen.manual_seed(int(seed))
    else:
        raise ValueError(f"seed: expected an int, a numpy Generator or None, got {type(seed).__name__}")
    return gen


def resize_to_work(
    image: np.ndarray, mask: np.ndarray, seg: np.ndarray, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bring a normalised image and an annotation to the working size (rules in the module docstring).

    Args:
        image: float32 (H, W), normalised to [0, 1].
        mask, seg: bool (H, W), ``seg`` inside ``mask``.
        size: (S_h, S_w), the working size.
    Returns:
        ``image``, ``x_m``, ``x_s``: float32 (1, 1, S_h, S_w); ``x_m``, ``x_s`` in {0, 1} with
        ``x_s <= x_m``, every input-decided pixel's working pixel decided.
    """
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
    img, m, sg = t(image), t(mask), t(seg)
    if tuple(image.shape) == tuple(size):
        return img, m, sg
    shrink = image.shape[0] > size[0] or image.shape[1] > size[1]
    img = F.interpolate(img, size=size, mode="bilinear", antialias=shrink, align_corners=False).clamp(0, 1)
    # Adaptive pooling bins cover every input pixel, when shrinking and when enlarging alike.
    any_m = F.adaptive_max_pool2d(m, size)
    frac_m = F.adaptive_avg_pool2d(m, size)
    frac_s = F.adaptive_avg_pool2d(sg, size)
    xs = any_m * ((frac_s > 0) & (2 * frac_s >= frac_m)).float()
    return img, any_m, xs


def _binarise(
    pred_m: torch.Tensor, pred_s: torch.Tensor, mask: np.ndarray, seg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Proposals from probabilities ``pred_m``, ``pred_s`` float32 (k, H, W) for the input ``mask``,
    ``seg`` bool (H, W): ``masks``, ``segs`` bool (k, H, W) (decided where ``pred_m`` >= 0.5 or
    already; foreground where the foreground-given-decided probability is >= 0.5; the input kept
    on ``mask``) and that probability ``p_fg``, float32 (k, H, W)."""
    p_fg = (pred_s / pred_m.clamp(min=1e-6)).clamp(0, 1)
    masks = (pred_m >= 0.5).numpy() | mask[None]
    segs = masks & (p_fg >= 0.5).numpy()
    segs[:, mask] = seg[mask][None]
    return masks, segs, p_fg


def _to_image_size(pred_m: torch.Tensor, pred_s: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Working-size probabilities (n, S, S) back at the image's ``shape`` (n, H, W), bilinearly."""
    size = tuple(pred_m.shape[-2:])
    if tuple(shape) == size:
        return pred_m, pred_s
    # Antialiasing matters only when shrinking (an input smaller than the working size), and
    # its kernel is 2x slower when enlarging, where it equals plain bilinear.
    shrink = shape[0] < size[0] or shape[1] < size[1]
    both = F.interpolate(
        torch.stack([pred_m, pred_s], 1), size=shape, mode="bilinear", antialias=shrink, align_corners=False
    )
    # Interpolation weights are convex up to rounding: keep probabilities in [0, 1].
    return both[:, 0].clamp(0, 1), both[:, 1].clamp(0, 1)


class ProbSeg:
    """A trained partial-segmentation model, ready to propose.

    Attributes:
        net: the network (eval mode).
        meta: the checkpoint's metadata (config, data spec, training settings, metrics, version).
        name: the registry name or file it was loaded from.
    """

    def __init__(self, net: PartialSegNet, meta: dict[str, Any] | None = None, name: str = "") -> None:
        self.net = net.eval()
        self.meta = meta or {}
        self.name = name

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def is_partial(self) -> bool:
        """True when proposals leave pixels undecided (False for single-step completion models)."""
        return self.config.mode == "partial"

    @property
    def is_stochastic(self) -> bool:
        """True when proposals depend on a latent sample (False for deterministic networks)."""
        return self.config.sampled

    @property
    def is_multi(self) -> bool:
        """True when one call's proposals differ from each other: a latent model, or a multi-head one."""
        return self.config.sampled or self.config.multi_head

    @property
    def trained_tasks(self) -> list[str]:
        """The datasets/tasks the model was trained on, as its checkpoint records them."""
        return list(self.meta.get("data_spec", {}).get("tasks", []))

    def __repr__(self) -> str:
        return f"ProbSeg(name={self.name!r}, config={self.config.name!r}, mode={self.config.mode!r})"

    @torch.no_grad()
    def propose(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seg: np.ndarray,
        k: int = 8,
        seed: SeedLike = None,
        mean: bool = False,
        return_scores: bool = False,
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Propose ``k`` larger partial segmentations.

        Args:
            image: float (H, W), any finite values (normalised internally by percentiles).
            mask: bool (H, W), the decided pixels ``x_m``.
            seg: bool (H, W), the foreground ``x_s``; must lie inside ``mask``.
            k: number of proposals (>= 1), drawn in one batched forward pass.
            seed: int or numpy Generator for reproducible samples; ``None`` draws fresh entropy.
            mean: use z = 0 for every proposal (the deterministic proposal).
            return_scores: also return each proposal's score.
        Returns:
            ``masks``, ``segs``: bool (k, H, W) with ``masks ⊇ mask``, ``segs == seg`` on ``mask`` and
            ``segs ⊆ masks``; with ``return_scores`` also ``scores``: float64 (k,), the joint
            log-density ``log p(z) + log p(y_hat | z, x)`` of the latent sample and of the binarised
            proposal under the decoder's Bernoulli probabilities (constants dropped), so higher is
            more likely under the model. A deterministic model's ``log p(z)`` term is 0.

        A multi-head model (``config.heads`` > 1) draws nothing: its proposals are its heads, in
        the order of their scores (highest first), and ``scores`` are the score head's predicted
        Dice of each proposal with the target, in [0, 1]. ``k`` at most the number of heads gives the
        ``k`` best-scored heads; a larger ``k`` repeats the heads in the same order (head ``i mod
        heads``), so it holds no new candidate. ``mean`` gives the best-scored head ``k`` times.
        ``seed`` is not used. An SSN (``config.ssn_rank`` > 0) draws ``k`` samples of its logits
        from ``seed`` (``mean``: its mean logits), in the order drawn, and ``scores`` are the score
        head's predicted Dice too.
        Raises:
            ValueError: naming the argument at fault.
        """
        image, mask, seg = check_inputs(image, mask, seg)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: must be an integer >= 1, got {k!r}")
        k = int(k)
        gen = _torch_generator(seed)
        head_scores = None
        if self.config.scored:
            pred_m, pred_s, head_scores = self._predict_candidates(image, mask, seg, k, mean, gen)
            z = None
        elif self.config.work_size > 0:
            pred_m, pred_s, z = self._predict_resized(image, mask, seg, k, mean, gen)
        else:
            pred_m, pred_s, z = self._predict_padded(image, mask, seg, k, mean, gen)
        masks, segs, p_fg = _binarise(pred_m, pred_s, mask, seg)
        if not return_scores:
            return masks, segs
        if head_scores is not None:
            return masks, segs, head_scores
        return masks, segs, self._scores(z, pred_m, p_fg, masks, segs, mask)

    def _latent(self, shape: tuple[int, int], k: int, mean: bool, gen: torch.Generator) -> torch.Tensor | None:
        """z for ``k`` samples at network input size ``shape``: float32 (k, *latent), or None."""
        if not self.is_stochastic:
            return None
        latent = self.net.latent_shape(*shape)
        return torch.zeros((k, *latent)) if mean else torch.randn((k, *latent), generator=gen)

    def _predict_padded(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, mean: bool, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Native resolution, padded to ``SIZE_MULTIPLE``: ``pred_m``, ``pred_s`` float32 (k, H, W) and z."""
        size, img, xm, xs = self._network_input(image, mask, seg)
        z = self._latent(size, k, mean, gen)
        pred_m, pred_s = self.net.decode(img, xm, xs, z)
        if z is None and k > 1:
            pred_m, pred_s = pred_m.expand(k, -1, -1), pred_s.expand(k, -1, -1)
        return (*self._to_image(pred_m, pred_s, image.shape), z)

    def _network_input(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray
    ) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the network sees of one input: its size (the working size, or the image's padded to a
        multiple of :data:`SIZE_MULTIPLE`) and the normalised image, ``x_m``, ``x_s`` float32 (1, 1, *size)."""
        if self.config.work_size > 0:
            size = (self.config.work_size, self.config.work_size)
            return (size, *resize_to_work(normalize_image(image), mask, seg, size))
        h, w = image.shape
        size = (h + (-h) % SIZE_MULTIPLE, w + (-w) % SIZE_MULTIPLE)
        pad = ((0, size[0] - h), (0, size[1] - w))
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
        return size, to_t(np.pad(normalize_image(image), pad, mode="edge")), to_t(np.pad(mask, pad)), to_t(np.pad(seg, pad))

    def _to_image(
        self, pred_m: torch.Tensor, pred_s: torch.Tensor, shape: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network-size probabilities (n, *size) back at the image's ``shape``: resized from the
        working size, or cropped from the padded size."""
        if self.config.work_size > 0:
            return _to_image_size(pred_m, pred_s, shape)
        return pred_m[:, : shape[0], : shape[1]], pred_s[:, : shape[0], : shape[1]]

    def _predict_candidates(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, mean: bool, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """A scored model's candidates (a multi-head model's heads in score order, an SSN's samples):
        ``pred_m``, ``pred_s`` float32 (k, H, W) and their scores, float64 (k,) (see :meth:`propose`)."""
        _, img, xm, xs = self._network_input(image, mask, seg)
        pred_m, pred_s, score = self.net.decode_candidates(img, xm, xs, k, generator=gen, mean=mean)
        pred_m, pred_s, score = pred_m[0], pred_s[0], score[0].double()
        if self.config.multi_head:
            # A stable sort: equal scores keep the heads' order, so the result is a function of the input.
            order = torch.argsort(score, descending=True, stable=True)
            picks = order[torch.zeros(k, dtype=torch.long)] if mean else order[torch.arange(k) % len(order)]
            pred_m, pred_s, score = pred_m[picks], pred_s[picks], score[picks]
        return (*self._to_image(pred_m, pred_s, image.shape), score.numpy())

    def _predict_resized(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, mean: bool, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """At the working size (see the module docstring): ``pred_m``, ``pred_s`` float32 (k, H, W), z."""
        size, img, xm, xs = self._network_input(image, mask, seg)
        z = self._latent(size, k, mean, gen)
        # z = 0 gives k equal proposals: decode one (and the k = 1 and k > 1 results agree exactly).
        pred_m, pred_s = self.net.decode(img, xm, xs, z[:1] if mean and z is not None else z)  # (k or 1, S, S)
        pred_m, pred_s = self._to_image(pred_m, pred_s, image.shape)
        if pred_m.shape[0] != k:
            pred_m, pred_s = pred_m.expand(k, -1, -1), pred_s.expand(k, -1, -1)
        return pred_m, pred_s, z

    @staticmethod
    def _scores(
        z: torch.Tensor | None,
        pred_m: torch.Tensor,
        p_fg: torch.Tensor,
        masks: np.ndarray,
        segs: np.ndarray,
        mask: np.ndarray,
    ) -> np.ndarray:
        eps = 1e-6
        free = torch.from_numpy(~mask)[None]
        m = torch.from_numpy(masks)
        s = torch.from_numpy(segs)
        pm = pred_m.clamp(eps, 1 - eps)
        pf = p_fg.clamp(eps, 1 - eps)
        ll_m = torch.where(m, pm.log(), (1 - pm).log())
        ll_s = torch.where(s, pf.log(), (1 - pf).log()) * m  # foreground is only modelled where decided
        ll = ((ll_m + ll_s) * free).sum(dim=(1, 2)).double()
        if z is not None:
            ll = ll - 0.5 * z.flatten(1).pow(2).sum(1).double()
        return ll.numpy()

    @property
    def info(self) -> ModelInfo:
        """What a caller needs to know about this model without reading its internals (computed once).

        The SHA-256 is of the checkpoint file the first time ``info`` is read (the registry has
        checked a shipped file against its manifest when loading it).
        """
        cached = self.__dict__.get("_info")
        if cached is None:
            from .registry import file_sha256  # the registry imports this module

            path = str(self.meta.get("path", ""))
            try:
                digest = file_sha256(path) if path else ""
            except OSError:  # moved or deleted since loading: no hash to compare, none claimed
                digest = ""
            cached = ModelInfo(
                name=self.name, kind="partial" if self.is_partial else "complete", stochastic=self.is_stochastic,
                multi=self.is_multi,
                config=self.config.name, trained_tasks=tuple(self.trained_tasks), checkpoint_path=path,
                checkpoint_sha256=digest,
            )
            self.__dict__["_info"] = cached
        return cached

    @torch.inference_mode()
    def propose_batch(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        segs: Sequence[np.ndarray],
        k: int = 8,
        seeds: Sequence[SeedLike] | None = None,
        mean: bool = False,
        return_scores: bool = False,
    ) -> list[tuple[np.ndarray, ...]]:
        """:meth:`propose` for many inputs with one batched forward pass per input size.

        Result ``i`` equals ``self.propose(images[i], masks[i], segs[i], k, seeds[i], mean,
        return_scores)`` bit for bit, whichever inputs share the batch (see :mod:`probseg.batching`):
        each seed is drawn from exactly as :meth:`propose` draws from it.

        Args:
            images, masks, segs: one per input, as :meth:`propose` takes them (sizes may differ).
            k: proposals per input.
            seeds: one per input (default: fresh entropy for each).
        Returns:
            One ``(masks, segs)`` or ``(masks, segs, scores)`` tuple per input, as :meth:`propose`.
        Raises:
            ValueError: naming the argument at fault.
        """
        n_in = len(images)
        seeds = [None] * n_in if seeds is None else list(seeds)
        if not len(masks) == len(segs) == len(seeds) == n_in:
            raise ValueError(f"masks: images, masks, segs and seeds differ in length "
                             f"({n_in}, {len(masks)}, {len(segs)}, {len(seeds)})")
        checked = [check_inputs(*a) for a in zip(images, masks, segs)]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: must be an integer >= 1, got {k!r}")
        k = int(k)
        if self.config.scored:
            # Multi-head and SSN models have no exact batched path yet: one call per input keeps
            # the bit-for-bit promise.
            return [self.propose(*a, k=k, seed=seed, mean=mean, return_scores=return_scores)
                    for a, seed in zip(checked, seeds)]
        gens = [_torch_generator(seed) for seed in seeds]
        preds = self._predict_batch(checked, k, mean, gens)
        out: list[tuple[np.ndarray, ...]] = []
        for (image, mask, seg), (pred_m, pred_s, z) in zip(checked, preds):
            masks_i, segs_i, p_fg = _binarise(pred_m, pred_s, mask, seg)
            out.append((masks_i, segs_i, self._scores(z, pred_m, p_fg, masks_i, segs_i, mask)) if return_scores
                       else (masks_i, segs_i))
        return out

    def _predict_batch(
        self, inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int, mean: bool, gens: list[torch.Generator]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """:meth:`_predict_padded` or :meth:`_predict_resized` of every input, decoded together per
        network input size: ``pred_m``, ``pred_s`` float32 (k, H_i, W_i) and z of each input."""
        from .batching import MAX_BATCH_PIXELS, ExactBatcher, decode_batch

        batcher = self.__dict__.setdefault("_batcher", ExactBatcher())
        resized = self.config.work_size > 0
        prepared = []
        for (image, mask, seg), gen in zip(inputs, gens):
            size, img, xm, xs = self._network_input(image, mask, seg)
            z = self._latent(size, k, mean, gen)
            # As the resized path does: z = 0 gives k equal proposals, so one is decoded.
            z_in = z[:1] if resized and mean and z is not None else z
            prepared.append((size, img, xm, xs, z, z_in))
        preds: list[Any] = [None] * len(inputs)
        for size in dict.fromkeys(p[0] for p in prepared):
            same = [i for i, p in enumerate(prepared) if p[0] == size]
            n = 1 if prepared[same[0]][5] is None else prepared[same[0]][5].shape[0]
            per_pass = max(1, MAX_BATCH_PIXELS // (n * size[0] * size[1]))
            for group in (same[j:j + per_pass] for j in range(0, len(same), per_pass)):
                cat = lambda j: torch.cat([prepared[i][j] for i in group])  # noqa: E731
                z_in = None if prepared[group[0]][5] is None else cat(5)
                pred_m, pred_s = decode_batch(self.net, batcher, cat(1), cat(2), cat(3), z_in, n)
                for row, i in enumerate(group):
                    preds[i] = (pred_m[row * n:(row + 1) * n], pred_s[row * n:(row + 1) * n])
        out = []
        for (image, _, _), (size, *_, z, _), (pred_m, pred_s) in zip(inputs, prepared, preds):
            pred_m, pred_s = self._to_image(pred_m, pred_s, image.shape)
            if pred_m.shape[0] != k:
                pred_m, pred_s = pred_m.expand(k, -1, -1), pred_s.expand(k, -1, -1)
            out.append((pred_m, pred_s, z))
        return out


@dataclass(frozen=True)
class ModelInfo:
    """A model's public record (:attr:`ProbSeg.info`): what a benchmark records and checks.

    Attributes:
        name: the registry name or path it was loaded by ("" for a model built in memory).
        kind: ``partial`` (proposals leave pixels undecided) or ``complete`` (they decide every pixel).
        stochastic: whether proposals depend on a latent sample.
        multi: whether one call's K proposals differ (a latent model, or a multi-head one).
        config: the network configuration's name (``paper``, ``wide``, ``medical``, ...).
        trained_tasks: the datasets/tasks it was trained on, as its checkpoint records them.
        checkpoint_path: the file it was loaded from ("" when it was not loaded from a file).
        checkpoint_sha256: that file's SHA-256 in hex ("" when there is no readable file).
    """

    name: str
    kind: str
    stochastic: bool
    multi: bool
    config: str
    trained_tasks: tuple[str, ...]
    checkpoint_path: str
    checkpoint_sha256: str
