"""HyperStyle's hypernetwork: (image, current reconstruction) → per-layer generator weight offsets.

Layout of HyperStyle's ``SharedWeightsHyperNetResNet`` (and its ``…Separable`` variant): a
ResNet-34 trunk on the 6-channel input (``conv1``/``bn1``/``relu`` then ``body.N`` basic
blocks), and one refinement block per tuned generator layer:

* layers in ``shared_layers`` (the 512→512 3×3 convs of the coarse resolutions) use a
  ``HyperRefinementBlock``: features → code → a *shared* small hypernetwork that expands the
  code into a full (out, in, k, k) offset. The shared module appears in the state dict under
  ``shared_weight_hypernet`` and again under every block that uses it, as in the original;
* other layers use a ``RefinementBlock`` predicting one offset per (out, in) channel pair
  (repeated over the kernel window), or for the separable variant a rank-factored kernel.

The generator applies ``weight · (1 + Δ)``. Everything is sized from the generator's layer
list, so tiny generators get tiny hypernetworks with the same key names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from facerecon.gan.stylegan2 import EqualLinear, GeneratorConfig

HYPERNET_KINDS = ("SharedWeightsHyperNetResNet", "SharedWeightsHyperNetResNetSeparable")
SHARED_LAYERS = (0, 2, 3, 5, 6, 8, 9, 11, 12)
DEFAULT_LAYERS_TO_TUNE = (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
RESNET34_UNITS = (3, 4, 6, 3)


@dataclass(frozen=True)
class HypernetConfig:
    generator: GeneratorConfig = GeneratorConfig()
    kind: str = "SharedWeightsHyperNetResNet"
    input_nc: int = 6
    input_size: int = 256
    widths: tuple[int, ...] = (64, 128, 256, 512)
    units: tuple[int, ...] = RESNET34_UNITS
    layers_to_tune: tuple[int, ...] = DEFAULT_LAYERS_TO_TUNE
    shared_layers: tuple[int, ...] = SHARED_LAYERS
    hyper_dim: int = 512  # code size of the shared hypernetwork and width of the refinement heads
    inner_c: int = 256  # RefinementBlock conv width
    hyper_inner_c: int = 128  # HyperRefinementBlock conv width

    def __post_init__(self) -> None:
        if self.kind not in HYPERNET_KINDS:
            raise ValueError(f"hypernetwork kind must be one of {HYPERNET_KINDS}, got {self.kind!r}")
        n = self.n_outputs
        bad = [i for i in self.layers_to_tune if not 0 <= i < n]
        if bad:
            raise ValueError(f"layers_to_tune {bad} outside the generator's {n} layers")
        if self.input_size % 16 or self.input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 (≥ 32), got {self.input_size}")

    @property
    def n_outputs(self) -> int:
        return len(self.generator.conv_layers())

    @property
    def spatial(self) -> int:
        """Side of the trunk's output feature map (16 for 256 inputs)."""
        return self.input_size // 16

    def shared_size(self) -> tuple[int, int]:
        """(in, out) channels every shared layer must have."""
        layers = self.generator.conv_layers()
        used = [layers[i] for i in self.layers_to_tune if i in self.shared_layers]
        sizes = {(k, cin, cout) for k, cin, cout in used}
        if len(sizes) > 1 or any(k != 3 for k, _, _ in sizes):
            raise ValueError(f"shared hypernetwork layers must all be 3×3 convs of one size, got {sorted(sizes)}")
        if not sizes:
            return self.generator.channel_max, self.generator.channel_max
        _, cin, cout = sizes.pop()
        return cin, cout

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("widths", "units", "layers_to_tune", "shared_layers"):
            d[k] = list(d[k])
        return d


class BasicBlock(nn.Module):
    """torchvision's ResNet-34 block (names ``conv1``/``bn1``/``conv2``/``bn2``/``downsample``)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class SharedWeightsHypernet(nn.Module):
    """Code z (B, Z) → kernel (B, out, in, f, f) through two linear maps (the "hyper" in HyperStyle)."""

    def __init__(self, f_size: int = 3, z_dim: int = 512, out_size: int = 512, in_size: int = 512) -> None:
        super().__init__()
        self.z_dim, self.f_size, self.out_size, self.in_size = z_dim, f_size, out_size, in_size
        self.w1 = nn.Parameter(torch.fmod(torch.randn(z_dim, out_size * f_size * f_size) / 40, 2))
        self.b1 = nn.Parameter(torch.fmod(torch.randn(out_size * f_size * f_size) / 40, 2))
        self.w2 = nn.Parameter(torch.fmod(torch.randn(z_dim, in_size * z_dim) / 40, 2))
        self.b2 = nn.Parameter(torch.fmod(torch.randn(in_size * z_dim) / 40, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = (z @ self.w2 + self.b2).view(b, self.in_size, self.z_dim)
        k = h @ self.w1 + self.b1  # (B, in, out·f·f), reinterpreted (not transposed) as in the original
        return k.view(b, self.out_size, self.in_size, self.f_size, self.f_size)


def _conv_stack(cin: int, inner: int, out: int, n_inner: int, first_stride: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(cin, inner, 3, first_stride, 1), nn.LeakyReLU()]
    for _ in range(n_inner):
        mods += [nn.Conv2d(inner, inner, 3, 2, 1), nn.LeakyReLU()]
    mods += [nn.Conv2d(inner, out, 3, 2, 1), nn.LeakyReLU()]
    return nn.Sequential(*mods)


class RefinementBlock(nn.Module):
    """Features → one offset per (out, in) pair (3×3 layers, repeated over the window) or a full
    1×1 kernel (toRGB layers)."""

    def __init__(self, kernel: int, cin: int, cout: int, n_channels: int, inner_c: int, out_c: int,
                 spatial: int, to_rgb: bool) -> None:
        super().__init__()
        self.kernel_size, self.in_channels, self.out_channels = kernel, cin, cout
        self.to_rgb = to_rgb
        pools = int(math.log2(spatial)) - 1 - (1 if kernel == 3 else 0)
        self.convs = _conv_stack(n_channels, inner_c, out_c, max(pools - 1, 0), 2)
        head = nn.Conv2d(out_c, cin * cout, 1)
        self.output = nn.Sequential(head) if to_rgb else nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.convs(x))
        k = self.kernel_size
        if self.to_rgb:
            return x.reshape(-1, self.out_channels, self.in_channels, k, k)
        x = x.reshape(-1, self.out_channels, self.in_channels, 1, 1)
        return x.expand(-1, -1, -1, k, k)


class SeparableBlock(nn.Module):
    """Rank-factored kernel: in- and out-channel kernels from the code, mixed by two linear maps."""

    def __init__(self, input_size: int, kernel_channels_in: int, kernel_channels_out: int, kernel_size: int) -> None:
        super().__init__()
        self.input_size, self.kernel_size = input_size, kernel_size
        self.kernel_channels_in, self.kernel_channels_out = kernel_channels_in, kernel_channels_out
        self.make_kernel_in = nn.Linear(input_size, kernel_size * kernel_size * kernel_channels_in)
        self.make_kernel_out = nn.Linear(input_size, kernel_size * kernel_size * kernel_channels_out)
        self.kernel_linear_in = nn.Linear(kernel_channels_in, kernel_channels_in)
        self.kernel_linear_out = nn.Linear(kernel_channels_out, kernel_channels_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = features.reshape(-1, self.input_size)
        k = self.kernel_size
        kin = self.make_kernel_in(f).view(-1, k, k, 1, self.kernel_channels_in)
        kout = self.make_kernel_out(f).view(-1, k, k, self.kernel_channels_out, 1)
        kernel = self.kernel_linear_in(kout @ kin).permute(0, 1, 2, 4, 3)  # (B, k, k, in, out)
        kernel = self.kernel_linear_out(kernel)
        return kernel.permute(0, 4, 3, 1, 2)  # (B, out, in, k, k)


class RefinementBlockSeparable(nn.Module):
    def __init__(self, kernel: int, cin: int, cout: int, n_channels: int, inner_c: int, out_c: int,
                 spatial: int, to_rgb: bool) -> None:
        super().__init__()
        self.kernel_size, self.in_channels, self.out_channels = kernel, cin, cout
        self.to_rgb = to_rgb
        pools = int(math.log2(spatial)) - 1
        self.convs = _conv_stack(n_channels, inner_c, out_c, max(pools - 1, 0), 2)
        if to_rgb:
            self.output = nn.Sequential(nn.Conv2d(out_c, cin * cout, 1))
        else:
            self.output = nn.Sequential(SeparableBlock(out_c, cin, cout, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.convs(x))
        if self.to_rgb:
            k = self.kernel_size
            return x.reshape(-1, self.out_channels, self.in_channels, k, k)
        return x


class HyperRefinementBlock(nn.Module):
    def __init__(self, hypernet: SharedWeightsHypernet, n_channels: int, inner_c: int, out_c: int,
                 spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        n = int(math.log2(spatial))
        self.convs = _conv_stack(n_channels, inner_c, out_c, max(n - 1, 0), 1)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)
        self.hypernet = hypernet

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        code = self.linear(self.convs(features).reshape(-1, self.out_c))
        return self.hypernet(code)


class SharedWeightsHyperNetResNet(nn.Module):
    """ResNet-34 trunk + per-layer refinement heads (``…Separable`` when the config says so)."""

    def __init__(self, cfg: HypernetConfig) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.widths
        self.conv1 = nn.Conv2d(cfg.input_nc, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.PReLU(w[0])
        blocks = []
        cin = w[0]
        for i, (width, n) in enumerate(zip(w, cfg.units, strict=True)):
            for u in range(n):
                blocks.append(BasicBlock(cin, width, 2 if (u == 0 and i > 0) else 1))
                cin = width
        self.body = nn.Sequential(*blocks)
        self.layers_to_tune = list(cfg.layers_to_tune)
        self.shared_layers = list(cfg.shared_layers)
        shared_in, shared_out = cfg.shared_size()
        self.shared_weight_hypernet = SharedWeightsHypernet(3, cfg.hyper_dim, shared_out, shared_in)
        separable = cfg.kind == "SharedWeightsHyperNetResNetSeparable"
        plain = RefinementBlockSeparable if separable else RefinementBlock
        self.refinement_blocks = nn.ModuleList()
        self.n_outputs = cfg.n_outputs
        for idx, (k, ci, co) in enumerate(cfg.generator.conv_layers()):
            if idx not in cfg.layers_to_tune:
                self.refinement_blocks.append(None)
            elif idx in cfg.shared_layers:
                self.refinement_blocks.append(HyperRefinementBlock(
                    self.shared_weight_hypernet, w[3], cfg.hyper_inner_c, cfg.hyper_dim, cfg.spatial))
            else:
                self.refinement_blocks.append(plain(k, ci, co, w[3], cfg.inner_c, cfg.hyper_dim, cfg.spatial,
                                                    to_rgb=k == 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        x = self.body(self.relu(self.bn1(self.conv1(x))))
        return [b(x) if b is not None else None for b in self.refinement_blocks]
