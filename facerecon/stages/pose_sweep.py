"""Stage `pose_sweep`: 14 views of the face at the thesis's yaw angles.

Backends: ``facerecon.offline.reproject`` (reproject) and ``facerecon.gan.backends`` (interfacegan).
"""

from __future__ import annotations

from pathlib import Path

from facerecon import registry
from facerecon.stages.base import sweep_alphas
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageJob,
    StageOut,
    load_face,
    load_inverted,
    run_cached,
    save_views,
    stage_key,
    view_summary,
)

VERSION = "3"


def key_pose_sweep(job: StageJob, up: dict[str, StageOut]) -> str:
    p = job.params
    return stage_key("pose_sweep", VERSION, p.pose_sweep, registry.stage("pose_sweep").upstream_keys(up), extra=str(p.ae_model.fov))


def run_pose_sweep(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    params = job.params

    def body(d: Path) -> dict:
        views = backend("pose_sweep", params).sweep(load_face(job.face_dir), load_inverted(up["invert"].path),
                                                   sweep_alphas(params), d)
        save_views(d, views)
        return {"backend": params.pose_sweep.backend, "views": view_summary(views)}

    return run_cached(job.root, "pose_sweep", key_pose_sweep(job, up), body)
