"""SIDE and MAD, as Unsup3D's evaluation computes them, and the thesis's eq. 6.1 / 6.2 variants.

Unsup3D (``unsup3d/model.py`` forward with ground truth, ``utils.compute_sc_inv_err`` /
``compute_angular_distance``, ``renderer.get_normal_from_depth``) evaluates per image:

* masks: ground-truth pixels are those nearer than the background (depth < max), the
  prediction's those nearer than its far clamp (``max_depth + margin``); each is eroded by one
  pixel (3×3 average pool with zero padding > 0.99) and the two are multiplied;
* SIDE: ``sqrt(Σ m (δ - δ̄)² / Σ m)`` with ``δ = log d_pred - log d_gt`` and ``δ̄`` its masked
  mean — a scale-invariant error (a global depth scale is a constant ``δ``); reported ×10²;
* MAD: the masked mean over pixels of ``acos(clamp(n_pred · n_gt, -1, 1))`` in degrees, with
  normals from central differences of the lifted depth grid, ``n = t_u × t_v``, border pixels
  set to (0, 0, 1), and normalised as ``n / (|n| + 1e-7)``.

That last ``1e-7`` matters: at 64 px and FOV 10° the cross products are only ~3e-5 long, so
the "unit" normals are ~0.3 % short and two identical depth maps already differ by several
degrees (``n·n < 1``). Published numbers (16.51° for Unsup3D) include that floor, so
:func:`mad` keeps it and :func:`mad_exact` reports the same mean angle with true unit normals.

The thesis (§6.1) writes different formulas: eq. 6.1, the mean absolute log-depth difference
(not scale-invariant), and eq. 6.2, the arccos of the mean cosine. Both are given, labelled, so
a reader sees which definition a number comes from.

All per-image functions take batches (B, H, W) and return (B,) tensors; they compute in
float64 so results do not depend on the device, with TF32 off.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.geometry.mesh import depth_to_points

EPS = 1e-7  # Unsup3D's normal normalisation constant

# metric key -> (label, display scale): one place names every column of every report
METRICS: dict[str, tuple[str, float]] = {
    "side": ("SIDE ×10⁻² (Unsup3D)", 100.0),
    "mad": ("MAD ° (Unsup3D normals n/(|n|+1e-7))", 1.0),
    "mad_exact": ("MAD ° (exact unit normals)", 1.0),
    "side_eq61": ("SIDE ×10⁻² (thesis eq. 6.1, mean |Δ log d|)", 100.0),
    "mad_eq62": ("MAD ° (thesis eq. 6.2, arccos of mean cos)", 1.0),
}


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Turn TF32 matmul/conv off for the block (metrics must not depend on the GPU generation)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _cross_normals(depth: Tensor, fov: float) -> Tensor:
    """Unnormalised ``t_u × t_v`` at interior pixels, (0, 0, 1) on the border (Unsup3D's layout)."""
    if depth.dim() != 3:
        raise ValueError(f"depth must be (B, H, W), got {tuple(depth.shape)}")
    b, h, w = depth.shape
    pts = depth_to_points(depth.to(torch.float64), fov).reshape(b, h, w, 3)
    tu = pts[:, 1:-1, 2:] - pts[:, 1:-1, :-2]
    tv = pts[:, 2:, 1:-1] - pts[:, :-2, 1:-1]
    inner = torch.linalg.cross(tu, tv, dim=-1)
    n = pts.new_zeros(b, h, w, 3)
    n[..., 2] = 1.0
    n[:, 1:-1, 1:-1] = inner
    return n


def unsup3d_normals(depth: Tensor, fov: float = 10.0) -> Tensor:
    """Normals (B, H, W, 3) exactly as Unsup3D's ``get_normal_from_depth``: ``n / (|n| + 1e-7)``.

    Orientation: n_z > 0 for a surface facing the camera (Unsup3D's, shaded with a light whose
    z is +1). The border is (0, 0, 1) / (1 + 1e-7).
    """
    n = _cross_normals(depth, fov)
    return n / (n.norm(dim=-1, keepdim=True) + EPS)


def exact_normals(depth: Tensor, fov: float = 10.0) -> Tensor:
    """The same normals with true unit length (``n / |n|``)."""
    n = _cross_normals(depth, fov)
    return n / n.norm(dim=-1, keepdim=True).clamp(min=1e-300)


def erode(mask: Tensor) -> Tensor:
    """Unsup3D's one-pixel erosion: 3×3 average pool with zero padding, kept where > 0.99."""
    m = mask.to(torch.float64).unsqueeze(1)
    return (F.avg_pool2d(m, 3, stride=1, padding=1).squeeze(1) > 0.99).to(torch.float64)


def eval_mask(pred_depth: Tensor, gt_depth: Tensor, gt_mask: Tensor | None = None, *, min_depth: float = 0.9,
              max_depth: float = 1.1) -> Tensor:
    """The pixels Unsup3D scores: eroded(gt face) × eroded(prediction not at its far clamp), float (B, H, W).

    ``gt_mask`` defaults to Unsup3D's rule ``gt_depth < max_depth`` (background depth is
    ``max_depth``); the prediction is valid below ``max_depth + (max_depth - min_depth)/2``,
    the far clamp of Unsup3D's renderer.
    """
    if gt_mask is None:
        gt_mask = gt_depth < max_depth
    margin = (max_depth - min_depth) / 2.0
    pred_mask = pred_depth < max_depth + margin
    return erode(gt_mask) * erode(pred_mask)


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    b = x.shape[0]
    return (x * m).reshape(b, -1).sum(1) / m.reshape(b, -1).sum(1)


def side(pred_depth: Tensor, gt_depth: Tensor, mask: Tensor) -> Tensor:
    """Unsup3D's scale-invariant depth error per image (B,), *not* yet ×10² (NaN on an empty mask)."""
    m = mask.to(torch.float64)
    diff = (pred_depth.to(torch.float64).log() - gt_depth.to(torch.float64).log()) * m
    avg = _masked_mean(diff, m)
    score = (diff - avg.view(-1, 1, 1)) ** 2 * m
    return torch.sqrt(_masked_mean(score, m))


def mad(pred_normal: Tensor, gt_normal: Tensor, mask: Tensor) -> Tensor:
    """Unsup3D's mean angle deviation per image (B,), degrees: masked mean of acos(n₁·n₂)."""
    m = mask.to(torch.float64)
    cos = (pred_normal.to(torch.float64) * gt_normal.to(torch.float64)).sum(-1).clamp(-1.0, 1.0)
    return _masked_mean(cos.acos() * 180.0 / math.pi, m)


def side_eq61(pred_depth: Tensor, gt_depth: Tensor, mask: Tensor) -> Tensor:
    """Thesis eq. 6.1 per image: masked mean of |log d_pred − log d_gt| (B,), not ×10²."""
    m = mask.to(torch.float64)
    return _masked_mean((pred_depth.to(torch.float64).log() - gt_depth.to(torch.float64).log()).abs(), m)


def mad_eq62(pred_normal: Tensor, gt_normal: Tensor, mask: Tensor) -> Tensor:
    """Thesis eq. 6.2 per image: arccos of the masked mean of cos θᵢ (B,), degrees."""
    m = mask.to(torch.float64)
    cos = (pred_normal.to(torch.float64) * gt_normal.to(torch.float64)).sum(-1).clamp(-1.0, 1.0)
    return _masked_mean(cos, m).clamp(-1.0, 1.0).acos() * 180.0 / math.pi


def evaluate_depths(pred_depth: Tensor, gt_depth: Tensor, gt_mask: Tensor | None = None, *, fov: float = 10.0,
                    min_depth: float = 0.9, max_depth: float = 1.1) -> dict[str, Tensor]:
    """Every metric of :data:`METRICS` per image for predicted vs ground-truth view depth (B, H, W).

    Also returns ``pixels``, the number of scored pixels per image. eq. 6.2 uses exact unit
    normals (it is defined on the angles themselves).
    """
    if pred_depth.shape != gt_depth.shape:
        raise ValueError(f"predicted depth {tuple(pred_depth.shape)} and ground truth {tuple(gt_depth.shape)} differ")
    with no_tf32():
        pred = pred_depth.detach().to("cpu", torch.float64)
        gt = gt_depth.detach().to("cpu", torch.float64)
        gm = None if gt_mask is None else gt_mask.detach().to("cpu").bool()
        m = eval_mask(pred, gt, gm, min_depth=min_depth, max_depth=max_depth)
        n_pred, n_gt = unsup3d_normals(pred, fov), unsup3d_normals(gt, fov)
        e_pred, e_gt = exact_normals(pred, fov), exact_normals(gt, fov)
        return {
            "side": side(pred, gt, m),
            "mad": mad(n_pred, n_gt, m),
            "mad_exact": mad(e_pred, e_gt, m),
            "side_eq61": side_eq61(pred, gt, m),
            "mad_eq62": mad_eq62(e_pred, e_gt, m),
            "pixels": m.reshape(m.shape[0], -1).sum(1),
        }
