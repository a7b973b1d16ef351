"""The likeness benchmark's data and tables: a real-photo set, and dlib's verdict per face.

The set is made from a folder of real photos as a user's folder would hold them: each photo as
it is, mirrored, small (160 px), turned 12°, grey, and as a JPEG of quality 20. Each row of the
benchmark reconstructs the whole set (``facerecon run``'s batch flow) and reads the ``likeness``
block of every ``result.json``: the identity distance between the photo and the renders at 0°,
±30°, ±45° and the turntable (dlib's ResNet: < 0.6 = the same person) and the front render's
68-landmark error.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from facerecon.io.atomic import atomic_save, atomic_write_text

YAWS = ("+0", "-30", "+30", "-45", "+45")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def real_photo_set(src: Path, out: Path) -> list[str]:
    """Six versions of every photo in ``src`` written to ``out`` (JPEG); their names."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted(Path(src).iterdir()):
        if p.suffix.lower() not in PHOTO_SUFFIXES or p.name.startswith("."):
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


def per_photo(out: Path, label: str) -> pd.DataFrame:
    """One row per reconstructed face of a batch output folder: its distances and landmark error."""
    rows = []
    for result in sorted(Path(out).glob("*/result.json")):
        lk = json.loads(result.read_text()).get("likeness") or {}
        row = {"config": label, "face": result.parent.name, "photo_detected": bool(lk.get("photo_detected"))}
        if row["photo_detected"]:
            row.update({f"distance_{y}": lk["views"][y]["distance"] for y in YAWS})
            row["landmark_error_front"] = lk.get("landmark_error_front")
            turn = lk.get("turntable") or {}
            row["distance_turntable"] = turn.get("mean_distance")
            row["turntable_same_person"] = turn.get("same_person_share")
        rows.append(row)
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame, photos: int, seconds: float) -> dict:
    """The medians of one row (config) of the benchmark."""
    ok = frame[frame["photo_detected"]] if len(frame) else frame
    med = {y: round(float(statistics.median(ok[f"distance_{y}"])), 4) for y in YAWS} if len(ok) else {}
    same = {y: round(float((ok[f"distance_{y}"] < 0.6).mean()), 3) for y in YAWS} if len(ok) else {}
    turn = ok["distance_turntable"].dropna() if "distance_turntable" in ok else pd.Series(dtype=float)
    return {"faces": int(len(ok)), "photos": photos, "seconds_per_face": round(seconds / max(photos, 1), 1),
            "median_distance": med, "same_person_share": same,
            "median_distance_turntable": round(float(turn.median()), 4) if len(turn) else None,
            "median_landmark_error_front": round(float(ok["landmark_error_front"].median()), 4) if len(ok) else None}


def markdown_table(rows: list[dict]) -> str:
    """The benchmark's table: one line per config (each row of ``rows`` has ``label``, ``overrides``
    and the :func:`summary` keys)."""
    lines = ["| label | overrides | faces | identity distance 0° / ±30° / ±45° / turntable (median) | "
             "same person at 0° / ±45° | front landmark error | s/face |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        d, s = r["median_distance"], r["same_person_share"]
        if not d:
            lines.append(f"| {r['label']} | `{' '.join(r['overrides']) or '(defaults)'}` | 0/{r['photos']} | "
                         "- | - | - | - |")
            continue
        turn = r.get("median_distance_turntable")
        lines.append(f"| {r['label']} | `{' '.join(r['overrides']) or '(defaults)'}` | {r['faces']}/{r['photos']} | "
                     f"{d['+0']:.3f} / {(d['-30'] + d['+30']) / 2:.3f} / {(d['-45'] + d['+45']) / 2:.3f} / "
                     f"{'-' if turn is None else f'{turn:.3f}'} | "
                     f"{s['+0']:.0%} / {(s['-45'] + s['+45']) / 2:.0%} | {r['median_landmark_error_front']:.3f} | "
                     f"{r['seconds_per_face']:.1f} |")
    return "\n".join(lines) + "\n"


def write_likeness(rows: list[dict], per_photo: pd.DataFrame, out: Path, photos: str) -> None:
    """``out``/{likeness.md, per_photo.parquet, likeness.png, summary.json}, each atomically."""
    atomic_save(out / "per_photo.parquet", lambda tmp: per_photo.to_parquet(tmp, index=False))
    atomic_write_text(out / "likeness.md", f"# Likeness: {len(rows)} configurations, photos from `{photos}` in 6 "
                      f"versions each\n\n{markdown_table(rows)}")
    atomic_save(out / "likeness.png", lambda tmp: plot(rows, tmp))
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=2) + "\n")


def plot(rows: list[dict], path: Path) -> Path:
    """Median identity distance against render yaw, one line per config, dlib's threshold drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yaws = [-45, -30, 0, 30, 45]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for r in rows:
        if r["median_distance"]:
            ax.plot(yaws, [r["median_distance"][f"{y:+d}"] for y in yaws], marker="o", label=r["label"])
    ax.axhline(0.6, color="grey", ls="--", lw=1, label="same person below (dlib: 0.6)")
    ax.set_xlabel("render yaw (°)")
    ax.set_ylabel("identity distance to the photo (median)")
    ax.set_xticks(yaws)
    ax.set_ylim(0, max(0.8, *(max(r["median_distance"].values()) + 0.05 for r in rows if r["median_distance"])))
    ax.legend(fontsize=8)
    ax.set_title("Likeness of the 3D face to its photo")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
