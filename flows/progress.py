"""In-process progress display for the CLI (a no-op unless the CLI installed a display).

Workers in other processes (Dask) do not report here; the CLI then shows per-photo completion.
"""

from __future__ import annotations

import threading
from typing import Any

_DISPLAY: Any = None
_LOCAL = threading.local()


def install(display: Any) -> None:
    global _DISPLAY
    _DISPLAY = display


def start_batch(n: int) -> None:
    if _DISPLAY is not None:
        _DISPLAY.start_batch(n)


def start_photo(key: str) -> None:
    _LOCAL.key = key
    if _DISPLAY is not None:
        _DISPLAY.start_photo(key)


def stage(name: str) -> None:
    if _DISPLAY is not None:
        _DISPLAY.stage(getattr(_LOCAL, "key", ""), name)


def end_photo(ok: bool) -> None:
    if _DISPLAY is not None:
        _DISPLAY.end_photo(getattr(_LOCAL, "key", ""), ok)
