"""Time the diffusion backends at full SD-1.5 size with random weights (no downloads).

What it measures, on the device given:
  * DreamBooth: one LoRA training step at the given resolution (UNet forward + backward +
    AdamW on the adapters; latents and the prompt embedding are precomputed once, as the
    trainer does), and the one-off costs (VAE-encoding the 14 views, embedding the prompt).
  * ControlNet profile: one denoising step with classifier-free guidance (ControlNet +
    UNet on a batch of 2 × candidates) and one VAE decode.
Whole-run times are extrapolated: DreamBooth = steps × step + encodes; profile pair =
2 sides × (steps × denoising step + decodes). On CUDA the components run in fp16 (as the
backends do) and several steps are timed after a warm-up; on CPU one step each (it is slow).

    python benchmarks/diffusion_speed.py                  # CPU, one step each, prints JSON
    python benchmarks/diffusion_speed.py --device cuda    # GPU: warm-up + averaged steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB → GB


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> tuple[float, object]:
    out = None
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    sync(device)
    return (time.perf_counter() - t) / repeats, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=400, help="DreamBooth steps to extrapolate to")
    ap.add_argument("--views", type=int, default=14)
    ap.add_argument("--sample-steps", type=int, default=30, help="ControlNet sampling steps to extrapolate to")
    ap.add_argument("--candidates", type=int, default=4, help="samples per side (best of N)")
    ap.add_argument("--repeats", type=int, default=0, help="timed steps (default: 1 on CPU, 10 on CUDA)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from facerecon.diffusion import dreambooth as db
    from facerecon.diffusion.components import SD15_CONFIGS, scheduler_config_from, tokenizer_from

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    repeats = args.repeats or (10 if cuda else 1)
    warmup = 2 if cuda else 0
    res, lat = args.resolution, args.resolution // 8
    torch.manual_seed(0)
    r: dict = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
               "torch_threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
               "resolution": res, "timed_steps": repeats}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # --- one-off encodes: prompt embedding and VAE latents of the views
    t = time.perf_counter()
    tok = tokenizer_from(SD15_CONFIGS)
    te = CLIPTextModel(CLIPTextConfig.from_pretrained(SD15_CONFIGS / "text_encoder")).to(device, dtype).eval()
    r["build_text_encoder_s"] = round(time.perf_counter() - t, 2)
    t_text, emb = timed(lambda: db.encode_prompt(tok, te, "a photo of sks person", device), device, 1)
    r["text_encode_s"] = round(t_text, 3)
    te = None  # free it before the UNet is built
    t = time.perf_counter()
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD15_CONFIGS / "vae")).to(device, dtype).eval()
    r["build_vae_s"] = round(time.perf_counter() - t, 2)
    img = torch.rand(1, 3, res, res, device=device, dtype=dtype) * 2 - 1
    z = torch.randn(1, 4, lat, lat, device=device, dtype=dtype)
    with torch.no_grad():
        for _ in range(warmup):
            vae.decode(vae.encode(img).latent_dist.mean)
        r["vae_encode_one_view_s"] = round(timed(lambda: vae.encode(img).latent_dist.mean, device, 1)[0], 3)
        r["vae_decode_one_s"] = round(timed(lambda: vae.decode(z).sample, device, 1)[0], 3)
    vae = None
    log(f"encodes done ({r['text_encode_s']:.2f} s text, {r['vae_encode_one_view_s']:.2f} s VAE encode)")

    # --- DreamBooth LoRA step
    t = time.perf_counter()
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIGS / "unet"))
    unet = unet.to(device, dtype)
    r["build_unet_s"] = round(time.perf_counter() - t, 2)
    r["unet_params_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 1)
    unet.requires_grad_(False)
    db.add_lora(unet, args.lora_rank, seed=0)
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    r["lora_params_M"] = round(sum(p.numel() for p in unet.parameters() if p.requires_grad) / 1e6, 2)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    cfg = db.TrainConfig(mode="lora", steps=1, lora_rank=args.lora_rank, resolution=res,
                         mixed_precision="fp16" if cuda else "fp32",
                         gradient_checkpointing=args.gradient_checkpointing, log_every=10**6)
    sched = DDPMScheduler.from_config(scheduler_config_from(SD15_CONFIGS))
    latents = (torch.randn(args.views, 4, lat, lat), torch.full((args.views, 4, lat, lat), 0.05))
    emb32 = emb.float() if not cuda else emb
    if warmup:
        db.train_unet(unet, sched, latents, emb32, db.TrainConfig(**{**cfg.__dict__, "steps": warmup}), device,
                      progress=False)
    step_cfg = db.TrainConfig(**{**cfg.__dict__, "steps": repeats})
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t, losses = timed(lambda: db.train_unet(unet, sched, latents, emb32, step_cfg, device, progress=False), device, 1)
    r["dreambooth_lora_step_s"] = round(t / repeats, 3)
    r["dreambooth_loss_finite"] = bool(all(map(lambda v: v == v, losses)))
    if cuda:
        r["dreambooth_peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    r["dreambooth_run_estimate_s"] = round(args.train_steps * r["dreambooth_lora_step_s"]
                                           + args.views * r["vae_encode_one_view_s"] + r["text_encode_s"], 1)
    log(f"DreamBooth LoRA step {r['dreambooth_lora_step_s']:.2f} s")
    unet.disable_gradient_checkpointing()
    unet.unload_lora()
    unet.to(dtype).eval()

    # --- ControlNet denoising step (CFG: batch 2 per candidate)
    t = time.perf_counter()
    cn = ControlNetModel.from_config(ControlNetModel.load_config(SD15_CONFIGS / "controlnet")).to(device, dtype).eval()
    r["build_controlnet_s"] = round(time.perf_counter() - t, 2)
    batch = 2 * (args.candidates if cuda else 1)
    x = torch.randn(batch, 4, lat, lat, device=device, dtype=dtype)
    cond = torch.rand(batch, 3, res, res, device=device, dtype=dtype)
    ctx = emb.to(dtype).expand(batch, -1, -1)

    def denoise():
        with torch.no_grad():
            down, mid = cn(x, 500, encoder_hidden_states=ctx, controlnet_cond=cond, return_dict=False)
            return unet(x, 500, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

    for _ in range(warmup):
        denoise()
    step, _ = timed(denoise, device, repeats)
    r["controlnet_step_batch"] = batch
    r["controlnet_step_s"] = round(step, 3)
    if cuda:  # the whole batch of candidates denoises together
        side = args.sample_steps * step + args.candidates * r["vae_decode_one_s"]
    else:  # one candidate per measured step; candidates run one after another
        side = args.candidates * (args.sample_steps * step + r["vae_decode_one_s"])
    r["profile_pair_estimate_s"] = round(2 * side, 1)
    r["profile_pair_note"] = (f"2 sides × {args.candidates} candidates × {args.sample_steps} steps, extrapolated "
                              "from the measured denoising step")
    r["peak_rss_gb"] = round(rss_gb(), 2)
    log(f"ControlNet step {step:.2f} s (batch {batch})")
    print(json.dumps(r, indent=2))
    if args.out:
        from facerecon.io.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
