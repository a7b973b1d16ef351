"""ControlNet-OpenPose sampling of the ±90° profiles and the best-of-N choice.

Diffusion samples vary a lot at a profile pose (frontal faces leak through, the head turns the
wrong way), so N candidates are drawn per side and scored against the skeleton that
conditioned them. The scorer is a plain callable ``(image, skeleton) -> Score`` so callers can
bring their own; the default uses the project's landmark detector and head-pose estimate when
``facerecon.align.detect_landmarks`` exists and finds a face, and otherwise (mediapipe often
finds nothing in a true profile) a CLIP-free heuristic: skin-coloured pixels should cover the
skeleton's face and be absent in front of its profile line. Which one decided is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facerecon.diffusion import openpose_map as M
from facerecon.diffusion.skeleton import Skeleton

log = logging.getLogger(__name__)

SCHEDULERS = {
    "unipc": "UniPCMultistepScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
}


@dataclass
class Score:
    score: float  # higher is better, in [0, 1]
    method: str  # "landmarks+heuristic" or "heuristic"
    detail: dict[str, Any] = field(default_factory=dict)


Scorer = Callable[[np.ndarray, Skeleton], Score]


# ------------------------------------------------------------------------- heuristics


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels by the YCbCr box rule (Chai & Ngan): lighting-tolerant, no model."""
    x = rgb[..., :3].astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of 2D points (counter-clockwise, no repeats)."""
    p = sorted(map(tuple, np.asarray(pts, dtype=np.float64)))
    if len(p) < 3:
        return np.asarray(p)

    def half(seq):
        out: list = []
        for q in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (q[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (q[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(q)
        return out

    lower, upper = half(p), half(reversed(p))
    return np.asarray(lower[:-1] + upper[:-1])


def skeleton_regions(sk: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """(face, front) boolean masks: the hull of the drawn face points, and a band in front of the nose."""
    from PIL import Image, ImageDraw

    s = sk.size
    pts = sk.face[sk.face_visible]
    face = Image.new("L", (s, s), 0)
    if len(pts) >= 3:
        ImageDraw.Draw(face).polygon([tuple(q) for q in _convex_hull(pts)], fill=255)
    front = Image.new("L", (s, s), 0)
    if len(pts):
        h = max(float(np.ptp(pts[:, 1])), 1.0)
        nose = sk.face[30]
        ear = sk.body[16] if sk.body_visible[16] else sk.body[17]
        facing = 1.0 if not np.isfinite(ear[0]) or nose[0] >= ear[0] else -1.0
        x0 = nose[0] + facing * 0.15 * h
        x1 = nose[0] + facing * 0.55 * h
        y0, y1 = float(pts[:, 1].min()), float(pts[:, 1].max())
        ImageDraw.Draw(front).rectangle([min(x0, x1), y0, max(x0, x1), y1], fill=255)
    return np.asarray(face) > 127, np.asarray(front) > 127


def heuristic_score(image: np.ndarray, sk: Skeleton) -> tuple[float, dict]:
    """Skin over the skeleton's face, none in front of the profile, and contrast between the two."""
    face, front = skeleton_regions(sk)
    if image.shape[:2] != (sk.size, sk.size):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((sk.size, sk.size), Image.BILINEAR))
    skin = skin_mask(image)
    s_face = float(skin[face].mean()) if face.any() else 0.0
    s_front = float(skin[front].mean()) if front.any() else 0.0
    if face.any() and front.any():
        diff = image[face].astype(np.float32).mean(0) - image[front].astype(np.float32).mean(0)
        contrast = float(np.linalg.norm(diff) / (255.0 * np.sqrt(3.0)))
    else:
        contrast = 0.0
    score = 0.4 * s_face + 0.3 * (1.0 - s_front) + 0.3 * min(1.0, 3.0 * contrast)
    return float(score), {"skin_face": round(s_face, 4), "skin_front": round(s_front, 4),
                          "contrast": round(contrast, 4)}


def landmark_score(landmarks: np.ndarray, yaw: float, sk: Skeleton) -> tuple[float, dict]:
    """Agreement of detected landmarks (image pixels, 468×3) and their head yaw with the skeleton."""
    lm = np.asarray(landmarks, dtype=np.float64)
    det = np.empty((M.N_FACE, 2))
    det[:68] = lm[list(M.FACE_68), :2]
    det[68] = lm[list(M.RIGHT_EYE_RING), :2].mean(0)
    det[69] = lm[list(M.LEFT_EYE_RING), :2].mean(0)
    vis = sk.face_visible
    scale = max(float(np.ptp(sk.face[vis, 1])), 1.0) if vis.any() else float(sk.size)
    dist = float(np.linalg.norm(det[vis] - sk.face[vis], axis=1).mean()) if vis.any() else scale
    yaw_term = max(0.0, 1.0 - abs(yaw - sk.yaw) / 90.0)
    agree = max(0.0, 1.0 - dist / scale)
    return 0.5 * yaw_term + 0.5 * agree, {"detected_yaw": round(float(yaw), 2), "keypoint_error_px": round(dist, 2)}


def _align_functions():
    """The lead's detector and pose estimate, looked up at call time (absent → heuristic only)."""
    try:
        import facerecon.align as A
    except Exception:  # noqa: BLE001 - any import problem means "no detector"
        return None, None
    return getattr(A, "detect_landmarks", None), getattr(A, "estimate_head_pose", None)


def make_default_scorer(use_landmarks: bool = True) -> Scorer:
    """Heuristic always; blended half-and-half with the landmark check when a face is detected.

    An undetected face gets a neutral 0.5 for the landmark half, so a true profile the detector
    cannot see is not beaten by a detected but half-frontal sample (whose yaw term is low).
    """
    def scorer(image: np.ndarray, sk: Skeleton) -> Score:
        h, detail = heuristic_score(image, sk)
        detect, pose = _align_functions() if use_landmarks else (None, None)
        if detect is None or pose is None:
            return Score(h, "heuristic", {**detail, "landmarks": "detector unavailable"})
        try:
            lm = detect(image)
        except Exception as exc:  # noqa: BLE001 - a detector failure must not lose the sample
            lm = None
            detail["landmarks_error"] = exc.__class__.__name__
        if lm is None:
            return Score(0.5 * h + 0.25, "heuristic", {**detail, "landmarks": "no face detected"})
        if sk.size != image.shape[0]:
            lm = np.asarray(lm, dtype=np.float64) * (sk.size / image.shape[0])
        lscore, ldetail = landmark_score(lm, float(pose(np.asarray(lm))[0]), sk)
        return Score(0.5 * h + 0.5 * lscore, "landmarks+heuristic", {**detail, **ldetail})

    return scorer


# ---------------------------------------------------------------------------- sampling


def make_pipeline(components, controlnet, *, scheduler: str, device, dtype, progress: bool | None = None):
    """StableDiffusionControlNetPipeline over already-loaded components (no safety checker)."""
    import diffusers

    sched_cls = getattr(diffusers, SCHEDULERS[scheduler])
    pipe = diffusers.StableDiffusionControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, controlnet=controlnet, scheduler=sched_cls.from_config(components.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=None if progress is None else not progress, leave=False)
    return pipe


def sample(pipe, *, prompt: str, negative_prompt: str, control: np.ndarray, seeds: list[int], steps: int,
           guidance_scale: float, controlnet_scale: float) -> list[np.ndarray]:
    """One image per seed, conditioned on the skeleton image ``control`` (same size as the output)."""
    import torch
    from PIL import Image

    size = control.shape[0]
    gens = [torch.Generator(device=pipe.device).manual_seed(int(s)) for s in seeds]
    out = pipe(prompt=prompt, negative_prompt=negative_prompt or None, image=Image.fromarray(control),
               num_images_per_prompt=len(seeds), generator=gens, num_inference_steps=steps,
               guidance_scale=guidance_scale, controlnet_conditioning_scale=controlnet_scale,
               height=size, width=size, output_type="np")
    return [np.clip(np.rint(im * 255.0), 0, 255).astype(np.uint8) for im in out.images]


def pick_best(images: list[np.ndarray], sk: Skeleton, scorer: Scorer) -> tuple[int, list[Score]]:
    scores = [scorer(im, sk) for im in images]
    values = [s.score if np.isfinite(s.score) else -np.inf for s in scores]
    return int(np.argmax(values)), scores
