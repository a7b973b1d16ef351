"""Unsup3D's reprojection: the canonical image seen from a viewpoint, through its canonical depth.

The photo-geometric autoencoder reconstructs an input image as "canonical albedo·shading, warped
by the predicted viewpoint". The warp is a backward map, as in Unsup3D's renderer:

1. lift the canonical depth grid to a mesh (one vertex per pixel) and move it into the view;
2. rasterize that mesh in the view → view depth per pixel (the mesh renderer, so no holes);
3. lift every view pixel with that depth, move it back to the canonical frame, and project it
   into the canonical image → a sampling grid for ``F.grid_sample``.

Semantics kept from Unsup3D (its torch-1.2-era code normalises by ``W - 1``):
* the grid is in ``align_corners=True`` units: −1 / +1 are the centres of the border pixels;
* pixels the mesh does not cover get the far depth ``max_depth + margin`` (``margin`` = half the
  depth range), all view depths are clamped to ``[min_depth - margin, max_depth + margin]``, and
  the mask marks covered pixels (Unsup3D: ``depth < max_depth + margin``);
* ``warp_canonical_to_view`` samples bilinearly with zero padding and zeroes background pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.geometry.camera import intrinsics, inverse_view_transform, project, unproject, view_transform
from facerecon.geometry.mesh import depth_to_points, grid_faces, pixel_grid
from facerecon.render.rasterizer import rasterize


def warp_grid(canon_depth: Tensor, view: Tensor, fov: float, rot_center_depth: float = 1.0, *,
              depth_range: tuple[float, float] | None = (0.9, 1.1)) -> tuple[Tensor, Tensor, Tensor]:
    """Sampling grid (B, H, W, 2), view depth (B, H, W) and coverage mask (B, H, W) bool.

    ``grid`` is for ``F.grid_sample(canonical_image, grid, align_corners=True)``: it maps each
    view pixel to the canonical pixel showing the same surface point. ``view`` (B, 6) follows
    ``facerecon.geometry.camera``. ``depth_range`` is Unsup3D's (min_depth, max_depth) used for
    the background depth and the clamp (module doc); ``None`` turns the clamp off and puts the
    background at the canonical depth's maximum. Differentiable w.r.t. depth and view.
    """
    B, H, W = canon_depth.shape
    K = intrinsics(fov, H, W, dtype=canon_depth.dtype, device=canon_depth.device)
    verts = view_transform(depth_to_points(canon_depth, K=K), view, rot_center_depth)
    frag = rasterize(verts, grid_faces(H, W, device=canon_depth.device), (H, W), K=K)
    mask = frag.mask
    if depth_range is not None:
        lo, hi = depth_range
        margin = (hi - lo) / 2.0
        far = hi + margin
        view_depth = torch.where(mask, frag.zbuf, frag.zbuf.new_tensor(far)).clamp(lo - margin, far)
        mask = mask & (view_depth < far)
    else:
        far = canon_depth.detach().amax(dim=(1, 2)).view(B, 1, 1)
        view_depth = torch.where(mask, frag.zbuf, far.expand_as(frag.zbuf))
    uv = pixel_grid(H, W, dtype=canon_depth.dtype, device=canon_depth.device).unsqueeze(0).expand(B, -1, -1)
    pts = inverse_view_transform(unproject(uv, view_depth.reshape(B, -1), K), view, rot_center_depth)
    puv = project(pts, K)
    scale = puv.new_tensor([max(W - 1, 1), max(H - 1, 1)])
    grid = (puv / scale * 2.0 - 1.0).reshape(B, H, W, 2)
    return grid, view_depth, mask


def warp_canonical_to_view(canon_image: Tensor, canon_depth: Tensor, view: Tensor, fov: float,
                           rot_center_depth: float = 1.0, *,
                           depth_range: tuple[float, float] | None = (0.9, 1.1)) -> tuple[Tensor, Tensor, Tensor]:
    """The canonical image (B, C, H, W) as seen from ``view``: (image, mask (B, H, W), view depth).

    Background pixels (mask False) are 0, like Unsup3D's masked reconstruction.
    """
    grid, view_depth, mask = warp_grid(canon_depth, view, fov, rot_center_depth, depth_range=depth_range)
    img = F.grid_sample(canon_image, grid.to(canon_image.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return img * mask.unsqueeze(1).to(img.dtype), mask, view_depth
