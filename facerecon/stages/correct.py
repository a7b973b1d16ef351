"""Stage `correct`: forehead depth correction on the AE's canonical depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerecon import registry
from facerecon.post.correct import correct_forehead
from facerecon.stages.workspace import StageJob, StageOut, load_npy, run_cached, save_npy, stage_key

VERSION = "3"
BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # mediapipe eyebrow landmarks


def brow_row(inverted: StageOut, crop: float, aligned_size: int, ae_size: int) -> int | None:
    """Eyebrow row in the AE's canonical map, from the frontalised landmarks when there are any."""
    path = inverted.path / "landmarks_frontal.npy"
    if not path.exists():
        return None
    lm = load_npy(path)
    ch = aligned_size * crop
    y0 = (aligned_size - round(ch)) // 2
    return int(round((float(lm[BROWS, 1].mean()) - y0) * ae_size / ch))


def key_correct(job: StageJob, up: dict[str, StageOut]) -> str:
    return stage_key("correct", VERSION, job.params.correct, registry.stage("correct").upstream_keys(up))


def run_correct(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    params, ae, inverted = job.params, up["ae_optimize"], up["invert"]

    def body(d: Path) -> dict:
        p = params.correct
        depth = load_npy(ae.path / "depth.npy")
        hull = ae.path / "face_mask.npy"
        mask = load_npy(hull if hull.exists() else ae.path / "mask.npy")
        row = brow_row(inverted, params.ae_optimize.crop, params.align.output_size, depth.shape[0])
        if p.enabled:
            out = correct_forehead(depth, mask, layers=p.layers, source_layer=p.source_layer,
                                   target_layer=p.target_layer, strength=p.strength, brow_row=row)
        else:
            out = depth
        save_npy(d / "depth.npy", out.astype(np.float32))
        return {"enabled": p.enabled, "brow_row": row, "max_change": float(np.abs(out - depth).max())}

    return run_cached(job.root, "correct", key_correct(job, up), body)
