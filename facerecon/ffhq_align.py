"""FFHQ alignment: the oriented crop every FFHQ-trained StyleGAN2 encoder expects.

HyperStyle, e4e and the generator itself only reproduce faces that sit where FFHQ put them:
eyes level, eye/mouth distances at fixed fractions of the crop. The crop is a square "quad"
computed from two eye centres and two mouth corners (dlib's 68-point indices in the original
tool; any landmark model giving the same four points works). The math is kept numpy/PIL only so
the `align` stage can use it without importing torch.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["ffhq_quad", "quad_size", "warp_quad"]


def _perp(v: np.ndarray) -> np.ndarray:
    """``v`` turned by +90° in image coordinates (x right, y down): (x, y) -> (-y, x)."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def ffhq_quad(eye_left: np.ndarray, eye_right: np.ndarray, mouth_left: np.ndarray,
              mouth_right: np.ndarray) -> np.ndarray:
    """Corners (TL, BL, BR, TR) of the FFHQ crop square in image pixels, shape (4, 2).

    The crop's x axis blends the eye line with the eye→mouth line turned by 90°, so a tilted
    head is levelled by both cues; its half side is the larger of 2×eye distance and
    1.8×eye-mouth distance; its centre sits 10 % of the way from the eye midpoint to the mouth.
    """
    el, er = np.asarray(eye_left, np.float64)[:2], np.asarray(eye_right, np.float64)[:2]
    ml, mr = np.asarray(mouth_left, np.float64)[:2], np.asarray(mouth_right, np.float64)[:2]
    eye_mid = 0.5 * (el + er)
    eye_to_eye = er - el
    eye_to_mouth = 0.5 * (ml + mr) - eye_mid
    x = eye_to_eye - _perp(eye_to_mouth)  # the mouth direction turned onto the eye line
    norm = math.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError("ffhq_quad: degenerate eye/mouth points (eyes and mouth coincide)")
    half = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    x = x / norm * half
    y = _perp(x)
    c = eye_mid + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_size(quad: np.ndarray) -> float:
    """Side length of the quad in pixels."""
    q = np.asarray(quad, np.float64)
    return float(np.hypot(*(q[3] - q[0])))


def _soft_pad(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding to a blurred median colour.

    A plain reflection at the photo border produces mirrored faces/shoulders the encoder would
    try to reconstruct; fading them (as the FFHQ tool does) gives a neutral background.
    """
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w, _ = out.shape
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    xx = np.arange(w, dtype=np.float32)[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.minimum(xx / max(left, 1e-6), (w - 1 - xx) / max(right, 1e-6))
        fy = np.minimum(yy / max(top, 1e-6), (h - 1 - yy) / max(bottom, 1e-6))
    mask = np.maximum(1.0 - fx, 1.0 - fy)
    sigma = qsize * 0.02
    blurred = gaussian_filter(out, [sigma, sigma, 0])
    out += (blurred - out) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def warp_quad(image: np.ndarray, quad: np.ndarray, out_size: int, transform_size: int = 1024,
              *, enable_padding: bool = True) -> np.ndarray:
    """Resample the ``quad`` region of ``image`` (H, W, 3 uint8 RGB) to an ``out_size`` square.

    Steps of the FFHQ tool: shrink very large photos first (keeps the bilinear quad sampling
    from aliasing), crop to the quad plus a border, reflect-pad where the quad leaves the photo,
    sample the quad at ``transform_size`` and finally Lanczos-resize to ``out_size``.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    q = np.asarray(quad, np.float64).copy()
    qsize = quad_size(q)
    pil = Image.fromarray(img)

    shrink = int(np.floor(qsize / out_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(pil.size[0] / shrink)), int(np.rint(pil.size[1] / shrink)))
        pil = pil.resize(size, Image.LANCZOS)
        q /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, pil.size[0]), min(hi[1] + border, pil.size[1]))
    if crop[2] - crop[0] < pil.size[0] or crop[3] - crop[1] < pil.size[1]:
        pil = pil.crop(crop)
        q -= crop[:2]

    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    pad = [max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - pil.size[0] + border, 0), max(hi[1] - pil.size[1] + border, 0)]
    if enable_padding and max(pad) > border - 4:
        pad = [max(p, int(np.rint(qsize * 0.3))) for p in pad]
        pil = Image.fromarray(_soft_pad(np.asarray(pil), tuple(pad), qsize))
        q += pad[:2]

    pil = pil.transform((transform_size, transform_size), Image.QUAD, tuple((q + 0.5).flatten()),
                        Image.BILINEAR)
    if out_size != transform_size:
        pil = pil.resize((out_size, out_size), Image.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)
