"""What to do with fragments: interpolate vertex attributes, sample textures, shade.

Kept separate from the rasterizer (pytorch3d's rasterizer/shader split) so each piece can be
tested on its own and the AE, the renders and the exporter combine them as they need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.render.rasterizer import Fragments, _batched_faces, rasterize


def interpolate(fragments: Fragments, faces: Tensor, attrs: Tensor) -> Tensor:
    """Per-pixel attributes (B, H, W, C) from per-vertex ``attrs`` (B, V, C); 0 on background.

    Differentiable w.r.t. ``attrs`` and (through the barycentrics) the vertex positions.
    """
    p2f, bary = fragments.pix_to_face, fragments.bary
    B, H, W = p2f.shape
    if attrs.dim() == 2:
        attrs = attrs.unsqueeze(0).expand(B, -1, -1)
    faces_b = _batched_faces(faces.to(device=attrs.device, dtype=torch.long), B)
    f = p2f.clamp_min(0).reshape(B, -1)  # (B, HW)
    vidx = torch.gather(faces_b, 1, f.unsqueeze(-1).expand(-1, -1, 3))  # (B, HW, 3)
    C = attrs.shape[-1]
    vals = torch.gather(attrs, 1, vidx.reshape(B, -1, 1).expand(-1, -1, C)).reshape(B, H * W, 3, C)
    out = (bary.reshape(B, H * W, 3, 1).to(vals.dtype) * vals).sum(2)
    return (out * (p2f >= 0).reshape(B, H * W, 1)).reshape(B, H, W, C)


def render_depth(verts: Tensor, faces: Tensor, image_size: tuple[int, int] | int, fov_deg: float | None = None,
                 K: Tensor | None = None, *, background: float = 0.0, **kw) -> tuple[Tensor, Tensor]:
    """Depth image (B, H, W) (camera Z, ``background`` where nothing is drawn) and its mask (B, H, W) bool."""
    frag = rasterize(verts, faces, image_size, fov_deg, K, **kw)
    mask = frag.mask
    depth = torch.where(mask, frag.zbuf, frag.zbuf.new_tensor(background))
    return depth, mask


def sample_texture(fragments: Fragments, faces: Tensor, uv: Tensor, texture: Tensor, *,
                   mode: str = "bilinear", padding_mode: str = "border") -> tuple[Tensor, Tensor]:
    """Texture colour (B, C, H, W) at every pixel and the mask (B, H, W) of covered pixels.

    ``uv`` (B, V, 2) or (V, 2) in [0, 1] per vertex ((0, 0) = centre of the texture's top-left
    texel, ``align_corners=True``); ``texture`` (B, C, Ht, Wt). Gradients reach the texture and,
    through the interpolated uv, the vertex positions. Background pixels are 0.
    """
    B = fragments.pix_to_face.shape[0]
    if uv.dim() == 2:
        uv = uv.unsqueeze(0).expand(B, -1, -1)
    if texture.shape[0] != B:
        texture = texture.expand(B, -1, -1, -1)
    puv = interpolate(fragments, faces, uv.to(texture.dtype))  # (B, H, W, 2)
    rgb = F.grid_sample(texture, puv * 2.0 - 1.0, mode=mode, padding_mode=padding_mode, align_corners=True)
    mask = fragments.mask
    return rgb * mask.unsqueeze(1).to(rgb.dtype), mask


def shade(normals: Tensor, light_dir: Tensor | tuple[float, float, float] = (0.0, 0.0, -1.0),
          ambient: float | Tensor = 0.4, diffuse: float | Tensor = 0.6) -> Tensor:
    """Lambertian shading ``ambient + diffuse · max(0, n·l)`` → (..., 1) for unit normals (..., 3).

    ``light_dir`` (3,) or (B, 3) points from the surface toward the light, in the same frame as
    the normals (normalised here). With camera-facing normals (``normals_from_depth`` default,
    n_z < 0) the default light is a head-on light from the camera. A (B, 3) light broadcasts
    over (B, H, W, 3) normals; ``ambient``/``diffuse`` may be (B,) tensors.
    """
    ld = torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device)
    ld = ld / ld.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if ld.dim() == 2:
        ld = ld.view(ld.shape[0], *([1] * (normals.dim() - 2)), 3)
    cos = (normals * ld).sum(-1, keepdim=True).clamp_min(0.0)
    amb = torch.as_tensor(ambient, dtype=normals.dtype, device=normals.device)
    dif = torch.as_tensor(diffuse, dtype=normals.dtype, device=normals.device)
    if amb.dim() == 1:
        amb = amb.view(-1, *([1] * (normals.dim() - 1)))
    if dif.dim() == 1:
        dif = dif.view(-1, *([1] * (normals.dim() - 1)))
    return amb + dif * cos
