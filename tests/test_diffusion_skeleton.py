"""OpenPose skeletons drawn from a real face's landmarks turned to ±90° yaw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon.diffusion import openpose_map as M
from facerecon.diffusion.skeleton import draw_skeleton, head_frame, mirror_skeleton, profile_skeleton

PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"
R_EYE, L_EYE, R_EAR, L_EAR, NOSE, NECK = 14, 15, 16, 17, 0, 1


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    """mediapipe landmarks of the astronaut photo (512×512), in photo pixels."""
    from facerecon.align import find_faces, get_detector

    img = np.asarray(Image.open(PHOTOS / "astronaut.jpg").convert("RGB"))
    found = find_faces(img, get_detector(), max_faces=1, min_face_size=24)
    assert len(found) == 1
    return found[0].astype(np.float64)


def canonical(lm: np.ndarray) -> tuple[np.ndarray, float]:
    centre, r = head_frame(lm)
    q = (lm - centre) @ r
    return q, abs(q[M.LEFT_EAR_SIDE, 0] - q[M.RIGHT_EAR_SIDE, 0])


def symmetric_face(lm: np.ndarray, size: int) -> np.ndarray:
    """A perfectly left/right symmetric version of the face, centred in a ``size`` crop.

    Each mediapipe point the skeleton uses takes the mirror of its partner (pairs from the
    OpenPose flip map, the eye rings and the head-axis pairs); midline points get x = 0.
    """
    q, _ = canonical(lm)
    pairs = {(M.FACE_68[i], M.FACE_68[j]) for i, j in enumerate(M.FACE_FLIP[:68])}
    pairs |= set(zip(M.RIGHT_EYE_RING, M.LEFT_EYE_RING, strict=True))
    pairs |= {(234, 454), (127, 356), (93, 323), (132, 361), (61, 291), (33, 263), (133, 362), (10, 10), (152, 152)}
    out = q.copy()
    for a, b in pairs:
        if a == b:
            out[a, 0] = 0.0
        elif a < b:
            out[b] = out[a] * [-1.0, 1.0, 1.0]
    return out + [(size - 1) / 2, (size - 1) / 2, 0.0]


def test_index_map_is_consistent_data():
    assert len(M.FACE_68) == 68 and len(set(M.FACE_68)) == 68 and all(0 <= i < 468 for i in M.FACE_68)
    for perm, n in ((M.FACE_FLIP, M.N_FACE), (M.BODY_FLIP, M.N_BODY)):
        assert sorted(perm) == list(range(n))
        assert all(perm[perm[i]] == i for i in range(n))  # an involution
    assert len(M.BODY_LIMBS) == 17 and len(M.BODY_COLORS) == 18


def test_mapped_points_are_mirror_pairs_on_a_real_face(landmarks):
    """The flip map, read through the mediapipe index map, pairs anatomically mirrored points."""
    q, width = canonical(landmarks)
    face = q[list(M.FACE_68)]
    mirrored = face[list(M.FACE_FLIP[:68])] * [-1.0, 1.0, 1.0]
    err = np.linalg.norm(face - mirrored, axis=1) / width
    assert err.max() < 0.12, f"worst pair {int(err.argmax())}: {err.max():.3f} face widths"
    # and the jaw runs from the subject's right (image left) over the chin to the left
    assert np.all(np.diff(face[:9, 0]) > 0) and np.all(np.diff(face[8:17, 0]) > 0)


def test_frontal_skeleton_sits_on_the_face(landmarks):
    sk = profile_skeleton(landmarks, 0.0, src_size=512, out_size=512)
    assert sk.face_visible.all()
    width = np.ptp(landmarks[:, 0])
    err = np.linalg.norm(sk.face[:68] - landmarks[list(M.FACE_68), :2], axis=1)
    assert err.mean() < 0.05 * width  # only the photo's own slight head pose is removed
    assert abs(sk.body[NOSE, 0] - landmarks[M.NOSE_TIP, 0]) < 0.05 * width
    assert sk.body[NECK, 1] > landmarks[M.CHIN, 1]  # neck below the chin


def test_turning_follows_the_yaw_convention(landmarks):
    """Positive yaw moves the nose toward the image left (common.md)."""
    def nose_u(yaw):
        return profile_skeleton(landmarks, yaw, src_size=512, out_size=512).body[NOSE, 0]

    assert nose_u(30.0) < nose_u(0.0) < nose_u(-30.0)
    right = profile_skeleton(landmarks, 90.0, src_size=512, out_size=512)
    left = profile_skeleton(landmarks, -90.0, src_size=512, out_size=512)
    assert right.body[NOSE, 0] < right.body[L_EAR, 0]  # +90: facing image left, left ear seen
    assert left.body[NOSE, 0] > left.body[R_EAR, 0]
    # a true profile: the face is compressed to its depth, the ear ~a face-width behind the nose
    width = np.ptp(landmarks[:, 0])
    assert 0.4 * width < abs(right.body[NOSE, 0] - right.body[L_EAR, 0]) < 1.2 * width


def test_far_side_is_hidden_in_profile(landmarks):
    front = profile_skeleton(landmarks, 0.0, src_size=512, out_size=512)
    assert front.body_visible[[NOSE, NECK, R_EYE, L_EYE, R_EAR, L_EAR, 2, 5]].all()
    right = profile_skeleton(landmarks, 90.0, src_size=512, out_size=512)
    left = profile_skeleton(landmarks, -90.0, src_size=512, out_size=512)
    assert right.body_visible[[L_EYE, L_EAR]].all() and not right.body_visible[[R_EYE, R_EAR]].any()
    assert left.body_visible[[R_EYE, R_EAR]].all() and not left.body_visible[[L_EYE, L_EAR]].any()
    # the far half of the face points is dropped, the midline stays
    assert 0.4 * 70 < right.face_visible.sum() < 0.8 * 70
    assert right.face_visible[[8, 27, 30, 33, 51, 57]].all()  # chin, nose, lip centres
    assert not right.face_visible[[0, 36, 68]].any() and not left.face_visible[[16, 45, 69]].any()


def test_left_and_right_profiles_mirror_each_other(landmarks):
    size = 256
    sym = symmetric_face(landmarks, size)
    left = profile_skeleton(sym, -90.0, src_size=size, out_size=size)
    right = profile_skeleton(sym, 90.0, src_size=size, out_size=size)
    back = mirror_skeleton(left)
    np.testing.assert_array_equal(back.face_visible, right.face_visible)
    np.testing.assert_array_equal(back.body_visible, right.body_visible)
    np.testing.assert_allclose(back.face[right.face_visible], right.face[right.face_visible], atol=1e-6)
    np.testing.assert_allclose(back.body[right.body_visible], right.body[right.body_visible], atol=1e-6)
    # drawn images: mirrored occupancy matches (colours differ: OpenPose colours left/right parts apart)
    a = draw_skeleton(left).any(-1)[:, ::-1]
    b = draw_skeleton(right).any(-1)
    assert (a & b).sum() / (a | b).sum() > 0.9


def test_real_face_profiles_are_near_mirrors(landmarks):
    """A real face is almost symmetric: its two profiles mirror each other to a few percent."""
    left = profile_skeleton(landmarks, -90.0, src_size=512, out_size=512)
    right = profile_skeleton(landmarks, 90.0, src_size=512, out_size=512)
    centre_u = head_frame(landmarks)[0][0]
    back = mirror_skeleton(left)
    back.face[:, 0] += 2 * centre_u - 511  # mirror about the head's axis instead of the image centre
    vis = back.face_visible & right.face_visible
    assert vis.sum() > 30
    err = np.linalg.norm(back.face[vis] - right.face[vis], axis=1).mean()
    assert err < 0.06 * np.ptp(landmarks[:, 0])


def test_drawing_uses_openpose_colours_and_size(landmarks):
    sk = profile_skeleton(landmarks, 90.0, src_size=512, out_size=384)
    img = draw_skeleton(sk)
    assert img.shape == (384, 384, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert (255, 255, 255) in colours  # face keypoints
    assert M.BODY_COLORS[NOSE] in colours and M.BODY_COLORS[L_EYE] in colours
    assert M.BODY_COLORS[R_EYE] not in colours  # hidden eye is not drawn
    no_face = draw_skeleton(sk, face=False)
    assert (255, 255, 255) not in {tuple(c) for c in no_face.reshape(-1, 3)}
    # everything is drawn near the keypoints: the background stays black
    assert img.any(-1).mean() < 0.05
