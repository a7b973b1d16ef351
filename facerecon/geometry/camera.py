"""The project camera: one perspective pinhole and one viewpoint parameterisation for everybody.

The renderer, the Unsup3D autoencoder, the synthetic benchmark and the pose sweep all have to
agree on what a depth map, a yaw angle and a pixel mean; a mismatch in any of them silently
mirrors or shifts faces. These conventions (``/work/notes/common.md``) are therefore written
down once here:

* pixels: u = column (x, right), v = row (y, down), pixel centres at integers 0..S-1;
* camera at the origin looking along +z, x right, y down;
* ``f = ((W-1)/2) / tan(fov/2)``, ``cx = (W-1)/2``, ``cy = (H-1)/2`` (square pixels, so the same
  ``f`` for both axes; Unsup3D's intrinsics);
* a viewpoint is ``(rx, ry, rz, tx, ty, tz)`` (radians, depth units) acting as
  ``p_view = R (p - c) + c + t`` with ``c = (0, 0, rot_center_depth)`` and
  ``R = Rx(rx) @ Ry(ry) @ Rz(rz)``. Positive yaw (``ry``) moves the nose (closer than ``c``)
  toward the image left.

Note: Unsup3D's own ``get_rotation_matrix`` composes ``Rz @ Ry @ Rx``; the project uses
``Rx @ Ry @ Rz`` as stated above. For a pure yaw (the pose sweep, the renders) both agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels of an image ``size`` pixels wide seen under ``fov_deg`` degrees."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    return (size - 1) / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics(fov_deg: float, H: int, W: int | None = None, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """(3, 3) pinhole matrix K with the project's focal length and centre (see module doc)."""
    W = H if W is None else W
    f = focal_from_fov(fov_deg, W)
    return torch.tensor([[f, 0.0, (W - 1) / 2.0], [0.0, f, (H - 1) / 2.0], [0.0, 0.0, 1.0]],
                        dtype=dtype, device=device)


def _as_tensor(x: Tensor | float | Sequence[float], like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    t = torch.as_tensor(x, **kw)
    return t if t.is_floating_point() else t.float()


def rotation_matrix(rx: Tensor | float, ry: Tensor | float, rz: Tensor | float) -> Tensor:
    """Batched ``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (angles in radians) → (B, 3, 3).

    Scalars give B = 1. Built from cos/sin with ``stack`` so it is differentiable in the angles.
    """
    ref = next((a for a in (rx, ry, rz) if isinstance(a, Tensor)), None)
    rx, ry, rz = (_as_tensor(a, ref).reshape(-1) for a in (rx, ry, rz))
    rx, ry, rz = torch.broadcast_tensors(rx, ry, rz)
    one, zero = torch.ones_like(rx), torch.zeros_like(rx)
    cx, sx, cy, sy, cz, sz = rx.cos(), rx.sin(), ry.cos(), ry.sin(), rz.cos(), rz.sin()
    mx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    my = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    mz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return mx @ my @ mz


def _split_view(view: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 6) / (B, 5) / (B, 3) viewpoint → rotation (B, 3, 3), translation (B, 1, 3).

    Like Unsup3D, a 5-vector is (angles, tx, ty) with tz = 0 and a 3-vector is rotation only.
    """
    if view.dim() != 2 or view.shape[1] not in (3, 5, 6):
        raise ValueError(f"view must be (B, 6), (B, 5) or (B, 3), got {tuple(view.shape)}")
    R = rotation_matrix(view[:, 0], view[:, 1], view[:, 2])
    b = view.shape[0]
    if view.shape[1] == 6:
        t = view[:, 3:6]
    elif view.shape[1] == 5:
        t = torch.cat([view[:, 3:5], view.new_zeros(b, 1)], 1)
    else:
        t = view.new_zeros(b, 3)
    return R, t.reshape(b, 1, 3)


def _center(points: Tensor, rot_center_depth: float) -> Tensor:
    return points.new_tensor([0.0, 0.0, rot_center_depth]).view(1, 1, 3)


def view_transform(points: Tensor, view: Tensor, rot_center_depth: float = 1.0) -> Tensor:
    """Canonical → view frame: ``R (p - c) + c + t`` for points (B, N, 3) and view (B, 6)."""
    R, t = _split_view(view.to(points.dtype))
    c = _center(points, rot_center_depth)
    return (points - c) @ R.transpose(1, 2) + c + t


def inverse_view_transform(points: Tensor, view: Tensor, rot_center_depth: float = 1.0) -> Tensor:
    """View → canonical frame, the exact inverse of :func:`view_transform`: ``Rᵀ (q - c - t) + c``."""
    R, t = _split_view(view.to(points.dtype))
    c = _center(points, rot_center_depth)
    return (points - c - t) @ R + c


def yaw_alpha(alpha: float, span: tuple[float, float] = (-10, 9)) -> float:
    """Yaw in degrees of the thesis's pose-sweep step α: ``span`` maps linearly onto −90°..+90°.

    With the default span, α = −7..6 (the 14 sweep poses) gives −58.4°..+78.2°.
    """
    lo, hi = span
    if hi == lo:
        raise ValueError(f"span must have two different ends, got {span}")
    return -90.0 + (alpha - lo) * 180.0 / (hi - lo)


def view_from_yaw(yaw_deg: float | Sequence[float] | Tensor, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """(B, 6) viewpoints that only turn the head by ``yaw_deg`` degrees (about ``c``)."""
    yaw = torch.as_tensor(yaw_deg, dtype=dtype, device=device).reshape(-1)
    view = torch.zeros(yaw.shape[0], 6, dtype=dtype, device=device)
    view[:, 1] = torch.deg2rad(yaw)
    return view


def _k_parts(K: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """fx, fy, cx, cy of a (3, 3) or (B, 3, 3) K, each shaped (B, 1) for broadcasting."""
    if K.dim() == 2:
        K = K.unsqueeze(0)
    K = K.expand(batch, 3, 3)
    return K[:, 0, 0:1], K[:, 1, 1:2], K[:, 0, 2:3], K[:, 1, 2:3]


def project(points: Tensor, K: Tensor) -> Tensor:
    """Pixel coordinates (B, N, 2) = (u, v) of camera-frame points (B, N, 3) through K."""
    fx, fy, cx, cy = _k_parts(K.to(points.dtype), points.shape[0])
    z = points[..., 2]
    return torch.stack([fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy], -1)


def unproject(uv: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Camera-frame points (B, N, 3) of pixels ``uv`` (B, N, 2) at depths (B, N): the inverse of project."""
    fx, fy, cx, cy = _k_parts(K.to(uv.dtype), uv.shape[0])
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return torch.stack([x, y, depth], -1)


def view_vectors(rp: dict[str, np.ndarray]) -> Tensor:
    """(N, 6) project viewpoints (radians, depth units) from sampled pose parameters.

    Yaw is ``ry`` and pitch ``rx`` (the conventions above), so positive yaw turns the
    nose toward the image left.
    """
    v = np.stack([np.radians(rp["pitch"]), np.radians(rp["yaw"]), np.radians(rp["roll"]),
                  rp["tx"], rp["ty"], np.zeros_like(rp["tx"])], 1)
    return torch.as_tensor(v, dtype=torch.float32)
