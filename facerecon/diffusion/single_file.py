"""Single-file Stable Diffusion checkpoints: reading them safely, and writing our models in that layout.

Community SD-1.x models such as realisticVision are distributed as one ``.safetensors`` /
``.ckpt`` in the original CompVis (LDM) key layout (``model.diffusion_model.input_blocks...``,
``first_stage_model...``, ``cond_stage_model.transformer...``). diffusers converts that layout
to its own on load; :func:`to_single_file_state_dict` is the inverse, used to export a fine-tuned
UNet for tools that read single files (and by the tests, to write a tiny checkpoint in exactly
the layout users download). The mapping mirrors the block bookkeeping of the LDM UNet:
``input_blocks[0]`` is ``conv_in``; each down block contributes ``layers_per_block`` resnet
(+ attention) entries and, except the last, one downsampler entry; output blocks follow the
same rule with ``layers_per_block + 1`` entries and the upsampler in the last entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facerecon.errors import CheckpointError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin")

_UNET_FLAT = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_FLAT = {"conv_norm_out": "norm_out"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES


def read_checkpoint(path: Path) -> dict[str, Any]:
    """State dict of a single-file checkpoint; pickles are read with ``weights_only=True``."""
    import torch

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.__class__.__name__}: {exc})") from None
    while isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path}: not a state dict")
    return sd


def _rename_resnet(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}" if tail else table.get(head, head)


def unet_to_ldm(sd: dict[str, Any], layers_per_block: int) -> dict[str, Any]:
    """diffusers UNet2DConditionModel state dict → LDM ``model.diffusion_model.*`` keys."""
    n = layers_per_block
    up_has_attn = {int(k.split(".")[1]) for k in sd if k.startswith("up_blocks.") and ".attentions." in k}
    out: dict[str, Any] = {}
    for key, value in sd.items():
        parts = key.split(".")
        new = None
        for d, ldm in _UNET_FLAT.items():
            if key.startswith(d + "."):
                new = ldm + key[len(d):]
        if new is None and parts[0] == "down_blocks":
            b, kind = int(parts[1]), parts[2]
            if kind == "resnets":
                new = f"input_blocks.{1 + b * (n + 1) + int(parts[3])}.0.{_rename_resnet('.'.join(parts[4:]), _UNET_RESNET)}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + b * (n + 1) + int(parts[3])}.1.{'.'.join(parts[4:])}"
            elif kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.w
                new = f"input_blocks.{(b + 1) * (n + 1)}.0.op.{parts[-1]}"
        elif new is None and parts[0] == "mid_block":
            kind, j = parts[1], int(parts[2])
            rest = ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * j}.{_rename_resnet(rest, _UNET_RESNET)}"
            else:
                new = f"middle_block.1.{rest}"
        elif new is None and parts[0] == "up_blocks":
            b, kind = int(parts[1]), parts[2]
            if kind == "resnets":
                new = f"output_blocks.{b * (n + 1) + int(parts[3])}.0.{_rename_resnet('.'.join(parts[4:]), _UNET_RESNET)}"
            elif kind == "attentions":
                new = f"output_blocks.{b * (n + 1) + int(parts[3])}.1.{'.'.join(parts[4:])}"
            elif kind == "upsamplers":
                slot = 2 if b in up_has_attn else 1
                new = f"output_blocks.{b * (n + 1) + n}.{slot}.conv.{parts[-1]}"
        if new is None:
            raise CheckpointError(f"UNet key {key!r} has no single-file equivalent (only SD-1.x UNets export)")
        out[UNET_PREFIX + new] = value
    return out


def vae_to_ldm(sd: dict[str, Any], num_up_blocks: int) -> dict[str, Any]:
    """diffusers AutoencoderKL state dict → LDM ``first_stage_model.*`` keys."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        parts = key.split(".")
        side = parts[0]
        new = key
        if side in ("encoder", "decoder"):
            rest = parts[1:]
            if rest[0] in _VAE_FLAT:
                new = f"{side}.{_VAE_FLAT[rest[0]]}.{'.'.join(rest[1:])}"
            elif rest[0] in ("down_blocks", "up_blocks"):
                i = int(rest[1])
                name, idx = ("down", i) if rest[0] == "down_blocks" else ("up", num_up_blocks - 1 - i)
                if rest[2] == "resnets":
                    tail = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
                    new = f"{side}.{name}.{idx}.block.{rest[3]}.{tail}"
                else:  # downsamplers.0.conv.w / upsamplers.0.conv.w
                    new = f"{side}.{name}.{idx}.{'downsample' if name == 'down' else 'upsample'}.conv.{rest[-1]}"
            elif rest[0] == "mid_block":
                if rest[1] == "resnets":
                    tail = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
                    new = f"{side}.mid.block_{int(rest[2]) + 1}.{tail}"
                else:  # attentions.0.<name>.<w|b>
                    inner = ".".join(rest[3:-1])
                    new = f"{side}.mid.attn_1.{_VAE_ATTN[inner]}.{rest[-1]}"
                    if inner != "group_norm" and rest[-1] == "weight" and value.ndim == 2:
                        value = value[:, :, None, None]  # LDM's attention projections are 1×1 convs
        out[VAE_PREFIX + new] = value
    return out


def clip_to_ldm(sd: dict[str, Any]) -> dict[str, Any]:
    """transformers CLIPTextModel state dict → ``cond_stage_model.transformer.text_model.*`` keys."""
    return {CLIP_PREFIX + k.removeprefix("text_model."): v for k, v in sd.items()}


def to_single_file_state_dict(unet, vae, text_encoder) -> dict[str, Any]:
    """One state dict in the single-file layout that SD-1.x community checkpoints use."""
    out = unet_to_ldm(unet.state_dict(), unet.config.layers_per_block)
    out.update(vae_to_ldm(vae.state_dict(), len(vae.config.up_block_types)))
    out.update(clip_to_ldm(text_encoder.state_dict()))
    return {k: v.detach().contiguous() for k, v in out.items()}


def save_single_file(path: Path, unet, vae, text_encoder) -> Path:
    """Write ``to_single_file_state_dict`` as safetensors (atomically)."""
    from safetensors.torch import save_file

    from facerecon.io.atomic import atomic_save

    sd = to_single_file_state_dict(unet, vae, text_encoder)
    return atomic_save(path, lambda tmp: save_file(sd, str(tmp), metadata={"format": "pt"}))
