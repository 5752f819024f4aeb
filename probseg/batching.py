"""Batched decoding that gives, bit for bit, what one input at a time gives.

:meth:`probseg.ProbSeg.propose` decodes one input with its K latent samples per call. Many inputs
(many annotation sessions) can share one forward pass, but a batched convolution is not always
computed the way a smaller one is: PyTorch picks a convolution backend from the input's shape
(on a CPU: oneDNN for a batch above 1 or a large image, its own im2col + GEMM otherwise, NNPACK for
some batches of 16 or more), and two backends round differently in the last bits. A proposal
thresholds probabilities at 0.5, so a last-bit difference can flip a pixel, and a session's result
would depend on which sessions shared its batch.

:func:`decode_batch` therefore runs every per-sample layer (convolutions and group norms) so that
each sample's numbers are exactly those of the unbatched call ("the reference"):

* per layer and input shape, the first time it is met, the reference result is computed by
  running the layer on slices of the reference's batch size, and the batched computations
  (the layer on the whole batch; for a convolution whose reference backend is PyTorch's own
  im2col + GEMM, that backend called on the whole batch) are tried against it, bit for bit,
  values and memory layout;
* the first candidate that reproduces it is used for that shape from then on; where none does,
  the layer keeps running slice by slice.

The backends' arithmetic does not depend on the values (only on shapes, layout and thread count),
so a bit-exact match on one input of a shape, over all its outputs, means the same operation order.
The check is kept per :class:`ExactBatcher` (one per model) and costs one extra layer evaluation
per new shape. Layers between them (activations, pooling, interpolation, concatenation,
the 1x1 head as a matrix product) act on each sample alone; the tests check the whole path against
:meth:`~probseg.ProbSeg.propose`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .model import PartialSegNet

__all__ = ["MAX_BATCH_PIXELS", "ExactBatcher", "decode_batch"]

# Most samples x pixels one batched pass decodes (larger batches are split into passes of whole
# inputs). On a CPU a batch gains by sharing each layer's call overhead, and loses once its
# activations leave the cache: measured on 2 cores, 8 disk inputs of 8 samples at 32 x 32 (64 Ki)
# ran 1.1-1.4x faster than one at a time, while 8 medical inputs at 128 x 128 ran 0.7x as fast.
MAX_BATCH_PIXELS = 2**16

# Layers whose output for a sample depends on that sample alone: these are the ones checked.
_PER_SAMPLE = (nn.Conv2d, nn.ConvTranspose2d, nn.GroupNorm)


def _layout(t: torch.Tensor) -> tuple[int, ...]:
    """The strides that say a tensor's memory layout (batch stride left out: it scales with the batch)."""
    return tuple(t.stride()[1:])


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and _layout(a) == _layout(b) and torch.equal(a, b)


def _thnn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """PyTorch's own im2col + GEMM convolution on a whole batch (it loops over the samples), when the
    layer is a plain 2-D convolution; None otherwise."""
    if not isinstance(module, nn.Conv2d) or module.groups != 1 or module.dilation != (1, 1) \
            or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    kernel, stride, padding = list(module.kernel_size), list(module.stride), list(module.padding)
    return lambda x: torch._C._nn.thnn_conv2d(x, module.weight, kernel, module.bias, stride, padding)


class ExactBatcher:
    """Remembers, per layer and input shape, how a batch reproduces the reference (see the module docstring).

    Attributes:
        plans: ``(layer index, input shape, input layout, reference batch, threads) -> plan``, where plan 0
            runs the layer on the whole batch, 1 runs PyTorch's im2col + GEMM on the whole batch and
            -1 runs it slice by slice.
    """

    def __init__(self) -> None:
        self.plans: dict[tuple[Any, ...], int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"plans": {}}  # shapes are checked again in each process (another machine, another library)

    def _forward(self, index: int, module: nn.Module, plain: Callable[..., torch.Tensor], ref: int,
                 x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n <= ref:
            return plain(x)
        # The thread count is in the key: PyTorch picks some backends by it.
        key = (index, tuple(x.shape), _layout(x), ref, torch.get_num_threads())
        plan = self.plans.get(key)
        if plan is None:
            reference = torch.cat([plain(x[i:i + ref]) for i in range(0, n, ref)])
            thnn = _thnn(module)
            candidates = [plain] + ([thnn] if thnn is not None else [])
            plan = next((j for j, run in enumerate(candidates) if _same(run(x), reference)), -1)
            self.plans[key] = plan
            return reference
        if plan == 0:
            return plain(x)
        if plan == 1:
            thnn = _thnn(module)
            assert thnn is not None
            return thnn(x)
        return torch.cat([plain(x[i:i + ref]) for i in range(0, n, ref)])

    @contextmanager
    def reference_batch(self, net: nn.Module, ref: int) -> Iterator[None]:
        """Within the block, every per-sample layer of ``net`` treats its input as consecutive groups of
        ``ref`` samples, each computed as the reference computes a call of batch ``ref``."""
        layers = [m for m in net.modules() if isinstance(m, _PER_SAMPLE)]
        for index, m in enumerate(layers):
            plain = type(m).forward.__get__(m)
            # An instance attribute shadows the class's forward; deleting it restores the layer.
            m.forward = lambda x, _i=index, _m=m, _p=plain: self._forward(_i, _m, _p, ref, x)  # type: ignore
        try:
            yield
        finally:
            for m in layers:
                del m.forward  # the instance attribute; the class's forward shows again


def _repeat(t: torch.Tensor, n: int) -> torch.Tensor:
    """Each sample ``n`` times in a row, in the layout the reference's ``expand(n)`` view would be read."""
    if n == 1:
        return t
    layout = torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format
    return t.repeat_interleave(n, 0).contiguous(memory_format=layout)


@torch.inference_mode()
def decode_batch(
    net: PartialSegNet,
    batcher: ExactBatcher,
    image: torch.Tensor,
    x_m: torch.Tensor,
    x_s: torch.Tensor,
    z: torch.Tensor | None,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`PartialSegNet.decode` of B inputs at once, each with its own ``n`` samples.

    Args:
        net: the network (eval mode).
        batcher: the model's :class:`ExactBatcher`.
        image, x_m, x_s: float32 (B, 1, H, W), the B inputs (same H, W).
        z: float32 (B * n, *latent), input i's samples at rows i*n .. i*n + n - 1; None for a
            deterministic network.
        n: samples per input (>= 1).
    Returns:
        ``pred_m``, ``pred_s``: float32 (B * n, H, W); rows i*n .. i*n + n - 1 equal, bit for bit,
        ``net.decode(image[i:i+1], x_m[i:i+1], x_s[i:i+1], z[i*n:(i+1)*n])`` (n copies of it when z
        is None).
    """
    if image.shape[0] == 1:  # one input: the reference itself (no copies of its features for the samples)
        pred_m, pred_s = net.decode(image, x_m, x_s, z)
        return (pred_m.expand(n, -1, -1), pred_s.expand(n, -1, -1)) if pred_m.shape[0] != n else (pred_m, pred_s)
    x = torch.cat([image, x_m, x_s], dim=1)
    dec = net.decoder
    if hasattr(dec, "features") and hasattr(dec, "expand"):
        with batcher.reference_batch(net, 1):
            feats = dec.features(x)  # the reference computes an input's features alone
        if z is None:
            with batcher.reference_batch(net, 1):
                logits = _repeat(dec.expand(feats, None), n)
        else:
            with batcher.reference_batch(net, n):
                logits = dec.expand(tuple(_repeat(f, n) for f in feats), z)
    else:
        with batcher.reference_batch(net, n):
            logits = dec(_repeat(x, n), z)
    complete = net.config.mode == "complete"
    return net.constrain(logits, _repeat(x_m, n), _repeat(x_s, n), complete)
