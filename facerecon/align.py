"""Face detection, 3D landmarks, head pose and FFHQ-style alignment (stage `align`, offline backend).

mediapipe's full-range detector (model_selection=1) finds faces down to a few dozen pixels in a
large photo; each detection is cropped with a margin and given to the 468-point face mesh, whose
landmarks are mapped back to photo coordinates. The FFHQ quad (eyes + mouth corners, the same
math dlib-based FFHQ alignment uses, shared with the GAN encoder input in ``facerecon.gan``)
then produces the aligned crop every later stage works on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from facerecon.errors import NoFaceError
from facerecon.stages.base import AlignedFace

log = logging.getLogger(__name__)

# mediapipe face-mesh indices (468-point topology)
LEFT_EYE = [33, 133, 160, 159, 158, 144, 145, 153]  # image-left eye (subject's right)
RIGHT_EYE = [263, 362, 387, 386, 385, 373, 374, 380]
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
# symmetric pairs (image-left, image-right) used for the head's x axis
SYMMETRIC_PAIRS = [(33, 263), (133, 362), (234, 454), (61, 291), (127, 356), (93, 323), (132, 361)]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]

FOREHEAD_CHIN_LEAN_DEG = 8.0
_MP_LOCK = threading.Lock()  # mediapipe graphs are not re-entrant


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels
    score: float

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def _quiet_mediapipe() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """mediapipe's C++ side prints absl warnings straight to fd 2 when a graph is built and first
    run (before absl logging is initialised, no setting stops them); users should not see them."""
    if not enabled or os.environ.get("FACERECON_MEDIAPIPE_LOGS"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class LandmarkDetector:
    """Thread-safe wrapper over mediapipe's face detector + face mesh (models ship in the wheel)."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        _quiet_mediapipe()
        with _native_stderr_silenced(True):
            import mediapipe as mp  # heavy import, only when aligning

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_confidence)
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                min_detection_confidence=min(min_confidence, 0.5))
            self._mesh_multi = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=8, refine_landmarks=False,
                min_detection_confidence=min(min_confidence, 0.5))
        self._warm: set[str] = set()  # graphs that have run once (their first run prints warnings)

    def _detect_once(self, rgb: np.ndarray, ox: float = 0.0, oy: float = 0.0) -> list[Detection]:
        h, w = rgb.shape[:2]
        with _MP_LOCK, _native_stderr_silenced("detector" not in self._warm):
            res = self._detector.process(np.ascontiguousarray(rgb))
            self._warm.add("detector")
        out = []
        for det in res.detections or []:
            bb = det.location_data.relative_bounding_box
            x0, y0 = bb.xmin * w, bb.ymin * h
            x1, y1 = x0 + bb.width * w, y0 + bb.height * h
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            if x1 - x0 > 2 and y1 - y0 > 2:
                out.append(Detection((x0 + ox, y0 + oy, x1 + ox, y1 + oy), float(det.score[0])))
        return out

    def detect(self, rgb: np.ndarray, tile: int = 640) -> list[Detection]:
        """Faces, largest first. Large photos are also searched in overlapping tiles: the detector
        sees a downscaled image, where a face of a few dozen pixels would vanish."""
        h, w = rgb.shape[:2]
        found = self._detect_once(rgb)
        if max(h, w) > tile * 1.25:
            step = tile * 3 // 4
            for y in range(0, max(h - tile, 0) + step, step):
                for x in range(0, max(w - tile, 0) + step, step):
                    y0, x0 = min(y, max(h - tile, 0)), min(x, max(w - tile, 0))
                    found += self._detect_once(rgb[y0:y0 + tile, x0:x0 + tile], x0, y0)
        return _nms(sorted(found, key=lambda d: -d.score))

    def mesh(self, rgb: np.ndarray, multi: bool = False) -> list[np.ndarray]:
        """468×3 landmarks in pixels (x, y, z; z in x-pixels, smaller = closer), one array per face."""
        h, w = rgb.shape[:2]
        graph = "mesh_multi" if multi else "mesh"
        with _MP_LOCK, _native_stderr_silenced(graph not in self._warm):
            res = (self._mesh_multi if multi else self._mesh).process(np.ascontiguousarray(rgb))
            self._warm.add(graph)
        faces = []
        for lms in res.multi_face_landmarks or []:
            a = np.array([[p.x * w, p.y * h, p.z * w] for p in lms.landmark], dtype=np.float32)
            faces.append(a)
        return faces


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(dets: list[Detection], thresh: float = 0.3) -> list[Detection]:
    """Drop detections overlapping a better one (tiles see the same face twice); largest first."""
    keep: list[Detection] = []
    for d in dets:
        if all(_iou(d.box, k.box) < thresh for k in keep):
            keep.append(d)
    return sorted(keep, key=lambda d: -d.size)


_DETECTORS: dict[float, LandmarkDetector] = {}


def get_detector(min_confidence: float = 0.5) -> LandmarkDetector:
    key = round(float(min_confidence), 3)
    with _MP_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = None  # type: ignore[assignment]
    if _DETECTORS[key] is None:
        _DETECTORS[key] = LandmarkDetector(min_confidence)
    return _DETECTORS[key]


def _crop_scaled(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float,
                 target: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around ``box`` enlarged by ``margin``, resized to ``target``.

    Returns the crop and the 2×3 affine mapping crop pixels back to photo pixels.
    """
    from PIL import Image

    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * margin
    scale = side / target
    # affine: photo = scale * crop + offset
    offset = np.array([cx - side / 2, cy - side / 2])
    data = (scale, 0.0, offset[0], 0.0, scale, offset[1])
    crop = Image.fromarray(rgb).transform((target, target), Image.Transform.AFFINE, data,
                                          resample=Image.Resampling.BILINEAR)
    back = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])
    return np.asarray(crop), back


def find_faces(rgb: np.ndarray, detector: LandmarkDetector, *, max_faces: int, min_face_size: int
               ) -> list[np.ndarray]:
    """All faces' 468-point landmarks in photo pixels, largest first.

    Detector first (it finds small faces the mesh alone misses), then the mesh on a generous crop
    of each detection, scaled so the face is large for the mesh. Falls back to the mesh on the
    whole photo when the detector finds nothing (e.g. a tight face crop).
    """
    faces: list[np.ndarray] = []
    for det in detector.detect(rgb)[: max_faces * 2]:
        if det.size < min_face_size:
            continue
        crop, back = _crop_scaled(rgb, det.box, margin=2.2, target=384)
        found = detector.mesh(crop)
        if not found:
            continue
        lm = found[0].copy()
        s = back[0, 0]
        lm[:, 0] = lm[:, 0] * s + back[0, 2]
        lm[:, 1] = lm[:, 1] * s + back[1, 2]
        lm[:, 2] = lm[:, 2] * s
        if any(_same_face(lm, other) for other in faces):
            continue
        faces.append(lm)
        if len(faces) >= max_faces:
            break
    if not faces:
        for lm in detector.mesh(rgb, multi=True):
            if _face_size(lm) >= min_face_size:
                faces.append(lm)
    faces.sort(key=lambda lm: -_face_size(lm))
    return faces[:max_faces]


def _face_size(lm: np.ndarray) -> float:
    span = lm[:, :2].max(0) - lm[:, :2].min(0)
    return float(span.max())


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    ca, cb = a[:, :2].mean(0), b[:, :2].mean(0)
    return float(np.linalg.norm(ca - cb)) < 0.3 * min(_face_size(a), _face_size(b))


# ----------------------------------------------------------------------------- pose


def head_rotation(landmarks: np.ndarray) -> np.ndarray:
    """Rotation R (3×3) of the head, p_view = R · p_canonical, from 3D landmarks.

    Axes from the face itself: x through symmetric pairs (image-left → image-right), y from
    forehead to chin, z = x × y (away from the camera). Orthonormalised with x kept exact.
    """
    lm = landmarks.astype(np.float64)
    x = np.mean([lm[right] - lm[left] for left, right in SYMMETRIC_PAIRS], axis=0)
    y = lm[CHIN] - lm[FOREHEAD]
    x /= np.linalg.norm(x) + 1e-12
    # the forehead-chin line of an upright face leans back at the top (chin forward): undo that
    # lean so a frontal, level head has pitch ~0 (calibrated on frontal photos)
    y = _rotate_about(y, x, math.radians(-FOREHEAD_CHIN_LEAN_DEG))
    y = y - x * np.dot(x, y)
    y /= np.linalg.norm(y) + 1e-12
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about the unit ``axis``."""
    return (v * math.cos(angle) + np.cross(axis, v) * math.sin(angle)
            + axis * np.dot(axis, v) * (1 - math.cos(angle)))


def rotation_to_angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees for R = Rx(pitch) @ Ry(yaw) @ Rz(roll)."""
    yaw = math.asin(float(np.clip(r[0, 2], -1.0, 1.0)))
    pitch = math.atan2(-r[1, 2], r[2, 2])
    roll = math.atan2(-r[0, 1], r[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def estimate_head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees; positive yaw moves the nose toward the image left."""
    return rotation_to_angles(head_rotation(landmarks))


# ------------------------------------------------------------------------ alignment


def ffhq_keypoints(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eye centres and mouth corners (2D) as dlib's 68-point FFHQ alignment uses them."""
    lm = landmarks[:, :2].astype(np.float64)
    return lm[LEFT_EYE].mean(0), lm[RIGHT_EYE].mean(0), lm[MOUTH_LEFT], lm[MOUTH_RIGHT]


def quad_affine(quad: np.ndarray, size: int) -> np.ndarray:
    """2×3 affine taking photo pixels to aligned pixels for an FFHQ quad (corners TL, BL, BR, TR)."""
    src = np.asarray(quad, dtype=np.float64)[[0, 1, 3]]
    dst = np.array([[0.0, 0.0], [0.0, size], [size, 0.0]])
    a = np.concatenate([src, np.ones((3, 1))], axis=1)
    return np.linalg.solve(a, dst).T  # (2, 3)


def face_mask(landmarks_aligned: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    pts = [tuple(map(float, landmarks_aligned[i, :2])) for i in FACE_OVAL]
    ImageDraw.Draw(img).polygon(pts, fill=255)
    return np.asarray(img) > 127


def align_face(rgb: np.ndarray, landmarks: np.ndarray, *, output_size: int, transform_size: int,
               quad: np.ndarray | None = None) -> AlignedFace:
    """FFHQ-style aligned crop of one face + landmarks, mask and head pose in aligned coordinates.

    The crop is the FFHQ quad of the landmarks' eyes and mouth corners, or ``quad`` when given
    (dlib's, from its 68 points: ``facerecon.dlib_align``)."""
    from facerecon.ffhq_align import ffhq_quad, warp_quad

    if quad is None:
        quad = ffhq_quad(*ffhq_keypoints(landmarks))
    aligned = warp_quad(rgb, quad, output_size, transform_size)
    m = quad_affine(quad, output_size)
    lm = landmarks.astype(np.float64).copy()
    xy = lm[:, :2] @ m[:, :2].T + m[:, 2]
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    lm_al = np.concatenate([xy, lm[:, 2:3] * scale], axis=1).astype(np.float32)
    yaw, pitch, roll = estimate_head_pose(lm_al)
    return AlignedFace(
        image=np.ascontiguousarray(aligned[..., :3]).astype(np.uint8),
        mask=face_mask(lm_al, output_size),
        landmarks=lm_al,
        yaw=yaw, pitch=pitch, roll=roll,
        meta={"quad": np.asarray(quad).round(2).tolist(), "face_size_px": round(_face_size(landmarks), 1)},
    )


def align_photo(rgb: np.ndarray, *, output_size: int = 256, transform_size: int = 1024,
                min_confidence: float = 0.5, all_faces: bool = False, max_faces: int = 8,
                min_face_size: int = 24) -> list[AlignedFace]:
    """Aligned faces of a photo: the largest one, or all of them with ``all_faces``."""
    detector = get_detector(min_confidence)
    found = find_faces(rgb, detector, max_faces=max_faces if all_faces else 1, min_face_size=min_face_size)
    if not found:
        raise NoFaceError("no face found")
    faces = []
    for i, lm in enumerate(found if all_faces else found[:1]):
        face = align_face(rgb, lm, output_size=output_size, transform_size=transform_size)
        face.meta["index"] = i
        face.meta["faces_in_photo"] = len(found)
        faces.append(face)
    return faces


def detect_landmarks(rgb: np.ndarray, min_confidence: float = 0.5) -> np.ndarray | None:
    """468×3 landmarks of the largest face in ``rgb`` (pixels), or None: used to score generated views."""
    found = find_faces(np.asarray(rgb)[..., :3], get_detector(min_confidence), max_faces=1, min_face_size=8)
    return found[0] if found else None


class MediapipeAlign:
    """`align.backend: mediapipe`: MediaPipe's detector and 468-point face mesh (offline, bundled)."""

    def __init__(self, params, device=None) -> None:
        self.p = params.align

    def check_ready(self) -> None:  # mediapipe ships its models
        return None

    def align(self, rgb: np.ndarray) -> list[AlignedFace]:
        p = self.p
        return align_photo(rgb, output_size=p.output_size, transform_size=p.transform_size,
                           min_confidence=p.min_detection_confidence, all_faces=p.all_faces,
                           max_faces=p.max_faces, min_face_size=p.min_face_size)
