"""Optional bridge to ``neural_renderer`` (the CUDA rasterizer Unsup3D was trained with).

``neural-renderer-pytorch`` does not build on current torch, so the project's own rasterizer is
the default everywhere. Where someone has a working build (old torch + CUDA), ``get_renderer``
hands out an adapter with the same two calls as :class:`TorchRenderer`, so results can be
compared against the renderer of the original paper.

Both renderers take camera-frame vertices and a pinhole K in the project convention (pixel
centres at integers). neural_renderer puts pixel centres at half-integers of its normalised
device grid (pixel i ↔ NDC ``(2i + 1 - S) / S`` with ``u_ndc = 2 (u - S/2) / S``), so the
adapter shifts the principal point by half a pixel to land on the same pixels.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.errors import ConfigError
from facerecon.render.rasterizer import rasterize
from facerecon.render.shading import render_depth, sample_texture

RENDERERS = ("auto", "torch", "neural_renderer")


class MeshRenderer(Protocol):
    """What the AE and the exporter need from a renderer (square or rectangular images)."""

    name: str

    def render_depth(self, verts: Tensor, faces: Tensor, image_size: tuple[int, int],
                     K: Tensor) -> tuple[Tensor, Tensor]:
        """(depth (B, H, W) with 0 on background, mask (B, H, W) bool)."""
        ...

    def render_rgb(self, verts: Tensor, faces: Tensor, uv: Tensor, texture: Tensor, image_size: tuple[int, int],
                   K: Tensor) -> tuple[Tensor, Tensor]:
        """(rgb (B, C, H, W) with 0 on background, mask (B, H, W) bool); uv (B, V, 2) in [0, 1]."""
        ...


class TorchRenderer:
    """The project's pure-torch rasterizer behind the :class:`MeshRenderer` calls."""

    name = "torch"

    def render_depth(self, verts, faces, image_size, K):
        return render_depth(verts, faces, image_size, K=K)

    def render_rgb(self, verts, faces, uv, texture, image_size, K):
        frag = rasterize(verts, faces, image_size, K=K)
        return sample_texture(frag, faces, uv, texture)


def _square(image_size: tuple[int, int] | int) -> int:
    if isinstance(image_size, int):
        return image_size
    h, w = image_size
    if h != w:
        raise ValueError(f"neural_renderer renders square images only, got {h}x{w}")
    return int(h)


class NeuralRendererAdapter:
    """:class:`MeshRenderer` calls delegated to a ``neural_renderer`` module (``nr.Renderer``)."""

    name = "neural_renderer"

    def __init__(self, module: ModuleType, near: float = 0.1, far: float = 10.0) -> None:
        self.nr = module
        self.near, self.far = near, far

    def _renderer(self, size: int, K: Tensor, verts: Tensor):
        K = K.to(verts).reshape(-1, 3, 3).clone()
        K[:, 0, 2] += 0.5  # project pixel centres (integers) onto nr's half-integer grid
        K[:, 1, 2] += 0.5
        b = K.shape[0]
        R = torch.eye(3, dtype=verts.dtype, device=verts.device).expand(b, 3, 3)
        t = torch.zeros(b, 1, 3, dtype=verts.dtype, device=verts.device)
        return self.nr.Renderer(camera_mode="projection", K=K, R=R, t=t, image_size=size, orig_size=size,
                                near=self.near, far=self.far, fill_back=True, anti_aliasing=False,
                                light_intensity_ambient=1.0, light_intensity_directional=0.0,
                                background_color=[0.0, 0.0, 0.0])

    @staticmethod
    def _faces(faces: Tensor, batch: int) -> Tensor:
        if faces.dim() == 2:
            faces = faces.unsqueeze(0).expand(batch, -1, -1)
        return faces.int().contiguous()

    def render_depth(self, verts, faces, image_size, K):
        size = _square(image_size)
        depth = self._renderer(size, K, verts).render_depth(verts, self._faces(faces, verts.shape[0]))
        mask = depth < self.far * 0.999
        return torch.where(mask, depth, torch.zeros_like(depth)), mask

    def render_rgb(self, verts, faces, uv, texture, image_size, K):
        size = _square(image_size)
        b = verts.shape[0]
        fb = self._faces(faces, b).long()
        if uv.dim() == 2:
            uv = uv.unsqueeze(0).expand(b, -1, -1)
        # vertex colours from the uv texture, then nr's 2×2×2 per-face texture cube whose trilinear
        # interpolation at barycentrics (w0, w1, w2) is exactly w0 c0 + w1 c1 + w2 c2
        vcol = F.grid_sample(texture, uv.unsqueeze(1) * 2 - 1, align_corners=True)[:, :, 0].transpose(1, 2)
        c = torch.stack([torch.gather(vcol, 1, fb[..., i:i + 1].expand(-1, -1, vcol.shape[-1]))
                         for i in range(3)], 2)  # (B, F, 3, C)
        corner = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=c.dtype,
                              device=c.device)  # (8, 3)
        cube = torch.einsum("nk,bfkc->bfnc", corner, c).reshape(b, c.shape[1], 2, 2, 2, c.shape[-1])
        rgb = self._renderer(size, K, verts).render_rgb(verts, fb.int(), cube)
        _, mask = self.render_depth(verts, faces, size, K)
        return rgb * mask.unsqueeze(1).to(rgb.dtype), mask


def _import_nr() -> ModuleType | None:
    try:
        return importlib.import_module("neural_renderer")
    except Exception:  # a broken build raises all sorts of errors at import
        return None


def get_renderer(name: str = "auto") -> MeshRenderer:
    """The renderer called ``name``: "torch", "neural_renderer", or "auto".

    "auto" picks neural_renderer only when it imports *and* CUDA is available (it has no CPU
    kernels); otherwise the pure-torch renderer. Asking for "neural_renderer" explicitly when
    it cannot be imported is a :class:`ConfigError`.
    """
    if name not in RENDERERS:
        raise ConfigError(f"renderer: unknown renderer {name!r}; choose one of {', '.join(RENDERERS)}")
    if name == "torch":
        return TorchRenderer()
    nr = _import_nr()
    if name == "neural_renderer":
        if nr is None:
            raise ConfigError("renderer: 'neural_renderer' was requested but `import neural_renderer` fails "
                              "(neural-renderer-pytorch needs an old torch + CUDA build); use 'torch'")
        return NeuralRendererAdapter(nr)
    if nr is not None and torch.cuda.is_available():
        return NeuralRendererAdapter(nr)
    return TorchRenderer()
