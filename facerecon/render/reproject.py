"""Re-render a photo from a new viewpoint through its depth map, with the mesh renderer.

The offline pose sweep and profile stages turn an aligned, frontal photo into views at other
yaws. Splatting pixels would leave holes and cracks where the surface stretches; here the
depth grid is a triangle mesh (one vertex per pixel), rasterized in the new view with the
project's renderer, and every output pixel is textured by looking up the source pixel its
surface point came from. No file I/O: numpy or torch in, numpy out.

Two questions callers ask besides "what does it look like":

* *Where did this output pixel come from?* ``Reprojection.source_xy`` gives the source pixel
  (x = column, y = row, float) of every output pixel, −1 on background.
* *Was that part of the surface actually seen in the source?* A depth-grid mesh is a height
  field of the source camera, so what the source could not see (the far side of the nose, the
  cheek behind a turned head, the step at the face's outline) is bridged by triangles the
  source camera saw edge-on. ``Reprojection.source_facing`` is the cosine between the source
  camera's ray and each drawn triangle's normal: near 1 for a well-seen surface, near 0 for
  such bridging triangles. ``hidden_in_source`` thresholds it; those are the pixels to fill
  from the mirrored side of the face.

For the opposite direction (a photo taken at some pose, textured onto the canonical frontal
grid) ``visibility_in_source`` / ``texture_from_view`` tell which canonical pixels that photo
saw and sample them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.geometry.camera import intrinsics, project, view_from_yaw, view_transform
from facerecon.geometry.mesh import depth_to_points, face_normals, grid_faces, mask_faces, pixel_grid
from facerecon.render.rasterizer import rasterize
from facerecon.render.shading import interpolate


@dataclass
class Reprojection:
    """A source image re-rendered in a new view (all (S, S[, k]) numpy arrays)."""

    rgb: np.ndarray  # float32 (S, S, C), 0 on background
    mask: np.ndarray  # bool (S, S): pixels the mesh covers
    source_xy: np.ndarray  # float32 (S, S, 2): source (column, row) shown at each pixel, −1 on background
    source_facing: np.ndarray  # float32 (S, S): cos(source ray, surface normal), 0 on background
    depth: np.ndarray  # float32 (S, S): camera Z in the new view, 0 on background


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _view_tensor(view, yaw_deg) -> Tensor:
    if (view is None) == (yaw_deg is None):
        raise ValueError("give exactly one of view (6-vector) or yaw_deg")
    if view is None:
        return view_from_yaw(float(yaw_deg), dtype=torch.float64)
    v = torch.as_tensor(_np(view), dtype=torch.float64).reshape(1, -1)
    if v.shape[1] != 6:
        raise ValueError(f"view must have 6 entries (rx, ry, rz, tx, ty, tz), got {v.shape[1]}")
    return v


def reproject(image, depth, mask=None, *, view=None, yaw_deg: float | None = None, fov: float = 10.0,
              out_size: int | tuple[int, int] | None = None, rot_center_depth: float = 1.0) -> Reprojection:
    """Render ``image`` (H, W, C) float, lying on ``depth`` (H, W), from a new viewpoint.

    ``mask`` (H, W) bool keeps only triangles whose three vertices are inside it (default: all).
    The viewpoint is ``view`` = (rx, ry, rz, tx, ty, tz) or just ``yaw_deg`` (degrees, positive
    turns the nose toward the image left), applied about ``(0, 0, rot_center_depth)``. The
    output has the same field of view; ``out_size`` (default: the source size) only changes the
    resolution, since points are in camera units, not pixels.
    """
    img = torch.as_tensor(_np(image), dtype=torch.float32)
    if img.dim() == 2:
        img = img.unsqueeze(-1)
    d = torch.as_tensor(_np(depth), dtype=torch.float64)
    H, W = d.shape
    if img.shape[:2] != (H, W):
        raise ValueError(f"image {tuple(img.shape[:2])} and depth {(H, W)} must have the same size")
    if out_size is None:
        out_size = (H, W)
    elif isinstance(out_size, int):
        out_size = (out_size, out_size)
    vt = _view_tensor(view, yaw_deg)
    faces = grid_faces(H, W)
    if mask is not None:
        faces = mask_faces(faces, torch.as_tensor(_np(mask)).bool())
    canon = depth_to_points(d.unsqueeze(0), fov)  # (1, HW, 3) in the source camera
    verts = view_transform(canon, vt, rot_center_depth)
    frag = rasterize(verts, faces, out_size, fov)
    cover = frag.mask[0]
    src_xy = interpolate(frag, faces, pixel_grid(H, W, dtype=torch.float64).unsqueeze(0))[0]
    grid = src_xy / src_xy.new_tensor([max(W - 1, 1), max(H - 1, 1)]) * 2.0 - 1.0
    rgb = F.grid_sample(img.permute(2, 0, 1).unsqueeze(0), grid.unsqueeze(0).float(), mode="bilinear",
                        padding_mode="border", align_corners=True)[0].permute(1, 2, 0)
    rgb = rgb * cover.unsqueeze(-1)
    # how squarely the source camera saw each triangle (bridging triangles: ~0)
    fn = face_normals(canon, faces)[0]
    centroid = canon[0][faces].mean(1)
    facing = (-(fn * centroid).sum(-1) / (fn.norm(dim=-1) * centroid.norm(dim=-1)).clamp_min(1e-20)).clamp_min(0)
    facing_px = torch.where(cover, facing[frag.pix_to_face[0].clamp_min(0)], facing.new_zeros(()))
    src_xy = torch.where(cover.unsqueeze(-1), src_xy, src_xy.new_tensor(-1.0))
    return Reprojection(rgb=rgb.numpy().astype(np.float32), mask=cover.numpy(),
                        source_xy=src_xy.numpy().astype(np.float32),
                        source_facing=facing_px.numpy().astype(np.float32),
                        depth=frag.zbuf[0].numpy().astype(np.float32))


def render_from_view(image, depth, mask=None, view=None, yaw_deg: float | None = None, fov: float = 10.0,
                     out_size: int | tuple[int, int] | None = None,
                     rot_center_depth: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb (S, S, C), mask (S, S) bool, source_xy (S, S, 2))`` of :func:`reproject`."""
    r = reproject(image, depth, mask, view=view, yaw_deg=yaw_deg, fov=fov, out_size=out_size,
                  rot_center_depth=rot_center_depth)
    return r.rgb, r.mask, r.source_xy


def hidden_in_source(rep: Reprojection, min_facing: float = 0.25) -> np.ndarray:
    """(S, S) bool: covered pixels whose surface the source camera saw too obliquely to trust.

    ``min_facing`` is a cosine: 0.25 ≈ surfaces within 14.5° of edge-on in the source.
    """
    return rep.mask & (rep.source_facing < min_facing)


def visibility_in_source(depth, view=None, fov: float = 10.0, *, yaw_deg: float | None = None, mask=None,
                         rot_center_depth: float = 1.0, tol_px: float = 2.0) -> np.ndarray:
    """(H, W) bool: canonical pixels a camera at ``view`` sees (on screen, not self-occluded).

    ``depth`` is the canonical (H, W) depth; the mesh is moved into ``view`` and z-buffered at
    the canonical resolution; a vertex is visible if it is no farther than the z-buffer at its
    projected pixel plus ``tol_px`` pixels' worth of depth, and its surface faces the camera.
    """
    d = torch.as_tensor(_np(depth), dtype=torch.float64)
    H, W = d.shape
    vt = _view_tensor(view, yaw_deg)
    faces = grid_faces(H, W)
    if mask is not None:
        faces = mask_faces(faces, torch.as_tensor(_np(mask)).bool())
    verts = view_transform(depth_to_points(d.unsqueeze(0), fov), vt, rot_center_depth)
    frag = rasterize(verts, faces, (H, W), fov)
    K = intrinsics(fov, H, W, dtype=torch.float64)
    uv = project(verts, K)[0]
    px = uv[:, 0].round().long()
    py = uv[:, 1].round().long()
    on = (px >= 0) & (px < W) & (py >= 0) & (py < H) & (verts[0, :, 2] > 0)
    z = verts[0, :, 2]
    zb = frag.zbuf[0][py.clamp(0, H - 1), px.clamp(0, W - 1)]
    tol = tol_px * z / (intrinsics(fov, H, W)[0, 0].item())
    near = frag.mask[0][py.clamp(0, H - 1), px.clamp(0, W - 1)] & (z <= zb + tol)
    # facing: vertex normal of the moved mesh against the ray to the vertex
    fn = face_normals(verts, faces)[0]
    vn = torch.zeros_like(verts[0]).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    facing = (vn * verts[0]).sum(-1) < 0
    used = torch.zeros(H * W, dtype=torch.bool)
    used[faces.reshape(-1)] = True
    return (on & near & facing & used).reshape(H, W).numpy()


def texture_from_view(photo, depth, view=None, fov: float = 10.0, *, yaw_deg: float | None = None, mask=None,
                      rot_center_depth: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample a photo taken at ``view`` onto the canonical grid: (texture (H, W, C), visible (H, W)).

    The inverse use of :func:`reproject`: every canonical pixel's surface point is moved into the
    photo's view, projected with the photo's own size (same fov), and the photo is sampled
    there. ``visible`` (from :func:`visibility_in_source`) says which texels are real; the rest
    are whatever lies in front of them in the photo and should be filled (e.g. mirrored).
    """
    img = torch.as_tensor(_np(photo), dtype=torch.float32)
    if img.dim() == 2:
        img = img.unsqueeze(-1)
    d = torch.as_tensor(_np(depth), dtype=torch.float64)
    H, W = d.shape
    Hp, Wp = img.shape[:2]
    vt = _view_tensor(view, yaw_deg)
    verts = view_transform(depth_to_points(d.unsqueeze(0), fov), vt, rot_center_depth)
    uv = project(verts, intrinsics(fov, Hp, Wp, dtype=torch.float64))[0]
    grid = (uv / uv.new_tensor([max(Wp - 1, 1), max(Hp - 1, 1)]) * 2.0 - 1.0).reshape(1, H, W, 2).float()
    tex = F.grid_sample(img.permute(2, 0, 1).unsqueeze(0), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)[0].permute(1, 2, 0)
    vis = visibility_in_source(d, vt[0], fov, mask=mask, rot_center_depth=rot_center_depth)
    return tex.numpy(), vis


__all__ = ["Reprojection", "hidden_in_source", "render_from_view", "reproject", "texture_from_view",
           "visibility_in_source"]
