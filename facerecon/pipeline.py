"""The per-face stage sequence, derived from the stage registry and run directly or as Prefect tasks.

``face_stages`` takes a ``run(stage, job, up)`` hook: the default runs the stage's function; the
Prefect flow passes one that runs the stage as a task, so the order and wiring of the stages
(``facerecon.registry``) serve the CLI, the benchmark and the tests alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from facerecon import registry
from facerecon.stages.workspace import StageJob, StageOut

Runner = Callable[[str, StageJob, dict[str, StageOut]], StageOut]


def direct(stage: str, job: StageJob, up: dict[str, StageOut]) -> StageOut:
    return registry.stage(stage).run(job, up)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def work_root(cache_dir: str | Path, photo_sha: str) -> Path:
    return Path(cache_dir) / "work" / photo_sha[:24]


def face_stages(aligned: StageOut, job: StageJob, run: Runner = direct,
                progress: Callable[[str], None] | None = None, until: str | None = None) -> dict[str, StageOut]:
    """Run every per-face stage (or those up to ``until``) for one aligned face → outputs by name."""
    out: dict[str, StageOut] = {aligned.stage: aligned}
    for spec in registry.FACE_STAGES:
        if progress:
            progress(spec.name)
        out[spec.name] = run(spec.name, job, spec.inputs(out))
        if spec.name == until:
            break
    return out
