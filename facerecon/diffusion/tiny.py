"""Tiny random Stable Diffusion components, the way diffusers tests its pipelines.

Same classes and code paths as SD-1.5 (UNet with cross-attention, KL VAE, CLIP text encoder,
ControlNet, BPE tokenizer), with a few thousand parameters so tests and the CLI smoke run on
a CPU in seconds. Nothing here is downloaded: the tokenizer is a byte-level vocabulary without
merges (every word spelled out in byte symbols), which exercises the same tokenizer class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facerecon.diffusion.tokenizer import BOS, END_OF_WORD, EOS, byte_symbols, write_tokenizer_files

TINY_TEXT_DIM = 32

TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=TINY_TEXT_DIM, attention_head_dim=4, norm_num_groups=8,
)
TINY_CONTROLNET = dict(
    in_channels=4, layers_per_block=1, block_out_channels=(16, 32),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=TINY_TEXT_DIM,
    attention_head_dim=4, norm_num_groups=8, conditioning_embedding_out_channels=(8, 16),
)
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8, sample_size=32,
)
TINY_TEXT = dict(
    hidden_size=TINY_TEXT_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
    max_position_embeddings=77, layer_norm_eps=1e-5, hidden_act="quick_gelu", projection_dim=TINY_TEXT_DIM,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
SCHEDULER = dict(
    _class_name="PNDMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    prediction_type="epsilon",
)
TOKENIZER_CONFIG = dict(
    model_max_length=77, do_lower_case=True, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
    tokenizer_class="CLIPTokenizer",
)


def tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """Byte symbols, their end-of-word forms and the two specials; no merges."""
    symbols = byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, []


@dataclass
class TinySD:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    controlnet: Any
    scheduler_config: dict


def build_tiny(seed: int = 0, tokenizer_dir: Path | None = None) -> TinySD:
    """Random tiny components (deterministic for a seed). ``tokenizer_dir``: where to write its files."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from facerecon.diffusion.tokenizer import load_clip_tokenizer

    vocab, merges = tiny_vocab()
    folder = tokenizer_dir or Path(tempfile.mkdtemp(prefix="tiny-tokenizer-"))
    write_tokenizer_files(folder, vocab, merges, TOKENIZER_CONFIG)
    tokenizer = load_clip_tokenizer(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        controlnet = ControlNetModel(**TINY_CONTROLNET)
        vae = AutoencoderKL(**TINY_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), **TINY_TEXT))
        # ControlNet's zero-initialised output convs would make it a no-op; tests need it to matter
        for name, p in controlnet.named_parameters():
            if "controlnet_down_blocks" in name or "controlnet_mid_block" in name or "conv_out" in name:
                torch.nn.init.normal_(p, std=0.02)
    return TinySD(tokenizer, text_encoder.eval(), vae.eval(), unet, controlnet.eval(), dict(SCHEDULER))


def save_diffusers_folder(sd: TinySD, folder: Path, *, with_controlnet: Path | None = None) -> Path:
    """The components as a diffusers pipeline folder (what ``from_pretrained`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    sd.unet.save_pretrained(folder / "unet")
    sd.vae.save_pretrained(folder / "vae")
    sd.text_encoder.save_pretrained(folder / "text_encoder")
    sd.tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sd.scheduler_config, indent=2))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    if with_controlnet is not None:
        sd.controlnet.save_pretrained(with_controlnet)
    return folder


def save_config_folder(sd: TinySD, folder: Path) -> Path:
    """Configs only (no weights): the ``single_file_config`` folder for a tiny single-file checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("unet", sd.unet), ("vae", sd.vae), ("controlnet", sd.controlnet)):
        (folder / name).mkdir(exist_ok=True)
        model.save_config(folder / name)
    (folder / "text_encoder").mkdir(exist_ok=True)
    sd.text_encoder.config.to_json_file(str(folder / "text_encoder" / "config.json"))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sd.scheduler_config, indent=2))
    sd.tokenizer.save_pretrained(folder / "tokenizer")
    return folder
