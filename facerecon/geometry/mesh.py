"""Meshes from depth grids: one vertex per pixel, two triangles per 2×2 cell.

Every depth map in the project (AE canonical depth, landmark proxy, synthetic ground truth)
becomes a mesh the same way, so renders, warps and exports line up pixel for pixel.

Winding: triangles are ``(v00, v10, v01)`` and ``(v01, v10, v11)`` (``vRC`` = row R, column C
of the cell), the order Unsup3D uses. In the camera frame (x right, y down, z forward) their
geometric normal ``(b - a) × (c - a)`` points toward the camera (−z) for a surface facing it;
after the export's flip to y-up / z-toward-viewer the same index order is counter-clockwise
seen from the front, which is what glTF and OBJ viewers treat as the front face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.geometry.camera import intrinsics, unproject


def pixel_grid(H: int, W: int, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """(H*W, 2) pixel centres (u, v), row-major — the vertex order of every depth-grid mesh."""
    v, u = torch.meshgrid(torch.arange(H, dtype=dtype, device=device),
                          torch.arange(W, dtype=dtype, device=device), indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


def depth_to_points(depth: Tensor, fov: float | None = None, *, K: Tensor | None = None) -> Tensor:
    """Lift depth maps (B, H, W) to camera-frame points (B, H*W, 3): X = (u-cx) d/f, Y = (v-cy) d/f, Z = d."""
    if depth.dim() != 3:
        raise ValueError(f"depth must be (B, H, W), got {tuple(depth.shape)}")
    b, h, w = depth.shape
    if K is None:
        if fov is None:
            raise ValueError("depth_to_points needs fov or K")
        K = intrinsics(fov, h, w, dtype=depth.dtype, device=depth.device)
    uv = pixel_grid(h, w, dtype=depth.dtype, device=depth.device).unsqueeze(0).expand(b, -1, -1)
    return unproject(uv, depth.reshape(b, -1), K)


def grid_faces(H: int, W: int, *, device: torch.device | str | None = None) -> Tensor:
    """(2 (H-1)(W-1), 3) long triangle indices of the H×W vertex grid (winding: module doc)."""
    idx = torch.arange(H * W, device=device).reshape(H, W)
    v00, v01, v10, v11 = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    upper = torch.stack([v00, v10, v01], -1).reshape(-1, 3)
    lower = torch.stack([v01, v10, v11], -1).reshape(-1, 3)
    return torch.cat([upper, lower], 0)


def grid_uv(H: int, W: int, *, dtype: torch.dtype = torch.float32,
            device: torch.device | str | None = None) -> Tensor:
    """(H*W, 2) texture coordinates of the grid vertices, (u, v) in [0, 1].

    (0, 0) is the centre of the top-left pixel and (1, 1) of the bottom-right one, i.e. the
    ``align_corners=True`` convention of ``F.grid_sample`` and the image-row-down convention of
    glTF (OBJ flips v when writing).
    """
    uv = pixel_grid(H, W, dtype=dtype, device=device)
    return uv / uv.new_tensor([max(W - 1, 1), max(H - 1, 1)])


def mask_faces(faces: Tensor, mask: Tensor) -> Tensor:
    """Faces whose three vertices all lie in ``mask`` ((H, W) or (V,) bool, one entry per vertex)."""
    keep = mask.reshape(-1).to(torch.bool)[faces].all(-1)
    return faces[keep]


def face_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Unnormalised face normals (B, F, 3) = ``(b - a) × (c - a)``; length = twice the area."""
    tri = verts[:, faces]  # (B, F, 3, 3)
    return torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)


def vertex_normals(verts: Tensor, faces: Tensor, eps: float = 1e-12) -> Tensor:
    """Area-weighted unit vertex normals (B, V, 3) (vertices on no face get a zero vector)."""
    fn = face_normals(verts, faces)
    b, v = verts.shape[:2]
    out = verts.new_zeros(b, v, 3)
    idx = faces.reshape(-1).unsqueeze(0).unsqueeze(-1).expand(b, -1, 3)
    out = out.scatter_add(1, idx, fn.repeat_interleave(3, dim=1))
    return out / out.norm(dim=-1, keepdim=True).clamp_min(eps)


def normals_from_depth(depth: Tensor, fov: float | None = None, *, K: Tensor | None = None,
                       toward_camera: bool = True, eps: float = 1e-20) -> Tensor:
    """Per-pixel unit surface normals (B, H, W, 3) in the camera frame.

    Central differences of the lifted 3D points (one-sided at the border, so border pixels get
    a real normal instead of a constant). ``toward_camera=True`` orients them toward the viewer
    (n_z < 0 for a surface facing the camera), the usual geometric normal; ``False`` gives the
    opposite sign, which is the orientation Unsup3D's ``get_normal_from_depth`` uses (n_z > 0,
    shaded with a light direction whose z is +1).
    """
    b, h, w = depth.shape
    pts = depth_to_points(depth, fov, K=K).reshape(b, h, w, 3)
    pad = F.pad(pts.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate").permute(0, 2, 3, 1)
    tu = pad[:, 1:-1, 2:] - pad[:, 1:-1, :-2]  # ∂P/∂u (≈ +x)
    tv = pad[:, 2:, 1:-1] - pad[:, :-2, 1:-1]  # ∂P/∂v (≈ +y)
    n = torch.linalg.cross(tv, tu, dim=-1) if toward_camera else torch.linalg.cross(tu, tv, dim=-1)
    # clamp, not add: the cross products are ~ (d/f)² small, an added eps would bias them
    return n / n.norm(dim=-1, keepdim=True).clamp_min(eps)
