"""Camera conventions every module relies on (common.md): intrinsics, rotation order, yaw sign, α → yaw."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from facerecon.geometry.camera import (
    focal_from_fov,
    intrinsics,
    inverse_view_transform,
    project,
    rotation_matrix,
    unproject,
    view_from_yaw,
    view_transform,
    yaw_alpha,
)


def test_focal_puts_the_half_fov_ray_on_the_border_pixel_centre():
    W = 64
    K = intrinsics(10.0, 48, W, dtype=torch.float64)
    assert K[0, 0] == K[1, 1] == focal_from_fov(10.0, W)
    assert K[0, 2] == (W - 1) / 2 and K[1, 2] == (48 - 1) / 2
    edge = torch.tensor([[[math.tan(math.radians(5.0)) * 2.0, 0.0, 2.0]]], dtype=torch.float64)
    uv = project(edge, K)
    assert abs(float(uv[0, 0, 0]) - (W - 1)) < 1e-9 and abs(float(uv[0, 0, 1]) - 23.5) < 1e-9


def test_rotation_is_rx_ry_rz_in_that_order():
    g = np.random.default_rng(0)
    ang = g.uniform(-1.5, 1.5, size=(5, 3))
    R = rotation_matrix(*torch.tensor(ang).T)
    # scipy's intrinsic "XYZ" Euler angles are exactly Rx(a) @ Ry(b) @ Rz(c)
    ref = Rotation.from_euler("XYZ", ang).as_matrix()
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-12)
    assert rotation_matrix(0.1, 0.2, 0.3).shape == (1, 3, 3)


def test_positive_yaw_moves_the_nose_left_and_inverse_undoes_the_view():
    K = intrinsics(10.0, 64, 64, dtype=torch.float64)
    nose = torch.tensor([[[0.0, 0.0, 0.9]]], dtype=torch.float64)  # closer than the rotation centre
    u0 = project(nose, K)[0, 0, 0]
    u = project(view_transform(nose, view_from_yaw(20.0, dtype=torch.float64)), K)[0, 0, 0]
    assert u < u0 - 1
    view = torch.tensor([[0.2, -0.4, 0.3, 0.01, -0.02, 0.05]], dtype=torch.float64)
    pts = torch.rand(1, 10, 3, dtype=torch.float64) + 0.5
    back = inverse_view_transform(view_transform(pts, view, 1.1), view, 1.1)
    torch.testing.assert_close(back, pts)
    # rotation leaves the centre (0, 0, c) fixed; translation moves it by t
    c = torch.tensor([[[0.0, 0.0, 1.1]]], dtype=torch.float64)
    torch.testing.assert_close(view_transform(c, view, 1.1), c + view[:, 3:].unsqueeze(1))


def test_five_and_three_vectors_like_unsup3d():
    pts = torch.rand(1, 4, 3) + 0.5
    v6 = torch.tensor([[0.1, 0.2, 0.3, 0.04, 0.05, 0.0]])
    torch.testing.assert_close(view_transform(pts, v6[:, :5]), view_transform(pts, v6))
    torch.testing.assert_close(view_transform(pts, v6[:, :3]), view_transform(pts, torch.cat([v6[:, :3],
                                                                                            torch.zeros(1, 3)], 1)))


def test_yaw_alpha_spans_the_thesis_sweep():
    assert yaw_alpha(-10) == -90.0 and yaw_alpha(9) == 90.0
    sweep = [yaw_alpha(a) for a in range(-7, 7)]
    assert len(sweep) == 14 and np.allclose(np.diff(sweep), 180 / 19)
    assert abs(yaw_alpha(-0.5)) < 1e-12  # the middle of the span is frontal


def test_unproject_inverts_project():
    K = intrinsics(12.0, 30, 40, dtype=torch.float64)
    pts = torch.rand(2, 7, 3, dtype=torch.float64) * 0.1
    pts[..., 2] += 1.0
    torch.testing.assert_close(unproject(project(pts, K), pts[..., 2], K), pts)
