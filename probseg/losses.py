"""Losses of the paper: soft Dice, weighted soft Dice, KL divergence and Eq. (3).

Every loss reduces over the spatial axes per sample and then averages over the batch.
"""

from __future__ import annotations

import torch

__all__ = [
    "soft_dice_loss",
    "weighted_soft_dice_loss",
    "kl_divergence",
    "partial_seg_loss",
    "per_sample_seg_loss",
    "best_candidate_weights",
    "multi_head_loss",
    "score_rank_loss",
    "hard_dice",
]

DEFAULT_SMOOTH = 1.0


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes differ: {shapes}")


def _weighted_dice_per_sample(
    target: torch.Tensor, pred: torch.Tensor, weight: torch.Tensor, smooth: float = DEFAULT_SMOOTH
) -> torch.Tensor:
    """The weighted soft Dice loss of each sample: float (B,)."""
    _check_same_shape(target=target, pred=pred, weight=weight)
    dims = tuple(range(1, target.ndim))
    inter = (weight * target * pred).sum(dims)
    denom = (weight * target).sum(dims) + (weight * pred).sum(dims)
    return 1.0 - (2.0 * inter + smooth) / (denom + smooth)


def weighted_soft_dice_loss(
    target: torch.Tensor, pred: torch.Tensor, weight: torch.Tensor, smooth: float = DEFAULT_SMOOTH
) -> torch.Tensor:
    """WDL: ``1 - (2 sum w t p + smooth) / (sum w t + sum w p + smooth)`` per sample, batch mean.

    Args:
        target: float (B, ...) in [0, 1].
        pred: float (B, ...) in [0, 1].
        weight: float (B, ...) >= 0, the pixels' weights (the paper: ``y_m - x_m``).
        smooth: added to numerator and denominator; makes a sample with nothing to match score 0
            loss when the prediction is empty there too.
    Returns:
        float scalar.
    """
    return _weighted_dice_per_sample(target, pred, weight, smooth).mean()


def soft_dice_loss(target: torch.Tensor, pred: torch.Tensor, smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """DL: soft Dice loss (Milletari et al.); :func:`weighted_soft_dice_loss` with unit weights."""
    return weighted_soft_dice_loss(target, pred, torch.ones_like(target), smooth)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions, batch mean.

    Args:
        mu, logvar: float (B, ...); every element after the batch axis is one latent dimension.
        free_bits: nats per latent dimension that are not penalised ("free bits", Kingma et al.
            2016): each dimension's batch-mean KL is raised to at least this value before the sum,
            so the KL term stops pushing a dimension that carries less than this much information
            back to the prior, a remedy for posterior collapse. 0 gives the plain KL.
    Returns:
        float scalar.
    """
    return _free_bits_sum(_kl_per_dim(mu, logvar), free_bits)


def _kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Each latent dimension's batch-mean KL to N(0, 1): float (...), the shape of ``mu[0]``."""
    _check_same_shape(mu=mu, logvar=logvar)
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


def _free_bits_sum(per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The sum of ``per_dim`` with each entry raised to at least ``free_bits`` (0: the plain sum)."""
    if free_bits < 0:
        raise ValueError(f"free_bits: must be >= 0, got {free_bits}")
    return (per_dim.clamp(min=free_bits) if free_bits > 0 else per_dim).sum()


def partial_seg_loss(
    y_m: torch.Tensor,
    y_s: torch.Tensor,
    x_m: torch.Tensor,
    pred_m: torch.Tensor,
    pred_s: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta0: float = 1.0,
    beta1: float = 1e-3,
    free_bits: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Eq. (3): ``WDL(y_s, pred_s, y_m - x_m) + beta0 DL(y_m, pred_m) + beta1 KL``.

    Args:
        y_m, y_s, x_m: float (B, H, W) in {0, 1}, with ``x_m <= y_m``.
        pred_m, pred_s: float (B, H, W) in [0, 1].
        mu, logvar: the approximate posterior's parameters, float (B, ...).
        free_bits: see :func:`kl_divergence`; 0 (the paper) penalises the whole KL.
    Returns:
        dict with ``loss`` (the total) and its terms ``wdl``, ``dl``, ``kl``; float scalars. ``kl``
        is the plain KL whatever ``free_bits`` is, so runs with and without free bits compare.
    """
    wdl = weighted_soft_dice_loss(y_s, pred_s, (y_m - x_m).clamp(min=0.0))
    dl = soft_dice_loss(y_m, pred_m)
    per_dim = _kl_per_dim(mu, logvar)
    kl = per_dim.sum()
    kl_term = _free_bits_sum(per_dim, free_bits) if free_bits else kl
    return {"loss": wdl + beta0 * dl + beta1 * kl_term, "wdl": wdl, "dl": dl, "kl": kl}


def per_sample_seg_loss(
    y_m: torch.Tensor, y_s: torch.Tensor, x_m: torch.Tensor, pred_m: torch.Tensor, pred_s: torch.Tensor, beta0: float = 1.0
) -> torch.Tensor:
    """Eq. (3) without the KL, per sample: ``WDL(y_s, pred_s, y_m - x_m) + beta0 DL(y_m, pred_m)``.

    Args:
        y_m, y_s, x_m, pred_m, pred_s: float (N, H, W), as in :func:`partial_seg_loss`.
    Returns:
        float (N,): each sample's loss (the batch mean of it is :func:`partial_seg_loss` with beta1 0).
    """
    wdl = _weighted_dice_per_sample(y_s, pred_s, (y_m - x_m).clamp(min=0.0))
    dl = _weighted_dice_per_sample(y_m, pred_m, torch.ones_like(y_m))
    return wdl + beta0 * dl


def best_candidate_weights(losses: torch.Tensor, temperature: float, spread: float) -> torch.Tensor:
    """The weight of each candidate in the best-candidate loss: float (B, K), rows summing to 1, no gradient.

    ``(1 - spread) * softmin(losses / temperature) + spread / K``. Temperature 0 gives winner-takes-all
    (all of ``1 - spread`` on the lowest-loss candidate; a tie goes to the first), as in Segment
    Anything and Tyche; a positive temperature is annealed multiple-choice learning's soft minimum,
    which lets every head learn early on; ``spread`` keeps a small weight on every candidate, so that
    no head is left untrained for good (the "dead head" of plain winner-takes-all).

    Args:
        losses: float (B, K), each candidate's loss.
        temperature: >= 0.
        spread: in [0, 1].
    Raises:
        ValueError: naming the argument at fault.
    """
    if losses.ndim != 2 or losses.shape[1] < 1:
        raise ValueError(f"losses: expected shape (B, K), got {tuple(losses.shape)}")
    if not temperature >= 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    if not 0 <= spread <= 1:
        raise ValueError(f"spread: must be in [0, 1], got {spread}")
    losses = losses.detach()
    k = losses.shape[1]
    if temperature == 0:
        best = torch.nn.functional.one_hot(losses.argmin(1), k).to(losses.dtype)
    else:
        best = torch.softmax(-losses / temperature, dim=1)
    return (1.0 - spread) * best + spread / k


def hard_dice(seg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of binary maps over the last two axes: float (...); two empty maps score 1.

    Args:
        seg, target: bool or {0, 1} float (..., H, W) of the same shape.
    """
    _check_same_shape(seg=seg, target=target)
    seg, target = seg.float(), target.float()
    inter = (seg * target).sum((-2, -1))
    total = seg.sum((-2, -1)) + target.sum((-2, -1))
    return torch.where(total > 0, 2.0 * inter / total.clamp(min=1.0), torch.ones_like(total))


def multi_head_loss(
    y_m: torch.Tensor,
    y_s: torch.Tensor,
    x_m: torch.Tensor,
    pred_m: torch.Tensor,
    pred_s: torch.Tensor,
    score: torch.Tensor,
    score_target: torch.Tensor,
    beta0: float = 1.0,
    temperature: float = 0.0,
    spread: float = 0.05,
    score_weight: float = 1.0,
    score_rank_weight: float = 0.0,
    score_rank_temperature: float = 0.05,
) -> dict[str, torch.Tensor]:
    """The best-candidate loss of a K-head network plus its score head's regression and ranking.

    ``sum_k w_k L_k`` (batch mean), with ``L_k`` the per-sample Eq. (3) loss of head k
    (:func:`per_sample_seg_loss`) and ``w`` from :func:`best_candidate_weights`, plus ``score_weight``
    times the mean squared error between each head's predicted score and ``score_target``, plus
    ``score_rank_weight`` times :func:`score_rank_loss` (which candidate of a sample is best).

    Args:
        y_m, y_s, x_m: float (B, H, W), the target and the input's decided pixels.
        pred_m, pred_s: float (B, K, H, W), every head's probabilities.
        score: float (B, K), the predicted Dice of each head.
        score_target: float (B, K), the Dice each head's binarised candidate reached (no gradient).
    Returns:
        dict with ``loss`` (the total), ``seg`` (the weighted segmentation loss), ``best`` (the mean
        lowest per-sample loss, what winner-takes-all optimises), ``score_mse`` and ``kl`` (0: a
        multi-head network has no latent); float scalars.
    """
    b, k, h, w = pred_m.shape
    if pred_s.shape != pred_m.shape or score.shape != (b, k) or score_target.shape != (b, k):
        raise ValueError(
            f"shapes: pred_m {tuple(pred_m.shape)}, pred_s {tuple(pred_s.shape)}, score {tuple(score.shape)}, "
            f"score_target {tuple(score_target.shape)}; expected (B, K, H, W) twice and (B, K) twice"
        )
    rep = lambda t: t[:, None].expand(-1, k, -1, -1).reshape(b * k, h, w)  # noqa: E731
    losses = per_sample_seg_loss(rep(y_m), rep(y_s), rep(x_m), pred_m.reshape(b * k, h, w), pred_s.reshape(b * k, h, w), beta0)
    losses = losses.view(b, k)
    weights = best_candidate_weights(losses, temperature, spread)
    seg = (weights * losses).sum(1).mean()
    score_mse = (score - score_target.detach()).pow(2).mean()
    loss = seg + score_weight * score_mse
    terms = {"seg": seg, "best": losses.detach().min(1).values.mean(), "score_mse": score_mse.detach()}
    if score_rank_weight > 0:
        rank = score_rank_loss(score, score_target, score_rank_temperature)
        loss = loss + score_rank_weight * rank
        terms["score_rank"] = rank.detach()
    return {"loss": loss, **terms, "kl": score.new_zeros(())}


def score_rank_loss(score: torch.Tensor, score_target: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """A listwise ranking loss over each sample's K candidates (ListNet's top-one cross-entropy).

    The squared error of each score against its Dice is dominated by how hard the image is (every
    candidate of a hard image scores low), not by which candidate is best; what ``model-ranked`` needs
    is the order within a sample. So: the cross-entropy between ``softmax(score_target / temperature)``
    (most of the mass on the best candidates) and ``softmax(logit(score))``, batch mean.

    Args:
        score: float (B, K) in (0, 1), the predicted Dice (its log-odds are the ranking logits).
        score_target: float (B, K), the Dice each candidate reached (no gradient).
        temperature: > 0; smaller puts the target's mass on the best candidate alone.
    Returns:
        a float scalar; 0 gradient when K = 1.
    Raises:
        ValueError: naming the argument at fault.
    """
    if score.ndim != 2 or score.shape != score_target.shape:
        raise ValueError(f"score, score_target: expected the same (B, K) shape, got {tuple(score.shape)} and {tuple(score_target.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    target = torch.softmax(score_target.detach() / temperature, dim=1)
    log_p = torch.log_softmax(torch.logit(score, eps=1e-6), dim=1)
    return -(target * log_p).sum(1).mean()
