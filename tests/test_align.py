"""Face finding, head pose and the landmark depth proxy on real public-domain photos."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon.align import estimate_head_pose, find_faces, get_detector
from facerecon.geometry.depth_proxy import frontalize_landmarks, landmark_depth

PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"


def photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def rot_y(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


@pytest.fixture(scope="module")
def astronaut_landmarks():
    faces = find_faces(photo("astronaut.jpg"), get_detector(), max_faces=1, min_face_size=24)
    assert len(faces) == 1
    return faces[0]


def test_frontal_photo_has_small_pose(astronaut_landmarks):
    yaw, pitch, roll = estimate_head_pose(astronaut_landmarks)
    assert abs(yaw) < 8 and abs(pitch) < 10 and abs(roll) < 8


@pytest.mark.parametrize("turn", [-30.0, 20.0, 45.0])
def test_yaw_follows_a_known_rotation(astronaut_landmarks, turn):
    lm = astronaut_landmarks.astype(np.float64)
    c = lm.mean(0)
    base = estimate_head_pose(lm)[0]
    turned = (lm - c) @ rot_y(turn).T + c
    yaw = estimate_head_pose(turned)[0]
    assert yaw == pytest.approx(base + turn, abs=3.0)
    # convention: positive yaw moves the nose (landmark 1) towards the image left
    assert np.sign(turned[1, 0] - lm[1, 0]) == -np.sign(turn)


def test_small_face_in_a_large_photo_is_found():
    face = Image.fromarray(photo("grace_hopper.jpg")).resize((150, 190))
    canvas = Image.new("RGB", (1800, 1400), (90, 110, 100))
    canvas.paste(face, (1300, 900))
    found = find_faces(np.asarray(canvas), get_detector(), max_faces=4, min_face_size=24)
    assert len(found) == 1
    cx, cy = found[0][:, :2].mean(0)
    assert 1300 < cx < 1450 and 900 < cy < 1090


def test_two_faces_largest_first():
    a = Image.fromarray(photo("astronaut.jpg")).resize((600, 600))  # face ~115 px wide
    b = Image.fromarray(photo("grace_hopper.jpg")).resize((160, 200))  # face ~60 px wide
    canvas = Image.new("RGB", (900, 620), (200, 200, 200))
    canvas.paste(b, (700, 200))
    canvas.paste(a, (0, 0))
    found = find_faces(np.asarray(canvas), get_detector(), max_faces=4, min_face_size=24)
    assert len(found) == 2
    sizes = [np.ptp(f[:, 0]) for f in found]
    assert sizes[0] > sizes[1]
    assert found[0][:, 0].mean() < 600 < found[1][:, 0].mean()


def test_no_face_in_noise():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    assert find_faces(noise, get_detector(), max_faces=2, min_face_size=24) == []


def test_landmark_depth_has_no_ring_where_the_face_hull_meets_the_head(astronaut_landmarks):
    """Issue 14's dark contour ring: the continuation outside the hull used to start nearer than
    the hull's receding rim (a step forward, then back), which every render shaded as a line."""
    from scipy.ndimage import distance_transform_edt

    lm = astronaut_landmarks.copy()
    lm[:, :2] -= lm[:, :2].min(0) - 40
    front, _ = frontalize_landmarks(lm)
    depth, hull = landmark_depth(front, 320, fov=10.0)
    face_w = float(np.ptp(front[:, 0]))
    outside = distance_transform_edt(~hull)
    steps = []
    y0, y1 = np.percentile(front[:, 1], [35, 65]).astype(int)  # rows through the cheeks
    for row in range(y0, y1):
        cols = np.where(hull[row])[0]
        for edge, step in ((cols.min(), -1), (cols.max(), 1)):
            run = depth[row, edge: edge + step * int(0.1 * face_w): step]
            steps.append(float(np.diff(run).min()))  # negative: the surface comes forward again
    assert min(steps) > -2e-4, min(steps)
    # and the band just outside the rim is as far back as the band just inside it
    ring_out = (outside > 0) & (outside <= 3)
    ring_in = hull & (distance_transform_edt(hull) <= 3)
    assert depth[ring_out].mean() >= depth[ring_in].mean() - 1e-3


def test_landmark_depth_is_a_face(astronaut_landmarks):
    lm = astronaut_landmarks.copy()
    lm[:, :2] -= lm[:, :2].min(0) - 40
    front, rot = frontalize_landmarks(lm)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-6)
    depth, hull = landmark_depth(front, 320, fov=10.0)
    assert np.isfinite(depth).all() and 0.05 < hull.mean() < 0.9
    nose = depth[int(front[1, 1]), int(front[1, 0])]
    cheek = depth[int(front[234, 1]), int(front[234, 0])]
    assert nose < cheek  # the nose tip is closer than the cheek
    assert depth[~hull].min() >= depth[hull].min()  # nothing outside the face pokes out in front
    # frontalising a turned head gives back the same frontal shape
    c = lm.mean(0)
    turned = ((lm - c) @ rot_y(25).T + c).astype(np.float32)
    front2, _ = frontalize_landmarks(turned)
    assert np.abs(front2[:, :2] - front[:, :2]).max() < 1.0
