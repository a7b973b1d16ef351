"""Process-wide state for stage functions: the torch device and backends built once per process."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from facerecon import registry
from facerecon.config import Params, section_hash
from facerecon.errors import ConfigError

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_BACKENDS: dict[tuple[str, str], Any] = {}


def device_for(params: Params):
    import torch

    if params.device == "cuda" or (params.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def backend_class(stage: str, name: str) -> type:
    table = registry.stage(stage).backends
    if not table:
        raise ConfigError(f"{stage}: this stage has no pluggable backend")
    target = table.get(name)
    if target is None:
        raise ConfigError(f"{stage}.backend: unknown backend {name!r} (known: {', '.join(table)})")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def backend(stage: str, params: Params) -> Any:
    """The backend selected for ``stage``, built once per process per params."""
    key = (stage, section_hash(params))
    with _LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = backend_class(stage, getattr(params, stage).backend)(params, device_for(params))
        return _BACKENDS[key]


def check_backends_ready(params: Params) -> None:
    """Build every selected backend and let it verify its weights, before any face is processed."""
    for spec in registry.STAGES:
        if spec.backends:
            backend(spec.name, params).check_ready()
    if params.export.likeness == "on":
        from facerecon import likeness

        likeness.require()
