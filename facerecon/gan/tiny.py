"""Random-weight GAN checkpoints in the published file layouts, at any size.

Tests write tiny ones (a 32-px generator, 64-px encoders) and the benchmark writes full-size
ones (1024-px generator, IR-SE-50, ResNet-34 hypernetwork), so every loading and inference code
path runs exactly as it would on ``stylegan2-ffhq-config-f.pt``, ``hyperstyle_ffhq.pt``,
``faces_w_encoder.pt``, ``e4e_ffhq_encode.pt`` and ``pose.pt``, without those files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from facerecon.gan.checkpoints import generator_file, save_checkpoint
from facerecon.gan.encoders import IR_UNITS, EncoderConfig, build_encoder
from facerecon.gan.hypernet import (
    DEFAULT_LAYERS_TO_TUNE,
    RESNET34_UNITS,
    SHARED_LAYERS,
    HypernetConfig,
    SharedWeightsHyperNetResNet,
)
from facerecon.gan.stylegan2 import Generator, GeneratorConfig


@dataclass(frozen=True)
class GanSpec:
    """Sizes of a full random GAN model set; :data:`PUBLISHED` matches the released FFHQ models."""

    size: int = 32
    style_dim: int = 32
    n_mlp: int = 2
    channel_multiplier: int = 2
    channel_max: int = 16
    encoder_size: int = 64
    encoder_widths: tuple[int, ...] = (16, 16, 32, 32)
    encoder_units: tuple[int, ...] = (1, 1, 1, 1)
    hyper_widths: tuple[int, ...] = (16, 16, 32, 32)
    hyper_units: tuple[int, ...] = (1, 1, 1, 1)
    hyper_dim: int = 16
    inner_c: int = 16
    hyper_inner_c: int = 8
    layers_to_tune: tuple[int, ...] = (0, 2, 3, 4, 5, 6, 8, 9, 10)
    shared_layers: tuple[int, ...] = (0, 2, 3)
    hypernet_kind: str = "SharedWeightsHyperNetResNet"
    n_iters_per_batch: int = 3
    delta_scale: float = 0.1  # shrink the random hypernetwork heads so (1 + Δ) stays near 1, as trained

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                               channel_multiplier=self.channel_multiplier, channel_max=self.channel_max)

    def encoder_config(self, kind: str) -> EncoderConfig:
        g = self.generator_config()
        return EncoderConfig(kind=kind, n_styles=g.n_latent, style_dim=self.style_dim, input_size=self.encoder_size,
                             widths=self.encoder_widths, units=self.encoder_units)

    def hypernet_config(self) -> HypernetConfig:
        return HypernetConfig(generator=self.generator_config(), kind=self.hypernet_kind,
                              input_size=self.encoder_size, widths=self.hyper_widths, units=self.hyper_units,
                              layers_to_tune=self.layers_to_tune, shared_layers=self.shared_layers,
                              hyper_dim=self.hyper_dim, inner_c=self.inner_c, hyper_inner_c=self.hyper_inner_c)


PUBLISHED = GanSpec(size=1024, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512, encoder_size=256,
                    encoder_widths=(64, 128, 256, 512), encoder_units=IR_UNITS[50],
                    hyper_widths=(64, 128, 256, 512), hyper_units=RESNET34_UNITS, hyper_dim=512, inner_c=256,
                    hyper_inner_c=128, layers_to_tune=DEFAULT_LAYERS_TO_TUNE, shared_layers=SHARED_LAYERS,
                    n_iters_per_batch=5)


def published_at(size: int) -> GanSpec:
    """The released architecture for a 256/512/1024 generator (HyperStyle supports exactly these)."""
    n = 3 * (size.bit_length() - 3) + 2
    return replace(PUBLISHED, size=size, layers_to_tune=tuple(i for i in DEFAULT_LAYERS_TO_TUNE if i < n))


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def random_generator(spec: GanSpec, seed: int = 0) -> Generator:
    _seeded(seed)
    return Generator(spec.generator_config()).eval()


def _hypernet_state(spec: GanSpec, seed: int) -> dict:
    _seeded(seed + 1)
    net = SharedWeightsHyperNetResNet(spec.hypernet_config())
    with torch.no_grad():
        for block in net.refinement_blocks:
            if block is None:
                continue
            for name, p in block.named_parameters():
                if name.startswith("hypernet."):
                    continue
                if name.startswith("output.") or name.startswith("linear."):
                    p.mul_(spec.delta_scale)
        net.shared_weight_hypernet.w1.mul_(spec.delta_scale)
    return net.state_dict()


def _encoder_state(spec: GanSpec, kind: str, seed: int) -> dict:
    _seeded(seed)
    enc = build_encoder(spec.encoder_config(kind))
    with torch.no_grad():  # offsets around the average latent, like a trained encoder's
        for name, p in enc.named_parameters():
            if ".linear." in f".{name}" and name.endswith("weight"):
                p.mul_(0.2)
    return enc.state_dict()


def write_gan_models(out_dir: str | Path, spec: GanSpec = GanSpec(), seed: int = 0,
                     names: dict[str, str] | None = None) -> dict[str, Path]:
    """Write generator, HyperStyle, W-encoder, e4e and pose-direction files; return their paths.

    File names default to the published ones, so ``out_dir`` can serve as a models/ folder.
    """
    out = Path(out_dir)
    names = {"generator": "stylegan2-ffhq-config-f.pt", "hyperstyle": "hyperstyle_ffhq.pt",
             "w_encoder": "faces_w_encoder.pt", "e4e": "e4e_ffhq_encode.pt", "pose": "pose.pt", **(names or {})}
    g = random_generator(spec, seed)
    avg = g.mean_latent(512, seed=seed)  # (1, D)
    gstate = {f"decoder.{k}": v for k, v in g.state_dict().items()}
    gcfg = spec.generator_config().to_dict()
    n = g.n_latent
    paths = {k: out / v for k, v in names.items()}

    save_checkpoint(paths["generator"], generator_file(g, avg[0]))

    hcfg = spec.hypernet_config().to_dict()
    hcfg.pop("generator")
    hyper = {f"hypernet.{k}": v for k, v in _hypernet_state(spec, seed).items()}
    save_checkpoint(paths["hyperstyle"], {
        "state_dict": {**hyper, **gstate},
        "opts": {"output_size": spec.size, "encoder_type": spec.hypernet_kind, "input_nc": 6,
                 "layers_to_tune": ",".join(map(str, spec.layers_to_tune)),
                 "n_iters_per_batch": spec.n_iters_per_batch, "load_w_encoder": True,
                 "w_encoder_checkpoint_path": names["w_encoder"], "w_encoder_type": "WEncoder",
                 "dataset_type": "ffhq_hypernet", "checkpoint_path": None},
        "latent_avg": avg.expand(n, -1).clone(),
        "config": {"generator": gcfg, "hypernet": hcfg},
    })

    wenc = {f"encoder.{k}": v for k, v in _encoder_state(spec, "WEncoder", seed + 2).items()}
    save_checkpoint(paths["w_encoder"], {
        "state_dict": {**wenc, **gstate},
        "opts": {"encoder_type": "WEncoder", "output_size": spec.size, "dataset_type": "ffhq_encode"},
        "latent_avg": avg[0].clone(),
        "config": {"generator": gcfg, "encoder": spec.encoder_config("WEncoder").to_dict()},
    })

    e4e = {f"encoder.{k}": v for k, v in _encoder_state(spec, "Encoder4Editing", seed + 3).items()}
    save_checkpoint(paths["e4e"], {
        "state_dict": {**e4e, **gstate},
        "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": spec.size, "start_from_latent_avg": True,
                 "dataset_type": "ffhq_encode"},
        "latent_avg": avg.expand(n, -1).clone(),
        "config": {"generator": gcfg, "encoder": spec.encoder_config("Encoder4Editing").to_dict()},
    })

    gen = torch.Generator().manual_seed(seed + 4)
    direction = torch.randn(1, spec.style_dim, generator=gen)
    direction = (direction / direction.norm()).expand(n, -1)[None].clone()  # (1, n_latent, D), unit rows
    save_checkpoint(paths["pose"], direction)
    return paths
