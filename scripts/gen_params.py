"""Rewrite params.yaml from the defaults in facerecon/config.py (one section per stage).

    .venv/bin/python scripts/gen_params.py          # after adding or changing a parameter
"""

from __future__ import annotations

import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facerecon.config import Params, to_dict  # noqa: E402

HEADER = """\
# facerecon parameters: one section per stage (names as in DESIGN.md), then the benchmark's.
# Every key is checked on load: unknown keys, wrong types and out-of-range values are errors.
# Override any of them on the command line: facerecon run SRC DST --set ae_optimize.steps=100
# (Regenerate from the defaults in facerecon/config.py with scripts/gen_params.py.)
"""


def render() -> str:
    data = to_dict(Params())
    parts = [HEADER]
    for f in fields(Params):
        value = data[f.name]
        if is_dataclass(getattr(Params(), f.name)):
            body = yaml.safe_dump({f.name: value}, sort_keys=False, default_flow_style=False, width=200,
                                  allow_unicode=True)
        else:
            body = yaml.safe_dump({f.name: value}, sort_keys=False)
        parts.append(body)
    return "\n".join(parts)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "params.yaml"
    out.write_text(render())
    print(f"wrote {out}")
