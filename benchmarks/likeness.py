"""Likeness of the offline pipeline's 3D faces to their photos (dlib's face-recognition ResNet).

The same measurement as the DVC stage `likeness` (``facerecon.bench.likeness_set``: the shipped
photos in 6 versions each, reconstructed by ``facerecon run``'s batch flow, scored by dlib), for
ad-hoc configurations (``--config 'label: key=value ...'``) whose rows are kept as a log.

    python benchmarks/likeness.py --config 'default:' --config 'ae anchor: ae_optimize.anchor=ae'

One JSON line per configuration goes to ``benchmarks/results/likeness.jsonl`` (per-photo values
included) and the log is rewritten as ``likeness.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

from script_support import exit_quietly, parse_config  # noqa: E402

from facerecon.bench.likeness_set import markdown_table, real_photo_set  # noqa: E402
from facerecon.config import load_params  # noqa: E402
from tasks.bench import likeness_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default=str(ROOT / "data" / "photos"))
    ap.add_argument("--config", action="append", default=[], help="'label: key=value ...' (repeatable)")
    ap.add_argument("--log", default=str(RESULTS / "likeness.jsonl"))
    ap.add_argument("--keep", help="keep each configuration's outputs under this folder")
    a = ap.parse_args(argv)
    configs = [parse_config(c) for c in a.config] or [("default", [])]
    params = load_params(ROOT / "params.yaml")
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = real_photo_set(Path(a.src), tmp / "photos")
        for i, (label, overrides) in enumerate(configs):
            out = Path(a.keep) / f"config{i}" if a.keep else tmp / f"out{i}"
            frame, row = likeness_task.fn(params, label, overrides, str(tmp / "photos"), len(names), str(out),
                                          str(tmp / "cache"))  # the dvc stage's own row
            row["per_face"] = frame.drop(columns="config").to_dict(orient="records")
            print(json.dumps({k: v for k, v in row.items() if k != "per_face"}), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
    log.with_suffix(".md").write_text(markdown_table([json.loads(raw) for raw in log.read_text().splitlines()]))
    return 0


if __name__ == "__main__":
    exit_quietly(main())
