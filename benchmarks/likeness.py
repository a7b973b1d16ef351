"""Likeness of the offline pipeline's 3D faces to their photos (dlib's face-recognition ResNet).

The real-photo set is made from the shipped public-domain photos (data/photos, see its README)
as a user's folder would hold them: as they are, mirrored, small (160 px), turned 12°, grey, and
as a low-quality JPEG. Each configuration (``--config 'label: key=value ...'``) reconstructs the
whole set with ``facerecon run``'s batch flow, then reads ``likeness`` from every result.json:
the identity distance between the photo and the renders at 0°, ±30°, ±45° (dlib: < 0.6 = same
person) and the front render's 68-landmark error (over the eye-corner distance).

    python benchmarks/likeness.py --config 'default:' --config 'ae anchor: ae_optimize.anchor=ae'

One JSON line per configuration goes to ``benchmarks/results/likeness.jsonl`` (per-photo values
included) and the log is rewritten as ``likeness.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

from PIL import Image, ImageOps  # noqa: E402
from script_support import exit_quietly, parse_config  # noqa: E402

from flows.reconstruct import run_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
YAWS = ("+0", "-30", "+30", "-45", "+45")


def real_photo_set(src: Path, out: Path) -> list[str]:
    """Six versions of every photo in ``src`` written to ``out``; their names."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted(src.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        small = im.copy()
        small.thumbnail((160, 160))
        versions = {"": im, "_mirrored": ImageOps.mirror(im), "_small": small,
                    "_turned": im.rotate(12, resample=Image.BICUBIC, fillcolor=(128, 128, 128)),
                    "_grey": ImageOps.grayscale(im).convert("RGB")}
        for tag, v in versions.items():
            v.save(out / f"{p.stem}{tag}.jpg", quality=92)
        im.save(out / f"{p.stem}_jpeg20.jpg", quality=20)
        names += [f"{p.stem}{tag}.jpg" for tag in (*versions, "_jpeg20")]
    return names


def summarise(out: Path) -> dict:
    faces = {}
    for result in sorted(out.glob("*/result.json")):
        lk = json.loads(result.read_text()).get("likeness") or {}
        if lk.get("photo_detected"):
            faces[result.parent.name] = {"distance": {y: lk["views"][y]["distance"] for y in YAWS},
                                         "landmark_error_front": lk["landmark_error_front"]}
    col = {y: [f["distance"][y] for f in faces.values()] for y in YAWS}
    return {"faces": len(faces),
            "median_distance": {y: round(statistics.median(v), 4) for y, v in col.items() if v},
            "same_person_share": {y: round(sum(d < 0.6 for d in v) / len(v), 3) for y, v in col.items() if v},
            "median_landmark_error_front": round(statistics.median(f["landmark_error_front"] for f in faces.values()), 4)
            if faces else None,
            "per_face": faces}


def table(path: Path) -> str:
    lines = ["| label | overrides | faces | identity distance 0° / ±30° / ±45° (median) | same person at 0° / ±45° | "
             "front landmark error | s/face |", "|---|---|---|---|---|---|---|"]
    for raw in path.read_text().splitlines():
        r = json.loads(raw)
        d, s = r["median_distance"], r["same_person_share"]
        pm30 = (d["-30"] + d["+30"]) / 2
        pm45 = (d["-45"] + d["+45"]) / 2
        lines.append(f"| {r['label']} | `{' '.join(r['overrides']) or '(defaults)'}` | {r['faces']}/{r['photos']} | "
                     f"{d['+0']:.3f} / {pm30:.3f} / {pm45:.3f} | {s['+0']:.0%} / {(s['-45'] + s['+45']) / 2:.0%} | "
                     f"{r['median_landmark_error_front']:.3f} | {r['seconds_per_face']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default=str(ROOT / "data" / "photos"))
    ap.add_argument("--config", action="append", default=[], help="'label: key=value ...' (repeatable)")
    ap.add_argument("--log", default=str(RESULTS / "likeness.jsonl"))
    ap.add_argument("--keep", help="keep each configuration's outputs under this folder")
    a = ap.parse_args(argv)
    configs = [parse_config(c) for c in a.config] or [("default", [])]
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = real_photo_set(Path(a.src), tmp / "photos")
        for i, (label, overrides) in enumerate(configs):
            out = Path(a.keep) / f"config{i}" if a.keep else tmp / f"out{i}"
            t0 = time.perf_counter()
            run_batch(str(tmp / "photos"), str(out), str(ROOT / "params.yaml"),
                      (*overrides, "export.likeness=on", f"cache.dir={tmp / 'cache'}"))
            sec = time.perf_counter() - t0
            row = {"label": label, "overrides": overrides, "photos": len(names),
                   "seconds_per_face": round(sec / len(names), 1), **summarise(out)}
            print(json.dumps({k: v for k, v in row.items() if k != "per_face"}), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
    log.with_suffix(".md").write_text(table(log))
    return 0


if __name__ == "__main__":
    exit_quietly(main())
