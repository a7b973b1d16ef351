"""Time GAN inversion + the 14-view InterfaceGAN sweep at full size with random weights (no downloads).

Random-weight checkpoints in the published layouts (1024-px StyleGAN2 config-f, HyperStyle's
ResNet-34 hypernetwork + IR-SE-50 W encoder, e4e IR-SE-50) are written to a temporary models
folder and run through the same backend classes ``facerecon run`` uses, so loading, inversion,
weight-offset I/O and the sweep are all on the measured path. Speed does not depend on the
weight values, so the numbers stand for the real models (the thesis reports ≈ 25 s per face on a
GPU for the whole reconstruction).

Measured: one generator forward, each encoder forward, one hypernetwork pass, HyperStyle
inversion (``--iterations`` refinement passes), e4e inversion, one optimisation step (the full
optimisation is extrapolated to ``invert.optimize_steps``), and the sweep of ``--views`` images
(plus landmark yaw estimation on each). On CUDA each component is warmed up and averaged.

    python benchmarks/gan_invert_sweep.py                  # CPU, prints JSON
    python benchmarks/gan_invert_sweep.py --device cuda    # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB → GB


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int = 1, warmup: int = 0):
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    out = None
    for _ in range(repeats):
        out = fn()
    sync(device)
    return (time.perf_counter() - t) / repeats, out


def bench_hyperstyle(p, face, alphas, work, device, reps, warm) -> dict:
    """Load, the three networks alone, the full inversion and the sweep with its weight offsets."""
    import torch

    from facerecon.gan import backends
    from facerecon.gan.backends import HyperStyleInvert, InterfaceGanSweep

    cuda = device.type == "cuda"
    res: dict = {}
    HyperStyleInvert(p, device).check_ready()
    t = time.perf_counter()
    model, _ = backends.load_hyperstyle_cached(p, device)
    sync(device)
    res["load_hyperstyle_s"] = round(time.perf_counter() - t, 2)
    x = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    w = model.latent_avg[None]
    with torch.no_grad():
        res["generator_forward_s"] = round(timed(lambda: model.decoder.synthesis(w), device, reps, warm)[0], 3)
        res["w_encoder_s"] = round(timed(lambda: model.w_encoder(x), device, reps, warm)[0], 3)
        res["hypernet_pass_s"] = round(timed(lambda: model.hypernet(torch.cat([x, x], 1)), device, reps, warm)[0], 3)
    inv_b = HyperStyleInvert(p, device)
    dt, inv = timed(lambda: inv_b.invert(face, work), device, 1, 1 if cuda else 0)
    res["hyperstyle_invert_s"] = round(dt, 2)
    res["weight_deltas_mb"] = round(Path(inv.files["weight_deltas"]).stat().st_size / 2 ** 20, 1)
    sweep_b = InterfaceGanSweep(p, device)
    sweep_b.check_ready()
    if cuda:
        sweep_b.sweep(face, inv, alphas[:2], work)  # warm-up
    dt, views = timed(lambda: sweep_b.sweep(face, inv, alphas, work), device)
    res["sweep_s"] = round(dt, 2)
    res["sweep_image"] = list(views[0].image.shape)
    res["hyperstyle_invert_plus_sweep_s"] = round(res["hyperstyle_invert_s"] + res["sweep_s"], 2)
    return res


def bench_e4e(p, face, work, device, reps, warm) -> dict:
    import torch

    from facerecon.gan import backends
    from facerecon.gan.backends import E4eInvert

    t = time.perf_counter()
    e4e, _ = backends.load_e4e_cached(p, device)
    sync(device)
    res = {"load_e4e_s": round(time.perf_counter() - t, 2)}
    x = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    with torch.no_grad():
        res["e4e_encoder_s"] = round(timed(lambda: e4e.encoder(x), device, reps, warm)[0], 3)
    e_b = E4eInvert(p, device)
    res["e4e_invert_s"] = round(timed(lambda: e_b.invert(face, work), device, 1, 1 if device.type == "cuda" else 0)[0], 2)
    return res


def bench_optimize(p, face, work, device, steps, extrapolate_to) -> dict:
    """A few optimisation steps; the run is extrapolated to ``extrapolate_to`` steps."""
    from facerecon.gan.backends import OptimizeInvert

    o_b = OptimizeInvert(p, device)
    if device.type == "cuda":
        o_b.invert(face, work)
    dt, _ = timed(lambda: o_b.invert(face, work), device)
    per_step = dt / (steps + 1)  # the steps plus the final render
    return {"optimize_step_s": round(per_step, 3),
            "optimize_invert_extrapolated_s": round(per_step * (extrapolate_to + 1), 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", type=int, default=1024, choices=(256, 512, 1024))
    ap.add_argument("--iterations", type=int, default=5, help="HyperStyle refinement passes (its default: 5)")
    ap.add_argument("--views", type=int, default=14)
    ap.add_argument("--batch-size", type=int, default=2, help="sweep views per generator pass")
    ap.add_argument("--optimize-steps", type=int, default=300, help="optimisation steps to extrapolate to")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--no-yaw", action="store_true", help="skip landmark yaw estimation on the views")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from facerecon.config import load_params
    from facerecon.gan import backends
    from facerecon.gan.tiny import published_at, write_gan_models
    from facerecon.stages.base import AlignedFace

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    reps, warm = (5, 2) if cuda else (1, 1)
    res: dict = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
                 "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
                 "iterations": args.iterations, "views": args.views, "batch_size": args.batch_size}

    with tempfile.TemporaryDirectory(prefix="gan_bench_") as tmp:
        models = Path(tmp) / "models"
        t = time.perf_counter()
        write_gan_models(models, published_at(args.size), seed=0)
        res["write_random_checkpoints_s"] = round(time.perf_counter() - t, 2)
        res["checkpoint_mb"] = {p.name: round(p.stat().st_size / 2 ** 20, 1) for p in sorted(models.iterdir())}
        os.environ["FACERECON_MODELS"] = str(models)

        def params(backend: str, *sets: str):
            return load_params(None, [f"invert.backend={backend}", "pose_sweep.backend=interfacegan",
                                      f"invert.iterations={args.iterations}", f"pose_sweep.batch_size={args.batch_size}",
                                      f"pose_sweep.estimate_yaw={'false' if args.no_yaw else 'true'}", *sets])

        rng = np.random.default_rng(0)
        face = AlignedFace(image=rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), mask=np.ones((256, 256), bool),
                           landmarks=None)
        alphas = list(range(-7, -7 + args.views))

        work = Path(tmp) / "work"
        work.mkdir()
        res.update(bench_hyperstyle(params("hyperstyle"), face, alphas, work, device, reps, warm))
        backends.clear_cache()
        if cuda:
            torch.cuda.empty_cache()
        res.update(bench_e4e(params("e4e"), face, work, device, reps, warm))
        backends.clear_cache()
        steps = 3
        res.update(bench_optimize(params("optimize", f"invert.optimize_steps={steps}"), face, work, device, steps,
                                  args.optimize_steps))
        backends.clear_cache()

    res["peak_rss_gb"] = round(rss_gb(), 2)
    if cuda:
        res["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        from facerecon.io.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return res


if __name__ == "__main__":
    main()
