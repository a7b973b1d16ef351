"""Offline `dreambooth` backend: no Stable Diffusion weights, so the stage records that it was skipped."""

from __future__ import annotations

from pathlib import Path

from facerecon.config import Params
from facerecon.stages.base import AlignedFace, DreamboothResult, View


class SkipDreambooth:
    def __init__(self, params: Params, device) -> None:
        self.params = params

    def check_ready(self) -> None:
        return None

    def train(self, face: AlignedFace, views: list[View], workdir: Path) -> DreamboothResult:
        return DreamboothResult(skipped=True, reason="dreambooth.backend=skip (offline default: no Stable "
                                "Diffusion weights; profiles come from reprojection)")
