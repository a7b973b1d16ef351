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

from facerecon import registry
from facerecon.config import Params, section_hash
from facerecon.errors import MissingWeightsError
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageJob,
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

VERSION = "6"
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


def frontal_depth_prior(sweep_dir: Path, p, size: int, mask: np.ndarray):
    """The pose sweep's frontal depth (the offline ``invert`` proxy) in the AE's crop, as a
    fine-tuning prior on ``mask`` (the head, already in the AE's crop); None when the weight is 0
    or the sweep backend wrote no frontal depth (GAN sweeps)."""
    import torch
    from scipy.ndimage import gaussian_filter

    from facerecon.ae.finetune import DepthPrior

    depth_path = sweep_dir / "frontal_depth.npy"
    if p.depth_prior <= 0 or not depth_path.exists():
        return None
    depth = np.asarray(np.load(depth_path), dtype=np.float32)
    d = ae_input(np.repeat(depth[..., None], 3, axis=2), p.crop, size)[0].numpy()
    # The crop is shown to the AE at the full field of view, i.e. 1/crop times larger across:
    # deepen the relief by the same factor so the face keeps its proportions.
    ref = float(np.median(d[mask])) if mask.any() else float(np.median(d))
    d = gaussian_filter(ref + (d - ref) / p.crop, 0.75)
    return DepthPrior(depth=torch.from_numpy(d.astype(np.float32)), mask=torch.from_numpy(mask).float(),
                      weight=p.depth_prior)


def resize_map(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) float map resized (bilinear) to (size, size, C), in its own float precision."""
    import torch

    if img.shape[0] == size and img.shape[1] == size:
        return img
    dtype = img.dtype if img.dtype in (np.float32, np.float64) else np.float32
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=dtype)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                           align_corners=False)[0].permute(1, 2, 0).numpy()


def lowpass(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return img
    return np.stack([gaussian_filter(img[..., c], sigma) for c in range(img.shape[-1])], axis=-1)


def delit_photo(photo: np.ndarray, depth: np.ndarray, light: np.ndarray, mp) -> np.ndarray:
    """Albedo as the photo divided by the shading that the AE's predicted light casts on
    ``depth`` (Lambertian, as the AE renders), normalised to keep the photo's mean brightness."""
    import torch

    from facerecon.ae.model import shading
    from facerecon.geometry.mesh import normals_from_depth

    with torch.no_grad():
        normal = normals_from_depth(torch.from_numpy(depth)[None].float(), mp.fov, toward_camera=False)
        shade = shading(normal, torch.from_numpy(np.asarray(light, np.float32))[None])[0, 0].numpy()
    shade = np.clip(shade / max(float(np.median(shade)), 1e-3), 0.35, 2.5)
    return np.clip(photo / shade[..., None], 0.0, 1.0).astype(np.float32)


def fit_scale_offset(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, c) of the least-squares ``y ≈ a·x + c``, with ``a`` kept in [0, 2] (0 for a flat ``x``)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    var = float(((x - x.mean()) ** 2).mean())
    a = float(np.clip(((x - x.mean()) * (y - y.mean())).mean() / var, 0.0, 2.0)) if var > 1e-12 else 0.0
    return a, float(y.mean() - a * x.mean())


def _rim_feather(m: np.ndarray, sigma: float) -> np.ndarray:
    """1 inside ``m`` falling to 0 at its rim over about ``sigma`` pixels (no step at the rim)."""
    from scipy.ndimage import gaussian_filter

    return np.clip(gaussian_filter(m.astype(np.float64), sigma / 2) * 2 - 1, 0, 1) * m


def anchored_depth(ae_depth: np.ndarray, prior, sigma: float) -> np.ndarray:
    """The face's depth when a frontal depth prior exists (the offline pipeline's landmark depth).

    The AE's depth is first matched to the prior by a least-squares scale and offset on the
    prior's mask (the landmarks fix the face's overall relief, which an AE pretrained on synthetic
    faces misjudges on photos); what still differs is low-passed (Gaussian ``sigma``, AE pixels)
    and added to the prior, feathered to zero at the mask's rim. The AE so shapes the face at the
    scale of cheeks, nose and brows, while pixel-scale noise does not reach the mesh. With
    ``sigma`` 0 the AE's depth is kept as it is.
    """
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return ae_depth
    base = prior.depth.numpy().astype(np.float64)
    m = prior.mask.numpy() > 0.5
    if m.sum() < 16:
        return ae_depth
    a, c = fit_scale_offset(ae_depth[m], base[m])
    resid = np.where(m, a * ae_depth + c - base, 0.0)
    w = gaussian_filter(m.astype(np.float64), sigma)
    smooth = gaussian_filter(resid, sigma) / np.maximum(w, 1e-6)
    return (base + _rim_feather(m, sigma) * smooth).astype(np.float32)


def detailed_depth(ae_depth: np.ndarray, prior, hull: np.ndarray, sigma: float) -> np.ndarray:
    """The AE's depth as the face's broad shape, with the prior's detail finer than ``sigma``.

    The prior is matched to the AE by a least-squares scale and offset on the landmark ``hull``
    (the AE fixes the relief); inside the hull, feathered to zero at its rim, the AE's own detail
    finer than ``sigma`` (AE pixels) is replaced by the prior's: low frequencies from the AE, high
    frequencies (nose, lips, brows) from the landmarks. With ``sigma`` 0 the AE's depth is kept.
    """
    from scipy.ndimage import gaussian_filter

    m = hull & (prior.mask.numpy() > 0.5)
    if sigma <= 0 or m.sum() < 16:
        return ae_depth
    ae, base = ae_depth.astype(np.float64), prior.depth.numpy().astype(np.float64)
    a, c = fit_scale_offset(base[m], ae[m])
    diff = np.where(m, a * base + c - ae, 0.0)
    w = gaussian_filter(m.astype(np.float64), sigma)
    fine = diff - gaussian_filter(diff, sigma) / np.maximum(w, 1e-6)
    return (ae + _rim_feather(m, sigma) * fine).astype(np.float32)


def refine_with_prior(depth: np.ndarray, prior, prior_hr, hull: np.ndarray) -> np.ndarray:
    """``depth`` (the AE's size) at the size of ``prior_hr`` (the same frontal prior at a higher
    resolution): what ``depth`` adds to the prior (after a least-squares scale and offset on the
    ``hull``) is upsampled, the prior is taken at full resolution. The face so keeps the photo's
    landmark detail (nose, lips, eyelids) instead of the AE's 64 pixels, and nothing else changes."""
    p_lo, p_hi = prior.depth.numpy().astype(np.float64), prior_hr.depth.numpy().astype(np.float64)
    m = hull & (prior.mask.numpy() > 0.5)
    a, c = fit_scale_offset(p_lo[m], depth[m]) if m.sum() >= 16 else (1.0, 0.0)
    resid = depth.astype(np.float64) - (a * p_lo + c)
    up = resize_map(resid[..., None], p_hi.shape[0])[..., 0]
    return (up + a * p_hi + c).astype(np.float32)


def _np(t) -> np.ndarray:
    import torch

    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


class Unsup3dOptimize:
    """`ae_optimize.backend: unsup3d`: the pretrained photo-geometric autoencoder, fine-tuned per face.

    A missing checkpoint is not fatal: :func:`load_ae` logs it and starts from random weights.
    """

    def __init__(self, params: Params, device=None) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def optimize(self, face_dir: Path, sweep: StageOut, profile: StageOut, d: Path) -> dict:
        """Fine-tune on the face's views and write depth, albedo, masks and ae.json into ``d``."""
        params = self.params
        import torch

        from facerecon.ae.finetune import fit_face, predict

        p = params.ae_optimize
        base, model_params, meta = load_ae(params)
        size = model_params.image_size
        face = load_face(face_dir)
        frontal = sweep.path / "frontal_texture.png"
        front_img = load_png(frontal) if frontal.exists() else face.image
        front = ae_input(front_img, p.crop, size)
        sweep_views = load_views(sweep.path) if p.use_sweep else []
        profile_views = load_views(profile.path)
        used = sweep_views + (profile_views if p.use_profiles else [])
        views = torch.stack([ae_input(v.image, p.crop, size) for v in used]) if used else front[None]
        mask_path = sweep.path / "frontal_mask.png"
        head = load_png(mask_path) > 127 if mask_path.exists() else face.mask
        head_crop = crop_mask(head, p.crop, size)
        prior = frontal_depth_prior(sweep.path, p, size, head_crop) if mask_path.exists() else None
        nets, result = fit_face(base, model_params, front, views, p, seed=params.seed, prior=prior)
        with torch.no_grad():
            pred = predict(nets, model_params, front)
            ae_depth = _np(pred["canon_depth"]).reshape(size, size).astype(np.float32)
            save_npy(d / "ae_depth.npy", ae_depth)
            hull_path = sweep.path / "frontal_face_mask.png"  # the landmark hull: forehead top = hairline
            hull_full = load_png(hull_path) > 127 if hull_path.exists() else head
            hull = crop_mask(hull_full, p.crop, size)
            if prior is None:
                depth = ae_depth
            elif p.anchor == "ae":
                depth = detailed_depth(ae_depth, prior, hull, p.residual_sigma)
            else:
                depth = anchored_depth(ae_depth, prior, p.residual_sigma)
            out_size = (p.output_size or size) if prior is not None else size
            head_hr, hull_hr, depth_hr, front_hr = head_crop, hull, depth, _np(front).transpose(1, 2, 0)
            if out_size != size:  # the prior and the photo have the face's detail: keep it
                head_hr, hull_hr = crop_mask(head, p.crop, out_size), crop_mask(hull_full, p.crop, out_size)
                depth_hr = refine_with_prior(depth, prior, frontal_depth_prior(sweep.path, p, out_size, head_hr),
                                             hull)
                front_hr = _np(ae_input(front_img, p.crop, out_size)).transpose(1, 2, 0)
            save_npy(d / "depth.npy", depth_hr.astype(np.float32))
            ae_albedo = _np(pred["canon_albedo"]).reshape(3, size, size).transpose(1, 2, 0)
            albedo = ae_albedo
            if prior is not None:  # offline: the photo de-lit by the AE's light on the face's depth
                albedo = delit_photo(front_hr, depth_hr, _np(pred["light"]).reshape(-1), model_params)
            save_npy(d / "albedo.npy", albedo.astype(np.float32))
            save_png(d / "albedo.png", albedo)
            save_png(d / "reconstruction.png", _np(pred["recon_image"]).reshape(3, size, size).transpose(1, 2, 0))
            save_png(d / "shading.png", _np(pred["canon_shading"]).reshape(size, size))
            for v in profile_views:
                pv = predict(nets, model_params, ae_input(v.image, p.crop, size))
                a = _np(pv["canon_albedo"]).reshape(3, size, size).transpose(1, 2, 0)
                if prior is not None:  # what the profile sees differently, at the AE's reliable scale
                    a = albedo + resize_map(lowpass(a - ae_albedo, p.residual_sigma), out_size)
                a = np.clip(a, 0.0, 1.0)
                side = "left" if v.yaw < 0 else "right"
                save_npy(d / f"albedo_{side}.npy", a.astype(np.float32))
                save_png(d / f"albedo_{side}.png", a)
        save_npy(d / "mask.npy", head_hr)
        save_npy(d / "face_mask.npy", hull_hr)
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


def key_ae_optimize(job: StageJob, up: dict[str, StageOut]) -> str:
    p = job.params
    return stage_key("ae_optimize", VERSION, p.ae_optimize, registry.stage("ae_optimize").upstream_keys(up),
                     extra=section_hash(p.ae_model) + str(p.seed))


def run_ae_optimize(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    def body(d: Path) -> dict:
        return backend("ae_optimize", job.params).optimize(job.face_dir, up["pose_sweep"], up["profile"], d)

    return run_cached(job.root, "ae_optimize", key_ae_optimize(job, up), body)
