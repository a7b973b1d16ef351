"""Stage `export`: the face's deliverables — OBJ/MTL/PNG, GLB, depth/normal maps, renders at
0°, 45°, ±90°, a turntable GIF, the generated views as one contact sheet, and result.json.

Writes into a staging folder; the batch flow publishes it to DST in one step (local rename or
an S3 upload with a completion marker written last), so DST never holds half a face.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from facerecon import registry
from facerecon.config import section_hash, to_dict
from facerecon.post.detail import detail_texture
from facerecon.stages.workspace import (
    StageJob,
    StageOut,
    load_json,
    load_npy,
    load_png,
    load_views,
    run_cached,
    save_json,
    save_npy,
    save_png,
    stage_key,
)

VERSION = "4"  # 3: result.json records the photo (it held the crop's pixels); 4: turntable likeness
RENDER_YAWS = {"render_front": 0.0, "render_45": 45.0, "render_left90": -90.0, "render_right90": 90.0}
LIKENESS_YAWS = (0.0, -30.0, 30.0, -45.0, 45.0)
LIKENESS_SIZE = 256
TURNTABLE_MAX_YAW = 60.0  # turntable frames turned further are profiles a frontal recognizer cannot judge


def versions() -> dict:
    import torch

    from facerecon import __version__

    return {"facerecon": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def likeness_of(photo: np.ndarray, depth: np.ndarray, albedo: np.ndarray, mask: np.ndarray, fov: float,
                required: bool, turntable: dict[float, np.ndarray] | None = None) -> dict | None:
    """The likeness block of result.json (facerecon.likeness) for renders at :data:`LIKENESS_YAWS`,
    and for the ``turntable`` frames (yaw → frame) a frontal recognizer can judge (|yaw| ≤
    :data:`TURNTABLE_MAX_YAW`); None when dlib is not installed and not ``required``."""
    from facerecon import likeness
    from facerecon.render import outputs as ex

    if required:
        likeness.require()
    elif not likeness.available():
        return None
    imgs = ex.render_yaws(depth, albedo, mask, fov, list(LIKENESS_YAWS), LIKENESS_SIZE)
    return likeness.likeness(photo, {f"{y:+.0f}": img for y, img in zip(LIKENESS_YAWS, imgs, strict=True)},
                             front="+0", turntable={yaw: frame for yaw, frame in (turntable or {}).items()
                                                    if abs(yaw) <= TURNTABLE_MAX_YAW})


def key_export(job: StageJob, up: dict[str, StageOut]) -> str:
    upstream = registry.stage("export").upstream_keys(up)
    return stage_key("export", VERSION, job.params.export, upstream, extra=section_hash(job.params.ae_model))


def run_export(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    from facerecon.render import outputs as ex

    params, stages = job.params, up

    def body(d: Path) -> dict:
        t_export = time.perf_counter()
        p = params.export
        fov = params.ae_model.fov
        depth = load_npy(stages["correct"].path / "depth.npy")
        albedo = np.clip(load_npy(stages["combine"].path / "albedo.npy"), 0, 1)
        crop = stages["ae_optimize"].path / "front_crop.png"
        if p.photo_detail > 0 and crop.exists():
            crop_rgb = load_png(crop)[..., :3].astype(np.float32) / 255.0
            albedo = detail_texture(albedo, crop_rgb, p.texture_size, p.photo_detail)
        mask = load_npy(stages["ae_optimize"].path / "mask.npy")
        save_npy(d / "depth.npy", depth)
        ex.write_depth_png(d / "depth.png", depth, mask)
        ex.write_normals_png(d / "normals.png", depth, mask, fov)
        mesh = ex.mesh_from_depth(depth, mask, fov, p.mesh_resolution)
        ex.write_obj(d, mesh, albedo, texture_size=p.texture_size)
        if p.glb:
            ex.write_glb(d / "face.glb", mesh, albedo, texture_size=p.texture_size)
        for name, yaw in RENDER_YAWS.items():
            save_png(d / f"{name}.png", ex.render_view(depth, albedo, mask, fov, yaw, p.render_size))
        turn_yaws = ex.turntable_yaws(p.turntable_frames)
        frames = ex.render_turntable(depth, albedo, mask, fov, turn_yaws, min(p.render_size, 256))
        ex.write_gif(d / "turntable.gif", frames)
        views = load_views(stages["pose_sweep"].path) + load_views(stages["profile"].path)
        views.sort(key=lambda v: v.yaw)
        save_png(d / "views.png", ex.contact_sheet([v.image for v in views], [f"{v.yaw:+.0f}°" for v in views]))
        face_likeness = None
        if p.likeness != "off" and crop.exists():
            face_likeness = likeness_of(load_png(crop)[..., :3], depth, albedo, mask, fov, required=p.likeness == "on",
                                        turntable=dict(zip(turn_yaws, frames, strict=True)))
        timings = {s: round(o.seconds, 3) for s, o in stages.items()}
        timings["export"] = round(time.perf_counter() - t_export, 3)  # all but writing result.json itself
        result = {
            "photo": job.photo,
            "stages": {s: {"key": o.key, "seconds": round(o.seconds, 3), "cached": o.cached, "summary": o.summary}
                       for s, o in stages.items()},
            "timings_s": timings,
            "params_sha256": section_hash(params),
            "params": to_dict(params),
            "versions": versions(),
            "ae": load_json(stages["ae_optimize"].path / "ae.json"),
        }
        if face_likeness is not None:
            result["likeness"] = face_likeness
        save_json(d / "result.json", result)
        return {"files": sorted(f.name for f in d.iterdir() if not f.name.startswith("_"))}

    return run_cached(job.root, "export", key_export(job, up), body)
