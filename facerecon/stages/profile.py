"""Stage `profile`: the ±90° views (offline: the frontal mesh turned by ±yaw_degrees).

The ControlNet-OpenPose backend lives in ``facerecon.diffusion.backends``.
"""

from __future__ import annotations

from pathlib import Path

from facerecon.config import Params
from facerecon.stages.base import AlignedFace, DreamboothResult, InvertResult, View
from facerecon.stages.dreambooth import load_dreambooth
from facerecon.stages.pose_sweep import frontal_face, render_yaw
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageOut,
    load_face,
    load_inverted,
    run_cached,
    save_views,
    stage_key,
    view_summary,
)

VERSION = "1"


class ReprojectProfile:
    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def profiles(self, face: AlignedFace, inverted: InvertResult, dreambooth: DreamboothResult,
                 workdir: Path) -> list[View]:
        p = self.params.profile
        front = frontal_face(face, inverted.depth, self.params.ae_model.fov)
        return [View(image=render_yaw(front, yaw, self.params.ae_model.fov, p.image_size), yaw=yaw, name=name)
                for yaw, name in zip(profile_yaws(self.params), ("profile_left", "profile_right"), strict=True)]


def profile_yaws(params: Params) -> list[float]:
    """Yaw in degrees of the left and right profile views."""
    return [-params.profile.yaw_degrees, params.profile.yaw_degrees]


def key_profile(aligned_face: Path, inverted: StageOut, dreambooth: StageOut, params: Params, root: Path) -> str:
    return stage_key("profile", VERSION, params.profile, [inverted.key, dreambooth.key],
                     extra=str(params.ae_model.fov))


def run_profile(aligned_face: Path, inverted: StageOut, dreambooth: StageOut, params: Params,
                root: Path) -> StageOut:
    key = key_profile(aligned_face, inverted, dreambooth, params, root)

    def body(d: Path) -> dict:
        views = backend("profile", params).profiles(load_face(aligned_face), load_inverted(inverted.path),
                                                   load_dreambooth(dreambooth.path), d)
        save_views(d, views)
        return {"backend": params.profile.backend, "views": view_summary(views)}

    return run_cached(root, "profile", key, body)
