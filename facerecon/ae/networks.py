"""The five networks of Unsup3D's photo-geometric autoencoder, with a configurable width.

Layer for layer the structure of Wu et al. (CVPR 2020): an encoder–decoder with group norm for
canonical depth and albedo, small encoders for light and viewpoint, and an encoder–decoder for
the two confidence maps (full resolution for the L1 loss, quarter resolution for the perceptual
loss). Unsup3D uses ``width`` 64 for depth/albedo/confidence and 32 for light/view; here ``width``
sets the first (small on the CPU default, see ``params.yaml``) and ``encoder_width`` the
second (the encoders are cheap: no decoder), ``norm_group_size`` keeps Unsup3D's 4 channels
per GroupNorm group at any width, ``upsample`` chooses Unsup3D's transposed convolutions or
resize-convolutions in the depth and albedo decoders, and ``skips`` adds U-Net-style skip
connections to them (Unsup3D has none).
Input images are in [-1, 1] and must be a multiple of 16 pixels square (64 is the reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facerecon.config import AeModelParams


def group_norm(channels: int, mult: int, group_size: int) -> nn.GroupNorm:
    """GroupNorm with ``group_size`` channels per group (Unsup3D's 64-wide ``GroupNorm(16 * mult, C)``
    has 4). ``group_size`` 0 is the rule of checkpoints written before the option: ``min(16 * mult,
    C)`` groups, one channel each in narrow networks, which discards the per-channel amplitude."""
    if group_size <= 0:
        return nn.GroupNorm(min(16 * mult, channels), channels)
    return nn.GroupNorm(max(channels // group_size, 1), channels)


class Encoder(nn.Module):
    """Image → ``cout`` numbers in (-1, 1) (light, viewpoint)."""

    def __init__(self, cin: int, cout: int, nf: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, nf, 4, 2, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),  # identity at 64 px; lets larger inputs reach a 4×4 map
            nn.Conv2d(nf * 8, nf * 8, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(nf * 8, cout, 1, 1, 0, bias=False), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


class EDDeconv(nn.Module):
    """Image → image-sized map (canonical depth: 1 channel, no activation; albedo: 3, tanh)."""

    def __init__(self, cin: int, cout: int, zdim: int, nf: int, activation: bool, upsample: str = "deconv",
                 group_size: int = 4, skips: bool = False) -> None:
        super().__init__()
        self.skips = skips

        def _gn(c: int, mult: int) -> nn.GroupNorm:
            return group_norm(c, mult, group_size)

        lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.encoder = nn.Sequential(
            nn.Conv2d(cin, nf, 4, 2, 1, bias=False), _gn(nf, 1), lrelu,
            nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False), _gn(nf * 2, 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False), _gn(nf * 4, 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(nf * 8, zdim, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(zdim, nf * 8, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(nf * 8, nf * 8, 3, 1, 1, bias=False), nn.ReLU(inplace=True),
        ]
        skip_to = [len(layers) - 1]
        for cin_, cout_, mult in ((nf * 8, nf * 4, 4), (nf * 4, nf * 2, 2), (nf * 2, nf, 1)):
            up: list[nn.Module] = ([nn.ConvTranspose2d(cin_, cout_, 4, 2, 1, bias=False)] if upsample == "deconv" else
                                   [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin_, cout_, 3, 1, 1, bias=False)])
            layers += [
                *up, _gn(cout_, mult), nn.ReLU(inplace=True),
                nn.Conv2d(cout_, cout_, 3, 1, 1, bias=False), _gn(cout_, mult), nn.ReLU(inplace=True),
            ]
            skip_to.append(len(layers) - 1)
        # skip connections add the encoder's activations at 1/2, 1/4, 1/8, 1/16 of the input (its
        # LeakyReLUs) to the decoder's of the same size and width: encoder index → decoder index
        skip_from = [i for i, m in enumerate(self.encoder) if isinstance(m, nn.LeakyReLU)]
        self._skip_pairs = dict(zip(skip_from, reversed(skip_to), strict=True))
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(nf, nf, 3, 1, 1, bias=False), _gn(nf, 1), nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf, 5, 1, 2, bias=False), _gn(nf, 1), nn.ReLU(inplace=True),
            nn.Conv2d(nf, cout, 5, 1, 2, bias=False),
        ]
        if activation:
            layers.append(nn.Tanh())
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.skips:
            out = self._forward_with_skips(x)
        else:
            out = self.decoder(self.encoder(x))
        if out.shape[-2:] != x.shape[-2:]:  # inputs larger than 64 px: back to the input size
            out = nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def _forward_with_skips(self, x: Tensor) -> Tensor:
        saved, h = {}, x
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i in self._skip_pairs:
                saved[self._skip_pairs[i]] = h
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i in saved and saved[i].shape == h.shape:  # sizes differ for inputs that are not 64 px
                h = h + saved[i]
        return h


class ConfNet(nn.Module):
    """Image → (confidence σ for L1 at full size, σ for the perceptual loss at 1/4 size).

    Each has two channels: σ for the reconstruction and σ for its flipped twin (softplus > 0).
    """

    def __init__(self, cin: int, zdim: int, nf: int, group_size: int = 4) -> None:
        super().__init__()

        def _gn(c: int, mult: int) -> nn.GroupNorm:
            return group_norm(c, mult, group_size)

        lrelu = nn.LeakyReLU
        self.trunk = nn.Sequential(
            nn.Conv2d(cin, nf, 4, 2, 1, bias=False), _gn(nf, 1), lrelu(0.2, inplace=True),
            nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False), _gn(nf * 2, 2), lrelu(0.2, inplace=True),
            nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False), _gn(nf * 4, 4), lrelu(0.2, inplace=True),
            nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False), lrelu(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(nf * 8, zdim, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(zdim, nf * 8, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(nf * 8, nf * 4, 4, 2, 1, bias=False), _gn(nf * 4, 4), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(nf * 4, nf * 2, 4, 2, 1, bias=False), _gn(nf * 2, 2), nn.ReLU(inplace=True),
        )
        self.full = nn.Sequential(
            nn.ConvTranspose2d(nf * 2, nf, 4, 2, 1, bias=False), _gn(nf, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(nf, nf, 4, 2, 1, bias=False), _gn(nf, 1), nn.ReLU(inplace=True),
            nn.Conv2d(nf, 2, 5, 1, 2, bias=False), nn.Softplus(),
        )
        self.quarter = nn.Sequential(nn.Conv2d(nf * 2, 2, 3, 1, 1, bias=False), nn.Softplus())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        full, quarter = self.full(h), self.quarter(h)
        size = x.shape[-2:]
        if full.shape[-2:] != size:
            full = nn.functional.interpolate(full, size=size, mode="bilinear", align_corners=False)
            quarter = nn.functional.interpolate(quarter, size=(size[0] // 4, size[1] // 4), mode="bilinear",
                                                align_corners=False)
        return full, quarter


class AeNets(nn.Module):
    """The five networks together, so one ``state_dict`` holds the whole autoencoder."""

    def __init__(self, depth: EDDeconv, albedo: EDDeconv, light: Encoder, view: Encoder, conf: ConfNet) -> None:
        super().__init__()
        self.depth, self.albedo, self.light, self.view, self.conf = depth, albedo, light, view, conf


@dataclass(frozen=True)
class NetShape:
    """Channel widths derived from ``AeModelParams`` (recorded for the README and tests)."""

    nf: int
    nf_small: int
    zdim: int


def net_shape(p: AeModelParams) -> NetShape:
    return NetShape(nf=p.width, nf_small=p.encoder_width or max(p.width // 2, 2), zdim=p.zdim)


def build_nets(p: AeModelParams) -> AeNets:
    """Fresh networks (PyTorch default init, as Unsup3D) for these model params."""
    if p.image_size % 16:
        from facerecon.errors import ConfigError

        raise ConfigError(f"ae_model.image_size: {p.image_size} is not a multiple of 16")
    s = net_shape(p)
    return AeNets(
        depth=EDDeconv(3, 1, s.zdim, s.nf, activation=False, upsample=p.upsample, group_size=p.norm_group_size,
                       skips=p.skips == "depth_albedo"),
        albedo=EDDeconv(3, 3, s.zdim, s.nf, activation=True, upsample=p.upsample, group_size=p.norm_group_size,
                        skips=p.skips != "none"),
        light=Encoder(3, 4, s.nf_small),
        view=Encoder(3, 6, s.nf_small),
        conf=ConfNet(3, max(s.zdim // 2, 8), s.nf, group_size=p.norm_group_size),
    )


def zero_init_heads(nets: AeNets) -> AeNets:
    """Zero the last layer of the depth, light and view networks: every face starts flat, seen from the
    front under ambient = diffuse = ½ light, so the first gradients of the warp are about shape and
    pose rather than undoing random viewpoints."""
    for head in (nets.depth.decoder[-1], nets.light.net[-2], nets.view.net[-2]):
        nn.init.zeros_(head.weight)
    return nets


def count_parameters(nets: nn.Module) -> int:
    return sum(int(t.numel()) for t in nets.parameters())


def param_dtype(nets: nn.Module) -> torch.dtype:
    return next(nets.parameters()).dtype
