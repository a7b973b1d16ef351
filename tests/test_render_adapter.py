"""Renderer selection and the neural_renderer adapter's call plumbing (fake module: nr needs CUDA)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from facerecon.errors import ConfigError
from facerecon.geometry.camera import intrinsics
from facerecon.geometry.mesh import depth_to_points, grid_faces, grid_uv
from facerecon.render import rasterize
from facerecon.render.neural_renderer_adapter import NeuralRendererAdapter, TorchRenderer, get_renderer


class FakeNR(types.ModuleType):
    """Stands in for neural_renderer: records constructor/call arguments, renders with our rasterizer."""

    def __init__(self):
        super().__init__("neural_renderer")
        self.calls = []
        fake = self

        class Renderer:
            def __init__(self, **kw):
                fake.calls.append(("init", kw))
                self.kw = kw

            def _K(self):  # undo the adapter's half-pixel shift so we can render with our own code
                K = self.kw["K"].clone()
                K[:, :2, 2] -= 0.5
                return K

            def render_depth(self, vertices, faces):
                fake.calls.append(("render_depth", vertices.shape, faces.dtype))
                frag = rasterize(vertices, faces.long(), self.kw["image_size"], K=self._K()[0])
                return torch.where(frag.mask, frag.zbuf, torch.full_like(frag.zbuf, self.kw["far"]))

            def render_rgb(self, vertices, faces, textures):
                fake.calls.append(("render_rgb", textures.shape))
                frag = rasterize(vertices, faces.long(), self.kw["image_size"], K=self._K()[0])
                # trilinear lookup of the 2×2×2 cube at the barycentrics (nr's texture sampling)
                w = frag.bary
                f = frag.pix_to_face.clamp_min(0)
                cube = textures[torch.arange(vertices.shape[0])[:, None, None], f]  # (B, H, W, 2, 2, 2, C)
                out = 0
                for i in (0, 1):
                    for j in (0, 1):
                        for k in (0, 1):
                            wt = ((w[..., 0] if i else 1 - w[..., 0]) * (w[..., 1] if j else 1 - w[..., 1])
                                  * (w[..., 2] if k else 1 - w[..., 2]))
                            out = out + wt.unsqueeze(-1) * cube[..., i, j, k, :]
                return out.permute(0, 3, 1, 2)

        self.Renderer = Renderer


@pytest.fixture
def fake_nr(monkeypatch):
    mod = FakeNR()
    monkeypatch.setitem(sys.modules, "neural_renderer", mod)
    return mod


def test_selection_without_neural_renderer(monkeypatch):
    monkeypatch.setitem(sys.modules, "neural_renderer", None)  # import fails
    assert isinstance(get_renderer("auto"), TorchRenderer)
    assert isinstance(get_renderer("torch"), TorchRenderer)
    with pytest.raises(ConfigError, match="neural_renderer"):
        get_renderer("neural_renderer")
    with pytest.raises(ConfigError, match="unknown renderer"):
        get_renderer("opengl")


def test_auto_picks_neural_renderer_only_with_cuda(fake_nr, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert isinstance(get_renderer("auto"), TorchRenderer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert isinstance(get_renderer("auto"), NeuralRendererAdapter)
    assert isinstance(get_renderer("neural_renderer"), NeuralRendererAdapter)


def test_adapter_plumbing_matches_the_torch_renderer(fake_nr):
    S = 12
    g = torch.Generator().manual_seed(0)
    depth = 1.0 + 0.02 * torch.rand(2, S, S, generator=g)
    verts = depth_to_points(depth, 10.0)
    faces = grid_faces(S, S)
    K = intrinsics(10.0, S, S)
    nr = get_renderer("neural_renderer")
    ours = get_renderer("torch")
    d_nr, m_nr = nr.render_depth(verts, faces, (S, S), K)
    d_t, m_t = ours.render_depth(verts, faces, (S, S), K)
    assert torch.equal(m_nr, m_t)
    torch.testing.assert_close(d_nr, d_t)
    init = fake_nr.calls[0][1]
    assert init["camera_mode"] == "projection" and init["image_size"] == S and init["fill_back"] is True
    assert float(init["K"][0, 0, 2]) == (S - 1) / 2 + 0.5  # half-pixel convention shift
    assert fake_nr.calls[1][2] == torch.int32  # nr wants int32 faces
    # a linear texture (colour = uv) is reproduced exactly through the vertex-colour cube
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 5), torch.linspace(0, 1, 5), indexing="ij")
    tex = torch.stack([xx, yy, xx * 0 + 0.5]).unsqueeze(0).expand(2, -1, -1, -1)
    uv = grid_uv(S, S)
    rgb_nr, _ = nr.render_rgb(verts, faces, uv, tex, (S, S), K)
    rgb_t, _ = ours.render_rgb(verts, faces, uv, tex, (S, S), K)
    assert rgb_nr.shape == (2, 3, S, S)
    torch.testing.assert_close(rgb_nr, rgb_t, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="square"):
        nr.render_depth(verts, faces, (S, S + 1), K)
