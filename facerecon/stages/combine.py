"""Stage `combine`: front albedo primary, outer quarter strips from the profile albedos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerecon import registry
from facerecon.post.combine import combine_albedo
from facerecon.stages.workspace import StageJob, StageOut, load_npy, run_cached, save_npy, save_png, stage_key

VERSION = "1"


def key_combine(job: StageJob, up: dict[str, StageOut]) -> str:
    return stage_key("combine", VERSION, job.params.combine, registry.stage("combine").upstream_keys(up))


def run_combine(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    ae = up["ae_optimize"]

    def body(d: Path) -> dict:
        p = job.params.combine
        front = load_npy(ae.path / "albedo.npy")
        sides = {s: load_npy(ae.path / f"albedo_{s}.npy") if (ae.path / f"albedo_{s}.npy").exists() else None
                 for s in ("left", "right")}
        if p.enabled:
            albedo = combine_albedo(front, sides["left"], sides["right"], strip_fraction=p.strip_fraction,
                                    blur_sigma=p.blur_sigma)
        else:
            albedo = front
        save_npy(d / "albedo.npy", albedo.astype(np.float32))
        save_png(d / "albedo.png", albedo)
        return {"enabled": p.enabled, "profiles_used": [s for s, a in sides.items() if a is not None and p.enabled]}

    return run_cached(job.root, "combine", key_combine(job, up), body)
