"""Offline pose extension: the photo re-posed to frontal on its landmark surface, then turned.

The photo is resampled onto its frontal landmark surface (head pose undone, hidden parts filled
from the mirrored side: ``facerecon.geometry.frontalize``), and that frontal textured mesh is
rendered at each yaw with the mesh renderer, so the views turn around the frontal pose whatever
the photo's pose was. ``ReprojectSweep`` stands in for InterfaceGAN (``facerecon.gan.backends``),
``ReprojectProfile`` for ControlNet-OpenPose (``facerecon.diffusion.backends``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerecon.config import Params
from facerecon.geometry.depth_proxy import focal_px, frontalize_landmarks, landmark_depth
from facerecon.geometry.frontalize import frontal_texture, symmetry_axis
from facerecon.stages.base import AlignedFace, DreamboothResult, InvertResult, View, alpha_yaws, profile_yaws
from facerecon.stages.workspace import save_npy, save_png


@dataclass
class FrontalFace:
    """The face re-posed to exactly frontal: texture, depth (project depth units) and mask."""

    texture: np.ndarray  # (S, S, 3) float [0, 1]
    depth: np.ndarray  # (S, S) float32
    mask: np.ndarray  # (S, S) bool: head region (face hull + curved-away extrapolation)
    face_mask: np.ndarray  # (S, S) bool: landmark hull only
    background: np.ndarray  # (3,) float colour for pixels off the head


def frontal_face(face: AlignedFace, depth: np.ndarray | None, fov: float) -> FrontalFace:
    """Frontal depth + symmetric-filled texture of an aligned face.

    With landmarks, depth and texture come from the frontalised landmark surface (the landmark
    `invert` backend's depth is the same map). Without (e.g. synthetic renders with the
    `ae_depth` backend) the photo is taken as frontal and ``depth`` is used as it is.
    """
    size = face.image.shape[0]
    f = focal_px(fov, size)
    photo = face.image.astype(np.float32) / 255.0
    border = np.concatenate([photo[:4].reshape(-1, 3), photo[-4:].reshape(-1, 3),
                             photo[:, :4].reshape(-1, 3), photo[:, -4:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    if face.landmarks is None:  # no landmarks (GAN-only inputs): the photo is taken as frontal
        d = depth if depth is not None else np.ones((size, size), np.float32)
        m = np.ones((size, size), bool)
        return FrontalFace(photo, d.astype(np.float32), m, face.mask, background)
    front_lm, rot = frontalize_landmarks(face.landmarks)
    front_depth, hull = landmark_depth(front_lm, size, fov=fov)
    photo_depth, _ = landmark_depth(face.landmarks, size, fov=fov)
    # back to raw landmark pixel-z so the rotation about the landmark centroid is exact
    front_px = front_depth * f - f + float(np.median(front_lm[:, 2]))
    photo_px = photo_depth * f - f + float(np.median(face.landmarks[:, 2]))
    centre = face.landmarks.astype(np.float64).mean(0)
    tex, _ = frontal_texture(face.image, photo_px, front_px, rot, centre, axis_x=symmetry_axis(front_lm))
    head = front_depth < front_depth.max() - 1e-4
    return FrontalFace(tex, front_depth, head, hull, background)


def render_yaw(front: FrontalFace, yaw_deg: float, fov: float, out_size: int) -> np.ndarray:
    """uint8 image of the frontal textured mesh turned by ``yaw_deg`` (background filled)."""
    from facerecon.render.reproject import render_from_view

    rgb, mask = render_from_view(front.texture, front.depth, front.mask, yaw_deg=yaw_deg, fov=fov,
                                 out_size=out_size)[:2]
    rgb = np.where(mask[..., None], rgb, front.background[None, None, :])
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


class ReprojectSweep:
    """The 14 thesis yaws by turning the frontal landmark mesh (offline stand-in for InterfaceGAN)."""

    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def sweep(self, face: AlignedFace, inverted: InvertResult, alphas: list[int], workdir: Path) -> list[View]:
        p = self.params.pose_sweep
        fov = self.params.ae_model.fov
        front = frontal_face(face, inverted.depth, fov)
        save_png(workdir / "frontal_texture.png", front.texture)
        save_npy(workdir / "frontal_depth.npy", front.depth)
        save_png(workdir / "frontal_mask.png", front.mask.astype(np.uint8) * 255)
        save_png(workdir / "frontal_face_mask.png", front.face_mask.astype(np.uint8) * 255)
        return [View(image=render_yaw(front, yaw, fov, p.image_size), yaw=yaw, name=f"sweep_a{a:+d}", alpha=float(a))
                for a, yaw in zip(alphas, alpha_yaws(alphas, self.params), strict=True)]


class ReprojectProfile:
    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def profiles(self, face: AlignedFace, inverted: InvertResult, dreambooth: DreamboothResult,
                 workdir: Path) -> list[View]:
        p = self.params.profile
        front = frontal_face(face, inverted.depth, self.params.ae_model.fov)
        return [View(image=render_yaw(front, yaw, self.params.ae_model.fov, p.image_size), yaw=yaw, name=name)
                for yaw, name in zip(profile_yaws(self.params), ("profile_left", "profile_right"), strict=True)]
