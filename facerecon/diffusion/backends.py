"""The thesis's diffusion backends: ``dreambooth.backend: diffusers`` and ``profile.backend: controlnet``.

Both resolve their weights through :func:`facerecon.weights.resolve` in ``check_ready`` (run
by ``facerecon run`` before any face) and raise one MissingWeightsError naming every missing
file. Loaded models are kept per process (:func:`facerecon.diffusion.components.cached`), so a
batch of faces loads Stable Diffusion once; each face's run undoes what it changed on them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from facerecon.config import Params
from facerecon.diffusion import deps
from facerecon.errors import ConfigError, MissingWeightsError, NoFaceError
from facerecon.stages.base import AlignedFace, DreamboothResult, InvertResult, View

log = logging.getLogger(__name__)

BASE_HOW = ("put a Stable Diffusion 1.x model there: a single .safetensors/.ckpt (the thesis uses "
            "realisticVisionV20, SG161222/Realistic_Vision_V2.0) or a diffusers folder, in models/ or "
            "$FACERECON_MODELS, or set dreambooth.base_model to its path")
CONTROLNET_HOW = ("put lllyasviel/control_v11p_sd15_openpose (a diffusers folder with config.json + "
                  "diffusion_pytorch_model.safetensors, or the single file control_v11p_sd15_openpose.pth) "
                  "in models/ or $FACERECON_MODELS, or set profile.controlnet to its path")
CONTROLNET_HUB = "lllyasviel/control_v11p_sd15_openpose"


def _torch_device(device: Any):
    import torch

    return torch.device(device) if device is not None else torch.device("cpu")


def _hub_id(name: str, default: str | None = None) -> str | None:
    """A name like ``org/repo`` (not an existing path) may be fetched when allow_download is set."""
    if Path(name).suffix:
        return None
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return name
    return default


def _resolve(name: str, key: str, how: str, allow_download: bool, hub: str | None, missing: list[str],
             hash_it: bool):
    from facerecon.weights import resolve

    try:
        return resolve(name, key=key, how_to_get=how, allow_download=allow_download, hub_id=hub, hash_it=hash_it)
    except MissingWeightsError as exc:
        missing.append(str(exc))
        return None


def _check_config_folder(params: Params, missing: list[str]) -> None:
    """A single-file checkpoint needs component configs and the tokenizer's BPE table, offline."""
    from facerecon.diffusion.components import SD15_CONFIGS
    from facerecon.diffusion.tokenizer import BPE_FILE, cache_root, clip_bpe_path

    folder = Path(params.dreambooth.single_file_config).expanduser() if params.dreambooth.single_file_config \
        else SD15_CONFIGS
    if not (folder / "unet" / "config.json").is_file():
        missing.append(f"dreambooth.single_file_config: {folder / 'unet' / 'config.json'} not found "
                       "(a folder in the diffusers layout with unet/, vae/, text_encoder/ configs)")
        return
    tok = folder / "tokenizer"
    have_tok = (tok / "vocab.json").is_file() or (tok / "tokenizer.json").is_file() \
        or (cache_root() / "sd15-tokenizer" / "vocab.json").is_file()
    if not have_tok and clip_bpe_path() is None:
        missing.append(f"SD-1.x tokenizer: open_clip/{BPE_FILE} not found (pip install --no-deps open_clip_torch)")


class _Base:
    """Shared: the resolved base model, its single-file configs and the dtype used on this device."""

    def __init__(self, params: Params, device: Any) -> None:
        self.params = params
        self.device = _torch_device(device)

    def _dtype(self, mixed: str):
        import torch

        if self.device.type != "cuda" or mixed == "fp32":
            return torch.float32
        return torch.bfloat16 if mixed == "bf16" else torch.float16

    def _resolve_base(self, missing: list[str], hash_it: bool = False):
        p = self.params.dreambooth
        base = _resolve(p.base_model, "dreambooth.base_model", BASE_HOW, p.allow_download, _hub_id(p.base_model),
                        missing, hash_it)
        if base is not None and base.path.is_file():
            _check_config_folder(self.params, missing)
        return base

    def _load_base(self, base, dtype):
        from facerecon.diffusion.components import cached, load_base_model

        st = base.path.stat()
        key = ("base", str(base.path.resolve()), st.st_mtime, self.params.dreambooth.single_file_config,
               str(dtype), str(self.device))

        def build():
            log.info("loading base model %s", base.path)
            comps = load_base_model(base.path, config_dir=self.params.dreambooth.single_file_config or None,
                                    torch_dtype=dtype)
            comps.vae.to(self.device)
            comps.text_encoder.to(self.device)
            comps.unet.to(self.device)
            return comps

        return cached(key, build)


# --------------------------------------------------------------------------- DreamBooth


class DiffusersDreambooth(_Base):
    """DreamBooth (full UNet or LoRA) of the base model on a face's pose-sweep views."""

    def check_ready(self) -> None:
        deps.diffusers_stack("dreambooth.backend", peft=self.params.dreambooth.mode == "lora")
        missing: list[str] = []
        self._resolve_base(missing)
        if missing:
            raise MissingWeightsError("; ".join(missing))

    def train_config(self):
        from facerecon.diffusion.dreambooth import TrainConfig

        p = self.params.dreambooth
        return TrainConfig(mode=p.mode, steps=p.steps, learning_rate=p.learning_rate, lora_rank=p.lora_rank,
                           resolution=p.resolution, batch_size=p.batch_size, prior_preservation=p.prior_preservation,
                           prior_loss_weight=p.prior_loss_weight, mixed_precision=p.mixed_precision,
                           gradient_checkpointing=p.gradient_checkpointing, seed=self.params.seed,
                           log_every=p.log_every)

    def train(self, face: AlignedFace, views: list[View], workdir: Path) -> DreamboothResult:
        from facerecon.diffusion.components import MODEL_LOCK

        with MODEL_LOCK:
            return self._train(face, views, workdir)

    def _train(self, face: AlignedFace, views: list[View], workdir: Path) -> DreamboothResult:
        import torch
        from diffusers import DDPMScheduler

        from facerecon.diffusion import dreambooth as db
        from facerecon.diffusion.components import fresh_unet

        if not views:
            raise ConfigError("dreambooth: no pose-sweep views to train on (pose_sweep produced none)")
        self.check_ready()
        missing: list[str] = []
        base = self._resolve_base(missing, hash_it=True)
        p, cfg = self.params.dreambooth, self.train_config()
        t0 = time.perf_counter()
        weight_dtype = self._dtype(p.mixed_precision)
        comps = self._load_base(base, weight_dtype)
        dev = self.device

        pixels = db.images_to_tensor([v.image for v in views], cfg.resolution)
        inst = db.encode_latents(comps.vae, pixels, dev)
        inst_emb = db.encode_prompt(comps.tokenizer, comps.text_encoder, p.prompt, dev)
        prior = prior_emb = None
        class_info: dict = {}
        if cfg.prior_preservation and p.num_class_images > 0:
            class_imgs, folder = self.class_images(comps, base.sha256)
            prior = db.encode_latents(comps.vae, db.images_to_tensor(class_imgs, cfg.resolution), dev)
            prior_emb = db.encode_prompt(comps.tokenizer, comps.text_encoder, p.class_prompt, dev)
            class_info = {"class_images": len(class_imgs), "class_data_dir": str(folder)}

        lora_cfg = None
        if cfg.mode == "lora":
            unet = comps.unet
            unet.requires_grad_(False)
            lora_cfg = db.add_lora(unet, cfg.lora_rank, cfg.seed)
            for prm in unet.parameters():
                if prm.requires_grad:
                    prm.data = prm.data.float()  # trainable adapters in fp32 even over an fp16 UNet
        else:
            unet = fresh_unet(comps.unet).to(dev, torch.float32)
            unet.requires_grad_(True)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        try:
            noise_scheduler = DDPMScheduler.from_config(comps.scheduler_config)
            losses = db.train_unet(unet, noise_scheduler, inst, inst_emb, cfg, dev, prior=prior, prior_emb=prior_emb)
            summary = db.loss_summary(losses)
            if not summary["finite"]:
                raise ConfigError(f"dreambooth: the loss became non-finite (last {losses[-1]}); lower "
                                  "dreambooth.learning_rate or set dreambooth.mixed_precision: fp32")
            config = db.config_dict(cfg, prompt=p.prompt, class_prompt=p.class_prompt,
                                    base_model={"path": str(base.path), "sha256": base.sha256,
                                                "layout": comps.layout},
                                    loss=summary, torch=torch.__version__, device=str(dev))
            save_dtype = None if cfg.mode == "lora" else self._dtype(p.mixed_precision) if dev.type == "cuda" \
                else None
            weights = db.save_weights(unet, Path(workdir) / "weights", config, mode=cfg.mode, lora_config=lora_cfg,
                                      dtype=save_dtype)
        finally:
            if cfg.gradient_checkpointing:
                unet.disable_gradient_checkpointing()
            if cfg.mode == "lora":
                unet.unload_lora()  # the cached base UNet goes back to exactly the base weights
                unet.to(weight_dtype)
            del unet
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        from facerecon.stages.workspace import save_json

        save_json(Path(workdir) / "dreambooth_loss.json", {"loss": losses})
        info = {"mode": cfg.mode, "steps": cfg.steps, "loss": {k: v for k, v in summary.items() if k != "curve"},
                "loss_curve": summary["curve"], "images": len(views), "resolution": cfg.resolution,
                "prompt": p.prompt, "base_model": config["base_model"], "device": str(dev),
                "mixed_precision": p.mixed_precision if dev.type == "cuda" else "fp32 (cpu)",
                "prior_preservation": bool(prior is not None), **class_info,
                "seconds": round(time.perf_counter() - t0, 2)}
        return DreamboothResult(skipped=False, weights_dir=str(weights), info=info)

    def class_images(self, comps, base_sha: str) -> tuple[list[np.ndarray], Path]:
        """Prior-preservation images: those already in the folder, topped up by the base model."""
        import torch
        from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

        from facerecon.diffusion.tokenizer import cache_root
        from facerecon.stages.workspace import load_png, save_png

        p = self.params.dreambooth
        if p.class_data_dir:
            folder = Path(p.class_data_dir).expanduser()
        else:
            tag = hashlib.sha256(f"{base_sha}|{p.class_prompt}|{p.resolution}".encode()).hexdigest()[:16]
            folder = cache_root() / "class_images" / tag
        folder.mkdir(parents=True, exist_ok=True)
        have = sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg"))
        need = p.num_class_images - len(have)
        if need > 0:
            log.info("dreambooth: making %d class images for %r in %s", need, p.class_prompt, folder)
            pipe = StableDiffusionPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                                           unet=comps.unet, safety_checker=None, feature_extractor=None,
                                           scheduler=UniPCMultistepScheduler.from_config(comps.scheduler_config),
                                           requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=None, leave=False, desc="class images")
            start = len(have)
            for i in range(start, start + need, 4):
                n = min(4, start + need - i)
                gens = [torch.Generator(device=self.device).manual_seed(self.params.seed * 100003 + i + k)
                        for k in range(n)]
                out = pipe(p.class_prompt, num_images_per_prompt=n, generator=gens, height=p.resolution,
                           width=p.resolution, num_inference_steps=p.class_image_steps, output_type="np").images
                for k, im in enumerate(out):
                    save_png(folder / f"class_{i + k:05d}.png", np.clip(np.rint(im * 255), 0, 255).astype(np.uint8))
            have = sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg"))
        return [load_png(f)[..., :3] for f in have[:p.num_class_images]], folder


# ------------------------------------------------------------------------------ profiles


class ControlNetProfile(_Base):
    """±yaw profiles from SD + ControlNet-OpenPose (+ the face's DreamBooth weights), best of N."""

    def __init__(self, params: Params, device: Any, scorer=None) -> None:
        super().__init__(params, device)
        self._scorer = scorer

    def scorer(self):
        from facerecon.diffusion.controlnet_sampling import make_default_scorer

        if self._scorer is not None:
            return self._scorer
        return make_default_scorer(use_landmarks=self.params.profile.scorer == "auto")

    def _resolve_all(self, hash_it: bool = False):
        p = self.params.profile
        missing: list[str] = []
        base = self._resolve_base(missing, hash_it)
        cn = _resolve(p.controlnet, "profile.controlnet", CONTROLNET_HOW, p.allow_download,
                      _hub_id(p.controlnet, CONTROLNET_HUB if p.controlnet == "control_v11p_sd15_openpose" else None),
                      missing, hash_it)
        if cn is not None and cn.path.is_file():
            _check_config_folder(self.params, missing)  # a single-file ControlNet needs the config folder too
        if missing:
            raise MissingWeightsError("; ".join(dict.fromkeys(missing)))
        return base, cn

    def _needs_peft(self) -> bool:
        db = self.params.dreambooth
        return db.backend == "diffusers" and db.mode == "lora"

    def check_ready(self) -> None:
        deps.diffusers_stack("profile.backend", peft=self._needs_peft())
        self._resolve_all()

    def _load_controlnet(self, cn, dtype):
        from facerecon.diffusion.components import cached, load_controlnet

        st = cn.path.stat()
        key = ("controlnet", str(cn.path.resolve()), st.st_mtime, self.params.dreambooth.single_file_config,
               str(dtype), str(self.device))
        return cached(key, lambda: load_controlnet(cn.path, config_dir=self.params.dreambooth.single_file_config
                                                   or None, torch_dtype=dtype).to(self.device))

    def profiles(self, face: AlignedFace, inverted: InvertResult, dreambooth: DreamboothResult,
                 workdir: Path) -> list[View]:
        from facerecon.diffusion.components import MODEL_LOCK

        with MODEL_LOCK:
            return self._profiles(face, dreambooth, Path(workdir))

    def _profiles(self, face: AlignedFace, dreambooth: DreamboothResult, workdir: Path) -> list[View]:
        from PIL import Image

        from facerecon.diffusion import dreambooth as db
        from facerecon.diffusion.controlnet_sampling import make_pipeline, pick_best, sample
        from facerecon.diffusion.skeleton import draw_skeleton, profile_skeleton
        from facerecon.stages.workspace import save_json, save_png

        if face.landmarks is None:
            raise NoFaceError("profile: the aligned face has no landmarks; ControlNet profiles are drawn from them")
        deps.diffusers_stack("profile.backend", peft=self._needs_peft())
        p = self.params.profile
        t0 = time.perf_counter()
        base, cn = self._resolve_all(hash_it=True)
        dtype = self._dtype("fp16")
        comps = self._load_base(base, dtype)
        controlnet = self._load_controlnet(cn, dtype)
        pipe = make_pipeline(comps, controlnet, scheduler=p.scheduler, device=self.device, dtype=dtype)
        db_cfg = None
        if not dreambooth.skipped and dreambooth.weights_dir:
            db_cfg = db.apply_to_pipeline(pipe, Path(dreambooth.weights_dir))
            prompt, identity = db_cfg.get("prompt", self.params.dreambooth.prompt), f"dreambooth ({db_cfg['mode']})"
        else:
            prompt, identity = self.params.dreambooth.class_prompt, "base model (dreambooth skipped)"
            log.warning("profile: no DreamBooth weights (%s); profiles show a generic %r", dreambooth.reason or
                        "skipped", prompt)
        prompt = prompt + p.prompt_suffix
        scorer = self.scorer()
        size = face.image.shape[0]
        views, report = [], {"prompt": prompt, "negative_prompt": p.negative_prompt, "identity": identity,
                             "base_model": {"path": str(base.path), "sha256": base.sha256},
                             "controlnet": {"path": str(cn.path), "sha256": cn.sha256}, "sides": {}}
        try:
            for side, (sign, name) in enumerate(((-1.0, "profile_left"), (1.0, "profile_right"))):
                yaw = sign * p.yaw_degrees
                sk = profile_skeleton(face.landmarks, yaw, src_size=size, out_size=p.resolution)
                control = draw_skeleton(sk, face=p.draw_face)
                save_png(workdir / f"{name}_skeleton.png", control)
                save_json(workdir / f"{name}_skeleton.json", sk.to_json())
                seeds = [self.params.seed * 1000 + side * 100 + k for k in range(p.num_samples)]
                log.info("profile: sampling %d candidates at yaw %+.0f° (%d steps)", len(seeds), yaw, p.steps)
                images = sample(pipe, prompt=prompt, negative_prompt=p.negative_prompt, control=control, seeds=seeds,
                                steps=p.steps, guidance_scale=p.guidance_scale, controlnet_scale=p.controlnet_scale)
                best, scores = pick_best(images, sk, scorer)
                for k, im in enumerate(images):
                    save_png(workdir / "candidates" / f"{name}_{k}.png", im)
                cands = [{"seed": s, "score": round(float(sc.score), 5), "method": sc.method, "detail": sc.detail}
                         for s, sc in zip(seeds, scores, strict=True)]
                report["sides"][name] = {"yaw": yaw, "best": best, "candidates": cands}
                log.info("profile: %s best candidate %d (score %.3f, %s)", name, best, scores[best].score,
                         scores[best].method)
                img = Image.fromarray(images[best])
                if img.size != (p.image_size, p.image_size):
                    img = img.resize((p.image_size, p.image_size), Image.LANCZOS)
                views.append(View(image=np.asarray(img), yaw=yaw, name=name,
                                  info={"seed": seeds[best], "score": round(float(scores[best].score), 5),
                                        "scorer": scores[best].method, "identity": identity,
                                        "candidates": len(images)}))
        finally:
            if db_cfg is not None:
                db.remove_from_pipeline(pipe, db_cfg, comps.unet)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        save_json(workdir / "profile_scores.json", report)
        return views

