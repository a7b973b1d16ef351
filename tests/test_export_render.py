"""Renders, turntable, maps and contact sheets: what a user looks at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facerecon.render.outputs import (
    contact_sheet,
    depth_to_png,
    normals_to_png,
    render_turntable,
    render_view,
    render_views,
    write_depth_png,
    write_gif,
    write_normals_png,
    write_png,
)

FOV = 10.0


def head(S: int = 40):
    """Face-like height field: half ellipsoid + nose; albedo grey with a red nose-tip dot."""
    y, x = (np.mgrid[0:S, 0:S] / (S - 1)) * 2 - 1
    r2 = (x / 0.8) ** 2 + (y / 0.9) ** 2
    depth = 1.05 - 0.07 * np.sqrt(np.clip(1 - r2, 0, None)) - 0.03 * np.exp(-(x ** 2 + y ** 2) / 0.015)
    albedo = np.full((S, S, 3), 0.6, np.float32)
    albedo[(x ** 2 + y ** 2) < 0.01] = [1.0, 0.0, 0.0]
    return depth.astype(np.float32), albedo, r2 < 0.8


def red_centroid(img: np.ndarray) -> tuple[float, float]:
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 3
    v, u = np.nonzero(red)
    return float(u.mean()), float(v.mean())


def test_front_view_unshaded_shows_the_albedo_on_a_white_background():
    depth, albedo, mask = head()
    img = render_view(depth, albedo, mask, FOV, 0.0, 80, shading=False)
    assert img.shape == (80, 80, 3) and img.dtype == np.uint8
    assert (img[0, 0] == 255).all() and (img[40, 2] == 255).all()  # outside the face
    assert abs(int(img[25, 40, 0]) - 153) <= 2  # grey albedo inside
    u, v = red_centroid(img)
    assert abs(u - 39.5) < 1.5 and abs(v - 39.5) < 1.5


def test_yaw_sign_and_light_direction():
    depth, albedo, mask = head()
    views = render_views(depth, albedo, mask, FOV, 96)
    assert set(views) == {"front", "45", "left90", "right90"}
    # positive yaw turns the nose (red tip) to the image left, negative to the right
    u45, _ = red_centroid(views["45"])
    assert u45 < 47.5 - 5
    neg = render_view(depth, albedo, mask, FOV, -45.0, 96)
    assert red_centroid(neg)[0] > 47.5 + 5
    # the default light comes from the upper left: that side of the face is brighter
    grey = np.full_like(albedo, 0.6)
    front = render_view(depth, grey, mask, FOV, 0.0, 96).astype(float)[..., 0]
    assert front[30:45, 25:40].mean() > front[55:70, 56:71].mean() + 10
    # the ±90° profiles of a symmetric head have mirror-image silhouettes
    left, right = (views[k].min(-1) < 255 for k in ("left90", "right90"))
    assert left.sum() > 200 and (left[:, ::-1] != right).mean() < 0.01


def test_turntable_frames_and_gif(tmp_path: Path):
    depth, albedo, mask = head(24)
    frames = render_turntable(depth, albedo, mask, FOV, 8, 48)
    assert len(frames) == 8 and all(f.shape == (48, 48, 3) for f in frames)
    np.testing.assert_array_equal(frames[0], render_view(depth, albedo, mask, FOV, 0.0, 48))
    assert not np.array_equal(frames[1], frames[0])
    explicit = render_turntable(depth, albedo, mask, FOV, [0.0, 30.0], 48)
    assert len(explicit) == 2
    path = write_gif(tmp_path / "turntable.gif", frames, fps=10)
    gif = Image.open(path)
    assert gif.n_frames == 8 and gif.info.get("loop") == 0 and gif.info.get("duration") == 100


def test_depth_and_normal_maps(tmp_path: Path):
    depth, _, mask = head(32)
    d16 = depth_to_png(depth, mask)
    assert d16.dtype == np.uint16 and d16[~mask].max() == 0
    assert d16[16, 16] == d16.max() == 65535  # the nose tip is nearest
    assert d16[mask].min() == 1
    col = depth_to_png(depth, mask, mode="color")
    assert col.shape == (32, 32, 3) and col.dtype == np.uint8
    nrm = normals_to_png(depth, mask, FOV)
    # right cheek faces right (+x → red up), forehead faces up (+y → green up), all face the viewer
    assert nrm[16, 26, 0] > 150 and nrm[5, 16, 1] > 150 and (nrm[mask][:, 2] > 128).all()
    flat = normals_to_png(np.ones((8, 8)), None, FOV)
    assert np.abs(flat.astype(int) - [128, 128, 255]).max() <= 2
    p1 = write_depth_png(tmp_path / "depth.png", depth, mask)
    p2 = write_normals_png(tmp_path / "normals.png", depth, mask, FOV)
    back = np.asarray(Image.open(p1))
    np.testing.assert_array_equal(back.astype(np.uint16), d16)
    assert np.asarray(Image.open(p2)).shape == (32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.png", "normals.png"]  # no temp files left


def test_contact_sheet_layout_and_labels(tmp_path: Path):
    imgs = [np.full((40, 30, 3), c, np.uint8) for c in (0, 80, 160)] + [np.zeros((20, 20, 3), np.float32)]
    sheet = contact_sheet(imgs, ["-90°", "a", "b", "+90°"], cols=2, pad=4)
    rows_h = (sheet.shape[0] - 4) // 2
    assert sheet.shape[1] == 2 * (30 + 4) + 4 and rows_h > 40 + 4
    label_band = sheet[4 + 40:4 + rows_h - 4, 4:34]
    assert (label_band < 128).any()  # text drawn under the first tile
    assert (sheet[4:44, 4:34] == 0).all() and (sheet[4:44, 38:68] == 80).all()
    unlabeled = contact_sheet(imgs[:2])
    assert unlabeled.shape == (4 + 40 + 4, 2 * 34 + 4, 3)
    write_png(tmp_path / "sheet.png", sheet)
    assert np.asarray(Image.open(tmp_path / "sheet.png")).shape == sheet.shape
