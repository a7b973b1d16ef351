"""Dense frontal depth of a face from mediapipe's 468 3D landmarks (offline `invert` backend).

The landmarks are first frontalised (the head rotation estimated from the face's own axes is
undone), so the proxy is a canonical, frontal depth map whatever the photo's pose. Inside the
landmark hull the depth is a smooth (Clough–Tocher) interpolation of the landmark depths; beyond
it the surface curves away towards a background plane, like the side of a head, so renders at
large yaw show a closed silhouette instead of a cliff.

Depth units follow the project camera (common to the AE): a perspective camera of ``fov``
degrees, the face centre at depth ``center_depth``; a landmark's z in pixels becomes
``z / f`` depth units with f the focal length in pixels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.ndimage import binary_erosion, distance_transform_edt, gaussian_filter

from facerecon.align import head_rotation


def focal_px(fov_deg: float, size: int) -> float:
    return (size - 1) / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def frontalize_landmarks(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks with the head rotation removed (about their centroid), and that rotation R."""
    rot = head_rotation(landmarks)
    lm = landmarks.astype(np.float64)
    centre = lm.mean(0)
    front = (lm - centre) @ rot + centre  # R^T (p - c) for row vectors
    return front.astype(np.float32), rot


INNER_LIPS = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]


def _recess_mouth(depth: np.ndarray, lm: np.ndarray, size: int, amount: float) -> np.ndarray:
    """Push the inside of the lips back: the landmarks have no points there, so the interpolant
    spans an open mouth at lip depth and the teeth would stick out in side views."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).polygon([tuple(map(float, lm[i, :2])) for i in INNER_LIPS], fill=255)
    inside = gaussian_filter(np.asarray(img, np.float64) / 255.0, 1.0)
    return depth + amount * inside


def landmark_depth(landmarks: np.ndarray, size: int, *, fov: float = 10.0, center_depth: float = 1.0,
                   background_depth: float | None = None, falloff: float = 0.6,
                   smooth_sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Depth map (size, size) and the hull mask where it is interpolated (not extrapolated).

    ``landmarks`` are (468, 3) in the pixel frame of the map (x, y, z with z in pixels, smaller
    = closer). ``falloff`` sets how fast the surface curves back outside the hull, as a fraction
    of the face width.
    """
    f = focal_px(fov, size)
    lm = landmarks.astype(np.float64)
    z = lm[:, 2] / f
    z = z - np.median(z) + center_depth
    interp = LinearNDInterpolator(lm[:, :2], z)  # cubic overshoots at the hull's sliver triangles
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    depth = interp(xs, ys)
    hull = np.isfinite(depth)
    depth = _recess_mouth(depth, lm, size, 0.04 * float(np.ptp(lm[:, 0])) / f)
    face_w = float(np.ptp(lm[:, 0])) or float(size)
    if background_depth is None:
        background_depth = float(np.nanmax(depth)) + 0.35 * face_w / f
    # outside the hull: a smooth continuation of the face's rim (normalised convolution of the rim
    # band only, so no streaks and no step: averaging the whole hull would bring the nearer middle
    # of the face forward and leave a dark ring where it meets the receding rim), curving back
    # with distance towards the background, like the side of a head
    rim = hull & ~binary_erosion(hull, iterations=max(1, round(0.02 * face_w)))
    filled_in = np.where(rim, depth, 0.0)
    sigma = 0.12 * face_w
    num = gaussian_filter(filled_in, sigma)
    den = gaussian_filter(rim.astype(np.float64), sigma)
    smooth = num / np.maximum(den, 1e-12)
    far = den < 1e-10  # beyond the filter's reach: the nearest reached value (no step at its edge)
    if far.all():
        smooth[:] = float(np.nanmean(depth))
    elif far.any():
        idx = distance_transform_edt(far, return_distances=False, return_indices=True)
        smooth = smooth[idx[0], idx[1]]
    dist = distance_transform_edt(~hull)
    curve = (dist / (falloff * face_w)) ** 2 * (background_depth - smooth).clip(min=0.0)
    filled = np.where(hull, depth, np.minimum(smooth + curve, background_depth))
    # the continuation meets the rim without a step but with a kink (the cheek turns away, the
    # continuation is level): round it off in a band around the rim, as a real jaw line is round
    band = 0.03 * face_w
    to_rim = np.where(hull, distance_transform_edt(hull), dist)
    w = np.exp(-0.5 * (to_rim / band) ** 2)
    filled = w * gaussian_filter(filled, band) + (1.0 - w) * filled
    if smooth_sigma > 0:  # the interpolant creases along landmark triangles; renders show them
        filled = gaussian_filter(filled, smooth_sigma * size / 256.0)
    return filled.astype(np.float32), hull
