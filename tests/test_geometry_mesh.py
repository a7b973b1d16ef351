"""Depth-grid meshes: lifting, winding, masks, normals."""

from __future__ import annotations

import math
from collections import Counter

import torch

from facerecon.geometry.camera import focal_from_fov
from facerecon.geometry.mesh import (
    depth_to_points,
    face_normals,
    grid_faces,
    grid_uv,
    mask_faces,
    normals_from_depth,
    vertex_normals,
)


def test_depth_to_points_follows_the_pinhole_formula():
    H, W = 5, 7
    depth = torch.rand(1, H, W, dtype=torch.float64) + 0.9
    pts = depth_to_points(depth, 10.0).reshape(H, W, 3)
    f = focal_from_fov(10.0, W)
    v, u = 4, 1
    d = float(depth[0, v, u])
    torch.testing.assert_close(pts[v, u], torch.tensor([(u - 3) * d / f, (v - 2) * d / f, d], dtype=torch.float64))


def test_grid_faces_count_winding_and_manifold_edges():
    H, W = 4, 6
    faces = grid_faces(H, W)
    assert faces.shape == (2 * (H - 1) * (W - 1), 3) and faces.dtype == torch.long
    # a fronto-parallel plane: every face normal points to the camera (−z)
    pts = depth_to_points(torch.ones(1, H, W), 10.0)
    n = face_normals(pts, faces)[0]
    assert bool((n[:, 2] < 0).all())
    # consistent orientation: each directed edge appears once, interior edges in both directions
    directed = Counter()
    for a, b, c in faces.tolist():
        for e in ((a, b), (b, c), (c, a)):
            directed[e] += 1
    assert max(directed.values()) == 1
    interior = sum(1 for (a, b) in directed if (b, a) in directed) // 2
    assert interior == (H - 1) * (W - 2) + (H - 2) * (W - 1) + (H - 1) * (W - 1)


def test_grid_uv_corners_and_mask_faces():
    uv = grid_uv(3, 5)
    assert uv[0].tolist() == [0.0, 0.0] and uv[4].tolist() == [1.0, 0.0] and uv[-1].tolist() == [1.0, 1.0]
    faces = grid_faces(3, 3)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[0, 0] = False
    kept = mask_faces(faces, mask)
    assert len(kept) == len(faces) - 1 and not bool((kept == 0).any())


def test_normals_of_a_tilted_plane_and_a_sphere():
    S, fov = 33, 10.0
    f = focal_from_fov(fov, S)
    c = (S - 1) / 2
    v, u = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    # plane z = 1 + a x: depth along each pixel ray solves d = 1 + a (u - c) d / f
    a = 0.5
    depth = 1.0 / (1.0 - a * (u - c) / f)
    n = normals_from_depth(depth.unsqueeze(0), fov)[0]
    expect = torch.tensor([a, 0.0, -1.0], dtype=torch.float64) / math.sqrt(1 + a * a)
    torch.testing.assert_close(n, expect.expand_as(n), atol=1e-6, rtol=0)
    torch.testing.assert_close(normals_from_depth(depth.unsqueeze(0), fov, toward_camera=False)[0], -n)
    # sphere of radius r centred at (0, 0, zc): normals point from the centre outward (toward camera)
    r, zc = 0.05, 1.0
    ray = torch.stack([(u - c) / f, (v - c) / f, torch.ones_like(u)], -1)
    rn = ray.norm(dim=-1)
    b = zc / rn
    disc = b ** 2 - (zc ** 2 - r ** 2)
    inside = disc > 0.3 * r * r
    t = b - disc.clamp_min(0).sqrt()
    depth = torch.where(inside, t / rn, torch.full_like(t, zc))
    n = normals_from_depth(depth.unsqueeze(0), fov)[0]
    p = ray * depth.unsqueeze(-1)
    radial = (p - p.new_tensor([0, 0, zc])) / r
    core = inside.clone()
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            core &= torch.roll(inside, (dv, du), (0, 1))
    cos = (n[core] * radial[core]).sum(-1)
    assert core.sum() > 50 and float(cos.min()) > 0.995


def test_vertex_normals_are_unit_and_agree_with_faces_on_a_plane():
    pts = depth_to_points(torch.ones(2, 4, 4), 10.0)
    vn = vertex_normals(pts, grid_faces(4, 4))
    torch.testing.assert_close(vn.norm(dim=-1), torch.ones(2, 16))
    assert bool((vn[..., 2] < -0.99).all())
