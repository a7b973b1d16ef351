"""Stage `profile`: the ±90° views.

Backends: ``facerecon.offline.reproject`` (reproject) and ``facerecon.diffusion.backends`` (controlnet).
"""

from __future__ import annotations

from pathlib import Path

from facerecon import registry
from facerecon.stages.dreambooth import load_dreambooth
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

VERSION = "1"


def key_profile(job: StageJob, up: dict[str, StageOut]) -> str:
    p = job.params
    return stage_key("profile", VERSION, p.profile, registry.stage("profile").upstream_keys(up),
                     extra=str(p.ae_model.fov))


def run_profile(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    params = job.params

    def body(d: Path) -> dict:
        views = backend("profile", params).profiles(load_face(job.face_dir), load_inverted(up["invert"].path),
                                                   load_dreambooth(up["dreambooth"].path), d)
        save_views(d, views)
        return {"backend": params.profile.backend, "views": view_summary(views)}

    return run_cached(job.root, "profile", key_profile(job, up), body)
