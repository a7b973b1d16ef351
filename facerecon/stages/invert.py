"""Stage `invert`: the offline backends (landmark depth proxy, AE depth) and the stage function.

The GAN backends (HyperStyle, e4e, optimisation) live in ``facerecon.gan.backends``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facerecon.config import Params
from facerecon.errors import NoFaceError
from facerecon.geometry.depth_proxy import frontalize_landmarks, landmark_depth
from facerecon.stages.base import AlignedFace, InvertResult
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageOut,
    load_face,
    run_cached,
    save_inverted,
    save_npy,
    save_png,
    stage_key,
)

VERSION = "2"
log = logging.getLogger(__name__)


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


def key_invert(aligned_face: Path, align_key: str, params: Params, root: Path) -> str:
    return stage_key("invert", VERSION, params.invert, [align_key, aligned_face.name], extra=str(params.ae_model.fov))


def run_invert(aligned_face: Path, align_key: str, params: Params, root: Path) -> StageOut:
    key = key_invert(aligned_face, align_key, params, root)

    def body(d: Path) -> dict:
        face = load_face(aligned_face)
        inv = backend("invert", params).invert(face, d)
        save_inverted(d, inv)
        if inv.depth is not None:
            dd = inv.depth
            vis = (dd - dd.min()) / max(float(np.ptp(dd)), 1e-6)
            save_png(d / "depth.png", (255 * (1 - vis)).astype(np.uint8))
        return {"backend": params.invert.backend, **{k: v for k, v in inv.info.items() if k != "head_rotation"}}

    return run_cached(root, "invert", key, body)
