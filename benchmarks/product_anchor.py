"""How much the offline pipeline should trust its landmark depth: `product` under overrides.

The `product` benchmark row (``facerecon run`` on the test renders) anchors the AE's depth to the
invert stage's landmark depth (``ae_optimize.depth_prior`` while fine-tuning, then
``ae_optimize.residual_sigma`` when the depth is put together). Each configuration given by
``--config 'label: key=value key=value'`` is run end to end on the first ``--faces`` test faces and
scored beside ``ae_only`` (the pretrained AE alone), ``landmarks`` and ``mean_depth`` on the same
faces (mean per-face SIDE ×10⁻² and MAD °; no subgroups, so these means are not the report's).

    python benchmarks/product_anchor.py --faces 20 --workers 2 \\
        --config 'default:' --config 'no anchor: ae_optimize.depth_prior=0 ae_optimize.residual_sigma=0'

One JSON line per configuration goes to ``benchmarks/results/product_anchor.jsonl`` and the
whole log is rewritten as ``product_anchor.md``. Needs the synthetic set and ``models/ae_synth.pt``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from script_support import parse_config

from facerecon.ae.train import load_checkpoint
from facerecon.bench.metrics import no_tf32
from facerecon.bench.product import product_depths
from facerecon.bench.protocol import mean_depth_predictor, per_image_metrics
from facerecon.bench.variants import LandmarkPredictor, ae_predictor, far_depth, lookup_predictor
from facerecon.config import load_params
from facerecon.io.datasets import SynthDataset
from facerecon.registry import checkpoint_path

RESULTS = Path(__file__).parent / "results"


def mean_scores(predict, dataset: SynthDataset, faces: int) -> dict[str, float]:
    with no_tf32():
        frame = per_image_metrics(predict, dataset, faces)
    return {"side": round(float(frame["side"].mean()) * 100, 4), "mad": round(float(frame["mad"].mean()), 3)}


def table(path: Path) -> str:
    lines = ["| label | overrides | faces | s/face | product SIDE ×10⁻² / MAD ° | ae_only | landmarks | mean_depth |",
             "|---|---|---|---|---|---|---|---|"]
    for raw in path.read_text().splitlines():
        r = json.loads(raw)
        cell = {k: f"{r[k]['side']:.3f} / {r[k]['mad']:.2f}" for k in ("product", "ae_only", "landmarks", "mean_depth")}
        lines.append(f"| {r['label']} | `{' '.join(r['overrides']) or '(defaults)'}` | {r['faces']} | "
                     f"{r['seconds_per_face']:.1f} | {cell['product']} | {cell['ae_only']} | {cell['landmarks']} | "
                     f"{cell['mean_depth']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--config", action="append", default=[], help="'label: key=value key=value' (repeatable)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--log", default=str(RESULTS / "product_anchor.jsonl"))
    a = ap.parse_args(argv)
    configs = [parse_config(c) for c in a.config] or [("default", [])]
    base = load_params(a.params)
    test = Path(base.evaluate.dataset_path) / "test"
    ds = SynthDataset(test)
    n = min(a.faces, len(ds))
    images = ds.batch(slice(0, n))["image"]
    far = far_depth(base.ae_model)
    nets, mp, _ = load_checkpoint(checkpoint_path(base, "ae_only"))
    fixed = {"ae_only": mean_scores(ae_predictor(nets, mp), ds, n),
             "landmarks": mean_scores(LandmarkPredictor(base.ae_model.fov, far), ds, n),
             "mean_depth": mean_scores(mean_depth_predictor(Path(base.evaluate.dataset_path) / "train"), ds, n)}
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    for label, overrides in configs:
        params = load_params(a.params, overrides)
        t0 = time.perf_counter()
        depths = product_depths(params, images, far, workers=a.workers)
        sec = time.perf_counter() - t0
        row = {"label": label, "overrides": overrides, "faces": n, "workers": a.workers,
               "seconds_per_face": round(sec / n, 2),
               "product": mean_scores(lookup_predictor(images, depths, "product"), ds, n), **fixed}
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    log.with_suffix(".md").write_text(table(log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
