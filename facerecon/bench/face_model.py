"""A procedural morphable face: the project's own stand-in for the Basel Face Model.

BFM needs a registration, so the benchmark cannot ship it. This model gives the same kind of
data — random identity shape, expression, albedo — with ground truth, from a few hundred lines
of analytic fields, so ``synth`` runs anywhere with nothing downloaded.

The face lives on the canonical (frontal) image grid of the project camera (FOV 10°, see
``facerecon.geometry.camera``): a depth map ``d(s, t)`` over normalised image coordinates
``s, t ∈ [-1, 1]`` (``s`` = column, right; ``t`` = row, down), exactly what Unsup3D's canonical
depth is. Every feature is placed in *face-local* coordinates ``x = s / half_width``,
``y = (t - centre) / half_height`` (``y = -1`` top of the forehead, ``+1`` bottom of the chin),
so positions scale with the face and the fields can be evaluated at any grid resolution (the
mesh grid, and a finer grid for the texture).

Depth is ``D0 - relief(x, y)`` with relief = head cap + features (brow ridge, eye sockets,
nose, cheeks, lips, chin) + a smooth random field; it stays inside [min_depth, max_depth]
(Unsup3D's [0.9, 1.1]). Outside the face mask the depth is ``max_depth``, the background
value of Unsup3D's synthetic-face ground truth.

Proportions: the face spans ~78 % of the image width with nose tip ≈ 0.92 and the outline
≈ 1.0–1.05 (nose-to-outline depth ≈ 1.5 face half-widths, as from nose tip to ears on a real
head; the mask reaches back toward the ears like BFM's). Measured on the default test split:
a flat depth scores SIDE 1.40 × 10⁻² / MAD 39.3°, the training set's average depth 0.94 /
23.2°. Unsup3D's BFM set gives 2.72 / 43.3 and 1.99 / 23.3: similar normals but twice the
log-depth spread (its depth maps use more of the [0.9, 1.1] range; how BFM was scaled into
it is not published), so SIDE values here are not directly comparable with the published
ones; MAD values roughly are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------- parameters

# name -> (mean, std, lo, hi): identity and expression scalars, Gaussian then clipped so that
# an extreme draw is still a face.
_SCALARS: dict[str, tuple[float, float, float, float]] = {
    "half_width": (0.78, 0.035, 0.68, 0.88),   # face half-width, in image half-widths
    "half_height": (0.93, 0.03, 0.85, 1.0),    # face half-height, in image half-heights
    "centre_y": (0.03, 0.015, 0.0, 0.07),      # vertical centre of the face in t
    "jaw": (0.32, 0.08, 0.12, 0.52),           # narrowing of the lower face (0 = oval)
    "relief": (1.13, 0.09, 0.9, 1.36),         # depth scale of the whole face
    "cap": (0.085, 0.008, 0.065, 0.105),       # head cap height (depth units)
    "forehead": (0.006, 0.003, -0.002, 0.014), # forehead bulge
    "brow_ridge": (0.006, 0.002, 0.0, 0.012),
    "eye_sep": (0.40, 0.025, 0.33, 0.47),      # eye centre |x|
    "eye_y": (-0.14, 0.025, -0.21, -0.07),
    "eye_socket": (0.011, 0.002, 0.005, 0.017),
    "nose_len": (0.29, 0.03, 0.2, 0.38),       # tip y
    "nose_height": (0.022, 0.004, 0.012, 0.032),
    "nose_width": (1.0, 0.12, 0.7, 1.35),
    "nose_hump": (0.0, 0.004, -0.008, 0.01),
    "cheek": (0.008, 0.003, 0.0, 0.016),
    "cheek_y": (0.16, 0.03, 0.08, 0.24),
    "mouth_y": (0.58, 0.03, 0.5, 0.66),
    "mouth_width": (0.27, 0.03, 0.19, 0.35),
    "lips": (0.007, 0.002, 0.002, 0.012),
    "chin": (0.010, 0.003, 0.003, 0.018),
    "chin_width": (0.2, 0.03, 0.12, 0.28),
}
# expression scalars: (probability the expression is present, lo, hi) drawn uniformly
_EXPRESSIONS: dict[str, tuple[float, float, float]] = {
    "mouth_open": (0.3, 0.0, 1.0),
    "smile": (0.5, -0.3, 1.0),
    "brow_raise": (0.4, -0.6, 1.0),
}
# albedo scalars: uniform ranges
_ALBEDO: dict[str, tuple[float, float]] = {
    "skin_tone": (0.0, 1.0),      # dark .. light along _SKIN
    "skin_r": (-0.03, 0.03),      # per-channel jitter
    "skin_g": (-0.03, 0.03),
    "skin_b": (-0.03, 0.03),
    "blush": (0.0, 0.12),
    "lip_red": (0.2, 0.6),
    "hair_tone": (0.0, 1.0),      # brows: black .. blond
    "brow_thick": (0.6, 1.4),
    "iris_tone": (0.0, 1.0),      # dark brown .. blue-grey
    "gaze_x": (-0.04, 0.04),
    "blotch": (0.02, 0.08),
}
_FIELD_K = 5        # random depth field: cosine basis 0..K-1 in x and y
_FIELD_AMP = 0.004  # its amplitude (depth units) at the lowest frequency
_BLOTCH_K = 6

_SKIN = np.array([[0.28, 0.17, 0.11], [0.50, 0.32, 0.22], [0.70, 0.50, 0.38],
                  [0.86, 0.67, 0.55], [0.94, 0.79, 0.70]], dtype=np.float64)
_HAIR = np.array([[0.06, 0.05, 0.05], [0.22, 0.14, 0.09], [0.42, 0.30, 0.18], [0.70, 0.58, 0.38]])
_IRIS = np.array([[0.18, 0.10, 0.06], [0.35, 0.24, 0.12], [0.30, 0.38, 0.30], [0.38, 0.48, 0.60]])

PARAM_VERSION = 1


@dataclass(frozen=True)
class FaceBatch:
    """Canonical faces: depth (B, R, R) with ``max_depth`` outside the mask, mask (B, R, R) bool,
    albedo (B, 3, T, T) in [0, 1] (defined, skin-coloured, outside its mask too), texture
    mask (B, T, T) bool."""

    depth: Tensor
    mask: Tensor
    albedo: Tensor
    albedo_mask: Tensor
    params: dict[str, Tensor]


def _lerp_table(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through the rows of ``table`` at positions t ∈ [0, 1]."""
    pos = np.clip(t, 0.0, 1.0) * (len(table) - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, len(table) - 2)
    w = (pos - i0)[..., None]
    return table[i0] * (1 - w) + table[i0 + 1] * w


def sample_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random identity / expression / albedo parameters for ``n`` faces (float64 arrays).

    Scalars are (n,); ``field`` is (n, K, K) random depth-field coefficients with variance
    decaying with frequency; ``blotch_coef`` (n, K, K) the albedo's low-frequency blotches.
    """
    p: dict[str, np.ndarray] = {}
    for name, (mu, sd, lo, hi) in _SCALARS.items():
        p[name] = np.clip(rng.normal(mu, sd, n), lo, hi)
    for name, (prob, lo, hi) in _EXPRESSIONS.items():
        p[name] = np.where(rng.random(n) < prob, rng.uniform(lo, hi, n), 0.0)
    for name, (lo, hi) in _ALBEDO.items():
        p[name] = rng.uniform(lo, hi, n)
    k = np.arange(_FIELD_K)
    sd = _FIELD_AMP / (1.0 + k[:, None] ** 2 + k[None, :] ** 2)
    sd[0, 0] = 0.0  # a constant offset is not shape
    p["field"] = rng.normal(size=(n, _FIELD_K, _FIELD_K)) * sd
    kb = np.arange(_BLOTCH_K)
    sdb = 1.0 / (1.0 + kb[:, None] ** 2 + kb[None, :] ** 2)
    sdb[0, 0] = 0.0
    p["blotch_coef"] = rng.normal(size=(n, _BLOTCH_K, _BLOTCH_K)) * sdb
    return p


def mean_params(n: int = 1) -> dict[str, np.ndarray]:
    """The parameters of the mean face (every scalar at its mean, no expression, no field)."""
    p: dict[str, np.ndarray] = {}
    for name, (mu, _sd, _lo, _hi) in _SCALARS.items():
        p[name] = np.full(n, mu)
    for name in _EXPRESSIONS:
        p[name] = np.zeros(n)
    for name, (lo, hi) in _ALBEDO.items():
        p[name] = np.full(n, (lo + hi) / 2.0)
    p["gaze_x"] = np.zeros(n)
    p["field"] = np.zeros((n, _FIELD_K, _FIELD_K))
    p["blotch_coef"] = np.zeros((n, _BLOTCH_K, _BLOTCH_K))
    return p


# ------------------------------------------------------------------------------ fields


def _g(x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, sx: Tensor | float,
       sy: Tensor | float) -> Tensor:
    """Unit-height 2D Gaussian bump."""
    return torch.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _smoothstep(e0: float | Tensor, e1: float | Tensor, v: Tensor) -> Tensor:
    t = ((v - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _cos_field(x: Tensor, y: Tensor, coef: Tensor) -> Tensor:
    """Σ c_ij cos(iπ(x+1)/2) cos(jπ(y+1)/2): a smooth random field on the face box.

    ``x``/``y`` broadcast against each other: (B, 1, W) and (B, H, 1) on a grid (the sum then
    costs two small contractions, no (B, K, H, W) tensor), or (B, N) and (B, N) at points.
    """
    k = coef.shape[-1]
    i = torch.arange(k, dtype=x.dtype, device=x.device).view(1, k, *([1] * (x.dim() - 1)))
    cx = torch.cos(i * math.pi * (x.unsqueeze(1).clamp(-1, 1) + 1) / 2)  # (B, k, *x)
    cy = torch.cos(i * math.pi * (y.unsqueeze(1).clamp(-1, 1) + 1) / 2)  # (B, k, *y)
    a = torch.einsum("bij,bj...->bi...", coef.to(x.dtype), cy)  # contract the y index first
    return (a * cx).sum(1)


def _as_t(p: dict[str, np.ndarray], dtype: torch.dtype, points: bool = False) -> dict[str, Tensor]:
    """Parameters as tensors; scalars shaped (B, 1, 1) for grids or (B, 1) for point sets."""
    out = {}
    for k, v in p.items():
        t = torch.as_tensor(np.asarray(v), dtype=dtype)
        out[k] = (t.view(-1, 1) if points else t.view(-1, 1, 1)) if t.dim() == 1 else t
    return out


def _local(p: dict[str, Tensor], res: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Face-local coordinates of the pixel centres: x (B, 1, res) per column, y (B, res, 1) per row.

    Normalised image coordinates run from −1 to +1 between the centres of the border pixels,
    so a grid of 2R−1 pixels contains the R-pixel grid as its even samples.
    """
    lin = torch.linspace(-1.0, 1.0, res, dtype=dtype)
    x = lin.view(1, 1, res) / p["half_width"]
    y = (lin.view(1, res, 1) - p["centre_y"]) / p["half_height"]
    return x, y


def _outline(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Signed face outline: > 0 inside. An egg: a superellipse whose lower half narrows (jaw)."""
    yl = y.clamp(min=0.0)
    width = 1.0 - p["jaw"] * yl ** 2  # half-width of the outline at height y, lower half narrower
    width = width * (1.0 - 0.08 * (-y).clamp(min=0.0) ** 2)  # slightly narrower temples
    r = (x.abs() / width) ** 2.2 + y.abs() ** 2.2
    return 1.0 - r


def _depth_field(p: dict[str, Tensor], x: Tensor, y: Tensor, min_depth: float,
                 max_depth: float) -> tuple[Tensor, Tensor]:
    """Unmasked depth and the signed outline (> 0 inside) at broadcastable face-local x, y."""
    inside = _outline(p, x, y)

    # head cap: an ellipsoid that is still ~25 % high at the outline, so the face sides go
    # back steeply (toward the ears) without a vertical wall
    q = (x / 1.03) ** 2 + (y / 1.12) ** 2
    cap = p["cap"] * torch.sqrt((1.0 - q).clamp(min=0.0) + 0.03)
    # the cheeks/forehead are flatter across than a sphere: lift the middle band a little
    cap = cap + 0.12 * p["cap"] * torch.exp(-0.5 * (x / 0.55) ** 2) * torch.exp(-0.5 * (y / 0.6) ** 2)

    # forehead + brow ridge (raised with brow_raise)
    brow_y = -0.34 - 0.05 * p["brow_raise"]
    feat = p["forehead"] * _g(x, y, 0.0, -0.62, 0.5, 0.25)
    feat = feat + p["brow_ridge"] * torch.exp(-0.5 * ((y - brow_y) / 0.07) ** 2) * torch.exp(-0.5 * (x / 0.55) ** 2)

    # eye sockets with a small eyeball bulge; cheekbones
    for sign in (-1.0, 1.0):
        ex = sign * p["eye_sep"]
        feat = feat - p["eye_socket"] * _g(x, y, ex, p["eye_y"], 0.17, 0.10)
        feat = feat + 0.35 * p["eye_socket"] * _g(x, y, ex, p["eye_y"], 0.07, 0.045)
        feat = feat + p["cheek"] * _g(x, y, sign * 0.52, p["cheek_y"], 0.2, 0.16)

    # nose: a ridge from the root (between the eyes) rising to the tip, then the columella
    # turning back to the upper lip; the cross-section widens from bridge to alae
    root = p["eye_y"] + 0.02
    tip = p["nose_len"]
    frac = ((y - root) / (tip - root)).clamp(0.0, 1.0)
    ridge_w = p["nose_width"] * (0.085 + 0.07 * frac ** 2)
    hump = p["nose_hump"] * torch.sin(math.pi * frac)
    profile = p["nose_height"] * (0.15 + 0.85 * frac) * _smoothstep(root - 0.08, root + 0.08, y) + hump
    below = _smoothstep(tip + 0.11, tip - 0.01, y)  # 1 above the tip, falls to 0 under it
    feat = feat + profile * below * torch.exp(-0.5 * (x / ridge_w) ** 2)
    # tip bulb and the alae (nostril wings)
    feat = feat + 0.15 * p["nose_height"] * _g(x, y, 0.0, tip - 0.02, 0.09 * p["nose_width"], 0.06)
    for sign in (-1.0, 1.0):
        feat = feat + 0.35 * p["nose_height"] * _g(x, y, sign * 0.14 * p["nose_width"], tip + 0.01,
                                                    0.07, 0.05)

    # mouth: lips around a mouth line that smiles (corners up) and opens
    my = p["mouth_y"]
    mw = p["mouth_width"] * (1.0 + 0.15 * p["smile"].clamp(min=0))
    curve = -0.06 * p["smile"] * (x / mw) ** 2
    open_ = p["mouth_open"]
    ym = y - my - curve
    lip_w = torch.exp(-0.5 * (x / mw) ** 4)
    feat = feat + p["lips"] * lip_w * torch.exp(-0.5 * ((ym + 0.045 + 0.03 * open_) / 0.04) ** 2)
    feat = feat + 1.1 * p["lips"] * lip_w * torch.exp(-0.5 * ((ym - 0.05 - 0.04 * open_) / 0.045) ** 2)
    gap = 0.012 + 0.045 * open_
    feat = feat - (0.004 + 0.012 * open_) * lip_w * torch.exp(-0.5 * (ym / gap) ** 2)
    # philtrum groove between nose and upper lip
    feat = feat - 0.0015 * _g(x, y, 0.0, (tip + my) / 2, 0.04, 0.06)
    # chin, and the groove above it; the jaw drops when the mouth opens
    chin_y = 0.86 + 0.05 * open_
    feat = feat + p["chin"] * _g(x, y, 0.0, chin_y, p["chin_width"], 0.1)
    feat = feat - 0.003 * _g(x, y, 0.0, (my + chin_y) / 2 + 0.03, 0.14, 0.04)

    field = _cos_field(x, y, p["field"])
    relief = p["relief"] * (cap + feat + field)
    # the relief is 0 at the outline's outer edge only through the cap; blend the features out
    # near the outline so no feature pokes through the silhouette
    fade = _smoothstep(0.0, 0.25, inside)
    relief = p["relief"] * cap + fade * (relief - p["relief"] * cap)

    d0 = 1.004 + 0.6 * p["relief"] * p["cap"]  # nearest view depth stays ≥ 0.9 at ±60° yaw
    return (d0 - relief).clamp(min_depth + 0.002, max_depth - 0.002), inside


def face_depth(params: dict[str, np.ndarray], res: int, *, min_depth: float = 0.9, max_depth: float = 1.1,
               fill_outside: bool = True, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Canonical depth (B, res, res) and mask (B, res, res) bool of the faces in ``params``.

    Pure function of the parameters, evaluated on a ``res``-pixel grid; the same face at two
    resolutions is the same surface sampled twice. ``fill_outside=False`` keeps the surface's
    smooth continuation outside the mask (for shading normals at the rim) instead of
    ``max_depth``.
    """
    p = _as_t(params, torch.float32)
    x, y = _local(p, res, torch.float32)
    depth, inside = _depth_field(p, x, y, min_depth, max_depth)
    mask = inside > 0
    if fill_outside:
        depth = torch.where(mask, depth, torch.full_like(depth, max_depth))
    return depth.to(dtype), mask


def depth_at(params: dict[str, np.ndarray], s: Tensor, t: Tensor, *, min_depth: float = 0.9,
             max_depth: float = 1.1) -> tuple[Tensor, Tensor]:
    """Unmasked depth and signed outline (> 0 inside) at image points (s, t), each (B, N)."""
    p = _as_t(params, torch.float32, points=True)
    x = s.float() / p["half_width"]
    y = (t.float() - p["centre_y"]) / p["half_height"]
    return _depth_field(p, x, y, min_depth, max_depth)


def snap_outline(params: dict[str, np.ndarray], mask: Tensor, *, steps: int = 3,
                 margin: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Image positions (s, t) (B, R*R) of the mesh-grid vertices, boundary ones moved onto the outline.

    A face mask on a pixel grid has a staircase border; where the surface is steep (the face
    sides) each stair step is a step in depth, and a turned head shows a toothed silhouette.
    Moving every inside vertex that has an outside 8-neighbour onto the analytic outline
    (a few Newton steps on the outline function, stopping just inside) makes the rim a smooth
    curve. Returns s, t and the moved-vertex mask (B, R*R).
    """
    B, R, _ = mask.shape
    lin = torch.linspace(-1.0, 1.0, R)
    t0, s0 = torch.meshgrid(lin, lin, indexing="ij")
    s = s0.reshape(1, -1).expand(B, -1).clone()
    t = t0.reshape(1, -1).expand(B, -1).clone()
    m = mask.float().unsqueeze(1)
    outside_nb = F.max_pool2d(1.0 - m, 3, stride=1, padding=1).squeeze(1) > 0
    edge = (mask & outside_nb).reshape(B, -1)
    p = _as_t(params, torch.float32, points=True)
    h = 1e-4
    for _ in range(steps):
        x = s / p["half_width"]
        y = (t - p["centre_y"]) / p["half_height"]
        f = _outline(p, x, y) - margin
        fs = (_outline(p, (s + h) / p["half_width"], y) - margin - f) / h
        ft = (_outline(p, x, (t + h - p["centre_y"]) / p["half_height"]) - margin - f) / h
        g2 = (fs ** 2 + ft ** 2).clamp(min=1e-12)
        step_s, step_t = -f * fs / g2, -f * ft / g2
        # never more than a pixel: a vertex must stay near its grid cell
        lim = 2.0 / (R - 1)
        norm = torch.sqrt(step_s ** 2 + step_t ** 2)
        scale = (lim / norm.clamp(min=1e-12)).clamp(max=1.0)
        s = torch.where(edge, s + step_s * scale, s)
        t = torch.where(edge, t + step_t * scale, t)
    return s, t, edge


def face_albedo(params: dict[str, np.ndarray], res: int, *, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Albedo (B, 3, res, res) in [0, 1] and its mask (B, res, res): skin tone with blotches and
    blush, lips, brows, eyes (sclera, iris, pupil, lid line) and nostrils.

    The albedo is left defined outside the mask (skin continues), so a texture sampled
    bilinearly at the silhouette does not pick up a dark fringe.
    """
    pn = {k: np.asarray(v) for k, v in params.items()}
    skin = _lerp_table(_SKIN, pn["skin_tone"]) + np.stack([pn["skin_r"], pn["skin_g"], pn["skin_b"]], -1)
    hair = _lerp_table(_HAIR, pn["hair_tone"] ** 1.5)
    iris = _lerp_table(_IRIS, pn["iris_tone"])
    p = _as_t(params, torch.float32)
    x, y = _local(p, res, torch.float32)
    mask = _outline(p, x, y) > 0
    B = x.shape[0]

    def col(c: np.ndarray) -> Tensor:
        return torch.as_tensor(c, dtype=torch.float32).view(B, 3, 1, 1)

    def mix(img: Tensor, colour: Tensor, w: Tensor) -> Tensor:
        w = w.unsqueeze(1)
        return img * (1 - w) + colour * w

    base = col(skin).expand(B, 3, res, res).clone()
    blotch = _cos_field(x, y, p["blotch_coef"])
    base = base * (1.0 + p["blotch"].unsqueeze(1) * blotch.unsqueeze(1))
    # blush on the cheeks and a slightly darker, warmer periphery
    cheeks = _g(x, y, 0.45, 0.25, 0.18, 0.14) + _g(x, y, -0.45, 0.25, 0.18, 0.14)
    img = mix(base, col(skin * np.array([1.05, 0.75, 0.72])), p["blush"].view(B, 1, 1) * 3 * cheeks)
    rim = _smoothstep(0.35, 0.0, _outline(p, x, y))
    img = img * (1.0 - 0.12 * rim.unsqueeze(1))

    # lips
    my = p["mouth_y"]
    mw = p["mouth_width"] * (1.0 + 0.15 * p["smile"].clamp(min=0))
    curve = -0.06 * p["smile"] * (x / mw) ** 2
    ym = y - my - curve
    open_ = p["mouth_open"]
    lip_shape = _smoothstep(1.0, 0.8, (x / mw).abs())
    taper = (1.0 - 0.75 * (x / mw) ** 2).clamp(min=0.15)  # lips thin toward the corners
    bow = 0.012 * torch.exp(-0.5 * (x / 0.05) ** 2)  # cupid's bow dip in the upper lip's middle
    upper = lip_shape * _smoothstep(0.01, -0.005, (ym + 0.03 + 0.03 * open_).abs() - 0.03 * taper + bow)
    lower = lip_shape * _smoothstep(0.01, -0.005, (ym - 0.045 - 0.04 * open_).abs() - 0.04 * taper)
    lip_col = col(skin * np.array([0.85, 0.55, 0.55])) * (1 - p["lip_red"].view(B, 1, 1, 1)) + \
        col(np.tile([0.62, 0.22, 0.24], (B, 1))) * p["lip_red"].view(B, 1, 1, 1)
    img = mix(img, lip_col, (upper + lower).clamp(max=1.0) * 0.9)
    mouth_in = lip_shape * _smoothstep(0.012 + 0.04 * open_, 0.004 + 0.03 * open_, ym.abs())
    img = mix(img, col(np.tile([0.12, 0.05, 0.05], (B, 1))), mouth_in * (0.5 + 0.5 * (open_ > 0.05)))

    # nostrils
    tip = p["nose_len"]
    for sign in (-1.0, 1.0):
        img = mix(img, col(skin * 0.35), 0.8 * _g(x, y, sign * 0.075 * p["nose_width"], tip + 0.05, 0.035, 0.018))

    # brows: arcs above the eyes
    brow_y = -0.34 - 0.05 * p["brow_raise"]
    for sign in (-1.0, 1.0):
        bx = (x - sign * (p["eye_sep"] + 0.02)) / 0.2
        arc = brow_y - 0.04 * (1 - bx ** 2)
        w = (_smoothstep(1.15, 0.8, bx.abs()) *
             _smoothstep(0.035 * p["brow_thick"], 0.015 * p["brow_thick"], (y - arc).abs()))
        img = mix(img, col(hair), 0.85 * w)

    # eyes: almond sclera, iris, pupil, dark upper lid line
    for sign in (-1.0, 1.0):
        ex, ey = sign * p["eye_sep"], p["eye_y"]
        u = (x - ex) / 0.13
        half_h = 0.055 * (1 - u ** 2).clamp(min=0.0) ** 0.8
        v = y - ey
        eye = _smoothstep(0.0, 0.01, half_h - v.abs()) * (u.abs() < 1).to(x.dtype)
        img = mix(img, col(np.tile([0.86, 0.84, 0.80], (B, 1))), 0.9 * eye)
        r = torch.sqrt((x - ex - p["gaze_x"]) ** 2 + v ** 2)
        img = mix(img, col(iris), eye * _smoothstep(0.05, 0.04, r))
        img = mix(img, col(np.tile([0.03, 0.03, 0.03], (B, 1))), eye * _smoothstep(0.022, 0.015, r))
        lid = _smoothstep(0.018, 0.006, (v + half_h).abs()) * (u.abs() < 1.1).to(x.dtype)
        img = mix(img, col(hair * 0.6), 0.7 * lid)

    return img.clamp(0.0, 1.0).to(dtype), mask


def evaluate(params: dict[str, np.ndarray], grid: int, texture: int | None = None, *, min_depth: float = 0.9,
             max_depth: float = 1.1) -> FaceBatch:
    """Depth/mask on a ``grid``-pixel canonical grid and albedo on a ``texture``-pixel one."""
    texture = grid if texture is None else texture
    depth, mask = face_depth(params, grid, min_depth=min_depth, max_depth=max_depth)
    albedo, amask = face_albedo(params, texture)
    tp = {k: torch.as_tensor(np.asarray(v)) for k, v in params.items()}
    return FaceBatch(depth, mask, albedo, amask, tp)


def sample_faces(n: int, rng: np.random.Generator, *, grid: int = 64, texture: int | None = None,
                 min_depth: float = 0.9, max_depth: float = 1.1) -> FaceBatch:
    """``n`` random faces (identity, expression, albedo) on the canonical grid."""
    return evaluate(sample_params(n, rng), grid, texture, min_depth=min_depth, max_depth=max_depth)


def mean_face(grid: int = 64, texture: int | None = None, *, min_depth: float = 0.9,
              max_depth: float = 1.1) -> FaceBatch:
    """The mean face (one face): the floor any depth predictor has to beat."""
    return evaluate(mean_params(1), grid, texture, min_depth=min_depth, max_depth=max_depth)
