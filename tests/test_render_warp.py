"""Unsup3D-style warp: identity at view 0, analytic plane geometry at a yaw, gradients."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facerecon.geometry.camera import focal_from_fov
from facerecon.render import warp_canonical_to_view, warp_grid

FOV = 10.0


def test_zero_view_is_identity():
    g = torch.Generator().manual_seed(0)
    S = 17
    depth = 1.0 + 0.03 * torch.rand(2, S, S, generator=g)
    grid, view_depth, mask = warp_grid(depth, torch.zeros(2, 6), FOV)
    lin = torch.linspace(-1, 1, S)
    ident = torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1)
    assert bool(mask.all())
    torch.testing.assert_close(grid, ident.expand_as(grid), atol=1e-4, rtol=0)
    torch.testing.assert_close(view_depth, depth, atol=1e-5, rtol=0)
    img = torch.rand(2, 3, S, S, generator=g)
    out, m, _ = warp_canonical_to_view(img, depth, torch.zeros(2, 6), FOV)
    torch.testing.assert_close(out, img, atol=1e-4, rtol=0)


def plane_truth(S: int, d0: float, yaw: float):
    """Where each view pixel's ray meets the yawed plane z = d0, and the canonical pixel it came from."""
    f = focal_from_fov(FOV, S)
    c = (S - 1) / 2
    v, u = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    ray = torch.stack([(u - c) / f, (v - c) / f, torch.ones_like(u)], -1)
    n = torch.tensor([math.sin(yaw), 0.0, math.cos(yaw)], dtype=torch.float64)  # R @ z
    t = (d0 - 1.0 + n[2]) / (ray @ n)  # n·(t r - C) = d0 - 1 with C = (0, 0, 1)
    x = ray * t.unsqueeze(-1)
    cy, sy = math.cos(yaw), math.sin(yaw)
    Rt = torch.tensor([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]], dtype=torch.float64)  # R^T
    p = (x - x.new_tensor([0, 0, 1.0])) @ Rt.T + x.new_tensor([0, 0, 1.0])
    pu = f * p[..., 0] / p[..., 2] + c
    pv = f * p[..., 1] / p[..., 2] + c
    return t, pu, pv


def test_yawed_plane_matches_ray_plane_geometry():
    S, d0, yaw = 21, 0.97, 0.35
    depth = torch.full((1, S, S), d0, dtype=torch.float64)
    view = torch.tensor([[0.0, yaw, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    grid, view_depth, mask = warp_grid(depth, view, FOV, depth_range=None)
    t, pu, pv = plane_truth(S, d0, yaw)
    inside = (pu > 0.5) & (pu < S - 1.5) & (pv > 0.5) & (pv < S - 1.5)
    assert inside.sum() > S * S / 3
    assert bool(mask[0][inside].all())
    torch.testing.assert_close(view_depth[0][inside], t[inside], atol=1e-9, rtol=0)
    gu = (grid[0, ..., 0] + 1) / 2 * (S - 1)
    gv = (grid[0, ..., 1] + 1) / 2 * (S - 1)
    torch.testing.assert_close(gu[inside], pu[inside], atol=1e-7, rtol=0)
    torch.testing.assert_close(gv[inside], pv[inside], atol=1e-7, rtol=0)


def test_positive_yaw_moves_a_near_point_left_by_the_predicted_amount():
    S, d0, yaw = 33, 0.93, 0.3
    depth = torch.full((1, S, S), d0)
    c = (S - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(S).float(), torch.arange(S).float(), indexing="ij")
    img = torch.exp(-((xx - c) ** 2 + (yy - c) ** 2) / 2.0).expand(1, 1, S, S)
    out, mask, _ = warp_canonical_to_view(img, depth, torch.tensor([[0.0, yaw, 0, 0, 0, 0]]), FOV,
                                          depth_range=None)
    w = out[0, 0]
    u_centroid = float((w * xx).sum() / w.sum())
    # the spot is at (0, 0, d0); turned about (0, 0, 1): x = sin(yaw) (d0 - 1), z = 1 + cos(yaw) (d0 - 1)
    x = math.sin(yaw) * (d0 - 1)
    z = 1 + math.cos(yaw) * (d0 - 1)
    u_expected = focal_from_fov(FOV, S) * x / z + c
    assert u_expected < c - 2  # left, by a visible amount
    assert abs(u_centroid - u_expected) < 0.15


def test_background_follows_unsup3d_and_mask_marks_it():
    S = 15
    depth = torch.full((1, S, S), 1.0)
    view = torch.tensor([[0.0, 0.0, 0.0, 0.05, 0.0, 0.0]])  # shifted right: left columns uncovered
    grid, view_depth, mask = warp_grid(depth, view, FOV, depth_range=(0.9, 1.1))
    assert not bool(mask[0, :, 0].any()) and bool(mask[0, :, -1].all())
    torch.testing.assert_close(view_depth[~mask], torch.full_like(view_depth[~mask], 1.2))
    img = torch.ones(1, 3, S, S)
    out, m, _ = warp_canonical_to_view(img, depth, view, FOV)
    assert bool((out[0][:, ~m[0]] == 0).all())


def test_gradients_reach_depth_and_view():
    S = 9
    g = torch.Generator().manual_seed(2)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, S, dtype=torch.float64),
                            torch.linspace(-1, 1, S, dtype=torch.float64), indexing="ij")
    base = (1.0 - 0.03 * torch.exp(-(xx ** 2 + yy ** 2))).unsqueeze(0)
    view = torch.tensor([[0.05, 0.2, 0.02, 0.0, 0.0, 0.0]], dtype=torch.float64)
    img = torch.rand(1, 1, S, S, generator=g, dtype=torch.float64)

    _, _, mask = warp_grid(base, view, FOV)
    keep = mask.clone()
    keep[:, [0, -1]] = False
    keep[:, :, [0, -1]] = False

    def f(d, vw):
        grid, vd, _ = warp_grid(d, vw, FOV)
        out = F.grid_sample(img, grid, align_corners=True)
        return out[0, 0][keep[0]], vd[keep]

    assert torch.autograd.gradcheck(f, (base.clone().requires_grad_(True), view.clone().requires_grad_(True)),
                                    eps=1e-7, atol=1e-5)
