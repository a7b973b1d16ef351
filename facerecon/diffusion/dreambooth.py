"""DreamBooth: teach a Stable Diffusion UNet one identity from the 14 pose-sweep views.

The thesis fine-tunes realisticVision on the GAN's 14 poses so ControlNet can later draw the
same person at ±90°. The recipe is DreamBooth's: every training image is captioned with a
rare-token prompt ("a photo of sks person"); with prior preservation, images the base model
makes for the class prompt ("a photo of a person") are trained alongside so the class does
not collapse onto this one face. Only the UNet learns: fully, or through LoRA adapters on its
attention projections (a few MB per face instead of 3.4 GB).

Frozen parts are used once: prompts are embedded and images encoded to latent distributions
before the loop, so a step is one UNet forward/backward. Everything random draws from one
seeded generator.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER = "facerecon_dreambooth"
CONFIG_FILE = "dreambooth_config.json"
LORA_FILE = "pytorch_lora_weights.safetensors"
FORMAT = "facerecon-dreambooth/1"


@dataclass(frozen=True)
class TrainConfig:
    """What one DreamBooth run needs; saved next to the weights it produced."""

    mode: str = "lora"  # "lora" | "full"
    steps: int = 400
    learning_rate: float = 1e-4
    lora_rank: int = 8
    resolution: int = 512
    batch_size: int = 1
    prior_preservation: bool = False
    prior_loss_weight: float = 1.0
    mixed_precision: str = "fp16"  # "fp32" | "fp16" | "bf16" (CUDA only; CPU runs fp32)
    gradient_checkpointing: bool = True
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 25


# ----------------------------------------------------------------------------- tensors


def images_to_tensor(images: list[np.ndarray], resolution: int):
    """uint8 (S, S, 3) images → float tensor (N, 3, R, R) in [-1, 1] (Lanczos resize)."""
    import torch
    from PIL import Image

    out = []
    for img in images:
        im = Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.LANCZOS)
        out.append(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def encode_prompt(tokenizer, text_encoder, prompt: str, device) -> Any:
    """(1, 77, D) text embedding of a prompt, padded to the tokenizer's length as SD does."""
    import torch

    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        return text_encoder(ids)[0]


def encode_latents(vae, pixels, device, chunk: int = 4) -> tuple[Any, Any]:
    """Mean and std of the VAE's latent distribution for each image, scaled like SD's latents."""
    import torch

    means, stds = [], []
    sf = vae.config.scaling_factor
    with torch.no_grad():
        for i in range(0, len(pixels), chunk):
            dist = vae.encode(pixels[i:i + chunk].to(device, vae.dtype)).latent_dist
            means.append(dist.mean.float() * sf)
            stds.append(dist.std.float() * sf)
    return torch.cat(means), torch.cat(stds)


def add_lora(unet, rank: int, seed: int):
    """LoRA adapters (rank r, alpha r) on every attention projection; returns the peft config."""
    import torch
    from peft import LoraConfig

    cfg = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(cfg, adapter_name=ADAPTER)
    unet.set_adapter(ADAPTER)
    return cfg


def loss_summary(losses: list[float], points: int = 50) -> dict:
    """First/last/min of the loss curve plus a ≤50-point bucket-mean curve for result.json."""
    a = np.asarray(losses, dtype=np.float64)
    k = max(1, min(10, len(a) // 5 or 1))
    buckets = np.array_split(a, min(points, len(a)))
    return {"first": float(a[:k].mean()), "last": float(a[-k:].mean()), "min": float(a.min()),
            "max": float(a.max()), "finite": bool(np.isfinite(a).all()),
            "curve": [round(float(b.mean()), 6) for b in buckets]}


def train_unet(unet, noise_scheduler, instance: tuple[Any, Any], instance_emb, cfg: TrainConfig, device, *,
               prior: tuple[Any, Any] | None = None, prior_emb=None, progress: bool | None = None,
               on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """DreamBooth's denoising loss on cached latents; returns the per-step loss.

    ``instance``/``prior`` are (mean, std) latent tensors; each step samples a batch of them,
    a timestep and noise, and regresses the UNet on the scheduler's target (noise or velocity).
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    use_amp = device.type == "cuda" and cfg.mixed_precision != "fp32"
    amp_dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: the UNet has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=1e-2)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    n_train = noise_scheduler.config.num_train_timesteps
    prediction = noise_scheduler.config.prediction_type
    inst_mean, inst_std = (t.to(device) for t in instance)
    if prior is not None:
        prior_mean, prior_std = (t.to(device) for t in prior)
    losses: list[float] = []
    unet.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="dreambooth", unit="step", leave=False,
               disable=None if progress is None else not progress)
    for step in bar:
        idx = torch.randint(0, len(inst_mean), (cfg.batch_size,), generator=cpu_gen).to(device)
        mean, std = inst_mean[idx], inst_std[idx]
        emb = instance_emb.expand(cfg.batch_size, -1, -1)
        if prior is not None:
            pidx = torch.randint(0, len(prior_mean), (cfg.batch_size,), generator=cpu_gen).to(device)
            mean = torch.cat([mean, prior_mean[pidx]])
            std = torch.cat([std, prior_std[pidx]])
            emb = torch.cat([emb, prior_emb.expand(cfg.batch_size, -1, -1)])
        latents = mean + std * torch.randn(mean.shape, generator=gen, device=device)
        noise = torch.randn(latents.shape, generator=gen, device=device)
        t = torch.randint(0, n_train, (latents.shape[0],), generator=gen, device=device).long()
        noisy = noise_scheduler.add_noise(latents, noise, t)
        target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            pred = unet(noisy.to(unet.dtype), t, emb.to(unet.dtype)).sample
        if prior is not None:
            p_inst, p_prior = pred.float().chunk(2)
            t_inst, t_prior = target.float().chunk(2)
            loss = F.mse_loss(p_inst, t_inst) + cfg.prior_loss_weight * F.mse_loss(p_prior, t_prior)
        else:
            loss = F.mse_loss(pred.float(), target.float())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        log.debug("dreambooth: step %d/%d loss %.5f", step + 1, cfg.steps, value)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            recent = losses[-cfg.log_every:]
            log.info("dreambooth: step %d/%d loss %.5f (mean of last %d), %.2f s/step", step + 1, cfg.steps,
                     float(np.mean(recent)), len(recent), (time.perf_counter() - t0) / (step + 1))
    unet.eval()
    return losses


# ----------------------------------------------------------------------------- weights


def _swap_into_place(tmp: Path, final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def save_weights(unet, out_dir: Path, config: dict, *, mode: str, lora_config=None, dtype=None) -> Path:
    """Write ``out_dir`` (renamed into place when complete): LoRA adapter only, or the full UNet.

    ``config`` (the run's settings, base model, loss summary) is written as
    ``dreambooth_config.json`` so the folder says how to rebuild what it holds.
    """
    import torch

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if mode == "lora":
            from diffusers import StableDiffusionPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
            state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
            meta = {k: sorted(v) if isinstance(v, set) else v for k, v in lora_config.to_dict().items()}
            StableDiffusionPipeline.save_lora_weights(
                str(tmp), unet_lora_layers=convert_state_dict_to_diffusers(state), weight_name=LORA_FILE,
                unet_lora_adapter_metadata=json.loads(json.dumps(meta, default=str)))
        else:
            if dtype is not None:
                unet.to(dtype)
            unet.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        return _swap_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_config(weights_dir: Path) -> dict:
    from facerecon.errors import CheckpointError

    f = Path(weights_dir) / CONFIG_FILE
    try:
        cfg = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{f}: missing or unreadable DreamBooth config ({exc.__class__.__name__})") from None
    if cfg.get("format") != FORMAT or cfg.get("mode") not in ("lora", "full"):
        raise CheckpointError(f"{f}: not a facerecon DreamBooth result (format {cfg.get('format')!r})")
    return cfg


def apply_to_pipeline(pipe, weights_dir: Path, *, adapter_name: str = "dreambooth") -> dict:
    """Put a DreamBooth result into a pipeline: load the LoRA adapter or swap in the full UNet."""
    from diffusers import UNet2DConditionModel

    cfg = read_config(weights_dir)
    if cfg["mode"] == "lora":
        pipe.load_lora_weights(str(weights_dir), weight_name=LORA_FILE, adapter_name=adapter_name,
                               local_files_only=True)
        pipe.set_adapters([adapter_name])
    else:
        unet = UNet2DConditionModel.from_pretrained(str(Path(weights_dir) / "unet"), local_files_only=True,
                                                    torch_dtype=pipe.unet.dtype)
        pipe.unet = unet.to(pipe.unet.device)
        pipe.register_modules(unet=pipe.unet)
    return cfg


def remove_from_pipeline(pipe, cfg: dict, base_unet, *, adapter_name: str = "dreambooth") -> None:
    """Undo :func:`apply_to_pipeline` so a cached base model stays the base model."""
    if cfg["mode"] == "lora":
        pipe.delete_adapters(adapter_name)
    else:
        pipe.register_modules(unet=base_unet)


def config_dict(cfg: TrainConfig, **extra) -> dict:
    return {"format": FORMAT, **asdict(cfg), "lora_targets": list(LORA_TARGETS), **extra}

