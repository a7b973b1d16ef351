"""FFHQ alignment: the crop quad from eyes/mouth and the warp that samples it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facerecon.ffhq_align import ffhq_quad, quad_size, warp_quad

COLORS = {"eye_left": (255, 0, 0), "eye_right": (0, 255, 0), "mouth_left": (0, 0, 255), "mouth_right": (255, 255, 0)}


def face_points(center, eye_dist, eye_mouth, angle_deg):
    """Eye centres and mouth corners of an upright face turned by ``angle_deg`` in the image plane."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    local = {"eye_left": (-eye_dist / 2, 0), "eye_right": (eye_dist / 2, 0),
             "mouth_left": (-eye_dist * 0.4, eye_mouth), "mouth_right": (eye_dist * 0.4, eye_mouth)}
    return {k: np.asarray(center, float) + rot @ np.asarray(v, float) for k, v in local.items()}


def test_quad_of_a_level_face_is_an_axis_aligned_square():
    pts = face_points((200, 150), eye_dist=60, eye_mouth=70, angle_deg=0)
    q = ffhq_quad(*pts.values())
    tl, bl, br, tr = q
    assert tl[0] == pytest.approx(bl[0]) and tl[1] == pytest.approx(tr[1])  # axis aligned
    side = 2 * max(2.0 * 60, 1.8 * 70)
    assert quad_size(q) == pytest.approx(side)
    assert np.linalg.norm(bl - tl) == pytest.approx(side)
    centre = q.mean(0)
    assert centre == pytest.approx([200, 150 + 0.1 * 70])  # 10 % of the way from eyes to mouth


def test_quad_turns_with_the_face():
    a = ffhq_quad(*face_points((0, 0), 50, 60, 0).values())
    b = ffhq_quad(*face_points((0, 0), 50, 60, 25).values())
    t = math.radians(25)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    np.testing.assert_allclose(b, a @ rot.T, atol=1e-9)
    with pytest.raises(ValueError):
        ffhq_quad((1, 1), (1, 1), (1, 1), (1, 1))


def draw_markers(shape, pts, radius=3, background=180, seed=0):
    rng = np.random.default_rng(seed)
    img = np.clip(background + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for name, p in pts.items():
        img[(xx - p[0]) ** 2 + (yy - p[1]) ** 2 <= radius ** 2] = COLORS[name]
    return img


def marker_centre(img, color):
    m = np.all(np.abs(img.astype(int) - np.array(color)) < 60, axis=-1)
    assert m.sum() > 0, f"marker {color} not found"
    yy, xx = np.nonzero(m)
    return np.array([xx.mean(), yy.mean()])


def expected_position(p, quad, out_size):
    """Where a photo point lands: its coordinates along the quad's edges, in output pixels."""
    tl, bl, _, tr = np.asarray(quad, float)
    m = np.stack([tr - tl, bl - tl], axis=1)
    fx, fy = np.linalg.solve(m, np.asarray(p, float) - tl)
    return np.array([fx, fy]) * out_size - 0.5


@pytest.mark.parametrize("center,angle", [((250, 200), 20.0), ((70, 80), -15.0)])  # second: quad leaves the photo
def test_warp_places_the_face_where_the_quad_says(center, angle):
    pts = face_points(center, eye_dist=40, eye_mouth=46, angle_deg=angle)
    img = draw_markers((330, 420, 3), pts, radius=4)
    q = ffhq_quad(*pts.values())
    out = warp_quad(img, q, 128, 256)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    for name, p in pts.items():
        got = marker_centre(out, COLORS[name])
        np.testing.assert_allclose(got, expected_position(p, q, 128), atol=1.0)
    # level eyes after alignment, whatever the photo's roll
    el, er = marker_centre(out, COLORS["eye_left"]), marker_centre(out, COLORS["eye_right"])
    assert abs(el[1] - er[1]) < 1.0
    # where the quad left the photo the padding is filled with photo-like colour, not black
    assert out[:4, :4].mean() > 100


def test_large_photo_is_shrunk_first_and_small_outputs_work():
    pts = face_points((1000, 850), eye_dist=300, eye_mouth=340, angle_deg=5)
    img = draw_markers((1700, 2000, 3), pts, radius=25)
    q = ffhq_quad(*pts.values())
    out = warp_quad(img, q, 64, 256)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(marker_centre(out, COLORS["eye_right"]),
                               expected_position(pts["eye_right"], q, 64), atol=1.0)
