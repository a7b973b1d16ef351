"""Unsup3D's photo-geometric decomposition and rendering, on top of :mod:`facerecon.ae.networks`.

An image is explained as canonical depth ``d``, canonical albedo ``a``, a light (ambient,
diffuse, direction) and a viewpoint. The canonical image is ``a · shading(normals(d), light)``;
it is warped into the view through ``d`` by the mesh renderer (:mod:`facerecon.render.warp`).
Every quantity is also built for the horizontally flipped depth and albedo (Unsup3D's symmetry
prior): the first half of each batch is the model, the second half its mirror twin.

Tensors: images in [0, 1] at the API, [-1, 1] inside (as Unsup3D); depth (B, H, W) in
``[min_depth, max_depth]`` with a fixed ``border_depth`` on the two outer columns each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.ae.networks import AeNets
from facerecon.config import AeModelParams
from facerecon.geometry.mesh import normals_from_depth
from facerecon.render.warp import warp_canonical_to_view


@dataclass
class Decomposition:
    """One forward pass. Batched quantities have 2B rows (model, then flipped twin) unless noted."""

    canon_depth: Tensor      # (2B, H, W)
    canon_albedo: Tensor     # (2B, 3, H, W) in [-1, 1]
    canon_normal: Tensor     # (2B, H, W, 3), Unsup3D orientation (n_z > 0 toward the light)
    canon_shading: Tensor    # (2B, 1, H, W)
    canon_image: Tensor      # (2B, 3, H, W) in [-1, 1]
    light: Tensor            # (2B, 4): ambient, diffuse, dx, dy (ambient/diffuse in [0, 1])
    view: Tensor             # (2B, 6): rx, ry, rz in radians; tx, ty, tz
    recon_depth: Tensor      # (2B, H, W) view depth
    recon_image: Tensor      # (2B, 3, H, W) in [-1, 1], 0 outside the mask
    recon_mask: Tensor       # (2B, 1, H, W) float: pixels both twins cover (detached)
    conf_l1: Tensor          # (B, 2, H, W) σ for reconstruction / flipped reconstruction
    conf_perc: Tensor        # (B, 2, H/4, W/4)

    @property
    def batch(self) -> int:
        return self.conf_l1.shape[0]


def to_model_range(images01: Tensor) -> Tensor:
    return images01 * 2.0 - 1.0


def depth_from_raw(raw: Tensor, p: AeModelParams) -> Tensor:
    """Network output (B, 1, H, W) → depth: mean-centred, tanh, rescaled, fixed border columns."""
    d = raw[:, 0]
    d = d - d.reshape(d.shape[0], -1).mean(1).view(-1, 1, 1)
    d = d.tanh()
    d = (1 + d) / 2 * p.max_depth + (1 - d) / 2 * p.min_depth
    w = d.shape[-1]
    border = torch.zeros_like(d[:1])
    if w > 4:
        border[..., :2] = 1.0
        border[..., -2:] = 1.0
    return d * (1 - border) + border * p.border_depth


def view_from_raw(raw: Tensor, p: AeModelParams) -> Tensor:
    """Encoder output in (-1, 1)⁶ → viewpoint (radians, depth units) within the model's ranges."""
    rot = raw[:, :3] * math.radians(p.xyz_rotation_range)
    txy = raw[:, 3:5] * p.xy_translation_range
    tz = raw[:, 5:] * p.z_translation_range
    return torch.cat([rot, txy, tz], 1)


def light_from_raw(raw: Tensor) -> Tensor:
    return torch.cat([raw[:, :2] / 2 + 0.5, raw[:, 2:]], 1)


def shading(normal: Tensor, light: Tensor) -> Tensor:
    """Lambertian: ambient + diffuse · max(0, n · l), l = normalise(dx, dy, 1) → (B, 1, H, W)."""
    direction = torch.cat([light[:, 2:4], torch.ones_like(light[:, :1])], 1)
    direction = direction / (direction ** 2).sum(1, keepdim=True).sqrt()
    diffuse = (normal * direction.view(-1, 1, 1, 3)).sum(-1).clamp(min=0).unsqueeze(1)
    return light[:, :1, None, None] + light[:, 1:2, None, None] * diffuse


def render(p: AeModelParams, depth: Tensor, albedo: Tensor, light: Tensor, view: Tensor) -> dict[str, Tensor]:
    """Canonical depth/albedo (B), light/view (B) → canonical and view-space images (all B)."""
    normal = normals_from_depth(depth, p.fov, toward_camera=False)
    shade = shading(normal, light)
    canon_image = (albedo / 2 + 0.5) * shade * 2 - 1
    recon_image, mask, recon_depth = warp_canonical_to_view(
        canon_image, depth, view, p.fov, depth_range=(p.min_depth, p.max_depth))
    return {"canon_normal": normal, "canon_shading": shade, "canon_image": canon_image,
            "recon_image": recon_image, "recon_depth": recon_depth, "mask": mask}


def decompose(nets: AeNets, p: AeModelParams, images01: Tensor, canon_images01: Tensor | None = None) -> Decomposition:
    """Full Unsup3D forward for a batch of images in [0, 1].

    ``canon_images01`` (1 or B images) supplies the canonical depth and albedo instead of the
    images themselves: the fine-tuning of ``ae_optimize`` explains every view of one face with
    the depth and albedo of its front view, while light, viewpoint and confidence stay per view.
    """
    x = to_model_range(images01)
    src = x if canon_images01 is None else to_model_range(canon_images01)
    b = x.shape[0]
    depth = depth_from_raw(nets.depth(src), p)
    albedo = nets.albedo(src)
    if depth.shape[0] != b:
        depth, albedo = depth.expand(b, -1, -1), albedo.expand(b, -1, -1, -1)
    depth = torch.cat([depth, depth.flip(2)], 0)
    albedo = torch.cat([albedo, albedo.flip(3)], 0)
    light = light_from_raw(nets.light(x)).repeat(2, 1)
    view = view_from_raw(nets.view(x), p).repeat(2, 1)
    r = render(p, depth, albedo, light, view)
    mask = r["mask"].float()
    both = (mask[:b] * mask[b:]).repeat(2, 1, 1).unsqueeze(1).detach()
    conf_l1, conf_perc = nets.conf(x)
    return Decomposition(
        canon_depth=depth, canon_albedo=albedo, canon_normal=r["canon_normal"], canon_shading=r["canon_shading"],
        canon_image=r["canon_image"], light=light, view=view, recon_depth=r["recon_depth"],
        recon_image=r["recon_image"] * both, recon_mask=both, conf_l1=conf_l1, conf_perc=conf_perc,
    )


def view_depth(nets: AeNets, p: AeModelParams, images01: Tensor) -> Tensor:
    """Predicted depth of each image in its own view (B, H, W): what SIDE/MAD score."""
    return decompose(nets, p, images01).recon_depth[: images01.shape[0]]


def _view_mask_depth(dec: Decomposition, p: AeModelParams) -> Tensor:
    """View depth with pixels outside the reconstruction pushed to the far clamp (for evaluation)."""
    b = dec.batch
    far = p.max_depth + (p.max_depth - p.min_depth) / 2
    return torch.where(dec.recon_mask[:b, 0] > 0, dec.recon_depth[:b], dec.recon_depth.new_tensor(far))


def predict(nets: AeNets, p: AeModelParams, image01: Tensor) -> dict[str, Tensor]:
    """Outputs for one image (3, H, W) or a batch (B, 3, H, W), model half only, images in [0, 1]."""
    single = image01.dim() == 3
    x = image01[None] if single else image01
    x = F.interpolate(x, size=(p.image_size, p.image_size), mode="bilinear", align_corners=False,
                      antialias=True) if x.shape[-1] != p.image_size else x
    dec = decompose(nets, p, x.to(next(nets.parameters()).dtype))
    b = x.shape[0]
    out = {
        "canon_depth": dec.canon_depth[:b],
        "canon_albedo": dec.canon_albedo[:b] / 2 + 0.5,
        "canon_shading": dec.canon_shading[:b, 0],
        "canon_image": dec.canon_image[:b] / 2 + 0.5,
        "recon_image": (dec.recon_image[:b] / 2 + 0.5).clamp(0, 1),
        "recon_depth": _view_mask_depth(dec, p),
        "recon_mask": dec.recon_mask[:b, 0],
        "conf": dec.conf_l1[:, 0],
        "light": dec.light[:b],
        "view": dec.view[:b],
    }
    return {k: v[0] for k, v in out.items()} if single else out
