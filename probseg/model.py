"""The conditional VAE of Figure 2 and its configurations.

Inputs are an image ``x_0`` and a partial segmentation ``{x_m, x_s}``; the encoder ``q(z | x, y)`` also
sees the larger target ``{y_m, y_s}`` (training only); the decoder ``g(z, x)`` predicts the larger
partial segmentation ``{y_m_hat, y_s_hat}``. Configurations are selected by name from
:data:`CONFIGS`; a checkpoint stores its configuration and rebuilds the network from it.

Choices where the paper is silent (written here as the paper asks for no more):

* ``paper``: the channel lists "5, 32, 16" and "4, 64, 64, 64" are read as *input* channels of each
  layer: the encoder input is 5 maps (image, x_m, x_s, y_m, y_s), and the decoder's first conv sees 4
  maps, i.e. the 3 input maps plus a **one-channel spatial latent**. So the encoder is
  conv(5->32), conv(32->16), conv(16->2) (mean and log-variance), each followed by 2x max-pooling
  (ReLU on all but the last); z is (1, H/8, W/8) and is upsampled (nearest) to (H, W). The decoder is
  conv(4->64) ReLU, max-pool, conv(64->64) ReLU, transposed conv(64->64, stride 2) ReLU,
  conv(64->2) sigmoid; kernels 3 (2 for the transposed conv).
* ``wide``: our improvement. The same kind of spatial latent (L, H/8, W/8), fed to a small U-Net
  decoder at its bottleneck and again before its last block, so the receptive field spans the image
  (the paper's decoder sees ~10 px) while the latent still says *where* the proposal grows. (A
  global latent vector, as in the Probabilistic U-Net, collapsed in our runs: one vector cannot say
  where a random shape lies.) The contracting path depends on the image alone and runs once per
  image; only the expanding path runs per sample. ``latent_dim = 0`` gives the same backbone with no
  latent: a deterministic network (the ``unet-complete`` configuration).
  Its configured KL weight is ``beta1 = 1e-2``. Trained with the plain KL (4,000 steps, 1,000
  held-out disks), it either keeps a latent whose prior samples are cautious (beta1 up to 5e-3: 12-36
  px per proposal) or collapses (7e-3 and above: KL ~ 0, a deterministic grower of ~205 px whose
  samples do not differ). The shipped ``disks`` model is trained with ``--beta1 3e-2 --free-bits
  0.05``: the larger weight makes proposals bold, the free-bits floor keeps the latent alive (final
  KL 2.3), and it adds ~76 px per proposal with target Dice rising from 0.87 (K = 1) to 1.00 (K = 8)
  (see ``probseg/checkpoints/CHECKPOINTS.md`` for the search).
* ``punet``: the model for real 2D medical images (configurations ``medical``, ``medical-complete``,
  ``medical-unet-complete``). It works at a fixed square working size (``work_size``, 128):
  :meth:`probseg.ProbSeg.propose` resizes any input to it and the proposals back. A U-Net backbone
  (four poolings, widths w, 2w, 4w, 8w, 8w, group norm, additive skips) turns (image, x_m, x_s)
  into per-pixel features; it depends on the input alone and runs once per call. The latent is injected as in the
  Probabilistic U-Net (Kohl et al. 2018): it is combined with the *last* decoder features and passed
  through three 1x1 convolutions, so the part that runs per sample (all K in one batch) is cheap.
  The posterior encoder q(z | x, y) is a small CNN on (image, x_m, x_s, y_m, y_s) at the working size.
  Unlike the Probabilistic U-Net's global vector, z is **spatial**, (L, H/8, W/8) (16 x 16 cells of
  8 x 8 working pixels), because the question a partial proposal answers is *where* it grows: one
  vector cannot say where a random shape lies, and a global latent collapsed in our disk runs. The
  prior N(0, I) makes the cells independent, so before the 1x1 head a small "latent mixer" (three
  3x3 convolutions on the 16 x 16 grid, the second dilated, seeing z beside the backbone's features
  at that scale) turns the cell codes into a spatially coherent, image-aware code, then it is
  upsampled bilinearly to the working size. The first 1x1 convolution of the head acts on the
  concatenation [features, code]; it is computed as ``W_f features + upsample(W_c code)``, which is
  the same map (convolution and bilinear upsampling are linear and commute), with ``W_f features``
  computed once per call and ``W_c code`` on the 16 x 16 grid. The head is w channels wide (it runs
  at the working size for every sample), the code 2w. ``latent_dim = 0`` drops the encoder and the
  mixer: a deterministic U-Net with the same backbone and head. The KL weight is the paper's
  ``beta1 = 1e-3`` (not tuned on medical data).

Output constraints (Section 3), enforced in :meth:`PartialSegNet.constrain`: the input's decided
pixels and labels are kept exactly, and predicted foreground lies only inside the predicted decided
mask. Section 2's ``p(x_s = 1 | x_m = 0) = 1`` is a typo for 0: undecided pixels are never foreground.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ARCHS, CONFIGS, MEDICAL_WORK_SIZE, SIZE_MULTIPLE, ModelConfig

# The configurations live in probseg.configs (no torch there); re-exported here, where they always were.
__all__ = ["ARCHS", "CONFIGS", "MEDICAL_WORK_SIZE", "SIZE_MULTIPLE", "ModelConfig", "PartialSegNet", "build_network"]


# Logit samples an SSN is trained on per example (its best-candidate loss runs over them).
SSN_TRAIN_SAMPLES = 8


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


def _conv_gn(cin: int, cout: int) -> nn.Sequential:
    # Group normalisation keeps the deeper U-Net out of the saturated, zero-gradient regime that
    # Dice losses push un-normalised networks into; it is batch-independent, so K samples and
    # training batches see the same statistics.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


def _down_gn(cin: int, cout: int) -> nn.Sequential:
    """:func:`_conv_gn` with stride 2: halves the map (the score heads' path down to one number)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class _PaperEncoder(nn.Module):
    """q(z | x, y): (B, 5, H, W) -> mean, log-variance (B, L, H/8, W/8)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(5, 32), nn.MaxPool2d(2), _conv(32, 16), nn.MaxPool2d(2))
        self.head = nn.Conv2d(16, 2 * latent_dim, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.pool(self.head(self.body(xy))).chunk(2, dim=1)
        return mu, logvar


class _PaperDecoder(nn.Module):
    """g(z, x): x (B, 3, H, W), z (B, L, H/8, W/8) -> logits (B, 2, H, W)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _conv(3 + latent_dim, 64),
            nn.MaxPool2d(2),
            _conv(64, 64),
            nn.ConvTranspose2d(64, 64, 2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 2, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z_full = F.interpolate(z, size=x.shape[-2:], mode="nearest")
        return self.net(torch.cat([x, z_full], dim=1))


def _up_cat(d: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``cat([nearest 2x upsample of d, skip], 1)``: d (B, C, h, w), skip (B or 1 broadcast, S, 2h, 2w).

    Without autograd the upsampled map is written straight into its channels of the result: at the
    full size, with K samples, the upsample's own output and the copy of it that ``cat`` makes were
    a fifth of a proposal's time. It is written as two strided copies of ``d`` into the even rows and
    one copy of those rows into the odd ones: one copy through a six-dimensional broadcast view was
    3-4x slower (measured on the disk decoder's shapes, one thread). Every value is a copy, so the
    result, and every later result, is the same bit for bit.
    """
    if torch.is_grad_enabled():
        return torch.cat([F.interpolate(d, scale_factor=2, mode="nearest"), skip], 1)
    n, c, h, w = d.shape
    out = d.new_empty((n, c + skip.shape[1], 2 * h, 2 * w))
    even_rows = out[:, :c, 0::2]
    even_rows[..., 0::2] = d
    even_rows[..., 1::2] = d
    out[:, :c, 1::2] = even_rows
    out[:, c:] = skip
    return out


class _WideEncoder(nn.Module):
    """q(z | x, y): (B, 5, H, W) -> mean, log-variance (B, L, H/8, W/8)."""

    def __init__(self, latent_dim: int, width: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv_gn(5, w), nn.MaxPool2d(2), _conv_gn(w, 2 * w), nn.MaxPool2d(2), _conv_gn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_gn(2 * w, 2 * w),
        )
        self.head = nn.Conv2d(2 * w, 2 * latent_dim, 1)

    def forward(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(xy)).chunk(2, dim=1)
        return mu, logvar


class _WideDecoder(nn.Module):
    """A small U-Net over x. The spatial latent (L, H/8, W/8) joins at the bottleneck, where it sets
    the coarse layout of the proposal, and again (upsampled) before the last block. The contracting
    path depends on x alone, so it runs once per image; only the expanding path runs per sample."""

    def __init__(self, latent_dim: int, width: int, out_channels: int = 2) -> None:
        super().__init__()
        w = width
        self.latent_dim = latent_dim
        self.coarse_channels = 2 * w  # the bottleneck, which the score head reads
        self.enc1 = nn.Sequential(_conv_gn(3, w), _conv_gn(w, w))
        self.enc2 = nn.Sequential(_conv_gn(w, 2 * w), _conv_gn(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv_gn(2 * w, 2 * w), _conv_gn(2 * w, 2 * w))
        self.bottom = nn.Sequential(_conv_gn(2 * w, 2 * w), _conv_gn(2 * w, 2 * w))
        self.mix = nn.Sequential(_conv_gn(2 * w + latent_dim, 2 * w), _conv_gn(2 * w, 2 * w))
        self.up3 = _conv_gn(4 * w, 2 * w)
        self.up2 = _conv_gn(4 * w, 2 * w)
        self.up1 = _conv_gn(3 * w, w)
        self.head = nn.Sequential(_conv_gn(w + latent_dim, w), nn.Conv2d(w, out_channels, 1))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The per-image part: skip features and the bottleneck."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.bottom(F.max_pool2d(e3, 2))
        return e1, e2, e3, b

    def coarse(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The features the score head reads: the bottleneck, (B, 2w, H/8, W/8)."""
        return feats[3]

    def expand(self, feats: tuple[torch.Tensor, ...], z: torch.Tensor | None) -> torch.Tensor:
        """The per-sample part: features (batch 1 or B) and z (B, L, H/8, W/8) -> logits (B, out_channels, H, W)."""
        e1, e2, e3, b = feats
        if self.latent_dim > 0:
            assert z is not None
            n = z.shape[0]
            e1, e2, e3, b = (t.expand(n, -1, -1, -1) for t in (e1, e2, e3, b))
            b = torch.cat([b, z], 1)
        d = self.mix(b)
        d = self.up3(_up_cat(d, e3))
        d = self.up2(_up_cat(d, e2))
        d = self.up1(_up_cat(d, e1))
        if self.latent_dim > 0:
            d = torch.cat([d, F.interpolate(z, size=d.shape[-2:], mode="nearest")], 1)
        return self.head(d)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return self.expand(self.features(x), z)


class _PUNetEncoder(nn.Module):
    """q(z | x, y) of ``punet``: (B, 5, H, W) -> mean, log-variance (B, L, H/8, W/8).

    The input is first averaged over 2 x 2 blocks (mask channels become fractions): the posterior
    only needs a code per 8 x 8 cell, and a full-resolution layer would cost as much as the rest.
    """

    def __init__(self, latent_dim: int, width: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.AvgPool2d(2), _conv_gn(5, w), nn.MaxPool2d(2), _conv_gn(w, 2 * w), nn.MaxPool2d(2), _conv_gn(2 * w, 2 * w),
            _conv_gn(2 * w, 2 * w),
        )
        self.head = nn.Conv2d(2 * w, 2 * latent_dim, 1)

    def forward(self, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(xy.contiguous(memory_format=torch.channels_last))).contiguous().chunk(2, dim=1)
        return mu, logvar


class _PUNetBackbone(nn.Module):
    """The per-input U-Net of ``punet``: x (B, 3, H, W) -> last decoder features (B, w, H, W) and the
    decoder's features on the latent grid (B, 8w, H/8, W/8).

    Widths w, 2w, 4w, 8w, 8w at scales 1, 1/2, 1/4, 1/8, 1/16; two 3x3 convolutions per encoder
    level (one at full resolution), one per decoder level. Skips are *added* (LinkNet/FPN style: the coarser map is projected
    by a 1x1 convolution to the finer level's width, upsampled and added), not concatenated: on a
    CPU the concatenations and the wider convolutions after them were ~40% of a training step.
    Tensors run channels-last: oneDNN's convolutions are faster on CPU in that layout for these
    small channel counts (measured: training step -10%, inference -35%).
    """

    DEPTH = 4

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.chans = (w, 2 * w, 4 * w, 8 * w, 8 * w)
        self.enc = nn.ModuleList()
        cin = 3
        for level, c in enumerate(self.chans):
            # One convolution at full resolution: there, each normalised layer is memory-bound and
            # costs as much as a whole coarser level in a training step.
            self.enc.append(nn.Sequential(_conv_gn(cin, c), _conv_gn(c, c)) if level else _conv_gn(cin, c))
            cin = c
        self.lateral = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c in reversed(self.chans[:-1]):
            self.lateral.append(nn.Conv2d(cin, c, 1))
            self.dec.append(_conv_gn(c, c))
            cin = c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        mult = 2**self.DEPTH
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            # Only inputs that are not multiples of 16 (never the working size) are padded; the
            # outputs are cropped back, so every shape a multiple of 8 works.
            x = F.pad(x, (0, pw, 0, ph))
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for level, block in enumerate(self.enc):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        coarse = x
        for j, (lateral, block) in enumerate(zip(self.lateral, self.dec)):
            # The 1x1 projection runs before the upsampling (they commute), at a quarter of the cost.
            x = block(F.interpolate(lateral(x), scale_factor=2, mode="nearest") + skips[-2 - j])
            if j == 0:  # the decoder level at 1/8: the latent's grid
                coarse = x
        gh, gw = h // SIZE_MULTIPLE, w // SIZE_MULTIPLE
        return x[..., :h, :w], coarse[..., :gh, :gw]


class _PUNetDecoder(nn.Module):
    """g(z, x) of ``punet``: the backbone, the latent mixer and the 1x1 head (see the module docstring).

    ``features`` is the per-input part (run once per call); ``expand`` the per-sample part.
    """

    def __init__(self, latent_dim: int, width: int, out_channels: int = 2) -> None:
        super().__init__()
        w = width
        self.latent_dim = latent_dim
        self.coarse_channels = 8 * w  # the decoder's features on the latent grid, which the score head reads
        # The head works at the full working size for every sample, so it is kept narrow (w); the
        # code lives on the coarse grid, where width is cheap.
        hidden, code = w, 2 * w
        self.backbone = _PUNetBackbone(w)
        # The image part of the head's first 1x1 conv (it holds the bias).
        self.head_feat = nn.Conv2d(w, hidden, 1)
        if latent_dim > 0:
            self.mix_feat = nn.Conv2d(8 * w, code, 1)
            self.mixer = nn.Sequential(
                _conv_gn(code + latent_dim, code),
                nn.Sequential(nn.Conv2d(code, code, 3, padding=2, dilation=2), nn.GroupNorm(4, code), nn.ReLU(inplace=True)),
                _conv_gn(code, code),
            )
            # The latent part of the head's first 1x1 conv; no bias (head_feat has it).
            self.head_code = nn.Conv2d(code, hidden, 1, bias=False)
        self.head_mid = nn.Conv2d(hidden, hidden, 1)
        self.head_out = nn.Conv2d(hidden, out_channels, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The per-input part: x (B, 3, H, W) -> (head input (B, w, H, W), mixer input (B, 2w, H/8, W/8),
        the backbone's features on the latent grid (B, 8w, H/8, W/8)).

        For a deterministic network the mixer input is an empty (B, 0) tensor.
        """
        feats, coarse = self.backbone(x)
        head_in = self.head_feat(feats)
        mix_in = self.mix_feat(coarse) if self.latent_dim > 0 else head_in.new_zeros((x.shape[0], 0))
        return head_in, mix_in, coarse

    def coarse(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The features the score head reads: (B, 8w, H/8, W/8)."""
        return feats[2]

    def expand(self, feats: tuple[torch.Tensor, ...], z: torch.Tensor | None) -> torch.Tensor:
        """The per-sample part: features (batch 1 or B) and z (B, L, H/8, W/8) -> logits (B, out_channels, H, W)."""
        head_in, mix_in = feats[0], feats[1]
        if self.latent_dim > 0:
            if z is None:
                raise ValueError("z: this network has a latent; pass z of shape (B, L, H/8, W/8)")
            mix_in = mix_in.expand(z.shape[0], -1, -1, -1)
            code = self.head_code(self.mixer(torch.cat([mix_in, z.to(mix_in.dtype)], 1)))
            code = code.contiguous(memory_format=torch.channels_last)
            hidden = F.interpolate(code, size=head_in.shape[-2:], mode="bilinear", align_corners=False)
            hidden += head_in  # in place: a batch-1 head_in broadcasts over the samples
        else:
            hidden = head_in
        # The 1x1 convolutions as matrix products over the channels-last view: with K samples at the
        # working size these are the per-sample cost, and a GEMM on (K*H*W, C) is ~2x faster than
        # the convolution kernel; in-place ReLUs avoid allocating K more full-size maps.
        x = hidden.permute(0, 2, 3, 1).relu_()
        x = F.linear(x, self.head_mid.weight.flatten(1), self.head_mid.bias).relu_()
        x = F.linear(x, self.head_out.weight.flatten(1), self.head_out.bias)
        return x.permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return self.expand(self.features(x), z)


class _ScoreHead(nn.Module):
    """Predicts each candidate's Dice with the target, as Segment Anything's IoU head does.

    Inputs: the decoder's coarse features (B, C, h, w) (h = H/8) and, per candidate, its decided-mask
    and foreground probabilities with the input's decided pixels and foreground, average-pooled to
    the coarse grid. Two 3x3 convolutions (the second strided), a global average and a linear layer
    give a number in (0, 1) per candidate. The candidate maps enter detached: the score is trained to
    judge the candidates, not to change them.
    """

    def __init__(self, coarse_channels: int, width: int) -> None:
        super().__init__()
        c = 2 * width
        self.proj = nn.Conv2d(coarse_channels, c, 1)
        self.body = nn.Sequential(
            _conv_gn(c + 4, c),
            _down_gn(c, c),
        )
        self.out = nn.Linear(c, 1)

    def forward(
        self, coarse: torch.Tensor, pred_m: torch.Tensor, pred_s: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """coarse (B, C, h, w); pred_m, pred_s (B, K, H, W); x_m, x_s (B, 1, H, W) -> scores (B, K) in (0, 1).

        ``image`` (B, 1, H, W) is not read: the signature is :class:`_FineScoreHead`'s."""
        b, k = pred_m.shape[:2]
        grid = coarse.shape[-2:]
        maps = torch.stack([pred_m.detach(), pred_s.detach(), x_m.expand(-1, k, -1, -1), x_s.expand(-1, k, -1, -1)], 2)
        maps = F.adaptive_avg_pool2d(maps.flatten(0, 1), grid)  # (B K, 4, h, w)
        feat = self.proj(coarse).contiguous()
        feat = feat[:, None].expand(-1, k, -1, -1, -1).flatten(0, 1)
        hidden = self.body(torch.cat([feat, maps], 1)).mean(dim=(-2, -1))
        return torch.sigmoid(self.out(hidden)[:, 0]).view(b, k)


class _FineScoreHead(nn.Module):
    """A score head that reads each candidate at half the working resolution.

    The coarse head (:class:`_ScoreHead`) sees a candidate only average-pooled to the latent grid (16 x 16
    at the medical working size), where nested candidates differ mostly by their area; on fold A's
    training tasks it learned to rank by size, not by fit (see CHECKPOINTS.md). This head first reads,
    per candidate, six maps at half the working resolution: the candidate's decided mask and foreground,
    the input's decided pixels and foreground, the image, and the mean foreground of all K candidates
    (agreement with the others is evidence, as in an ensemble). Two strided 3x3 convolutions bring them
    to the latent grid, where they meet the projected coarse features; a 3x3 convolution, a strided one,
    a global average and a linear layer give each candidate's score. The candidate maps enter detached.
    """

    def __init__(self, coarse_channels: int, width: int) -> None:
        super().__init__()
        c = 2 * width
        self.fine = nn.Sequential(_down_gn(6, width), _down_gn(width, c))
        self.proj = nn.Conv2d(coarse_channels, c, 1)
        self.body = nn.Sequential(_conv_gn(2 * c, c), _down_gn(c, c))
        self.out = nn.Linear(c, 1)

    def forward(
        self, coarse: torch.Tensor, pred_m: torch.Tensor, pred_s: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """coarse (B, C, h, w); pred_m, pred_s (B, K, H, W); x_m, x_s, image (B, 1, H, W) -> scores (B, K) in (0, 1).

        H = 8 h (the latent grid's factor): the two strided convolutions after the halving reach the grid.
        """
        if image is None:
            raise ValueError("image: the fine score head reads the image; pass it, float32 (B, 1, H, W)")
        b, k = pred_m.shape[:2]
        pred_m, pred_s = pred_m.detach(), pred_s.detach()
        half = lambda t: F.avg_pool2d(t, 2, ceil_mode=True)  # noqa: E731
        # The four maps every candidate shares are halved once, then repeated per candidate.
        shared = half(torch.cat([x_m, x_s, image, pred_s.mean(1, keepdim=True)], 1))  # (B, 4, H/2, W/2)
        maps = torch.cat(
            [torch.stack([half(pred_m), half(pred_s)], 2), shared[:, None].expand(-1, k, -1, -1, -1)], 2
        ).flatten(0, 1)  # (B K, 6, H/2, W/2)
        fine = self.fine(maps)
        grid = coarse.shape[-2:]
        if fine.shape[-2:] != grid:  # inputs that are not multiples of 32 after padding: match the grid
            fine = F.adaptive_avg_pool2d(fine, grid)
        feat = self.proj(coarse).contiguous()
        feat = feat[:, None].expand(-1, k, -1, -1, -1).flatten(0, 1)
        hidden = self.body(torch.cat([feat, fine], 1)).mean(dim=(-2, -1))
        return torch.sigmoid(self.out(hidden)[:, 0]).view(b, k)


class PartialSegNet(nn.Module):
    """The network: encoder (when stochastic), decoder, and the output constraints.

    Tensors: ``image`` float32 (B, 1, H, W); masks float32 (B, 1, H, W) in {0, 1}; H and W multiples
    of :data:`SIZE_MULTIPLE`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.arch == "paper":
            self.encoder: nn.Module | None = _PaperEncoder(config.latent_dim)
            self.decoder: nn.Module = _PaperDecoder(config.latent_dim)
        elif config.arch == "punet":
            self.encoder = _PUNetEncoder(config.latent_dim, config.width) if config.stochastic else None
            self.decoder = _PUNetDecoder(config.latent_dim, config.width, config.out_channels)
        else:
            self.encoder = _WideEncoder(config.latent_dim, config.width) if config.stochastic else None
            self.decoder = _WideDecoder(config.latent_dim, config.width, config.out_channels)
        self.score_head: nn.Module | None = None
        if config.scored:
            head = _FineScoreHead if config.score_head == "fine" else _ScoreHead
            self.score_head = head(self.decoder.coarse_channels, config.width)

    def latent_shape(self, h: int, w: int) -> tuple[int, ...]:
        """Shape of one sample's z (no batch axis) for an (h, w) input."""
        return (self.config.latent_dim, h // SIZE_MULTIPLE, w // SIZE_MULTIPLE)

    @staticmethod
    def constrain(
        logits: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor, complete: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities that respect the paper's constraints.

        Args:
            logits: float (B, 2, H, W): decided-mask and foreground-given-decided logits.
            x_m, x_s: float (B, 1, H, W).
            complete: decide every pixel (``pred_m`` = 1).
        Returns:
            ``pred_m``, ``pred_s``: float (B, H, W); ``pred_m >= x_m``, ``pred_s <= pred_m``,
            ``pred_s == x_s`` where ``x_m == 1``.
        """
        p_m = torch.ones_like(logits[:, 0]) if complete else torch.sigmoid(logits[:, 0])
        p_fg = torch.sigmoid(logits[:, 1])
        xm, xs = x_m[:, 0], x_s[:, 0]
        pred_m = xm + (1 - xm) * p_m
        pred_s = xm * xs + (1 - xm) * p_m * p_fg
        return pred_m, pred_s

    def forward(
        self, image: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor, y_m: torch.Tensor, y_s: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Training pass: encode ``(x, y)``, sample z by reparameterisation, decode.

        Returns dict with ``pred_m``, ``pred_s`` (B, H, W), ``mu``, ``logvar`` (B, *latent) (zeros
        of shape (B, 0) for a deterministic network). A multi-head network (``heads`` = K > 1)
        returns ``pred_m``, ``pred_s`` of shape (B, K, H, W), one map per head, and ``score`` (B, K),
        each head's predicted Dice; an SSN the same for K = :data:`SSN_TRAIN_SAMPLES` samples.
        """
        x = torch.cat([image, x_m, x_s], dim=1)
        if self.config.stochastic:
            assert self.encoder is not None
            mu, logvar = self.encoder(torch.cat([x, y_m, y_s], dim=1))
            logvar = logvar.clamp(-10.0, 10.0)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        else:
            mu = logvar = image.new_zeros((image.shape[0], 0))
            z = None
        if self.config.scored:
            pred_m, pred_s, score = self.decode_candidates(image, x_m, x_s, SSN_TRAIN_SAMPLES)
            return {"pred_m": pred_m, "pred_s": pred_s, "score": score, "mu": mu, "logvar": logvar}
        logits = self.decoder(x, z)
        pred_m, pred_s = self.constrain(logits, x_m, x_s, self.config.mode == "complete")
        return {"pred_m": pred_m, "pred_s": pred_s, "mu": mu, "logvar": logvar}

    def decode_candidates(
        self,
        image: torch.Tensor,
        x_m: torch.Tensor,
        x_s: torch.Tensor,
        n: int = SSN_TRAIN_SAMPLES,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates of a scored network and their predicted Dice.

        Inputs (B, 1, H, W) each -> ``pred_m``, ``pred_s`` (B, K, H, W) under the output constraints
        and ``score`` (B, K). A multi-head network gives its K = ``heads`` heads (``n``, ``generator``
        and ``mean`` are not read). An SSN gives K = ``n`` samples of its logits, drawn from
        ``generator`` (torch's global generator when None); ``mean`` gives the mean logits ``n``
        times. The image features are computed once for all candidates.
        """
        if self.score_head is None:
            raise ValueError("decode_candidates: this network has one output and no score head; use decode")
        x = torch.cat([image, x_m, x_s], dim=1)
        feats = self.decoder.features(x)
        params = self.decoder.expand(feats, None)  # (B, out_channels, H, W)
        b, _, h, w = params.shape
        if self.config.ssn:
            logits = _ssn_sample(params, self.config.ssn_rank, n, generator, mean)
        else:
            logits = params.view(b, self.config.heads, 2, h, w)
        k = logits.shape[1]
        pred_m, pred_s = self.constrain(
            logits.reshape(b * k, 2, h, w), x_m.repeat_interleave(k, 0), x_s.repeat_interleave(k, 0),
            self.config.mode == "complete",
        )
        pred_m, pred_s = pred_m.view(b, k, h, w), pred_s.view(b, k, h, w)
        score = self.score_head(self.decoder.coarse(feats), pred_m, pred_s, x_m, x_s, image)
        return pred_m, pred_s, score

    def decode(self, image: torch.Tensor, x_m: torch.Tensor, x_s: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: one input (1, 1, H, W) each, ``z`` (K, *latent) -> ``pred_m``, ``pred_s`` (K, H, W).

        The image features are computed once and shared by the K samples where the architecture
        allows it (``wide``, ``punet``). A multi-head network returns its heads (K = ``heads``) and an
        SSN its mean logits (K = 1); ``z`` must be None; :meth:`decode_candidates` also gives their
        scores, and an SSN's samples.
        """
        if self.config.scored:
            if z is not None:
                raise ValueError("z: a multi-head or SSN network has no latent; pass None")
            pred_m, pred_s, _ = self.decode_candidates(image, x_m, x_s, 1, mean=True)
            return pred_m[0], pred_s[0]
        k = 1 if z is None else z.shape[0]
        x = torch.cat([image, x_m, x_s], dim=1)
        if isinstance(self.decoder, (_WideDecoder, _PUNetDecoder)):
            logits = self.decoder.expand(self.decoder.features(x), z)
            if z is None and k > 1:
                logits = logits.expand(k, -1, -1, -1)
        else:
            logits = self.decoder(x.expand(k, -1, -1, -1), z)
        return self.constrain(logits, x_m.expand(k, -1, -1, -1), x_s.expand(k, -1, -1, -1), self.config.mode == "complete")


def _ssn_sample(
    params: torch.Tensor, rank: int, n: int, generator: torch.Generator | None, mean: bool
) -> torch.Tensor:
    """``n`` logit samples of an SSN output: params (B, 2 (2 + rank), H, W) -> logits (B, n, 2, H, W).

    ``logits = mu + sum_r eps_r P_r + exp(logd / 2) * eps``: ``mu`` the mean (2 maps), ``P_r`` the
    ``rank`` factor maps (2 each), ``logd`` the log diagonal variance; ``eps_r`` one normal per sample
    and factor, ``eps`` one per sample and pixel. ``mean`` sets both to 0.
    """
    b, _, h, w = params.shape
    mu = params[:, 0:2]
    if mean:
        return mu[:, None].expand(b, n, 2, h, w)
    # Bounded so that an early step cannot blow the samples up (exp(5/2) ~ 12 logits of noise).
    scale = (0.5 * params[:, 2:4].clamp(-10.0, 5.0)).exp()
    factors = params[:, 4:].reshape(b, rank, 2, h, w)
    eps_r = torch.randn((b, n, rank), generator=generator, device=params.device, dtype=params.dtype)
    eps = torch.randn((b, n, 2, h, w), generator=generator, device=params.device, dtype=params.dtype)
    return mu[:, None] + torch.einsum("bnr,brchw->bnchw", eps_r, factors) + scale[:, None] * eps


def build_network(config: ModelConfig | str) -> PartialSegNet:
    """A fresh network for a configuration or a configuration name in :data:`CONFIGS`."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"config: unknown configuration {config!r}; known: {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return PartialSegNet(config)
