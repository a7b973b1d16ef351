"""Stage `invert`: the aligned face → what the pose sweep needs (a depth proxy or a W+ latent).

Backends: ``facerecon.offline.invert`` (landmarks, ae_depth) and ``facerecon.gan.backends``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerecon import registry
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import (
    StageJob,
    StageOut,
    load_face,
    run_cached,
    save_inverted,
    save_png,
    stage_key,
)

VERSION = "2"


def key_invert(job: StageJob, up: dict[str, StageOut]) -> str:
    p = job.params
    return stage_key("invert", VERSION, p.invert, [*registry.stage("invert").upstream_keys(up), job.face_dir.name], extra=str(p.ae_model.fov))


def run_invert(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    params = job.params

    def body(d: Path) -> dict:
        face = load_face(job.face_dir)
        inv = backend("invert", params).invert(face, d)
        save_inverted(d, inv)
        if inv.depth is not None:
            dd = inv.depth
            vis = (dd - dd.min()) / max(float(np.ptp(dd)), 1e-6)
            save_png(d / "depth.png", (255 * (1 - vis)).astype(np.uint8))
        return {"backend": params.invert.backend, **{k: v for k, v in inv.info.items() if k != "head_rotation"}}

    return run_cached(job.root, "invert", key_invert(job, up), body)
