"""Differentiable mesh rendering in pure torch (rasterizer + shaders + Unsup3D warp).

``get_renderer`` (in ``neural_renderer_adapter``) picks neural_renderer when it is importable.
"""

from facerecon.render.rasterizer import Fragments, rasterize
from facerecon.render.shading import interpolate, render_depth, sample_texture, shade
from facerecon.render.warp import warp_canonical_to_view, warp_grid

__all__ = ["Fragments", "interpolate", "rasterize", "render_depth", "sample_texture", "shade",
           "warp_canonical_to_view", "warp_grid"]
