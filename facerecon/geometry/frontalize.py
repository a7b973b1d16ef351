"""Frontal, symmetric texture of a face from a photo at any moderate head pose.

Real photos are rarely frontal. The pose sweep must turn the head around its frontal pose, not
around the photo's, so the photo is first resampled onto the frontal surface (landmark depth,
head rotation undone). Parts of the face hidden in the photo — the far cheek of a turned head,
the side of the nose — get a low visibility weight, and are filled from the mirrored side of
the face, which faces are nearly symmetric for.

Works in the aligned crop's pixel frame with z in pixels: at the project's 10° field of view the
camera is close to orthographic, so this is accurate to well under a pixel for a 256 crop.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from facerecon.align import SYMMETRIC_PAIRS


def symmetry_axis(landmarks_front: np.ndarray) -> float:
    """x of the frontal face's mirror line: mean midpoint of symmetric landmark pairs."""
    return float(np.mean([(landmarks_front[a, 0] + landmarks_front[b, 0]) / 2 for a, b in SYMMETRIC_PAIRS]))


def mirror_x(img: np.ndarray, axis_x: float) -> np.ndarray:
    """Mirror an (H, W[, C]) map about the vertical line x = axis_x (edge values beyond the image)."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = 2 * axis_x - xs
    if img.ndim == 2:
        return map_coordinates(img, [ys, src_x], order=1, mode="nearest")
    return np.stack([map_coordinates(img[..., c], [ys, src_x], order=1, mode="nearest")
                     for c in range(img.shape[2])], axis=-1)


def surface_normals_px(depth_px: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) of z = depth_px(x, y) in pixel units, pointing to the camera (−z)."""
    dzdy, dzdx = np.gradient(depth_px)
    n = np.stack([dzdx, dzdy, -np.ones_like(depth_px)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def frontal_texture(photo: np.ndarray, photo_depth_px: np.ndarray, front_depth_px: np.ndarray,
                    rotation: np.ndarray, centre: np.ndarray, *, axis_x: float,
                    occlusion_tol: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``photo`` onto the frontal surface; returns (texture (H, W, 3) float, weight (H, W)).

    ``rotation`` maps frontal to photo coordinates about ``centre`` (pixel x, y, z). A frontal
    point's weight is how squarely it faced the camera in the photo (0 if it was occluded);
    low-weight pixels are filled from the mirrored side.
    """
    h, w = front_depth_px.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    p = np.stack([xs, ys, front_depth_px.astype(np.float64)], axis=-1) - centre
    q = p @ rotation.T + centre  # photo-frame position of every frontal pixel
    qx, qy, qz = q[..., 0], q[..., 1], q[..., 2]
    photo = photo.astype(np.float64) / (255.0 if photo.dtype == np.uint8 else 1.0)
    tex = np.stack([map_coordinates(photo[..., c], [qy, qx], order=1, mode="nearest") for c in range(3)], -1)
    # facing: frontal normals rotated into the photo frame, dotted with the view direction (−z)
    n_photo = surface_normals_px(front_depth_px) @ rotation.T
    facing = np.clip(-n_photo[..., 2], 0.0, 1.0)
    # occlusion: something in the photo was closer than this point along its ray
    zbuf = map_coordinates(photo_depth_px.astype(np.float64), [qy, qx], order=1, mode="nearest")
    visible = qz <= zbuf + occlusion_tol
    inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
    weight = facing ** 2 * visible * inside
    weight = gaussian_filter(weight, 1.0)
    # mirror fill: blend each pixel with its mirror by their weights
    tex_m = mirror_x(tex, axis_x)
    wt_m = mirror_x(weight, axis_x)
    total = weight + wt_m
    blend = np.where(total[..., None] > 1e-3, (tex * weight[..., None] + tex_m * wt_m[..., None])
                     / np.maximum(total, 1e-3)[..., None], tex)
    # keep the photo's own pixels wherever they were seen well enough, whatever their mirror image's
    # weight: a crease faces the camera a little less than its mirror, and taking the other side's
    # pixels there (other lighting) made pale blotches. Judged on the weight at the scale of the
    # face's parts, so no pixel-sized decisions
    seen = gaussian_filter(weight, 0.015 * w)
    keep = np.clip((seen - 0.1) / 0.3, 0.0, 1.0)[..., None]
    out = keep * tex + (1 - keep) * blend
    return out.astype(np.float32), np.maximum(weight, wt_m).astype(np.float32)
