"""Per-face wall time of the offline pipeline: cold (empty cache) and cached re-run.

One warm-up photo is run first so the one-time model loading (face detector, AE checkpoint) is
not counted; then every photo of SRC (and its mirror image, so the sample set gives more faces)
is reconstructed with an empty stage cache, then again with the cache filled. Per-face times are
the manifest's ``seconds_total``; stage medians come from each face's result.json.

    OMP_NUM_THREADS=2 python benchmarks/per_face.py [SRC] [--set stage.key=value ...]

Writes benchmarks/results/per_face.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

import pandas as pd  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from script_support import exit_quietly  # noqa: E402

from flows.reconstruct import run_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def prepare_photos(src: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(src.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        im.save(out / f"{p.stem}.jpg", quality=92)
        ImageOps.mirror(im).save(out / f"{p.stem}_mirrored.jpg", quality=92)
        n += 2
    return n


def batch(src: Path, dst: Path, overrides: list[str]) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    run_batch(str(src), str(dst), str(ROOT / "params.yaml"), tuple(overrides))
    wall = time.perf_counter() - t0
    return pd.read_parquet(dst / "manifest.parquet"), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", nargs="?", default=str(ROOT / "data" / "photos"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "per_face.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        n = prepare_photos(Path(args.src), photos)
        warm = tmp / "warm"
        warm.mkdir()
        first = sorted(photos.iterdir())[0]
        Image.open(first).save(warm / first.name)
        batch(warm, tmp / "warm_out", args.set + [f"cache.dir={tmp / 'warm_cache'}"])
        over = args.set + [f"cache.dir={tmp / 'cache'}"]
        cold, cold_wall = batch(photos, tmp / "out", over)
        cached, cached_wall = batch(photos, tmp / "out2", over)
        bad = cold[cold["status"] != "ok"]
        if len(bad):
            print(bad[["photo", "stage", "error"]].to_string(), file=sys.stderr)
        stages: dict[str, list[float]] = {}
        for face in (tmp / "out").glob("*/result.json"):
            for k, v in json.loads(face.read_text())["timings_s"].items():
                stages.setdefault(k, []).append(float(v))
    result = {
        "faces": int((cold["status"] == "ok").sum()), "photos": n,
        "cold_median_s": round(statistics.median(cold["seconds_total"]), 2),
        "cold_max_s": round(float(cold["seconds_total"].max()), 2),
        "cached_median_s": round(statistics.median(cached["seconds_total"]), 3),
        "cached_all_stages_cached": bool(cached["cached"].all()),
        "cold_batch_wall_s": round(cold_wall, 1), "cached_batch_wall_s": round(cached_wall, 1),
        "stage_median_s": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "overrides": args.set, "threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| faces | cold median s/face | cached median s/face | cold batch s | cached batch s |\n|---|---|---|---|---|\n"
          f"| {result['faces']} | {result['cold_median_s']} | {result['cached_median_s']} | "
          f"{result['cold_batch_wall_s']} | {result['cached_batch_wall_s']} |")
    print("stage medians (s):", result["stage_median_s"])
    return 0


if __name__ == "__main__":
    exit_quietly(main())
