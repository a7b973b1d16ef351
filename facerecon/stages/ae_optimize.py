"""Stage `ae_optimize`: the pretrained Unsup3D autoencoder, fine-tuned on this face's views.

All views share one canonical depth and albedo (predicted from the front image); each view keeps
its own viewpoint, light and confidence. After fine-tuning, the front prediction gives the
face's depth and primary albedo; the profile images give the side albedos `combine` uses.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from facerecon.config import Params, section_hash
from facerecon.errors import MissingWeightsError
from facerecon.stages.workspace import (
    StageOut,
    load_face,
    load_png,
    load_views,
    run_cached,
    save_json,
    save_npy,
    save_png,
    stage_key,
)

VERSION = "1"
# This stage was written against the planned facerecon.ae API before that package existed; it is
# set True once the package is in the tree and this stage has been run end to end against it.
AE_PACKAGE_WIRED = True
log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_MODELS: dict[str, tuple] = {}


def load_ae(params: Params):
    """(nets, model_params, meta) of the pretrained AE, loaded once per process.

    Without the checkpoint the networks start from random weights with a logged warning: the
    result is then only as good as the per-face fine-tuning can make it.
    """
    from facerecon import weights
    from facerecon.ae.networks import build_nets
    from facerecon.ae.train import load_checkpoint

    key = params.ae_optimize.checkpoint + section_hash(params.ae_model)
    with _LOCK:
        if key not in _MODELS:
            try:
                found = weights.resolve(params.ae_optimize.checkpoint, key="ae_optimize.checkpoint",
                                        how_to_get="Run `dvc repro pretrain` (or `facerecon pretrain`) to train it.")
                nets, model_params, meta = load_checkpoint(found.path)
                meta = {**meta, "checkpoint": str(found.path), "sha256": found.sha256}
            except MissingWeightsError as exc:
                log.warning("%s -- falling back to an untrained autoencoder", exc)
                import torch

                torch.manual_seed(params.seed)
                model_params = params.ae_model
                nets = build_nets(model_params)
                meta = {"checkpoint": None, "warning": str(exc)}
            nets.eval()
            _MODELS[key] = (nets, model_params, meta)
        return _MODELS[key]


def ae_input(image: np.ndarray, crop: float, size: int):
    """(3, size, size) float tensor in [0, 1] from the central ``crop`` fraction of an aligned image."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(image)
    arr = center_crop(arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0), crop)
    t = torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def center_crop(image: np.ndarray, crop: float) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = max(int(round(h * crop)), 1), max(int(round(w * crop)), 1)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return image[y0:y0 + ch, x0:x0 + cw]


def crop_mask(mask: np.ndarray, crop: float, size: int) -> np.ndarray:
    t = ae_input(np.repeat(mask.astype(np.float32)[..., None], 3, axis=2), crop, size)
    return t[0].numpy() > 0.5


def ae_canonical_depth(image: np.ndarray, params: Params, out_size: int) -> np.ndarray:
    """The pretrained AE's canonical depth for an aligned image, resized to ``out_size``."""
    import torch
    import torch.nn.functional as F

    from facerecon.ae.finetune import predict

    nets, model_params, _ = load_ae(params)
    x = ae_input(image, 1.0, model_params.image_size)
    with torch.no_grad():
        depth = predict(nets, model_params, x)["canon_depth"]
    depth = torch.as_tensor(depth).reshape(1, 1, *depth.shape[-2:]).float()
    return F.interpolate(depth, size=(out_size, out_size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _np(t) -> np.ndarray:
    import torch

    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def key_ae_optimize(aligned_face: Path, sweep: StageOut, profile: StageOut, params: Params, root: Path,
                    progress=None) -> str:
    return stage_key("ae_optimize", VERSION, params.ae_optimize, [sweep.key, profile.key],
                     extra=section_hash(params.ae_model) + str(params.seed))


def run_ae_optimize(aligned_face: Path, sweep: StageOut, profile: StageOut, params: Params, root: Path,
                    progress=None) -> StageOut:
    key = key_ae_optimize(aligned_face, sweep, profile, params, root)

    def body(d: Path) -> dict:
        import torch

        from facerecon.ae.finetune import fit_face, predict

        p = params.ae_optimize
        base, model_params, meta = load_ae(params)
        size = model_params.image_size
        face = load_face(aligned_face)
        frontal = sweep.path / "frontal_texture.png"
        front_img = load_png(frontal) if frontal.exists() else face.image
        front = ae_input(front_img, p.crop, size)
        sweep_views = load_views(sweep.path) if p.use_sweep else []
        profile_views = load_views(profile.path)
        used = sweep_views + (profile_views if p.use_profiles else [])
        views = torch.stack([ae_input(v.image, p.crop, size) for v in used]) if used else front[None]
        nets, result = fit_face(base, model_params, front, views, steps=p.steps, lr=p.lr, batch_size=p.batch_size,
                                perceptual=p.perceptual, seed=params.seed, progress=progress, params=params)
        with torch.no_grad():
            pred = predict(nets, model_params, front)
            save_npy(d / "depth.npy", _np(pred["canon_depth"]).reshape(size, size).astype(np.float32))
            albedo = _np(pred["canon_albedo"]).reshape(3, size, size).transpose(1, 2, 0)
            save_npy(d / "albedo.npy", albedo.astype(np.float32))
            save_png(d / "albedo.png", albedo)
            save_png(d / "reconstruction.png", _np(pred["recon_image"]).reshape(3, size, size).transpose(1, 2, 0))
            save_png(d / "shading.png", _np(pred["canon_shading"]).reshape(size, size))
            for v in profile_views:
                pv = predict(nets, model_params, ae_input(v.image, p.crop, size))
                a = _np(pv["canon_albedo"]).reshape(3, size, size).transpose(1, 2, 0)
                side = "left" if v.yaw < 0 else "right"
                save_npy(d / f"albedo_{side}.npy", a.astype(np.float32))
                save_png(d / f"albedo_{side}.png", a)
        mask_path = sweep.path / "frontal_mask.png"
        head = load_png(mask_path) > 127 if mask_path.exists() else face.mask
        save_npy(d / "mask.npy", crop_mask(head, p.crop, size))
        save_png(d / "front_input.png", _np(front).transpose(1, 2, 0))
        save_png(d / "front_crop.png", center_crop(front_img, p.crop))  # full resolution, for the texture
        info = {"views": len(used), "steps": p.steps, "checkpoint": meta.get("checkpoint"),
                "pretrained": meta.get("checkpoint") is not None,
                "light": _np(pred["light"]).reshape(-1).round(4).tolist(),
                "view": _np(pred["view"]).reshape(-1).round(4).tolist(),
                **{k: v for k, v in (result if isinstance(result, dict) else vars(result)).items()
                   if isinstance(v, (int, float, str, bool))}}
        save_json(d / "ae.json", info)
        return info

    return run_cached(root, "ae_optimize", key, body)
