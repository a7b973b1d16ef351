"""High-resolution texture: the AE's albedo (64 px, shading removed) plus the photo's fine detail.

The autoencoder works at 64×64, so its albedo is soft. The aligned photo has the detail (eyes,
brows, lips, skin) but also the light. Adding only the photo's high-frequency band — the photo
minus its own blur at the AE's scale — to the upsampled albedo keeps the AE's de-lit colours and
brings back the detail, without baking the photo's shading into the texture.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, zoom


def upsample(img: np.ndarray, size: int) -> np.ndarray:
    f = size / img.shape[0]
    if img.ndim == 2:
        return zoom(img, f, order=1)
    return np.stack([zoom(img[..., c], f, order=1) for c in range(img.shape[2])], axis=-1)


def detail_texture(albedo: np.ndarray, photo: np.ndarray, size: int, strength: float = 1.0) -> np.ndarray:
    """(size, size, 3) float texture: upsampled ``albedo`` + ``strength`` × the photo's detail band.

    ``photo`` is the same view as ``albedo`` (the AE's front input crop) at any resolution, float
    in [0, 1]. The detail band is what a blur at the albedo's pixel size removes from the photo.
    """
    base = upsample(np.asarray(albedo, np.float64), size)
    hi = upsample(np.asarray(photo, np.float64), size) if photo.shape[0] != size else np.asarray(photo, np.float64)
    sigma = 0.5 * size / albedo.shape[0]
    low = np.stack([gaussian_filter(hi[..., c], sigma) for c in range(3)], axis=-1)
    return np.clip(base + strength * (hi - low), 0.0, 1.0).astype(np.float32)
