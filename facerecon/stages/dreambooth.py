"""Stage `dreambooth`: the offline default records that it was skipped, and why."""

from __future__ import annotations

from pathlib import Path

from facerecon.config import Params
from facerecon.stages.base import AlignedFace, DreamboothResult, View
from facerecon.stages.runtime import backend
from facerecon.stages.workspace import StageOut, load_face, load_views, run_cached, save_json, stage_key

VERSION = "1"


class SkipDreambooth:
    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def train(self, face: AlignedFace, views: list[View], workdir: Path) -> DreamboothResult:
        return DreamboothResult(skipped=True, reason="dreambooth.backend=skip (offline default: no Stable "
                                "Diffusion weights; profiles come from reprojection)")


def load_dreambooth(d: Path) -> DreamboothResult:
    from facerecon.stages.workspace import load_json

    info = load_json(d / "dreambooth.json")
    if info.get("weights_dir") and not Path(info["weights_dir"]).is_absolute():
        info["weights_dir"] = str(d / info["weights_dir"])
    return DreamboothResult(**info)


def key_dreambooth(aligned_face: Path, sweep: StageOut, params: Params, root: Path) -> str:
    return stage_key("dreambooth", VERSION, params.dreambooth, [sweep.key])


def run_dreambooth(aligned_face: Path, sweep: StageOut, params: Params, root: Path) -> StageOut:
    key = key_dreambooth(aligned_face, sweep, params, root)

    def body(d: Path) -> dict:
        res = backend("dreambooth", params).train(load_face(aligned_face), load_views(sweep.path), d)
        if res.weights_dir and Path(res.weights_dir).is_relative_to(d):
            res.weights_dir = str(Path(res.weights_dir).relative_to(d))
        save_json(d / "dreambooth.json", {"skipped": res.skipped, "reason": res.reason,
                                           "weights_dir": res.weights_dir, "info": res.info})
        return {"skipped": res.skipped, "reason": res.reason}

    return run_cached(root, "dreambooth", key, body)
