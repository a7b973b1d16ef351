"""Loading a Stable Diffusion 1.x base model and an OpenPose ControlNet, offline.

A base model is either a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ...) or a
single ``.safetensors``/``.ckpt`` in the original layout (how realisticVision is distributed).
Single files carry weights only, so their component configs come from a config folder:
by default the SD-1.5 configs shipped in ``facerecon/assets/sd15``; the tokenizer is built
from open_clip's BPE table (:mod:`facerecon.diffusion.tokenizer`). Every diffusers call gets
``local_files_only=True`` and a local ``config`` folder, so nothing reaches for the hub
(diffusers would otherwise fetch configs when it cannot find them locally).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facerecon.diffusion.single_file import is_single_file, read_checkpoint
from facerecon.diffusion.tokenizer import ensure_sd_tokenizer, load_clip_tokenizer
from facerecon.errors import CheckpointError

log = logging.getLogger(__name__)

SD15_CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "sd15"
COMPONENTS = ("unet", "vae", "text_encoder")


@dataclass
class SDComponents:
    """The parts of an SD-1.x pipeline that DreamBooth trains and ControlNet sampling needs."""

    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    scheduler_config: dict
    source: str  # what was loaded (path)
    layout: str  # "diffusers" or "single_file"


def config_folder(config_dir: str | Path | None) -> Path:
    """The folder whose ``<component>/config.json`` describe a single-file checkpoint."""
    folder = Path(config_dir).expanduser() if config_dir else SD15_CONFIGS
    if not (folder / "unet" / "config.json").is_file():
        raise CheckpointError(f"single-file config folder {folder} has no unet/config.json")
    return folder


def tokenizer_from(folder: Path):
    """A folder's own tokenizer files, else SD-1.x's tokenizer built from open_clip's BPE table."""
    tok = folder / "tokenizer"
    if (tok / "vocab.json").is_file() or (tok / "tokenizer.json").is_file():
        return load_clip_tokenizer(tok)
    cfg_file = tok / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else \
        json.loads((SD15_CONFIGS / "tokenizer" / "tokenizer_config.json").read_text())
    return load_clip_tokenizer(ensure_sd_tokenizer(cfg))


def scheduler_config_from(folder: Path) -> dict:
    f = folder / "scheduler" / "scheduler_config.json"
    src = f if f.is_file() else SD15_CONFIGS / "scheduler" / "scheduler_config.json"
    return json.loads(src.read_text())


def _check_layout(path: Path, ckpt: dict) -> None:
    if not any(k.startswith("model.diffusion_model.") for k in ckpt):
        raise CheckpointError(f"{path}: no 'model.diffusion_model.*' keys; not a single-file Stable Diffusion "
                              "checkpoint (use a diffusers folder or an SD-1.x .safetensors/.ckpt)")
    if any(k.startswith("conditioner.embedders.") for k in ckpt) or any(k.startswith("cond_stage_model.model.")
                                                                         for k in ckpt):
        raise CheckpointError(f"{path}: an SD-2/SDXL checkpoint; only Stable Diffusion 1.x models are supported")


def load_base_model(path: str | Path, *, config_dir: str | Path | None = None, torch_dtype=None) -> SDComponents:
    """SD-1.x components from a diffusers folder or a single-file checkpoint (never downloads)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    path = Path(path)
    try:
        if path.is_dir():
            missing = [c for c in COMPONENTS if not (path / c).is_dir()]
            if missing:
                raise CheckpointError(f"{path}: diffusers folder lacks {', '.join(missing)}/ sub-folders")
            kw = dict(local_files_only=True, torch_dtype=torch_dtype)
            unet = UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", **kw)
            vae = AutoencoderKL.from_pretrained(str(path), subfolder="vae", **kw)
            text_encoder = CLIPTextModel.from_pretrained(str(path), subfolder="text_encoder", **kw)
            return SDComponents(tokenizer_from(path), text_encoder.eval(), vae.eval(), unet,
                                scheduler_config_from(path), str(path), "diffusers")
        if not is_single_file(path):
            raise CheckpointError(f"{path}: expected a diffusers folder or a .safetensors/.ckpt file")
        from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

        cfg = config_folder(config_dir)
        ckpt = read_checkpoint(path)
        _check_layout(path, ckpt)
        kw = dict(config=str(cfg), local_files_only=True, torch_dtype=torch_dtype)
        unet = UNet2DConditionModel.from_single_file(ckpt, subfolder="unet", **kw)
        vae = AutoencoderKL.from_single_file(ckpt, subfolder="vae", **kw)
        text_encoder = create_diffusers_clip_model_from_ldm(CLIPTextModel, ckpt, subfolder="text_encoder", **kw)
        del ckpt
        return SDComponents(tokenizer_from(cfg), text_encoder.eval(), vae.eval(), unet,
                            scheduler_config_from(cfg), str(path), "single_file")
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:  # any failure inside diffusers/transformers means this file is unusable
        raise CheckpointError(f"{path}: cannot load as a Stable Diffusion 1.x model "
                              f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_controlnet(path: str | Path, *, config_dir: str | Path | None = None, torch_dtype=None):
    """ControlNet from a diffusers folder (config.json + weights) or a single ``.pth``/``.safetensors``."""
    from diffusers import ControlNetModel

    path = Path(path)
    try:
        if path.is_dir():
            return ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=torch_dtype).eval()
        if not is_single_file(path):
            raise CheckpointError(f"{path}: expected a ControlNet diffusers folder or a .pth/.safetensors file")
        cfg = config_folder(config_dir)
        if not (cfg / "controlnet" / "config.json").is_file():
            raise CheckpointError(f"single-file config folder {cfg} has no controlnet/config.json")
        ckpt = read_checkpoint(path)
        return ControlNetModel.from_single_file(ckpt, config=str(cfg), subfolder="controlnet",
                                                local_files_only=True, torch_dtype=torch_dtype).eval()
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:  # any failure inside diffusers means this file is unusable
        raise CheckpointError(f"{path}: cannot load as an SD-1.x ControlNet "
                              f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


# ------------------------------------------------------------------ per-process cache

_LOCK = threading.Lock()
_CACHE: dict[tuple, Any] = {}
# DreamBooth adds/removes adapters on the cached UNet and sampling loads them into it: runs that
# touch the cached models take this lock so two threads of one process never interleave
MODEL_LOCK = threading.RLock()


def cached(key: tuple, build) -> Any:
    """Keep the last loaded model of each kind: a batch of faces loads SD once, not once per face.

    Only one entry per kind (key[0]) is kept so switching models frees the old one.
    """
    with _LOCK:
        if key not in _CACHE:
            for k in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[k]
            _CACHE[key] = build()
        return _CACHE[key]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def fresh_unet(unet):
    """A private copy of a cached UNet for a run that changes its weights (full fine-tuning)."""
    return copy.deepcopy(unet)
