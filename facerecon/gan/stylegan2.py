"""StyleGAN2 generator in the state-dict layout of the widely used PyTorch port.

HyperStyle, e4e, pSp and the InterfaceGAN-for-StyleGAN2 tools all load generators saved by
that port (``g_ema`` in ``stylegan2-ffhq-config-f.pt``, ``decoder.*`` inside their own
checkpoints), so the module tree and parameter shapes here follow it key for key
(``style.N``, ``input.input``, ``conv1``, ``to_rgb1``, ``convs.N``, ``to_rgbs.N``,
``noises.noise_N``); the written layout is in :mod:`facerecon.gan.layouts`.

Two additions the thesis needs: every modulated convolution accepts a HyperStyle weight
offset (``weight · (1 + Δ)``), and the FIR ops are pure torch (:mod:`facerecon.gan.ops`), so
the same code runs on CPU and GPU. Sizes are configurable (any power of two ≥ 8 and a
channel cap) so tests build tiny generators with the same key layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facerecon.gan.ops import fused_leaky_relu, make_kernel, upfirdn2d

BLUR_KERNEL = (1, 3, 3, 1)


def channel_table(size: int, channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature channels per resolution (4 … size) of the port's generator, capped at ``channel_max``."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier,
            2048: 8 * channel_multiplier}
    log = int(math.log2(size))
    return {2 ** i: min(channel_max, base[2 ** i]) for i in range(2, log + 1)}


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that shapes the generator; saved with tiny checkpoints, inferred for published ones."""

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01

    def __post_init__(self) -> None:
        log = math.log2(self.size)
        if self.size < 8 or log != int(log) or self.size > 2048:
            raise ValueError(f"generator size must be a power of two in 8..2048, got {self.size}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Rows of W+ (18 at 1024)."""
        return 2 * self.log_size - 2

    @property
    def num_layers(self) -> int:
        """Noise inputs / styled convolutions."""
        return 2 * (self.log_size - 2) + 1

    def channels(self) -> dict[int, int]:
        return channel_table(self.size, self.channel_multiplier, self.channel_max)

    def conv_layers(self) -> list[tuple[int, int, int]]:
        """(kernel, in, out) of every modulated conv in HyperStyle's order: conv1, to_rgb1, then
        per resolution two convs and a to_rgb (26 layers at 1024)."""
        ch = self.channels()
        layers = [(3, ch[4], ch[4]), (1, ch[4], 3)]
        cin = ch[4]
        for i in range(3, self.log_size + 1):
            cout = ch[2 ** i]
            layers += [(3, cin, cout), (3, cout, cout), (1, cout, 3)]
            cin = cout
        return layers

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ layers


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate (weights stored unscaled, scaled at use)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), b)
        return F.linear(x, self.weight * self.scale, b)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1,
                 impl: str = "fast") -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, impl=self.impl)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[int], factor: int = 2, impl: str = "fast") -> None:
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * factor ** 2
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, impl=self.impl)


class ModulatedConv2d(nn.Module):
    """Style-modulated, optionally demodulated convolution, done as one grouped conv per batch.

    ``weights_delta`` (HyperStyle) multiplies the shared weight by ``1 + Δ`` before modulation;
    Δ is (B or 1, out, in, k or 1, k or 1) and broadcasts.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL,
                 impl: str = "fast") -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor,
                             impl=impl)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                weights_delta: torch.Tensor | None = None) -> torch.Tensor:
        batch, cin, h, w = x.shape
        s = self.modulation(style).view(batch, 1, cin, 1, 1)
        weight = self.weight if weights_delta is None else self.weight * (1 + weights_delta)
        weight = self.scale * weight * s  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        k = self.kernel_size
        x = x.reshape(1, batch * cin, h, w)
        if self.upsample:
            wt = weight.transpose(1, 2).reshape(batch * cin, self.out_channel, k, k)
            out = F.conv_transpose2d(x, wt, stride=2, groups=batch)
            out = self.blur(out.view(batch, self.out_channel, *out.shape[-2:]))
            return out
        out = F.conv2d(x, weight.reshape(batch * self.out_channel, cin, k, k), padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, *out.shape[-2:])


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL, impl: str = "fast") -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, impl=impl)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise=None, weights_delta=None):
        return self.activate(self.noise(self.conv(x, style, weights_delta), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = BLUR_KERNEL, impl: str = "fast") -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel, impl=impl)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False, impl=impl)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None, weights_delta=None):
        out = self.conv(x, style, weights_delta) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


# --------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """Mapping network (``style``) + synthesis network, W+ in, RGB in [-1, 1] out."""

    def __init__(self, config: GeneratorConfig | None = None, impl: str = "fast") -> None:
        super().__init__()
        cfg = config or GeneratorConfig()
        self.config = cfg
        self.style_dim = cfg.style_dim
        self.n_latent = cfg.n_latent
        self.num_layers = cfg.num_layers
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation="fused_lrelu")
            for _ in range(cfg.n_mlp)])
        ch = cfg.channels()
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, cfg.style_dim, impl=impl)
        self.to_rgb1 = ToRGB(ch[4], cfg.style_dim, upsample=False, impl=impl)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty in the port too; kept so module paths match
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        cin = ch[4]
        for i in range(3, cfg.log_size + 1):
            cout = ch[2 ** i]
            self.convs.append(StyledConv(cin, cout, 3, cfg.style_dim, upsample=True, impl=impl))
            self.convs.append(StyledConv(cout, cout, 3, cfg.style_dim, impl=impl))
            self.to_rgbs.append(ToRGB(cout, cfg.style_dim, impl=impl))
            cin = cout

    @property
    def size(self) -> int:
        return self.config.size

    def set_impl(self, impl: str) -> None:
        """Switch every FIR op between the ``fast`` and ``ref`` implementation."""
        for m in self.modules():
            if isinstance(m, (Blur, Upsample)):
                m.impl = impl

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Z (B, D) → W (B, D)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Average W of ``n`` random Z (1, D): the starting point for optimisation inversion."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        device = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=g).to(device)
        return torch.cat([self.mapping(c) for c in z.split(1024)]).mean(0, keepdim=True)

    def noise_list(self, mode: str, batch: int = 1) -> list[torch.Tensor | None]:
        """Per-layer noise: ``const`` (the stored buffers, deterministic), ``random`` or ``none``."""
        if mode == "none":
            return [None] * self.num_layers
        bufs = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if mode == "const":
            return bufs
        if mode == "random":
            return [torch.randn(batch, *b.shape[1:], device=b.device, dtype=b.dtype) for b in bufs]
        raise ValueError(f"noise mode must be const, random or none, got {mode!r}")

    def synthesis(self, latent: torch.Tensor, weights_deltas: Sequence[torch.Tensor | None] | None = None,
                  noise_mode: str = "const") -> torch.Tensor:
        """W+ (B, n_latent, D) (or W (B, D), broadcast to every layer) → image (B, 3, S, S)."""
        if latent.ndim == 2:
            latent = latent[:, None, :].expand(-1, self.n_latent, -1)
        if latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"latent must be (B, {self.n_latent}, {self.style_dim}), got {tuple(latent.shape)}")
        deltas = list(weights_deltas) if weights_deltas is not None else [None] * (3 * len(self.to_rgbs) + 2)
        if len(deltas) != 3 * len(self.to_rgbs) + 2:
            raise ValueError(f"weights_deltas must have {3 * len(self.to_rgbs) + 2} entries, got {len(deltas)}")
        batch = latent.shape[0]
        noise = self.noise_list(noise_mode, batch)
        out = self.input(batch)
        out = self.conv1(out, latent[:, 0], noise=noise[0], weights_delta=deltas[0])
        skip = self.to_rgb1(out, latent[:, 1], weights_delta=deltas[1])
        i = 1
        for j, to_rgb in enumerate(self.to_rgbs):
            d = 2 + 3 * j
            out = self.convs[2 * j](out, latent[:, i], noise=noise[1 + 2 * j], weights_delta=deltas[d])
            out = self.convs[2 * j + 1](out, latent[:, i + 1], noise=noise[2 + 2 * j], weights_delta=deltas[d + 1])
            skip = to_rgb(out, latent[:, i + 2], skip, weights_delta=deltas[d + 2])
            i += 2
        return skip

    def forward(self, latent: torch.Tensor, weights_deltas=None, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(latent, weights_deltas, noise_mode)


def to_uint8(images: torch.Tensor) -> list:
    """(B, 3, H, W) in [-1, 1] → list of (H, W, 3) uint8 arrays."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    return [a for a in x.permute(0, 2, 3, 1).cpu().numpy()]


def from_uint8(image, size: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, size, size) in [-1, 1] (area-resampled when ``size`` differs)."""
    t = torch.from_numpy(np.array(image[..., :3], dtype=np.float32)).permute(2, 0, 1)[None].div(127.5).sub(1.0)
    t = t.to(device)
    if size is not None and t.shape[-1] != size:
        t = resize(t, size)
    return t


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased resize of (B, C, H, W): average pooling for integer downscales (what
    HyperStyle's ``face_pool`` does), bilinear-antialias otherwise."""
    h = x.shape[-1]
    if h == size:
        return x
    if h > size and h % size == 0:
        return F.adaptive_avg_pool2d(x, (size, size))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=h > size)
