"""The diffusion extras (diffusers, transformers, peft) are optional: import them only here.

The core pipeline runs without them; selecting ``dreambooth.backend: diffusers`` or
``profile.backend: controlnet`` without them must be one clear line, not an ImportError
traceback from deep inside a stage.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from facerecon.errors import ConfigError

INSTALL_HINT = "install the extras with: pip install 'facerecon[diffusion]'"


def _quiet() -> None:
    # diffusers/transformers print advisory warnings (telemetry, torchvision fallbacks) on import
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def require(key: str, *names: str) -> list[ModuleType]:
    """Import ``names`` or raise ConfigError naming the params key that selected them."""
    _quiet()
    mods, missing = [], []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"{key}: needs the Python package(s) {', '.join(missing)}, which are not installed; "
                          f"{INSTALL_HINT}")
    return mods


def diffusers_stack(key: str, *, peft: bool = False) -> None:
    """Check the whole diffusion stack is importable (diffusers + transformers, + peft for LoRA)."""
    names = ["diffusers", "transformers", "safetensors"] + (["peft"] if peft else [])
    require(key, *names)
