"""OpenPose skeletons of the face turned to a target yaw, drawn the way ControlNet-OpenPose saw them.

The OpenPose annotator needs hub-only models and fails on the profiles we want, so the
skeleton is built from geometry instead: the face's 3D mediapipe landmarks are brought to a
level, frontal head frame (their own head pose removed), turned by the target yaw about a
vertical axis through the ears (a head turns on its neck), projected orthographically back
into the aligned crop, and drawn with OpenPose's keypoint order, colours and sizes.

Keypoints on the far side of a turned head (|yaw| ≥ 45°) are not drawn, as a detector would
not see them. Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facerecon.diffusion import openpose_map as M

HIDE_FAR_SIDE_FROM_DEG = 45.0
# canonical-frame offsets in units of the face width W (ear-to-ear) and height H (forehead-chin)
EAR_BEHIND_W = 0.10  # the tragus sits a little behind the face-oval point beside it
NECK_BELOW_CHIN_H = 0.60  # OpenPose's neck keypoint is at the base of the neck, between the shoulders
SHOULDER_OUT_W = 1.20
SHOULDER_BELOW_NECK_H = 0.12
MIDLINE_MARGIN_W = 0.06  # points this close to the midline stay visible from either side


@dataclass
class Skeleton:
    """OpenPose keypoints in output pixels (NaN rows are absent) and whether each is drawn."""

    body: np.ndarray  # (18, 2)
    body_visible: np.ndarray  # (18,) bool
    face: np.ndarray  # (70, 2)
    face_visible: np.ndarray  # (70,) bool
    size: int
    yaw: float

    def to_json(self) -> dict:
        def pts(a: np.ndarray, vis: np.ndarray) -> list:
            return [None if not v else [round(float(x), 2), round(float(y), 2)] for (x, y), v in zip(a, vis, strict=True)]

        return {"yaw": self.yaw, "size": self.size, "body": pts(self.body, self.body_visible),
                "face": pts(self.face, self.face_visible), "body_names": list(M.BODY_NAMES)}


def rot_y(deg: float) -> np.ndarray:
    """Yaw rotation of the project's convention (positive yaw moves the nose to the image left)."""
    t = math.radians(deg)
    return np.array([[math.cos(t), 0.0, math.sin(t)], [0.0, 1.0, 0.0], [-math.sin(t), 0.0, math.cos(t)]])


def head_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, R): ears' midpoint and head rotation, so canonical = (p - centre) @ R."""
    from facerecon.align import head_rotation  # pure numpy; mediapipe is only imported for detection

    lm = np.asarray(landmarks, dtype=np.float64)
    centre = 0.5 * (lm[M.RIGHT_EAR_SIDE] + lm[M.LEFT_EAR_SIDE])
    return centre, head_rotation(lm)


def canonical_keypoints(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(face 70×3, body 18×3) in the level frontal head frame; body rows without a source are NaN."""
    face = np.empty((M.N_FACE, 3))
    face[:68] = q[list(M.FACE_68)]
    face[68] = q[list(M.RIGHT_EYE_RING)].mean(0)
    face[69] = q[list(M.LEFT_EYE_RING)].mean(0)
    w = abs(q[M.LEFT_EAR_SIDE, 0] - q[M.RIGHT_EAR_SIDE, 0])
    h = abs(q[M.CHIN, 1] - q[M.FOREHEAD, 1])
    body = np.full((M.N_BODY, 3), np.nan)
    body[0] = q[M.NOSE_TIP]
    body[14], body[15] = face[68], face[69]
    body[16] = q[M.RIGHT_EAR_SIDE] + [0.0, 0.0, EAR_BEHIND_W * w]
    body[17] = q[M.LEFT_EAR_SIDE] + [0.0, 0.0, EAR_BEHIND_W * w]
    neck = np.array([0.0, q[M.CHIN, 1] + NECK_BELOW_CHIN_H * h, 0.0])
    body[1] = neck
    body[2] = neck + [-SHOULDER_OUT_W * w, SHOULDER_BELOW_NECK_H * h, 0.0]
    body[5] = neck + [SHOULDER_OUT_W * w, SHOULDER_BELOW_NECK_H * h, 0.0]
    return face, body


def far_side_hidden(canon: np.ndarray, yaw_deg: float, width: float) -> np.ndarray:
    """True where a canonical point lies on the half of the head turned away from the camera."""
    if abs(yaw_deg) < HIDE_FAR_SIDE_FROM_DEG:
        return np.zeros(len(canon), bool)
    # positive yaw turns the subject's left side (canonical +x) toward the camera
    return np.sign(yaw_deg) * canon[:, 0] < -MIDLINE_MARGIN_W * width


def profile_skeleton(landmarks: np.ndarray, yaw_deg: float, *, src_size: int, out_size: int) -> Skeleton:
    """Skeleton of the face in ``landmarks`` (aligned pixels, 468×3) turned to ``yaw_deg``.

    ``src_size`` is the side of the aligned crop the landmarks live in; keypoints are returned
    in an ``out_size`` canvas covering the same crop.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] != 3:
        raise ValueError(f"expected mediapipe landmarks of shape (468, 3), got {lm.shape}")
    centre, r = head_frame(lm)
    q = (lm - centre) @ r
    face_c, body_c = canonical_keypoints(q)
    width = abs(q[M.LEFT_EAR_SIDE, 0] - q[M.RIGHT_EAR_SIDE, 0])
    turn = rot_y(yaw_deg)
    scale = out_size / src_size

    def project(c: np.ndarray) -> np.ndarray:
        uv = (c @ turn.T)[:, :2] + centre[:2]
        return (uv + 0.5) * scale - 0.5  # pixel centres at integers in both grids

    face_vis = ~far_side_hidden(face_c, yaw_deg, width)
    body_vis = ~np.isnan(body_c[:, 0])
    body_vis[body_vis] &= ~far_side_hidden(body_c[body_vis], yaw_deg, width)
    return Skeleton(body=project(np.nan_to_num(body_c, nan=0.0)) * np.where(body_vis[:, None], 1.0, np.nan),
                    body_visible=body_vis, face=project(face_c), face_visible=face_vis,
                    size=out_size, yaw=float(yaw_deg))


def mirror_skeleton(sk: Skeleton) -> Skeleton:
    """The horizontally mirrored skeleton with left/right keypoints relabelled (a left↔right profile)."""
    def flip(a: np.ndarray, perm: tuple) -> np.ndarray:
        out = a[list(perm)].copy()
        out[:, 0] = sk.size - 1 - out[:, 0]
        return out

    return Skeleton(body=flip(sk.body, M.BODY_FLIP), body_visible=sk.body_visible[list(M.BODY_FLIP)],
                    face=flip(sk.face, M.FACE_FLIP), face_visible=sk.face_visible[list(M.FACE_FLIP)],
                    size=sk.size, yaw=-sk.yaw)


# ------------------------------------------------------------------------------ drawing


def _ellipse_mask(size: int, centre: np.ndarray, half_len: float, half_width: float, angle: float) -> tuple:
    """Pixels (by their centres) inside an ellipse, as (row slice, col slice, bool mask).

    Sampling pixel centres, rather than a rasteriser's corner rules, keeps the drawing exactly
    mirror-symmetric: a mirrored skeleton draws the mirrored image.
    """
    reach = max(half_len, half_width) + 1.0
    x0, x1 = max(0, int(math.floor(centre[0] - reach))), min(size, int(math.ceil(centre[0] + reach)) + 1)
    y0, y1 = max(0, int(math.floor(centre[1] - reach))), min(size, int(math.ceil(centre[1] + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0), bool)
    v, u = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    du, dv = u - centre[0], v - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    a = (du * c + dv * s) / half_len
    b = (-du * s + dv * c) / half_width
    return slice(y0, y1), slice(x0, x1), a * a + b * b <= 1.0


def draw_skeleton(sk: Skeleton, *, face: bool = True) -> np.ndarray:
    """(size, size, 3) uint8 OpenPose image: body keypoints, blended limbs, then white face dots."""
    s = sk.size
    k = s / 512.0
    r_body = max(1.0, M.BODY_RADIUS_512 * k)
    stick = max(1.0, M.STICK_WIDTH_512 * k)
    r_face = max(1.0, M.FACE_RADIUS_512 * k)
    canvas = np.zeros((s, s, 3), np.float32)
    for i in range(M.N_BODY):
        if sk.body_visible[i]:
            rows, cols, m = _ellipse_mask(s, sk.body[i], r_body, r_body, 0.0)
            canvas[rows, cols][m] = M.BODY_COLORS[i]
    for i, (a, b) in enumerate(M.BODY_LIMBS):
        if not (sk.body_visible[a] and sk.body_visible[b]):
            continue
        p0, p1 = sk.body[a], sk.body[b]
        d = p1 - p0
        half_len = max(0.5 * float(np.hypot(*d)), stick)
        rows, cols, m = _ellipse_mask(s, 0.5 * (p0 + p1), half_len, stick, math.atan2(d[1], d[0]))
        patch = canvas[rows, cols]
        patch[m] = (1 - M.LIMB_ALPHA) * patch[m] + M.LIMB_ALPHA * np.array(M.BODY_COLORS[i], np.float32)
    if face:
        for (x, y), v in zip(sk.face, sk.face_visible, strict=True):
            if v:
                rows, cols, m = _ellipse_mask(s, np.array([x, y]), r_face, r_face, 0.0)
                canvas[rows, cols][m] = M.FACE_COLOR
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
