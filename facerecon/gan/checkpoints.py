"""Load the published GAN checkpoints (and tiny ones in the same layout) into our modules.

Formats read:

* StyleGAN2 generator (rosinality port): ``{"g_ema": state, "latent_avg"?: (512,)}``; a
  HyperStyle/e4e checkpoint also works as a generator source (its ``decoder.*``).
* HyperStyle: ``{"state_dict": {"hypernet.*", "decoder.*"}, "opts": {...}, "latent_avg": ...}``
  plus the separate W encoder file ``{"state_dict": {"encoder.*", "decoder.*"}, "opts"}``.
* e4e: ``{"state_dict": {"encoder.*", "decoder.*"}, "opts": {...}, "latent_avg"?}``.

The architecture is rebuilt from the file: generator sizes are inferred from tensor shapes,
encoder/hypernetwork settings from ``opts`` (published fields) and, for files facerecon wrote,
from the ``config`` entry saved next to the weights (nanoGPT style). Every file is read with
``weights_only=True``; a wrong layout is a :class:`CheckpointError` naming the file and the first
differences against :mod:`facerecon.gan.layouts`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerecon.errors import CheckpointError
from facerecon.gan.encoders import IR_UNITS, EncoderConfig, build_encoder
from facerecon.gan.hypernet import DEFAULT_LAYERS_TO_TUNE, HypernetConfig, SharedWeightsHyperNetResNet
from facerecon.gan.stylegan2 import Generator, GeneratorConfig, channel_table, resize
from facerecon.io.atomic import atomic_save


def torch_load(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` (memory-mapped when the file allows), user-facing errors.

    Training checkpoints of the StyleGAN2 port pickle an ``argparse.Namespace``; that one class
    is allowed, nothing else.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix.`` with the prefix removed (HyperStyle's ``__get_keys``)."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def _load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    from facerecon.gan.layouts import check_layout

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = check_layout(state, expected)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: {what} does not match the expected layout: "
                              f"{'; '.join(problems[:3])}{more}")
    module.load_state_dict(state, strict=True)


def _config_entry(ckpt: Mapping, name: str) -> dict:
    cfg = ckpt.get("config")
    if isinstance(cfg, Mapping) and isinstance(cfg.get(name), Mapping):
        return dict(cfg[name])
    return {}


def _build_dataclass(cls, values: Mapping, path: Path, what: str):
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for k, v in values.items():
        if k not in names:
            continue
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid {what} settings ({exc})") from None


# ----------------------------------------------------------------------------- generator


def infer_generator_config(state: Mapping[str, torch.Tensor], path: Path, lr_mlp: float = 0.01) -> GeneratorConfig:
    """Size, style width, mapping depth and channel table from the tensors themselves."""
    try:
        style_dim = int(state["style.1.weight"].shape[1])
        c4 = int(state["input.input"].shape[1])
    except KeyError as exc:
        raise CheckpointError(f"{path}: no StyleGAN2 generator in this file (missing {exc.args[0]})") from None
    n_mlp = len({m.group(1) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})
    n_rgb = len({m.group(1) for k in state if (m := re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k))})
    size = 2 ** (n_rgb + 2)
    actual = {4: c4}
    for j in range(n_rgb):
        w = state.get(f"convs.{2 * j}.conv.weight")
        if w is None:
            raise CheckpointError(f"{path}: generator is missing convs.{2 * j}.conv.weight")
        actual[2 ** (j + 3)] = int(w.shape[1])
    for cm in (2, 1, 4, 8):
        if channel_table(size, cm, c4) == actual:
            return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm,
                                   channel_max=c4, lr_mlp=lr_mlp)
    raise CheckpointError(f"{path}: generator channels {actual} do not follow the StyleGAN2 channel table")


def build_generator(state: Mapping[str, torch.Tensor], path: Path, config: Mapping | None = None) -> Generator:
    lr = float((config or {}).get("lr_mlp", 0.01))
    cfg = infer_generator_config(state, path, lr_mlp=lr)
    if config:
        saved = _build_dataclass(GeneratorConfig, config, path, "generator")
        if saved != cfg:
            raise CheckpointError(f"{path}: saved generator config {saved} does not match its tensors ({cfg})")
    with torch.device("meta"):
        g = Generator(cfg)
    g = g.to_empty(device="cpu")
    _load_into(g, state, path, "generator")
    return g.eval().requires_grad_(False)


def _latent_avg(value: Any, n_latent: int, style_dim: int, path: Path) -> torch.Tensor | None:
    """(n_latent, D) from the stored (D,), (1, D) or (n_latent, D) average latent."""
    if value is None:
        return None
    t = torch.as_tensor(value).float()
    rows = t.numel() // style_dim if t.numel() % style_dim == 0 else -1
    if rows not in (1, n_latent):
        raise CheckpointError(f"{path}: latent_avg has shape {tuple(t.shape)}, "
                              f"expected ({style_dim},) or ({n_latent}, {style_dim})")
    return t.reshape(rows, style_dim).expand(n_latent, style_dim).clone()


@dataclass
class LoadedGenerator:
    generator: Generator
    latent_avg: torch.Tensor | None  # (n_latent, D) or None
    path: Path


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> LoadedGenerator:
    """A StyleGAN2 generator from a port checkpoint (``g_ema``) or a pSp/e4e/HyperStyle file (``decoder``)."""
    path = Path(path)
    ckpt = torch_load(path)
    if "g_ema" in ckpt:
        state, cfg = ckpt["g_ema"], _config_entry(ckpt, "generator")
    elif isinstance(ckpt.get("state_dict"), Mapping) and any(k.startswith("decoder.") for k in ckpt["state_dict"]):
        state, cfg = sub_state(ckpt["state_dict"], "decoder"), _config_entry(ckpt, "generator")
    else:
        raise CheckpointError(f"{path}: no generator found (expected 'g_ema' or 'state_dict' with 'decoder.*' keys)")
    g = build_generator(state, path, cfg or None)
    avg = _latent_avg(ckpt.get("latent_avg"), g.n_latent, g.style_dim, path)
    return LoadedGenerator(g.to(device), avg.to(device) if avg is not None else None, path)


# ----------------------------------------------------------------------------- encoders


def _opt(opts: Mapping, key: str, default: Any) -> Any:
    v = opts.get(key, default)
    return default if v is None else v


class E4eModel(nn.Module):
    """e4e (or pSp) encoder + its generator + the average latent it starts from."""

    def __init__(self, encoder: nn.Module, decoder: Generator, latent_avg: torch.Tensor | None,
                 start_from_latent_avg: bool, opts: dict) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("latent_avg", latent_avg if latent_avg is not None
                             else torch.zeros(decoder.n_latent, decoder.style_dim))
        self.start_from_latent_avg = start_from_latent_avg and latent_avg is not None
        self.opts = opts

    @property
    def input_size(self) -> int:
        return self.encoder.config.input_size

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(resize(x, self.input_size))
        if self.start_from_latent_avg:
            codes = codes + self.latent_avg[None]
        return codes


def _encoder_config(opts: Mapping, ckpt: Mapping, kind: str, n_styles: int, style_dim: int,
                    path: Path) -> EncoderConfig:
    values: dict[str, Any] = {"kind": kind, "n_styles": n_styles, "style_dim": style_dim}
    values.update(_config_entry(ckpt, "encoder"))
    values.setdefault("units", IR_UNITS[50])
    if values["kind"] != kind:
        raise CheckpointError(f"{path}: encoder kind {values['kind']!r} does not match opts {kind!r}")
    return _build_dataclass(EncoderConfig, values, path, "encoder")


def load_e4e(path: str | Path, device: torch.device | str = "cpu") -> E4eModel:
    path = Path(path)
    ckpt = torch_load(path)
    opts = ckpt.get("opts") or {}
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not isinstance(opts, Mapping):
        raise CheckpointError(f"{path}: not an e4e checkpoint (needs 'state_dict' and 'opts')")
    kind = str(_opt(opts, "encoder_type", "Encoder4Editing"))
    if kind not in ("Encoder4Editing", "GradualStyleEncoder"):
        raise CheckpointError(f"{path}: encoder_type {kind!r} is not an e4e/pSp encoder")
    decoder = build_generator(sub_state(state, "decoder"), path, _config_entry(ckpt, "generator") or None)
    size = int(_opt(opts, "stylegan_size", _opt(opts, "output_size", decoder.size)))
    if size != decoder.size:
        raise CheckpointError(f"{path}: opts say a {size}px generator, decoder weights are {decoder.size}px")
    cfg = _encoder_config(opts, ckpt, kind, decoder.n_latent, decoder.style_dim, path)
    with torch.device("meta"):
        enc = build_encoder(cfg)
    enc = enc.to_empty(device="cpu")
    _load_into(enc, sub_state(state, "encoder"), path, "encoder")
    avg = _latent_avg(ckpt.get("latent_avg"), decoder.n_latent, decoder.style_dim, path)
    start = bool(_opt(opts, "start_from_latent_avg", True))
    model = E4eModel(enc, decoder, avg, start, dict(opts))
    return model.eval().requires_grad_(False).to(device)


def load_w_encoder(path: str | Path, n_styles: int, style_dim: int) -> nn.Module:
    """HyperStyle's W encoder (``encoder.*`` of ``faces_w_encoder.pt``)."""
    path = Path(path)
    ckpt = torch_load(path)
    opts = ckpt.get("opts") or {}
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a W-encoder checkpoint (needs 'state_dict')")
    # HyperStyle builds this file as a WEncoder whatever its opts say (w_encoder_type); the key check
    # below is what tells a wrong file apart
    cfg = _encoder_config(opts, ckpt, "WEncoder", n_styles, style_dim, path)
    with torch.device("meta"):
        enc = build_encoder(cfg)
    enc = enc.to_empty(device="cpu")
    _load_into(enc, sub_state(state, "encoder"), path, "W encoder")
    return enc.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- HyperStyle


class HyperStyleModel(nn.Module):
    """Hypernetwork + generator + W encoder + average latent, as HyperStyle's inference uses them."""

    def __init__(self, hypernet: SharedWeightsHyperNetResNet, decoder: Generator, w_encoder: nn.Module,
                 latent_avg: torch.Tensor, opts: dict) -> None:
        super().__init__()
        self.hypernet = hypernet
        self.decoder = decoder
        self.w_encoder = w_encoder
        self.register_buffer("latent_avg", latent_avg)
        self.opts = opts

    @property
    def input_size(self) -> int:
        return self.hypernet.config.input_size

    @property
    def default_iterations(self) -> int:
        return int(_opt(self.opts, "n_iters_per_batch", 5)) or 5


def hypernet_config(opts: Mapping, ckpt: Mapping, generator: GeneratorConfig, path: Path) -> HypernetConfig:
    size = int(_opt(opts, "output_size", generator.size))
    if size != generator.size:
        raise CheckpointError(f"{path}: opts say a {size}px generator, decoder weights are {generator.size}px")
    tune = str(_opt(opts, "layers_to_tune", ",".join(map(str, DEFAULT_LAYERS_TO_TUNE)))).strip()
    layers = tuple(int(v) for v in tune.split(",") if v.strip()) if tune else tuple(range(len(generator.conv_layers())))
    values: dict[str, Any] = {"generator": generator, "kind": str(_opt(opts, "encoder_type",
                                                                          "SharedWeightsHyperNetResNet")),
                              "input_nc": int(_opt(opts, "input_nc", 6)), "layers_to_tune": layers}
    extra = _config_entry(ckpt, "hypernet")
    extra.pop("generator", None)
    values.update(extra)
    return _build_dataclass(HypernetConfig, values, path, "hypernetwork")


def load_hyperstyle(path: str | Path, w_encoder_path: str | Path, device: torch.device | str = "cpu"
                    ) -> HyperStyleModel:
    path = Path(path)
    ckpt = torch_load(path)
    opts = ckpt.get("opts")
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not isinstance(opts, Mapping):
        raise CheckpointError(f"{path}: not a HyperStyle checkpoint (needs 'state_dict' and 'opts')")
    if not any(k.startswith("hypernet.") for k in state):
        raise CheckpointError(f"{path}: no 'hypernet.*' weights; is this an e4e file? (use invert.backend: e4e)")
    decoder = build_generator(sub_state(state, "decoder"), path, _config_entry(ckpt, "generator") or None)
    cfg = hypernet_config(opts, ckpt, decoder.config, path)
    try:
        with torch.device("meta"):
            hyper = SharedWeightsHyperNetResNet(cfg)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    hyper = hyper.to_empty(device="cpu")
    hstate = sub_state(state, "hypernet")
    _load_into(hyper, hstate, path, "hypernetwork")
    # the shared hypernetwork is stored under every block that uses it; keep one tensor
    for i, block in enumerate(hyper.refinement_blocks):
        if block is not None and hasattr(block, "hypernet"):
            block.hypernet = hyper.shared_weight_hypernet
            if not torch.equal(hstate[f"refinement_blocks.{i}.hypernet.w1"], hstate["shared_weight_hypernet.w1"]):
                raise CheckpointError(f"{path}: refinement block {i} does not share the shared hypernetwork")
    avg = _latent_avg(ckpt.get("latent_avg"), decoder.n_latent, decoder.style_dim, path)
    if avg is None:
        raise CheckpointError(f"{path}: HyperStyle checkpoint has no latent_avg")
    w_enc = load_w_encoder(w_encoder_path, decoder.n_latent, decoder.style_dim)
    if w_enc.config.input_size != cfg.input_size:
        raise CheckpointError(f"{w_encoder_path}: W encoder input {w_enc.config.input_size}px differs from the "
                              f"hypernetwork's {cfg.input_size}px")
    model = HyperStyleModel(hyper, decoder, w_enc, avg, dict(opts))
    return model.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------- saving


def save_checkpoint(path: str | Path, obj: Any) -> Path:
    """torch.save through a temp file + rename."""
    return atomic_save(path, lambda tmp: torch.save(obj, tmp))


def generator_file(g: Generator, latent_avg: torch.Tensor | None = None) -> dict:
    """The port's file layout: ``g_ema`` (+ ``latent_avg`` (D,)), with our ``config`` beside it."""
    out: dict[str, Any] = {"g_ema": g.state_dict(), "config": {"generator": g.config.to_dict()}}
    if latent_avg is not None:
        out["latent_avg"] = latent_avg.reshape(-1, g.style_dim)[0].clone()
    return out
