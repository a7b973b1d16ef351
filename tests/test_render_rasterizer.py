"""The torch rasterizer against a brute-force z-buffer, plus gradients and the shading helpers."""

from __future__ import annotations

import math

import pytest
import torch

from facerecon.geometry.camera import intrinsics, project, view_transform
from facerecon.geometry.mesh import depth_to_points, grid_faces, grid_uv
from facerecon.render import interpolate, rasterize, render_depth, sample_texture, shade


def brute_force(verts: torch.Tensor, faces: torch.Tensor, H: int, W: int, K: torch.Tensor):
    """Every pixel × every face: nearest covering face (ties → smaller index), depth at the centre."""
    B = verts.shape[0]
    uv = project(verts, K)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=verts.dtype), torch.arange(W, dtype=verts.dtype), indexing="ij")
    p2f = torch.full((B, H, W), -1, dtype=torch.long)
    zbuf = torch.full((B, H, W), math.inf, dtype=verts.dtype)
    for b in range(B):
        fb = faces[b] if faces.dim() == 3 else faces
        for f, (i, j, k) in enumerate(fb.tolist()):
            (x0, y0), (x1, y1), (x2, y2) = uv[b, i].tolist(), uv[b, j].tolist(), uv[b, k].tolist()
            z = verts[b, [i, j, k], 2]
            if (z <= 1e-3).any():
                continue
            den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
            if abs(den) < 1e-12:
                continue
            w0 = ((y1 - y2) * (xx - x2) + (x2 - x1) * (yy - y2)) / den
            w1 = ((y2 - y0) * (xx - x2) + (x0 - x2) * (yy - y2)) / den
            w2 = 1 - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            depth = 1.0 / (w0 / z[0] + w1 / z[1] + w2 / z[2])
            take = inside & (depth < zbuf[b])
            zbuf[b][take] = depth[take]
            p2f[b][take] = f
    return p2f, torch.where(p2f >= 0, zbuf, torch.zeros_like(zbuf))


def random_mesh(seed: int, B: int, V: int, F: int, spread: float, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(B, V, 3, generator=g, dtype=dtype) * spread
    verts[..., 2] = 1.0 + torch.rand(B, V, generator=g, dtype=dtype) * 0.5
    faces = torch.randint(0, V, (F, 3), generator=g)
    return verts, faces


@pytest.mark.parametrize("seed,spread,H,W", [(0, 0.03, 20, 24), (1, 0.08, 16, 16)])
def test_matches_brute_force_zbuffer(seed, spread, H, W):
    # random triangle soup: boxes of every size, including bigger than the largest bucket
    verts, faces = random_mesh(seed, 2, 40, 60, spread)
    K = intrinsics(10.0, H, W, dtype=torch.float64)
    frag = rasterize(verts, faces, (H, W), K=K)
    ref_p2f, ref_z = brute_force(verts, faces, H, W, K)
    assert (ref_p2f >= 0).float().mean() > 0.2  # the test actually covers pixels
    assert torch.equal(frag.pix_to_face, ref_p2f)
    torch.testing.assert_close(frag.zbuf, ref_z, rtol=1e-9, atol=1e-9)


def test_folded_grid_mesh_matches_brute_force():
    # a rough depth grid turned by 50°: small, thin and overlapping triangles (bucket path)
    g = torch.Generator().manual_seed(5)
    depth = 1.0 + 0.02 * torch.rand(1, 12, 10, generator=g, dtype=torch.float64)
    verts = depth_to_points(depth, 10.0)
    c, s_ = math.cos(0.9), math.sin(0.9)
    rot = torch.tensor([[c, 0, s_], [0, 1, 0], [-s_, 0, c]], dtype=torch.float64)
    verts = (verts - verts.new_tensor([0, 0, 1.0])) @ rot.T + verts.new_tensor([0, 0, 1.0])
    faces = grid_faces(12, 10)
    K = intrinsics(10.0, 15, 13, dtype=torch.float64)
    frag = rasterize(verts, faces, (15, 13), K=K)
    ref_p2f, ref_z = brute_force(verts, faces, 15, 13, K)
    assert (ref_p2f >= 0).float().mean() > 0.2
    assert torch.equal(frag.pix_to_face, ref_p2f)
    torch.testing.assert_close(frag.zbuf, ref_z, rtol=1e-9, atol=1e-9)


def test_per_batch_faces_and_float32_match_brute_force():
    verts, _ = random_mesh(3, 3, 30, 1, 0.04, dtype=torch.float32)
    faces = torch.stack([torch.randint(0, 30, (50, 3), generator=torch.Generator().manual_seed(s)) for s in range(3)])
    K = intrinsics(10.0, 24, 24)
    frag = rasterize(verts, faces, 24, K=K)
    ref_p2f, ref_z = brute_force(verts.double(), faces, 24, 24, K.double())
    # float32 may flip a winner only where two faces are within rounding of each other
    same = frag.pix_to_face == ref_p2f
    assert same.float().mean() > 0.995
    torch.testing.assert_close(frag.zbuf, ref_z.float(), rtol=1e-4, atol=1e-4)


def test_huge_triangle_covers_screen_and_plane_depth_is_exact():
    # two triangles far larger than the image (the exact-enumeration path)
    d = 0.8
    s = 2.0
    verts = torch.tensor([[[-s, -s, d], [s, -s, d], [-s, s, d], [s, s, d]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [1, 2, 3]])
    depth, mask = render_depth(verts, faces, (40, 50), fov_deg=30.0)
    assert bool(mask.all())
    torch.testing.assert_close(depth, torch.full_like(depth, d))


def test_background_and_behind_camera():
    verts = torch.tensor([[[0.0, 0.0, -1.0], [0.1, 0.0, -1.0], [0.0, 0.1, -1.0]]])
    frag = rasterize(verts, torch.tensor([[0, 1, 2]]), (8, 8), fov_deg=60.0)
    assert bool((frag.pix_to_face == -1).all()) and bool((frag.zbuf == 0).all()) and bool((frag.bary == 0).all())


def test_nearer_surface_wins_regardless_of_order():
    def quad(z, off):
        return torch.tensor([[-1, -1, z], [1, -1, z], [-1, 1, z], [1, 1, z]], dtype=torch.float64), off
    far, _ = quad(2.0, 0)
    near, _ = quad(1.5, 4)
    verts = torch.cat([far, near]).unsqueeze(0)
    faces = torch.tensor([[0, 2, 1], [1, 2, 3], [4, 6, 5], [5, 6, 7]])
    for order in (faces, faces.flip(0)):
        depth, mask = render_depth(verts, order, 16, fov_deg=20.0)
        assert bool(mask.all())
        torch.testing.assert_close(depth, torch.full_like(depth, 1.5))


def test_interpolated_positions_lie_on_pixel_rays():
    # perspective-correct barycentrics: interpolating the 3D vertices gives the point on each
    # pixel's ray at the z-buffer depth
    g = torch.Generator().manual_seed(0)
    depth = 1.0 + 0.05 * torch.rand(1, 9, 9, generator=g, dtype=torch.float64)
    verts = depth_to_points(depth, 10.0)
    verts = view_transform(verts, torch.tensor([[0.2, 0.45, 0.1, 0.0, 0.0, 0.3]], dtype=torch.float64))
    faces = grid_faces(9, 9)
    frag = rasterize(verts, faces, (20, 20), fov_deg=10.0)
    pts = interpolate(frag, faces, verts)
    K = intrinsics(10.0, 20, 20, dtype=torch.float64)
    m = frag.mask[0]
    assert m.sum() > 50
    uv = project(pts[0][m].unsqueeze(0), K)[0]
    v, u = torch.nonzero(m, as_tuple=True)
    torch.testing.assert_close(uv, torch.stack([u, v], -1).double(), atol=1e-8, rtol=0)
    torch.testing.assert_close(pts[0][m][:, 2], frag.zbuf[0][m])


def test_gradcheck_bary_and_depth_wrt_vertices():
    verts = torch.tensor([[[-0.05, -0.04, 1.0], [0.06, -0.03, 1.1], [-0.02, 0.07, 0.95],
                           [0.07, 0.06, 1.05]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [1, 2, 3]])
    frag = rasterize(verts, faces, (12, 12), fov_deg=10.0)
    # keep pixels whose barycentrics are well inside their face, so tiny perturbations do not
    # change which face wins (the hard visibility decision has no gradient by design)
    keep = (frag.bary.amin(-1) > 0.05) & frag.mask
    assert keep.sum() >= 8

    def f(v):
        fr = rasterize(v, faces, (12, 12), fov_deg=10.0)
        return fr.bary[keep], fr.zbuf[keep]

    assert torch.autograd.gradcheck(f, (verts.clone().requires_grad_(True),), eps=1e-7, atol=1e-6)


def test_texture_sampling_gradients_reach_texture_and_vertices():
    H = W = 6
    depth = torch.full((1, H, W), 1.0, dtype=torch.float64)
    verts = depth_to_points(depth, 10.0).requires_grad_(True)
    faces = grid_faces(H, W)
    uv = grid_uv(H, W, dtype=torch.float64)
    tex = torch.rand(1, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(t, v):
        frag = rasterize(v, faces, (9, 9), fov_deg=10.0)
        rgb, _ = sample_texture(frag, faces, uv, t)
        return rgb

    assert torch.autograd.gradcheck(lambda t: f(t, verts.detach()), (tex.clone().requires_grad_(True),),
                                    eps=1e-6, atol=1e-6)
    rgb = f(tex, verts)
    rgb.sum().backward()
    assert verts.grad is not None and verts.grad.abs().sum() > 0
    # rendering the plane that fills the image reproduces the texture resampled on that grid
    frag = rasterize(verts.detach(), faces, (H, W), fov_deg=10.0)
    rgb, mask = sample_texture(frag, faces, uv, tex)
    ref = torch.nn.functional.interpolate(tex, size=(H, W), mode="bilinear", align_corners=True)
    assert bool(mask.all())
    torch.testing.assert_close(rgb, ref, atol=1e-9, rtol=0)


def test_shade_lambertian():
    n = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    s = shade(n, light_dir=(0.0, 0.0, -2.0), ambient=0.2, diffuse=0.8)[:, 0]
    torch.testing.assert_close(s, torch.tensor([1.0, 0.2, 0.2]))
    tilted = shade(torch.tensor([[0.0, 0.0, -1.0]]), light_dir=(0.0, math.sin(0.5), -math.cos(0.5)),
                   ambient=0.0, diffuse=1.0)
    torch.testing.assert_close(tilted[0, 0], torch.tensor(math.cos(0.5)))
    # per-batch lights over (B, H, W, 3) normals
    nb = torch.zeros(2, 3, 3, 3)
    nb[..., 2] = -1.0
    sb = shade(nb, torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]), ambient=torch.tensor([0.1, 0.3]), diffuse=1.0)
    assert sb.shape == (2, 3, 3, 1)
    torch.testing.assert_close(sb[0], torch.full((3, 3, 1), 1.1))
    torch.testing.assert_close(sb[1], torch.full((3, 3, 1), 0.3))
