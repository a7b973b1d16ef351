"""How fast the AE learns shape: pretrain for a few minutes with given overrides, then score AE-only.

Used to choose the CPU defaults of the ``pretrain`` stage (measure, then change). Each run trains
from scratch into a temporary checkpoint and reports SIDE (×10⁻²) and MAD (°, Unsup3D normals)
of the AE alone on the first ``--faces`` test faces, next to the mean-shape and mean-depth baselines.

    python benchmarks/ae_convergence.py --minutes 8 --set pretrain.lr=5e-4 --set pretrain.batch_size=32

Needs the synthetic set (``python -m flows.benchmark synth``). One JSON line per run goes to
``benchmarks/results/ae_convergence.jsonl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facerecon.ae.train import load_checkpoint, pretrain
from facerecon.bench.metrics import no_tf32
from facerecon.bench.protocol import mean_depth_predictor, mean_shape_predictor, per_image_metrics
from facerecon.bench.variants import ae_predictor
from facerecon.config import load_params
from facerecon.io.datasets import SynthDataset


def score(predict, dataset: SynthDataset, faces: int) -> dict[str, float]:
    with no_tf32():
        frame = per_image_metrics(predict, dataset, faces)
    return {"side": round(float(frame["side"].mean()) * 100, 4), "mad": round(float(frame["mad"].mean()), 3),
            "mad_exact": round(float(frame["mad_exact"].mean()), 3)}


def yaw_correlation(nets, mp, dataset: SynthDataset, faces: int) -> float:
    """Pearson correlation of the predicted and true yaw: does the viewpoint network see the pose?"""
    from facerecon.ae.model import predict

    with torch.no_grad():
        yaw = predict(nets, mp, dataset.batch(slice(0, faces))["image"])["view"][:, 1].numpy()
    return round(float(np.corrcoef(yaw, dataset.true_views()[:faces, 1])[0, 1]), 3)


def _baseline(row: dict, name: str) -> str:
    return f"{row[name]['side']:.3f} / {row[name]['mad']:.2f}" if name in row else "—"


def table(path: Path) -> str:
    """The log as a markdown table (one row per run, newest last)."""
    lines = ["| label | overrides | threads | minutes | steps | s/step | AE SIDE ×10⁻² | AE MAD ° | yaw corr | "
             "mean-shape SIDE / MAD | mean-depth SIDE / MAD |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for raw in path.read_text().splitlines():
        r = json.loads(raw)
        sec = r.get("total_seconds") or r.get("train_seconds")
        per_step = f"{sec / max(r['steps'], 1):.2f}" if sec else "—"
        minutes = f"{r['minutes']:g}" if r.get("minutes") else (f"{sec / 60:.0f}" if sec else "—")
        lines.append(f"| {r['label']} | {' '.join(r['overrides']) or '(params.yaml)'} | {r['threads']} | "
                     f"{minutes} | {r['steps']} | {per_step} | {r['ae_only']['side']:.3f} | "
                     f"{r['ae_only']['mad']:.2f} | {r.get('yaw_corr', '')} | "
                     f"{r['mean_shape']['side']:.3f} / {r['mean_shape']['mad']:.2f} | {_baseline(r, 'mean_depth')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training time per run")
    ap.add_argument("--faces", type=int, default=300, help="test faces scored")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--set", action="append", default=[], help="params override, as facerecon --set")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="benchmarks/results/ae_convergence.jsonl")
    ap.add_argument("--keep", default="", help="write the checkpoint here (and resume from here)")
    ap.add_argument("--table", action="store_true", help="print the log as a markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.out)), end="")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        # with --keep the checkpoint (and its resume file) stay there: a second call with the
        # same overrides and a larger --minutes continues that run instead of starting over
        ckpt = Path(args.keep) if args.keep else Path(tmp) / "ae.pt"
        params = load_params("params.yaml", [*args.set, f"pretrain.max_minutes={args.minutes}",
                                             "pretrain.epochs=1000", f"pretrain.out={ckpt}"])
        t0 = time.perf_counter()
        meta = pretrain(params)
        seconds = time.perf_counter() - t0
        nets, mp, _ = load_checkpoint(ckpt)
    test = SynthDataset(Path(params.pretrain.dataset_path) / "test")
    row = {"label": args.label, "overrides": args.set, "minutes": args.minutes, "threads": torch.get_num_threads(),
           "ae_model": {"width": mp.width, "upsample": mp.upsample}, "steps": meta["steps"], "train_seconds": round(seconds, 1), "total_seconds": meta["seconds"], "faces": args.faces,
           "ae_only": score(ae_predictor(nets, mp), test, args.faces),
           "yaw_corr": yaw_correlation(nets, mp, test, args.faces),
           "ae_config": {k: v for k, v in dataclasses.asdict(mp).items()},
           "pretrain_config": dataclasses.asdict(params.pretrain),
           "mean_shape": score(mean_shape_predictor(Path(params.pretrain.dataset_path) / "train"), test, args.faces),
           "mean_depth": score(mean_depth_predictor(Path(params.pretrain.dataset_path) / "train"), test, args.faces),
           "last_loss": meta["history"][-1]["loss"] if meta["history"] else None}
    print(json.dumps(row))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
