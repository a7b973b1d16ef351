"""What the benchmark scripts share: `--config 'label: key=value ...'` arguments and a quiet exit."""

from __future__ import annotations

import os
import sys


def parse_config(text: str) -> tuple[str, list[str]]:
    """'label: a.b=1 c.d=x' → ('label', ['a.b=1', 'c.d=x']) (``facerecon.config.labelled_overrides``)."""
    from facerecon.config import labelled_overrides
    from facerecon.errors import ConfigError

    try:
        return labelled_overrides(text)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None


def exit_quietly(code: int) -> None:
    """Exit with ``code`` after flushing stdout, with stderr closed first: the ephemeral Prefect
    server's shutdown prints 'Error flushing events' tracebacks that are not the script's."""
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    sys.exit(code)
