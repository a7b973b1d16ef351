"""Stage `align`: photo → one aligned folder per face (largest face, or all with align.all_faces)."""

from __future__ import annotations

from pathlib import Path

from facerecon.stages.runtime import backend
from facerecon.stages.workspace import StageJob, StageOut, run_cached, save_face, stage_key

VERSION = "1"


def key_align(job: StageJob, up: dict[str, StageOut]) -> str:
    return stage_key("align", VERSION, job.params.align, [job.photo_sha])


def run_align(job: StageJob, up: dict[str, StageOut]) -> StageOut:
    def body(d: Path) -> dict:
        faces = backend("align", job.params).align(job.rgb)
        out = []
        for i, face in enumerate(faces):
            save_face(d / f"face{i}", face)
            out.append({"face": f"face{i}", "yaw": round(face.yaw, 2), "pitch": round(face.pitch, 2),
                        "roll": round(face.roll, 2), "size_px": face.meta.get("face_size_px")})
        return {"faces": out, "faces_in_photo": faces[0].meta.get("faces_in_photo", len(faces))}

    return run_cached(job.root, "align", key_align(job, up), body)


def face_dirs(aligned: StageOut) -> list[Path]:
    return [aligned.path / f["face"] for f in aligned.summary["faces"]]
