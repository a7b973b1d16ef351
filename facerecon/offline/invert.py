"""Offline `invert` backends: a frontal depth proxy from the landmarks, or from the AE itself.

The GAN backends (HyperStyle, e4e, optimisation) are in ``facerecon.gan.backends``.
"""

from __future__ import annotations

from pathlib import Path

from facerecon.config import Params
from facerecon.errors import NoFaceError
from facerecon.geometry.depth_proxy import frontalize_landmarks, landmark_depth
from facerecon.stages.base import AlignedFace, InvertResult
from facerecon.stages.workspace import save_npy


class LandmarkDepthInvert:
    """Dense frontal depth from the 468 3D landmarks: the offline stand-in for GAN inversion."""

    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:  # needs only mediapipe's bundled models
        return None

    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult:
        if face.landmarks is None:
            raise NoFaceError("invert.backend=landmarks needs face landmarks; use invert.backend=ae_depth")
        size = face.image.shape[0]
        front, rot = frontalize_landmarks(face.landmarks)
        depth, hull = landmark_depth(front, size, fov=self.params.ae_model.fov)
        save_npy(workdir / "landmarks_frontal.npy", front)
        return InvertResult(depth=depth, files={"landmarks_frontal": str(workdir / "landmarks_frontal.npy")},
                            info={"head_rotation": rot.round(5).tolist(), "hull_fraction": float(hull.mean())})


class AeDepthInvert:
    """Depth proxy from the pretrained AE's own prediction (works where landmarks don't, e.g. renders)."""

    def __init__(self, params: Params, device) -> None:
        self.params = params
        self.device = device

    def check_ready(self) -> None:
        from facerecon.stages.ae_optimize import load_ae

        load_ae(self.params)

    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult:
        from facerecon.stages.ae_optimize import ae_canonical_depth

        depth = ae_canonical_depth(face.image, self.params, face.image.shape[0])
        return InvertResult(depth=depth, info={"source": "ae"})
