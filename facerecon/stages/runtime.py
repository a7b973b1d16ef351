"""Process-wide state for stage functions: the torch device and backends built once per process."""

from __future__ import annotations

import logging
import threading
from typing import Any

from facerecon.config import Params, section_hash
from facerecon.stages.base import make_backend

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_BACKENDS: dict[tuple[str, str], Any] = {}


def device_for(params: Params):
    import torch

    if params.device == "cuda" or (params.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from facerecon.errors import ConfigError

            raise ConfigError("device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def backend(stage: str, params: Params) -> Any:
    """The backend selected for ``stage`` (built once per process per params section)."""
    key = (stage, section_hash(getattr(params, stage)) + section_hash(params.ae_model))
    with _LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = make_backend(stage, params, device_for(params))
        return _BACKENDS[key]


def check_backends_ready(params: Params) -> None:
    """Build every selected backend and let it verify its weights, before any face is processed."""
    for stage in ("invert", "pose_sweep", "dreambooth", "profile"):
        backend(stage, params).check_ready()
    if params.export.likeness == "on":
        from facerecon import likeness

        likeness.require()
