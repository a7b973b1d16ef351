"""Time the pure-torch rasterizer on the workloads the project runs.

Cases (median of ``--repeats`` runs after one warm-up; forward = rasterize only, fwd+bwd adds a
backward through the barycentrics and depth to the depth map):

  * ``ae``: the autoencoder's warp — batch 64 face-like 64×64 depth grids (≈8k faces each),
    random views (yaw ±30°, pitch ±10°), rendered at 64×64; also the whole ``warp_grid``.
  * ``ae-rough``: the same with random-noise depth (the untrained AE's worst case: long thin
    triangles at every view).
  * ``export``: one 256×256 grid (130k faces) rendered at 512×512.
  * ``turntable``: ``export.render_turntable`` — 24 shaded, textured frames at 256×256.

    OMP_NUM_THREADS=2 python benchmarks/render_speed.py              # CPU, 2 threads
    python benchmarks/render_speed.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facerecon.geometry.camera import view_transform  # noqa: E402
from facerecon.geometry.mesh import depth_to_points, grid_faces  # noqa: E402
from facerecon.render import outputs as export  # noqa: E402
from facerecon.render import rasterize, warp_grid  # noqa: E402

FOV = 10.0


def face_depth(B: int, S: int, rough: bool, device) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    r2 = (x / 0.75) ** 2 + (y / 0.95) ** 2
    d = 1.1 - 0.15 * torch.sqrt((1 - r2).clamp(min=0)) - 0.05 * torch.exp(-(x ** 2 + (y - 0.05) ** 2) / 0.02)
    d = d.expand(B, S, S).clone()
    if rough:
        d = 0.9 + 0.2 * torch.rand(B, S, S, generator=torch.Generator().manual_seed(0))
    return d.to(device)


def views(B: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    v = torch.zeros(B, 6)
    v[:, 1] = (torch.rand(B, generator=g) * 2 - 1) * np.radians(30)
    v[:, 0] = (torch.rand(B, generator=g) * 2 - 1) * np.radians(10)
    v[:, 3:5] = (torch.rand(B, 2, generator=g) * 2 - 1) * 0.02
    return v.to(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def raster_case(B: int, S: int, out: int, rough: bool, device, repeats: int) -> dict:
    depth = face_depth(B, S, rough, device)
    view = views(B, device) if B > 1 else torch.tensor([[0.0, 0.4, 0, 0, 0, 0]], device=device)
    faces = grid_faces(S, S, device=device)

    def fwd(grad: bool):
        d = depth.clone().requires_grad_(grad)
        frag = rasterize(view_transform(depth_to_points(d, FOV), view), faces, (out, out), FOV)
        if grad:
            (frag.zbuf.sum() + frag.bary.square().sum()).backward()
        return frag

    frag = fwd(False)
    return {"faces": int(faces.shape[0]), "batch": B, "out": out,
            "coverage": round(float(frag.mask.float().mean()), 3),
            "forward_s": median_time(lambda: fwd(False), device, repeats),
            "fwd_bwd_s": median_time(lambda: fwd(True), device, repeats)}


def warp_case(B: int, S: int, device, repeats: int) -> dict:
    depth = face_depth(B, S, False, device)
    view = views(B, device)
    img = torch.rand(B, 3, S, S, device=device)

    def run():
        d = depth.clone().requires_grad_(True)
        grid, _, mask = warp_grid(d, view, FOV)
        out = torch.nn.functional.grid_sample(img, grid, align_corners=True)
        (out * mask.unsqueeze(1)).mean().backward()

    return {"faces": 2 * (S - 1) ** 2, "batch": B, "out": S, "fwd_bwd_s": median_time(run, device, repeats)}


def turntable_case(repeats: int) -> dict:
    S = 64
    y, x = (np.mgrid[0:S, 0:S] / (S - 1)) * 2 - 1
    r2 = (x / 0.8) ** 2 + (y / 0.95) ** 2
    depth = 1.1 - 0.1 * np.sqrt(np.clip(1 - r2, 0, None)) - 0.035 * np.exp(-(x ** 2 / 0.01 + y ** 2 / 0.04))
    albedo = np.random.default_rng(0).uniform(0.3, 0.8, (256, 256, 3)).astype(np.float32)
    t = median_time(lambda: export.render_turntable(depth, albedo, r2 < 0.8, FOV, 24, 256), torch.device("cpu"),
                    repeats)
    return {"frames": 24, "out": 256, "total_s": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = {
        "ae (64 grid, B64, 64px)": raster_case(64, 64, 64, False, device, args.repeats),
        "ae-rough (noise depth)": raster_case(64, 64, 64, True, device, args.repeats),
        "ae warp_grid + sample": warp_case(64, 64, device, args.repeats),
        "export (256 grid, 512px)": raster_case(1, 256, 512, False, device, args.repeats),
    }
    if device.type == "cpu":
        rows["turntable (24 × 256px)"] = turntable_case(max(1, args.repeats // 2))
    meta = {"device": str(device), "threads": args.threads, "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine()}
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return
    print(f"# render_speed  device={meta['device']} threads={args.threads} torch={meta['torch']}")
    print(f"{'case':28s} {'faces':>8s} {'batch':>5s} {'out':>5s} {'forward s':>10s} {'fwd+bwd s':>10s}")
    for name, r in rows.items():
        fw = r.get("forward_s", r.get("total_s"))
        fb = r.get("fwd_bwd_s")
        print(f"{name:28s} {r.get('faces', r.get('frames', '')):>8} {r.get('batch', 1):>5} {r['out']:>5} "
              f"{'' if fw is None else f'{fw:.3f}':>10s} {'' if fb is None else f'{fb:.3f}':>10s}")


if __name__ == "__main__":
    main()
