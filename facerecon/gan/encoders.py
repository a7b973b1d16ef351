"""Image → W+ encoders in the layout of the pSp family: e4e, pSp's GradualStyleEncoder, the W encoder.

All three sit on the ArcFace "IR-SE" ResNet backbone (``input_layer``, ``body.N`` bottlenecks
with ``shortcut_layer``/``res_layer``/SE module) and differ in the head:

* ``Encoder4Editing`` (e4e): one W from the coarsest features, plus per-layer offsets from an
  FPN over three feature levels, so the code stays near W (editable).
* ``GradualStyleEncoder`` (pSp): every W+ row predicted directly from its FPN level.
* ``WEncoder`` (HyperStyle's initial inversion): one pooled W repeated for every layer.

Widths, unit counts, style count and input size are configurable so tests build tiny encoders
with the published key names; the published ones are IR-SE-50 at 256×256 into 18×512.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from facerecon.gan.stylegan2 import EqualLinear

ENCODER_KINDS = ("Encoder4Editing", "GradualStyleEncoder", "WEncoder")
IR_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "Encoder4Editing"
    n_styles: int = 18
    style_dim: int = 512
    input_size: int = 256
    widths: tuple[int, ...] = (64, 128, 256, 512)
    units: tuple[int, ...] = IR_UNITS[50]
    mode: str = "ir_se"  # "ir" (no squeeze-excitation) or "ir_se"
    coarse_ind: int = 3  # e4e/pSp: W+ rows [0, 3) from the coarse level, [3, 7) middle, rest fine
    middle_ind: int = 7

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if len(self.widths) != 4 or len(self.units) != 4:
            raise ValueError("the IR backbone has four stages: widths and units need four values")
        if self.mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {self.mode!r}")
        if self.input_size % 16 or self.input_size < 32:
            raise ValueError(f"input_size must be a multiple of 16 (≥ 32), got {self.input_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["units"] = list(self.widths), list(self.units)
        return d


# ---------------------------------------------------------------------- IR-SE backbone


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """Pre-activation residual unit; the stride sits on the second conv, the shortcut is a
    strided 1×1 "max-pool" (a subsampler) when the width does not change."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channel), nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_body(cfg: EncoderConfig) -> nn.Sequential:
    """Four stages; the first unit of each halves the resolution."""
    units = []
    cin = cfg.widths[0]
    for depth, n in zip(cfg.widths, cfg.units, strict=True):
        for u in range(n):
            units.append(BottleneckIR(cin if u == 0 else depth, depth, 2 if u == 0 else 1, cfg.mode == "ir_se"))
        cin = depth
    return nn.Sequential(*units)


def _stem(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


class GradualStyleBlock(nn.Module):
    """Strided convs down to 1×1, then an equalised linear layer → one style vector."""

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        n = max(int(math.log2(spatial)), 1)
        mods: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(n - 1):
            mods += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*mods)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _FPNEncoder(nn.Module):
    """Shared body of e4e and pSp: IR-SE backbone, three feature levels, one style block per W+ row."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.widths
        self.input_layer = _stem(w[0])
        self.body = ir_body(cfg)
        ends = [sum(cfg.units[: i + 1]) - 1 for i in range(4)]
        self.tap_fine, self.tap_middle, self.tap_coarse = ends[1], ends[2], ends[3]
        coarse = cfg.input_size // 16
        self.style_count = cfg.n_styles
        self.coarse_ind, self.middle_ind = cfg.coarse_ind, cfg.middle_ind
        self.styles = nn.ModuleList()
        for i in range(cfg.n_styles):
            spatial = coarse if i < cfg.coarse_ind else coarse * 2 if i < cfg.middle_ind else coarse * 4
            self.styles.append(GradualStyleBlock(w[3], cfg.style_dim, spatial))
        self.latlayer1 = nn.Conv2d(w[2], w[3], 1)
        self.latlayer2 = nn.Conv2d(w[1], w[3], 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.input_layer(x)
        c1 = c2 = c3 = x
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.tap_fine:
                c1 = x
            elif i == self.tap_middle:
                c2 = x
            elif i == self.tap_coarse:
                c3 = x
        return c1, c2, c3


class Encoder4Editing(_FPNEncoder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.features(x)
        w = self.styles[0](c3)[:, None, :].repeat(1, self.style_count, 1)
        feats = c3
        p2 = None
        for i in range(1, self.style_count):
            if i == self.coarse_ind:
                p2 = feats = _upsample_add(c3, self.latlayer1(c2))
            elif i == self.middle_ind:
                feats = _upsample_add(p2, self.latlayer2(c1))
            w[:, i] = w[:, i] + self.styles[i](feats)
        return w


class GradualStyleEncoder(_FPNEncoder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.features(x)
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        out = [self.styles[j](c3 if j < self.coarse_ind else p2 if j < self.middle_ind else p1)
               for j in range(self.style_count)]
        return torch.stack(out, dim=1)


class WEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.input_layer = _stem(cfg.widths[0])
        self.output_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = EqualLinear(cfg.widths[3], cfg.style_dim, lr_mul=1)
        self.body = ir_body(cfg)
        self.style_count = cfg.n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_pool(self.body(self.input_layer(x))).flatten(1)
        return self.linear(x)[:, None, :].repeat(1, self.style_count, 1)


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    return {"Encoder4Editing": Encoder4Editing, "GradualStyleEncoder": GradualStyleEncoder,
            "WEncoder": WEncoder}[cfg.kind](cfg)
