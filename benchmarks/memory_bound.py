"""Peak memory of listing + validating a folder of photos does not grow with the folder.

The batch flow lists SRC (keys only: ``flows.reconstruct.list_photos``) and then reads and
decodes one photo at a time (``LocalStorage.read_bytes`` + ``facerecon.io.images.load_image``,
what ``process_photo`` does before `align`). This script runs exactly that path over folders of
N small JPEGs, each N in a fresh process, and reports the peak resident memory (VmHWM) above
the process's baseline after imports. The full reconstruction is left out on purpose: it costs
seconds per face, and its per-face memory is the same for every face.

    python benchmarks/memory_bound.py               # 200, 1000 and 3000 photos
    python benchmarks/memory_bound.py --sizes 200 1000 --json reports/memory_bound.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vm_hwm_kib() -> int:
    """Peak resident set size of this process so far (kB), from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def make_folder(folder: Path, n: int, side: int = 320) -> None:
    """n distinct small JPEGs (the sample photos, shifted and tinted so no two files are equal)."""
    import numpy as np
    from PIL import Image

    sources = []
    for p in sorted((ROOT / "data" / "photos").glob("*.jpg")):
        im = Image.open(p).convert("RGB")
        im.thumbnail((side, side))
        sources.append(np.asarray(im))
    for i in range(n):
        arr = np.roll(sources[i % len(sources)], i % 37, axis=1).copy()
        arr[..., i % 3] = arr[..., i % 3] // 2 + (i % 97)
        sub = folder / f"set{i // 250:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(sub / f"photo_{i:05d}.jpg", quality=85)


def measure(folder: str) -> dict:
    """In this process: list, then read + validate each photo in turn, as the batch flow does."""
    from facerecon.io.images import ImageLimits, load_image
    from facerecon.io.storage import open_storage
    from flows.reconstruct import list_photos

    base = vm_hwm_kib()
    t0 = time.perf_counter()
    keys = list_photos(folder, None)
    after_list = vm_hwm_kib()
    storage = open_storage(folder)
    limits = ImageLimits()
    pixels = 0
    for key in keys:
        img = load_image(storage.read_bytes(key, max_bytes=limits.max_bytes), key, limits)
        pixels += img.rgb.shape[0] * img.rgb.shape[1]
        del img
    return {"photos": len(keys), "baseline_mib": base / 1024, "after_listing_mib": after_list / 1024,
            "peak_mib": vm_hwm_kib() / 1024, "growth_mib": (vm_hwm_kib() - base) / 1024,
            "megapixels_decoded": pixels / 1e6, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 3000])
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # child mode: one folder
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="facerecon-membench-") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            make_folder(folder, n)
            out = subprocess.run([sys.executable, __file__, "--measure", str(folder)], capture_output=True,
                                 text=True, check=True, cwd=ROOT)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(res)
            print(f"{res['photos']:>6} photos: peak {res['peak_mib']:.1f} MiB, growth over baseline "
                  f"{res['growth_mib']:.1f} MiB ({res['megapixels_decoded']:.0f} Mpx decoded in {res['seconds']:.1f} s)",
                  flush=True)
    first, last = results[0], results[-1]
    print(f"peak growth {first['photos']} -> {last['photos']} photos: "
          f"{last['growth_mib'] - first['growth_mib']:+.1f} MiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
