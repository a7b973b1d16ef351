"""Stage `align`: photo → one aligned folder per face (largest face, or all with align.all_faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerecon.align import align_photo
from facerecon.config import Params
from facerecon.stages.workspace import StageOut, run_cached, save_face, stage_key

VERSION = "1"


def align_key(photo_sha: str, params: Params) -> str:
    return stage_key("align", VERSION, params.align, [photo_sha])


def key_align(rgb: np.ndarray, photo_sha: str, params: Params, root: Path) -> str:
    return align_key(photo_sha, params)


def run_align(rgb: np.ndarray, photo_sha: str, params: Params, root: Path) -> StageOut:
    p = params.align

    def body(d: Path) -> dict:
        faces = align_photo(rgb, output_size=p.output_size, transform_size=p.transform_size,
                            min_confidence=p.min_detection_confidence, all_faces=p.all_faces,
                            max_faces=p.max_faces, min_face_size=p.min_face_size)
        out = []
        for i, face in enumerate(faces):
            save_face(d / f"face{i}", face)
            out.append({"face": f"face{i}", "yaw": round(face.yaw, 2), "pitch": round(face.pitch, 2),
                        "roll": round(face.roll, 2), "size_px": face.meta.get("face_size_px")})
        return {"faces": out, "faces_in_photo": faces[0].meta.get("faces_in_photo", len(faces))}

    return run_cached(root, "align", align_key(photo_sha, params), body)


def face_dirs(aligned: StageOut) -> list[Path]:
    return [aligned.path / f["face"] for f in aligned.summary["faces"]]
