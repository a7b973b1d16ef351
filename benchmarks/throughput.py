"""Batch throughput: faces per minute for N photos with 1 and with 2 workers (Dask), on this machine.

The N photos are distinct variants (crop, mirror, brightness, size) of data/photos/, so no stage
is served from a cache. Each configuration is one `facerecon run` process with an empty cache,
timed end to end (imports and Prefect start-up included, as a user sees it); the manifest gives
the per-face times. The load average before and after is recorded: anything else running on the
machine (e.g. an AE pretraining job) takes cores away from the workers.

    python benchmarks/throughput.py [--photos 20] [--workers 1 2] [--set stage.key=value ...]

Writes benchmarks/results/throughput.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parent.parent
# default params except a shorter per-face AE fine-tune (60 → 10 steps) and a 9-frame turntable
DEFAULT_SET = ["ae_optimize.steps=10", "export.turntable_frames=9"]


def make_photos(n: int, out: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    bases = [Image.open(p).convert("RGB") for p in sorted((ROOT / "data" / "photos").glob("*.jpg"))]
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = bases[i % len(bases)]
        w, h = im.size
        s = rng.uniform(0.85, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        v = im.crop((x, y, x + cw, y + ch))
        if i % 4 >= 2:
            v = ImageOps.mirror(v)
        v = ImageEnhance.Brightness(v).enhance(rng.uniform(0.9, 1.1))
        v.thumbnail((rng.randint(320, 480),) * 2)
        v.save(out / f"photo_{i:02d}.jpg", quality=92)


def run(src: Path, work: Path, workers: int, sets: list[str]) -> dict:
    dst, cache = work / f"out_w{workers}", work / f"cache_w{workers}"
    cmd = [str(Path(sys.executable).parent / "facerecon"), "run", str(src), str(dst), "--no-progress",
           "--workers", str(workers)]
    for s in [*sets, f"cache.dir={cache}"]:
        cmd += ["--set", s]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.setdefault("OMP_NUM_THREADS", "1")
    load0, t0 = os.getloadavg()[0], time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"facerecon run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    m = pd.read_parquet(dst / "manifest.parquet")
    ok = int((m["status"] == "ok").sum())
    return {"workers": workers, "photos": len(m), "faces_ok": ok, "wall_s": round(wall, 1),
            "faces_per_min": round(ok / wall * 60, 2),
            "median_face_s": round(statistics.median(m.loc[m["status"] == "ok", "seconds_total"]), 1),
            "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", action="append", default=None, metavar="STAGE.KEY=VALUE")
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. other load)")
    args = ap.parse_args()
    sets = args.set if args.set is not None else DEFAULT_SET
    with tempfile.TemporaryDirectory(prefix="facerecon-throughput-") as tmp:
        work = Path(tmp)
        make_photos(args.photos, work / "photos")
        rows = [run(work / "photos", work, w, sets) for w in args.workers]
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "params_set": sets, "note": args.note, "runs": rows,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = ROOT / "benchmarks" / "results" / "throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("| workers | photos | faces ok | wall s | faces/min | median s/face | load before → after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['photos']} | {r['faces_ok']} | {r['wall_s']} | {r['faces_per_min']} | "
              f"{r['median_face_s']} | {r['loadavg_1min_before']} → {r['loadavg_1min_after']} |")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
