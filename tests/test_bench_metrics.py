"""SIDE / MAD (Unsup3D's definitions) and the thesis's eq. 6.1 / 6.2, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from facerecon.bench import metrics


def _unit(deg: float) -> torch.Tensor:
    """Unit normal tilted by ``deg`` degrees from +z in the x-z plane."""
    r = math.radians(deg)
    return torch.tensor([math.sin(r), 0.0, math.cos(r)], dtype=torch.float64)


def test_side_is_the_masked_std_of_the_log_ratio():
    gt = torch.ones(1, 2, 2, dtype=torch.float64)
    # log ratios 0.00, 0.02 on the two masked pixels: mean 0.01, deviations ±0.01 → SIDE 0.01
    pred = torch.tensor([[[1.0, math.exp(0.02)], [math.exp(5.0), 7.0]]], dtype=torch.float64)
    mask = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert metrics.side(pred, gt, mask).item() == pytest.approx(0.01, abs=1e-9)
    # eq. 6.1 is the plain mean |Δ log d| over the same pixels: (0 + 0.02) / 2
    assert metrics.side_eq61(pred, gt, mask).item() == pytest.approx(0.01, abs=1e-9)


def test_side_ignores_a_global_scale_but_eq61_does_not():
    gt = torch.tensor([[[0.95, 1.0], [1.02, 1.07]]], dtype=torch.float64)
    mask = torch.ones(1, 2, 2)
    pred = 1.05 * gt
    assert metrics.side(pred, gt, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert metrics.side_eq61(pred, gt, mask).item() == pytest.approx(math.log(1.05), rel=1e-9)
    # log ratios (+0.02, -0.04): eq 6.1 = 0.03; SIDE = std of (0.02, -0.04) = 0.03
    pred2 = gt * torch.exp(torch.tensor([[[0.02, -0.04], [0.0, 0.0]]], dtype=torch.float64))
    m2 = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert metrics.side_eq61(pred2, gt, m2).item() == pytest.approx(0.03, abs=1e-12)
    assert metrics.side(pred2, gt, m2).item() == pytest.approx(0.03, abs=1e-12)


def test_mad_is_the_mean_angle_and_eq62_the_angle_of_the_mean_cosine():
    gt = torch.stack([_unit(0.0), _unit(0.0)]).view(1, 1, 2, 3)
    pred = torch.stack([_unit(30.0), _unit(0.0)]).view(1, 1, 2, 3)
    mask = torch.ones(1, 1, 2)
    assert metrics.mad(pred, gt, mask).item() == pytest.approx(15.0, abs=1e-9)  # (30 + 0) / 2
    want = math.degrees(math.acos((math.cos(math.radians(30)) + 1.0) / 2.0))  # ≈ 21.09°
    assert metrics.mad_eq62(pred, gt, mask).item() == pytest.approx(want, abs=1e-9)


def test_unsup3d_normals_make_identical_flat_maps_differ_by_their_epsilon_floor():
    depth = torch.ones(1, 64, 64)
    f = 31.5 / math.tan(math.radians(5.0))  # project focal length at 64 px, FOV 10°
    length = (2.0 / f) ** 2  # |t_u × t_v| of a fronto-parallel plane at depth 1
    n = metrics.unsup3d_normals(depth, 10.0)
    assert n[0, 10, 10].tolist() == pytest.approx([0.0, 0.0, length / (length + 1e-7)], abs=1e-12)
    floor = math.degrees(math.acos((length / (length + 1e-7)) ** 2))  # ≈ 6.5°
    m = metrics.evaluate_depths(depth, depth, fov=10.0)
    assert m["mad"].item() == pytest.approx(floor, rel=1e-6)
    assert 5.0 < floor < 8.0
    assert m["mad_exact"].item() == pytest.approx(0.0, abs=1e-5)
    assert m["side"].item() == 0.0 and m["side_eq61"].item() == 0.0 and m["mad_eq62"].item() == pytest.approx(0, abs=1e-5)


def test_exact_normals_of_a_tilted_plane_are_its_plane_normal():
    # plane Z = 1 + a X seen through the project camera: depth along pixel ray x̂ is 1 / (1 - a x̂)
    a, S = 0.5, 32
    f = (S - 1) / 2 / math.tan(math.radians(5.0))
    xhat = (torch.arange(S, dtype=torch.float64) - (S - 1) / 2) / f
    depth = (1.0 / (1.0 - a * xhat)).view(1, 1, S).expand(1, S, S).contiguous()
    n = metrics.exact_normals(depth, 10.0)
    want = torch.tensor([-a, 0.0, 1.0], dtype=torch.float64) / math.sqrt(1 + a * a)
    assert torch.allclose(n[0, 1:-1, 1:-1], want.expand(S - 2, S - 2, 3), atol=1e-9)
    assert n[0, 0, 5].tolist() == [0.0, 0.0, 1.0]  # border convention


def test_eval_mask_erodes_both_masks_by_one_pixel_like_unsup3d():
    gt = torch.full((1, 6, 6), 1.1)
    gt[0, 1:5, 1:5] = 1.0  # 4×4 face on background at max_depth
    pred = torch.ones(1, 6, 6)
    m = metrics.eval_mask(pred, gt)
    want = torch.zeros(6, 6, dtype=torch.float64)
    want[2:4, 2:4] = 1.0
    assert torch.equal(m[0], want)
    # the prediction's far-clamped pixels (≥ max + margin = 1.2) are not scored either
    pred[0, 2, 2] = 1.2
    assert metrics.eval_mask(pred, gt)[0].sum().item() == 0.0  # erosion removes the 2×2 block's rest
    # a full-image mask loses its border (zero padding), as in Unsup3D
    assert metrics.erode(torch.ones(1, 5, 5))[0].sum().item() == 9.0


def test_evaluate_depths_scores_only_the_eroded_overlap_and_reports_pixels():
    gt = torch.full((2, 8, 8), 1.1)
    gt[:, 1:7, 1:7] = 1.0
    pred = gt.clone()
    pred[1, 3, 3] = 1.05  # a bump in the second image only
    out = metrics.evaluate_depths(pred, gt, gt < 1.1)
    assert out["pixels"].tolist() == [16.0, 16.0]
    assert out["side"][0].item() == 0.0 and out["side"][1].item() > 0.0
    assert out["mad_exact"][1].item() > out["mad_exact"][0].item()
    assert set(metrics.METRICS) <= set(out)
    with pytest.raises(ValueError, match="differ"):
        metrics.evaluate_depths(pred[:, :4], gt)


def test_no_tf32_restores_the_flags():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with metrics.no_tf32():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
