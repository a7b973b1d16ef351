"""Stage `dreambooth`: fine-tune the diffusion model on the pose-sweep views (or record the skip).

Backends: ``facerecon.offline.dreambooth`` (skip) and ``facerecon.diffusion.backends`` (diffusers).
"""

from __future__ import annotations

from pathlib import Path

from facerecon import registry
from facerecon.stages.base import DreamboothResult
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageJob,
    StageOut,
    load_face,
    load_views,
    run_cached,
    save_json,
    stage_key,
)

VERSION = "1"


def load_dreambooth(d: Path) -> DreamboothResult:
    from facerecon.stages.workspace import load_json

    info = load_json(d / "dreambooth.json")
    if info.get("weights_dir") and not Path(info["weights_dir"]).is_absolute():
        info["weights_dir"] = str(d / info["weights_dir"])
    return DreamboothResult(**info)


def key_dreambooth(job: StageJob, up: dict[str, StageOut]) -> str:
    return stage_key("dreambooth", VERSION, job.params.dreambooth, registry.stage("dreambooth").upstream_keys(up))


def run_dreambooth(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    sweep = up["pose_sweep"]

    def body(d: Path) -> dict:
        res = backend("dreambooth", job.params).train(load_face(job.face_dir), load_views(sweep.path), d)
        if res.weights_dir and Path(res.weights_dir).is_relative_to(d):
            res.weights_dir = str(Path(res.weights_dir).relative_to(d))
        save_json(d / "dreambooth.json", {"skipped": res.skipped, "reason": res.reason,
                                           "weights_dir": res.weights_dir, "info": res.info})
        return {"skipped": res.skipped, "reason": res.reason}

    return run_cached(job.root, "dreambooth", key_dreambooth(job, up), body)
