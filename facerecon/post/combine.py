"""Albedo combination (thesis §4.8, §5.3): front albedo primary, outer quarters from the profiles.

The profile at negative yaw turns the image-left side of the frontal face toward the camera, so
its albedo supplies the left strip; the positive-yaw profile supplies the right strip. The strip
mask is Gaussian-blurred so the seams blend instead of showing an edge.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def strip_weights(width: int, strip_fraction: float, blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column weights (left, right) of the profile albedos; the front gets 1 − left − right."""
    n = int(round(width * strip_fraction))
    left = np.zeros(width, dtype=np.float64)
    right = np.zeros(width, dtype=np.float64)
    if n > 0:
        left[:n] = 1.0
        right[width - n:] = 1.0
    if blur_sigma > 0:
        left = gaussian_filter1d(left, blur_sigma, mode="nearest")
        right = gaussian_filter1d(right, blur_sigma, mode="nearest")
    total = np.maximum(left + right, 1.0)  # never more than a full weight in narrow maps
    return left / total, right / total


def combine_albedo(front: np.ndarray, left: np.ndarray | None, right: np.ndarray | None, *,
                   strip_fraction: float = 0.25, blur_sigma: float = 2.0) -> np.ndarray:
    """(H, W, C) front albedo with the outer strips replaced by the profile albedos, seams blurred.

    A missing profile leaves its side to the front albedo.
    """
    front = np.asarray(front, dtype=np.float32)
    w_left, w_right = strip_weights(front.shape[1], strip_fraction, blur_sigma)
    out = front.astype(np.float64).copy()
    for albedo, weight in ((left, w_left), (right, w_right)):
        if albedo is None:
            continue
        albedo = np.asarray(albedo, dtype=np.float64)
        if albedo.shape != front.shape:
            raise ValueError(f"profile albedo shape {albedo.shape} differs from front {front.shape}")
        wv = weight[None, :, None]
        out = out * (1.0 - wv) + albedo * wv
    return out.astype(np.float32)
