"""The per-face stage sequence, written once and run either directly or as Prefect tasks.

``face_stages`` takes a ``run(stage, fn, *args)`` hook: the default calls ``fn(*args)``; the
Prefect flow passes one that calls the stage's task, so the order and wiring of the stages is
defined in this one place for the CLI, the benchmark and the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facerecon.config import Params
from facerecon.stages.ae_optimize import key_ae_optimize, run_ae_optimize
from facerecon.stages.align import key_align
from facerecon.stages.combine import key_combine, run_combine
from facerecon.stages.correct import key_correct, run_correct
from facerecon.stages.dreambooth import key_dreambooth, run_dreambooth
from facerecon.stages.export import key_export, run_export
from facerecon.stages.invert import key_invert, run_invert
from facerecon.stages.pose_sweep import key_pose_sweep, run_pose_sweep
from facerecon.stages.profile import key_profile, run_profile
from facerecon.stages.workspace import StageOut

FACE_STAGES = ("invert", "pose_sweep", "dreambooth", "profile", "ae_optimize", "combine", "correct", "export")

Runner = Callable[..., StageOut]

# stage -> (key function taking the stage function's arguments, index of the `root` argument)
KEY_FUNCS: dict[str, tuple[Callable[..., str], int]] = {
    "align": (key_align, 3),
    "invert": (key_invert, 3),
    "pose_sweep": (key_pose_sweep, 3),
    "dreambooth": (key_dreambooth, 3),
    "profile": (key_profile, 4),
    "ae_optimize": (key_ae_optimize, 4),
    "combine": (key_combine, 2),
    "correct": (key_correct, 3),
    "export": (key_export, 2),
}


def direct(stage: str, fn: Callable[..., StageOut], *args: Any) -> StageOut:
    return fn(*args)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def work_root(cache_dir: str | Path, photo_sha: str) -> Path:
    return Path(cache_dir) / "work" / photo_sha[:24]


def face_stages(face_dir: Path, aligned: StageOut, params: Params, root: Path, photo: dict,
                run: Runner = direct, progress: Callable[[str], None] | None = None) -> dict[str, StageOut]:
    """Run invert → export for one aligned face; returns every stage's output by name."""
    froot = root / face_dir.name
    aligned_size = params.align.output_size
    out: dict[str, StageOut] = {"align": aligned}

    def step(stage: str, fn: Callable[..., StageOut], *args: Any) -> StageOut:
        if progress:
            progress(stage)
        out[stage] = run(stage, fn, *args)
        return out[stage]

    inv = step("invert", run_invert, face_dir, aligned.key, params, froot)
    sweep = step("pose_sweep", run_pose_sweep, face_dir, inv, params, froot)
    db = step("dreambooth", run_dreambooth, face_dir, sweep, params, froot)
    prof = step("profile", run_profile, face_dir, inv, db, params, froot)
    ae = step("ae_optimize", run_ae_optimize, face_dir, sweep, prof, params, froot)
    step("combine", run_combine, ae, params, froot)
    step("correct", run_correct, ae, inv, params, froot, aligned_size)
    step("export", run_export, dict(out), params, froot, photo)
    return out
