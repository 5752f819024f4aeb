"""Losses of the paper: soft Dice, weighted soft Dice, KL divergence and Eq. (3).

Every loss reduces over the spatial axes per sample and then averages over the batch.
"""

from __future__ import annotations

import torch

__all__ = ["soft_dice_loss", "weighted_soft_dice_loss", "kl_divergence", "partial_seg_loss"]

DEFAULT_SMOOTH = 1.0


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes differ: {shapes}")


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
    _check_same_shape(target=target, pred=pred, weight=weight)
    dims = tuple(range(1, target.ndim))
    inter = (weight * target * pred).sum(dims)
    denom = (weight * target).sum(dims) + (weight * pred).sum(dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


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
