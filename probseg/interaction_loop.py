"""Training in the interaction loop: each example is a short simulated session.

RITM and ScribblePrompt train interactive models on the inputs they will meet: the model's own
previous output corrected by clicks at its errors. Here, for each training example (an image and its
whole target):

1. a **start**: the simulator's click start or scribble start (:mod:`probseg.interaction`, the code the
   simulator runs), or an annotator-like input from :func:`probseg.data.partials.random_input`;
2. ``n`` **correction steps** (``n`` uniform in ``0..max_steps``, one draw per batch), without
   gradients: the network proposes its candidates for the batch, the best-of-K oracle takes one
   exactly as the simulator's ``best-of-k`` policy does (:func:`probseg.choice.best_of_k`), and the
   robot makes one RITM click at the errors of what a person would hand in (the simulator's rule,
   fallback included);
3. the **trained step**: the network's output on the state reached, against the target.

What the network is fed follows the simulator: a partial model gets the accepted state (the chosen
proposal with the clicks on it), a complete model the annotator's own input (the start and the
clicks). The target is the whole target for a complete model, and a larger partial target drawn from
the state (:func:`probseg.data.partials.larger_target`) for a partial one. The previous prediction is
no extra input channel (RITM and ScribblePrompt feed it as one): a partial model already sees it as
the accepted state, and a complete model sees, here as in the simulator, the annotator's input alone,
so ``propose`` keeps its contract and no method needs to carry state between calls.

Multi-head networks (``heads`` > 1) and SSNs (``ssn_rank`` > 0, over their samples) train with the
best-candidate loss (:func:`probseg.losses.multi_head_loss`): its soft-minimum temperature falls
linearly from ``temperature`` to 0 over the first half of the run, then stays at winner-takes-all;
the score head learns each candidate's Dice against the whole target, the number the
``model-ranked`` policy ranks by.

Only deterministic networks (no latent) train this way: a latent model's posterior needs the target
of the step, and the loop's steps have none fixed in advance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .choice import REJECT, best_of_k
from .data.partials import PairSpec, larger_target, pick_kind, random_input
from .interaction import apply_click, click_start, error_regions, next_click, scribble_start
from .losses import hard_dice, multi_head_loss, partial_seg_loss
from .model import PartialSegNet
from .train_settings import LoopSpec

__all__ = ["LoopSpec", "LoopState", "advance", "binarise", "loop_loss", "start_state"]



@dataclass
class LoopState:
    """One simulated session's state; every array bool (H, W).

    Attributes:
        input_mask, input_seg: the annotator's own input (start and clicks): a complete model's feed.
        mask, seg: the accepted state (the chosen proposal with the clicks on it): a partial model's feed.
        clicked: click centres so far (never clicked again).
    """

    input_mask: np.ndarray
    input_seg: np.ndarray
    mask: np.ndarray
    seg: np.ndarray
    clicked: np.ndarray

    def feed(self, partial: bool) -> tuple[np.ndarray, np.ndarray]:
        """What the model is shown: the accepted state (partial) or the annotator's input (complete)."""
        return (self.mask, self.seg) if partial else (self.input_mask, self.input_seg)


def start_state(
    rng: np.random.Generator, gt: np.ndarray, spec: LoopSpec, pair_spec: PairSpec, radius: int
) -> LoopState:
    """A session's start for the target ``gt`` (bool (H, W)), drawn from ``rng``."""
    kind = pick_kind(rng, spec.start_weights)
    if kind == "clicks":
        begin = click_start(gt, radius)
        mask, seg, clicked = begin.mask, begin.seg, begin.clicked
    elif kind == "scribbles":
        begin = scribble_start(gt, rng, radius)
        mask, seg, clicked = begin.mask, begin.seg, begin.clicked
    else:
        mask, seg = random_input(rng, gt, pair_spec)
        clicked = np.zeros_like(gt)
    return LoopState(mask.copy(), seg.copy(), mask.copy(), seg.copy(), clicked.copy())


def advance(
    state: LoopState,
    gt: np.ndarray,
    masks: np.ndarray,
    segs: np.ndarray,
    *,
    partial: bool,
    radius: int,
    error_weight: float = 2.0,
) -> LoopState:
    """One simulated iteration: the oracle's choice among ``masks``, ``segs`` (bool (K, H, W), the
    model's candidates for ``state.feed(partial)``), then one RITM correction click.

    The rules are the simulator's defaults (``best-of-k`` with rejection and ``no-worse-dice``
    acceptance, one correction per iteration, the ``hand-in`` fallback): after a proposal that
    decided nothing new, or a rejection, the click may land on an undecided target pixel; it never
    lands on undecided background. A state with nothing to correct gets no click.
    """
    feed_mask, _ = state.feed(partial)
    chosen = best_of_k(masks, segs, gt, state.mask, state.seg, error_weight=error_weight, allow_reject=True)
    if chosen != REJECT:
        progressed = bool((masks[chosen] & ~feed_mask).any())
        mask, seg = masks[chosen].copy(), segs[chosen].copy()
    else:
        progressed = False
        mask, seg = state.mask.copy(), state.seg.copy()
    fn, fp = error_regions(gt, mask, seg, pending_fn=not progressed)
    click = next_click(gt, fn, fp, state.clicked, "ritm")
    input_mask, input_seg, clicked = state.input_mask, state.input_seg, state.clicked
    if click is not None:
        mask, seg = apply_click(gt, mask, seg, click, radius)
        input_mask, input_seg = apply_click(gt, input_mask, input_seg, click, radius)
        clicked = clicked.copy()
        clicked[click.row, click.col] = True
    return LoopState(input_mask, input_seg, mask, seg, clicked)


def binarise(
    pred_m: torch.Tensor, pred_s: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates from probabilities, as :meth:`probseg.ProbSeg.propose` binarises them.

    Args:
        pred_m, pred_s: float (B, K, H, W).
        x_m, x_s: float or bool (B, 1, H, W), the input.
    Returns:
        ``masks``, ``segs``: bool (B, K, H, W); masks contain the input, segs equal it on the input.
    """
    xm, xs = x_m.bool(), x_s.bool()
    p_fg = (pred_s / pred_m.clamp(min=1e-6)).clamp(0, 1)
    masks = (pred_m >= 0.5) | xm
    segs = masks & (p_fg >= 0.5)
    segs = torch.where(xm, xs, segs)
    return masks, segs


def _candidates(net: PartialSegNet, image: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's candidates for a batch, bool (B, K, H, W): a multi-head network's heads, an SSN's
    :data:`~probseg.model.SSN_TRAIN_SAMPLES` samples, or K = 1 for a single-output network."""
    if net.config.scored:
        pred_m, pred_s, _ = net.decode_candidates(image, x_m, x_s)
    else:
        out = net(image, x_m, x_s, x_m, x_s)  # deterministic: the y arguments are not read
        pred_m, pred_s = out["pred_m"][:, None], out["pred_s"][:, None]
    return binarise(pred_m, pred_s, x_m, x_s)


def _stack(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None].to(device)


def loop_loss(
    net: PartialSegNet,
    images: torch.Tensor,
    gts: np.ndarray,
    rngs: list[np.random.Generator],
    n_steps: int,
    spec: LoopSpec,
    pair_spec: PairSpec,
    radius: int,
    temperature: float,
    states_out: list[list[LoopState]] | None = None,
) -> dict[str, torch.Tensor]:
    """Simulate ``n_steps`` corrections for a batch, then the loss of the network on the states reached.

    Args:
        net: a deterministic network (train mode is kept; the simulated steps run without gradients).
        images: float32 (B, 1, H, W), normalised, on the network's device.
        gts: bool (B, H, W), the whole targets.
        rngs: one generator per example (starts and larger targets are drawn from them).
        n_steps: correction steps before the trained one.
        spec, pair_spec: the loop's and the pairs' settings (``pair_spec.mode`` follows the model).
        radius: the brush radius of clicks and strokes.
        temperature: the best-candidate loss's temperature now (multi-head).
        states_out: when a list, the states after each step (B lists, start first) are appended.
    Returns:
        the loss terms (``loss`` and its parts), float scalars.
    """
    if net.config.stochastic:
        raise ValueError("config: training in the interaction loop needs a deterministic network (latent_dim 0)")
    partial = net.config.mode == "partial"
    device = images.device
    states = [start_state(rng, gt, spec, pair_spec, radius) for rng, gt in zip(rngs, gts)]
    history = [[s] for s in states]
    for _ in range(n_steps):
        feeds = [s.feed(partial) for s in states]
        x_m = _stack([f[0] for f in feeds], device)
        x_s = _stack([f[1] for f in feeds], device)
        with torch.no_grad():
            masks, segs = _candidates(net, images, x_m, x_s)
        masks_np, segs_np = masks.cpu().numpy(), segs.cpu().numpy()
        states = [
            advance(s, gt, masks_np[i], segs_np[i], partial=partial, radius=radius, error_weight=spec.error_weight)
            for i, (s, gt) in enumerate(zip(states, gts))
        ]
        for h, s in zip(history, states):
            h.append(s)
    if states_out is not None:
        states_out.extend(history)
    feeds = [s.feed(partial) for s in states]
    targets = [larger_target(rng, gt, f[0], f[1], pair_spec) for rng, gt, f in zip(rngs, gts, feeds)]
    x_m = _stack([f[0] for f in feeds], device)
    x_s = _stack([f[1] for f in feeds], device)
    y_m = _stack([t[0] for t in targets], device)[:, 0]
    y_s = _stack([t[1] for t in targets], device)[:, 0]
    out = net(images, x_m, x_s, x_m, x_s)
    cfg = net.config
    if not cfg.scored:
        terms = partial_seg_loss(y_m, y_s, x_m[:, 0], out["pred_m"], out["pred_s"], out["mu"], out["logvar"], cfg.beta0, 0.0)
        return terms
    with torch.no_grad():
        _, segs = binarise(out["pred_m"], out["pred_s"], x_m, x_s)
        whole = torch.from_numpy(np.asarray(gts, dtype=bool)).to(device)[:, None]
        score_target = hard_dice(segs, whole.expand_as(segs))
    return multi_head_loss(
        y_m, y_s, x_m[:, 0], out["pred_m"], out["pred_s"], out["score"], score_target, cfg.beta0,
        temperature, spec.spread, spec.score_weight, spec.score_rank_weight, spec.score_rank_temperature,
    )
