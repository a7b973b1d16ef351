"""StyleGAN2's custom ops in plain torch: FIR up/down-sampling (``upfirdn2d``) and the biased leaky ReLU.

The published StyleGAN2 ports compile CUDA kernels for these; here they are ordinary torch ops
so the generator runs on CPU, CUDA or anything torch supports. Two implementations of
``upfirdn2d`` exist, after stylegan2-ada's ``impl='ref'`` habit:

* ``ref``  – the definition spelled out: insert zeros, pad, convolve with the flipped kernel,
  keep every ``down``-th sample. Slow (it convolves all the inserted zeros) but obviously right.
* ``fast`` – the same result without the zeros: an upsampling FIR filter is a transposed
  convolution with stride ``up``; everything else is a strided depthwise convolution.

Tests check both against each other and against an independent scipy reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["make_kernel", "upfirdn2d", "fused_leaky_relu", "LRELU_GAIN"]

LRELU_GAIN = math.sqrt(2.0)  # keeps unit variance through leaky ReLU(0.2), as StyleGAN2 does


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A normalised 2D FIR kernel; a 1D kernel is made separable (outer product with itself)."""
    t = torch.as_tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def _pads(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from an int, a (p0, p1) pair (same on both axes) or four values."""
    if isinstance(pad, int):
        return pad, pad, pad, pad
    p = tuple(int(v) for v in pad)
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p  # type: ignore[return-value]
    raise ValueError(f"pad must have 1, 2 or 4 values, got {pad!r}")


def _pad_or_crop(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Zero-pad by positive amounts and crop by negative ones (F.pad would crop too, but only
    with non-negative results; doing it explicitly keeps the intent readable)."""
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    h, w = x.shape[-2:]
    return x[..., max(-y0, 0): h - max(-y1, 0), max(-x0, 0): w - max(-x1, 0)]


def _out_len(n: int, up: int, down: int, p0: int, p1: int, k: int) -> int:
    return (n * up + p0 + p1 - k) // down + 1


def upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                  pad: int | Sequence[int] = 0) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample. ``x`` is (N, C, H, W)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    px0, px1, py0, py1 = _pads(pad)
    y = x.reshape(n * c, 1, h, w)
    if up > 1:
        z = y.new_zeros(n * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = y
        y = z
    y = _pad_or_crop(y, px0, px1, py0, py1)
    y = F.conv2d(y, torch.flip(kernel, [0, 1]).to(y)[None, None])
    y = y[:, :, ::down, ::down]
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


def upfirdn2d_fast(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                   pad: int | Sequence[int] = 0) -> torch.Tensor:
    """Same result as :func:`upfirdn2d_ref` without convolving inserted zeros."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    px0, px1, py0, py1 = _pads(pad)
    k = kernel.to(x)
    if up > 1:
        # conv_transpose2d(x, k, stride=up) equals zero insertion followed by a *full* convolution
        # with k (not flipped). Output sample o of upfirdn (after its padding) is transposed-conv
        # sample o + k - 1 - p0; pad/crop the transposed result to that window.
        weight = k[None, None].expand(c, 1, kh, kw)
        y = F.conv_transpose2d(x, weight, stride=up, groups=c)
        oh, ow = _out_len(h, up, 1, py0, py1, kh), _out_len(w, up, 1, px0, px1, kw)
        sy, sx = kh - 1 - py0, kw - 1 - px0
        th, tw = y.shape[-2:]
        y = _pad_or_crop(y, -sx, sx + ow - tw, -sy, sy + oh - th)
        return y[:, :, ::down, ::down] if down > 1 else y
    y = _pad_or_crop(x, px0, px1, py0, py1)
    weight = torch.flip(k, [0, 1])[None, None].expand(c, 1, kh, kw)
    return F.conv2d(y, weight, stride=down, groups=c)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: int | Sequence[int] = 0, impl: str = "fast") -> torch.Tensor:
    """StyleGAN2's upfirdn2d; ``impl`` is ``"fast"`` (default) or ``"ref"``."""
    if impl == "ref":
        return upfirdn2d_ref(x, kernel, up, down, pad)
    if impl == "fast":
        return upfirdn2d_fast(x, kernel, up, down, pad)
    raise ValueError(f"impl must be 'fast' or 'ref', got {impl!r}")


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = LRELU_GAIN) -> torch.Tensor:
    """Add a per-channel bias (channel = dim 1), leaky-ReLU, rescale by √2."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.view(shape)
    return F.leaky_relu(x, negative_slope) * scale
