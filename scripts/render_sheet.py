"""One PNG with a row per reconstructed face: the photo, renders at 0°, 45°, ±90°, depth and normals.

    .venv/bin/python scripts/render_sheet.py OUT_DIR docs/render_sheet.png [--photos data/photos]

Several ``LABEL=OUT_DIR`` arguments give a before/after sheet: per face, one row per OUT_DIR,
labelled, in the order given.

    .venv/bin/python scripts/render_sheet.py before=/tmp/a after=/tmp/b docs/before_after.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

COLUMNS = [("photo", None), ("front", "render_front.png"), ("45°", "render_45.png"),
           ("left 90°", "render_left90.png"), ("right 90°", "render_right90.png"), ("depth", "depth.png"),
           ("normals", "normals.png")]


def find_photo(photos: Path, stem: str) -> Path | None:
    for p in sorted(photos.glob(f"{stem}.*")):
        return p
    return None


def tile(path: Path | None, size: int) -> Image.Image:
    canvas = Image.new("RGB", (size, size), "white")
    if path is None or not path.is_file():
        return canvas
    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16-bit depth: stretch to 8 bits for the sheet
            import numpy as np

            a = np.asarray(im, dtype=np.float64)
            lo, hi = np.percentile(a, 1), np.percentile(a, 99)
            im = Image.fromarray((np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8))
        im = im.convert("RGB")
        f = size / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.LANCZOS)
        canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dirs", nargs="+", metavar="[LABEL=]OUT_DIR")
    ap.add_argument("png")
    ap.add_argument("--photos", default="data/photos")
    ap.add_argument("--size", type=int, default=192)
    args = ap.parse_args()
    runs = [tuple(a.split("=", 1)) if "=" in a else ("", a) for a in args.out_dirs]
    names = sorted({p.parent.name for _, d in runs for p in Path(d).glob("*/result.json")})
    if not names:
        raise SystemExit(f"{', '.join(d for _, d in runs)}: no reconstructed faces (no */result.json)")
    rows = [(label, Path(d) / n) for n in names for label, d in runs]
    s, head = args.size, 24
    sheet = Image.new("RGB", (s * len(COLUMNS), head + s * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (label, _) in enumerate(COLUMNS):
        draw.text((c * s + 6, 6), label, fill="black")
    for r, (label, face) in enumerate(rows):
        for c, (_, name) in enumerate(COLUMNS):
            path = find_photo(Path(args.photos), face.name) if name is None else face / name
            sheet.paste(tile(path, s), (c * s, head + r * s))
        if label:
            draw.rectangle((0, head + r * s, 8 + 7 * len(label), head + r * s + 16), fill="white")
            draw.text((4, head + r * s + 2), label, fill="black")
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.png, optimize=True)
    print(f"wrote {args.png} ({len(names)} faces, {len(runs)} runs)")


if __name__ == "__main__":
    main()
