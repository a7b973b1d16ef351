"""The benchmark report: reports/benchmark.md (our table beside the thesis's), metrics.json, plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from facerecon.bench.metrics import METRICS
from facerecon.bench.protocol import METRIC_NOTES, markdown_table, summary_metrics
from facerecon.io.atomic import atomic_write_bytes, atomic_write_text

# Thesis Tables 6.1 and 6.2 (BFM, SIDE ×10⁻², MAD °), and the Unsup3D paper's BFM numbers.
THESIS_TABLES = """\
| thesis row | SIDE ×10⁻² | MAD ° | our closest variant |
|---|---|---|---|
| Table 6.1 (1) Unsup3D (Wu et al. 2020) | 0.836 | 16.59 | `ae_only` |
| Table 6.1 (2) GAN2Shape | 0.795 | 15.01 | (not reproduced) |
| Table 6.1 (3) thesis method | 0.770 | 15.17 | `full` |
| Table 6.2 (1) without profile view | 0.836 | 16.59 | `ae_only` |
| Table 6.2 (2) add profile view | 0.825 | 16.48 | `ae_profile` |
| Table 6.2 (3) add HyperStyle GAN (pose sweep) | 0.802 | 15.93 | `ae_sweep` |
| Table 6.2 (4) add diffusion model | 0.770 | 15.17 | `full` |
| Unsup3D paper, BFM: average g.t. depth baseline | 1.990 | 23.26 | `mean_depth` / `mean_shape` |
| Unsup3D paper, BFM: Unsup3D | 0.793 | 16.51 | `ae_only` |
| Unsup3D paper, BFM: supervised | 0.410 | 10.78 | `supervised` |
"""

VARIANT_NOTES = """\
- `constant`: a flat depth map. `mean_depth` / `mean_shape`: the training set's average view /
  frontal depth, the same map for every face.
- `ae_only`: the pretrained photo-geometric autoencoder alone (Unsup3D).
- `ae_profile`, `ae_sweep`, `full`: per face, the AE's canonical face is turned to the ±90°
  profiles (and the 14 pose-sweep yaws) with the pipeline's view renderer, the AE is fine-tuned on
  those views (`ae_optimize`'s `fit_face`), and `full` adds the forehead correction. Offline, the
  views are rendered from the AE's own depth, so they add no shape information; the thesis's come
  from HyperStyle/InterfaceGAN and ControlNet, which is where its gain comes from.
- `oracle_views`: as `ae_sweep`, but the 14 sweep yaws and ±90° profiles are true renders of the
  synthetic face itself: what perfect pose extension would give the fine-tuning, the ceiling the
  thesis's GAN and diffusion views approach.
- `landmarks`: the offline `invert` proxy: mediapipe's 468 3D landmarks of each render (upscaled
  to 256 px) interpolated into dense depth, in the image's own view.
- `product`: what users run: the default offline pipeline (`facerecon run`: align, landmark
  depth, pose sweep, profiles, AE fine-tuning with the landmark prior, forehead correction) on
  each render upscaled to 256 px; its frontal depth is turned back into the render's view by the
  head rotation and alignment the pipeline found.
- `supervised`: the same networks trained on the truth (canonical depth, viewpoint, view depth
  and its normals) as well as the photometric loss: an upper bound for the architecture.
"""


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_metrics(table: pd.DataFrame, path: Path) -> Path:
    """SIDE and MAD per variant with error bars (std over subgroup means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("side", "mad"), strict=True):
        part = table[table["metric"] == key]
        x = np.arange(len(part))
        ax.bar(x, part["mean"], yerr=part["std"], capsize=4, color="#4c72b0")
        ax.set_xticks(x, part["variant"], rotation=30, ha="right")
        ax.set_title(METRICS[key][0])
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write_bytes(path, _png(fig))
    plt.close(fig)
    return path


def plot_subgroups(per_image: pd.DataFrame, subgroups: np.ndarray, path: Path) -> Path:
    """Spread of the subgroup means per variant (box plots of SIDE and MAD)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    variants = list(dict.fromkeys(per_image["variant"]))
    for ax, key in zip(axes, ("side", "mad"), strict=True):
        data = []
        for v in variants:
            vals = per_image[per_image["variant"] == v].set_index("face")[key]
            means = vals.reindex(subgroups.reshape(-1)).to_numpy().reshape(subgroups.shape).mean(-1)
            data.append(means.reshape(-1) * METRICS[key][1])
        ax.boxplot(data)
        ax.set_xticks(np.arange(1, len(variants) + 1), variants, rotation=30, ha="right")
        ax.set_title(f"{METRICS[key][0]}: subgroup means")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write_bytes(path, _png(fig))
    plt.close(fig)
    return path


def write_report(per_image: pd.DataFrame, table: pd.DataFrame, subgroups: np.ndarray, out_dir: str | Path, *,
                 timings: dict[str, float], setup: str, product: pd.DataFrame | None = None) -> dict[str, Path]:
    """metrics.json (DVC metrics), benchmark.md (with the thesis's numbers) and plots under ``out_dir``.

    ``product`` is the table of every variant and `product` on the faces `product` ran on; its
    `product` row joins metrics.json, and the markdown shows it whole.
    """
    out = Path(out_dir)
    paths = {"metrics": out / "metrics.json", "markdown": out / "benchmark.md",
             "plot_metrics": plot_metrics(table, out / "plots" / "side_mad.png"),
             "plot_subgroups": plot_subgroups(per_image, subgroups, out / "plots" / "subgroups.png")}
    metrics = summary_metrics(table)
    product_md = ""
    if product is not None and len(product):
        metrics["product"] = summary_metrics(product[product["variant"] == "product"]).get("product", {})
        n_sub = int(product["subgroups"].max())
        product_md = (f"## The product on the first test faces\n\n`product` runs the default offline pipeline "
                      "(`facerecon run`) on each render, so it is scored on fewer faces; here every variant on "
                      f"those faces ({n_sub} subgroup means per cell):\n\n{markdown_table(product)}\n")
    atomic_write_text(paths["metrics"], json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    times = "\n".join(f"| {k} | {v:.1f} |" for k, v in timings.items())
    examples = ("The first test faces, each depth shaded with the same light (ground truth, then every "
                "variant):\n\n![examples](eval/examples.png)\n\n") if (out / "eval" / "examples.png").is_file() else ""
    found = ""
    if "detected_faces" in per_image:
        marks = per_image[per_image["variant"] == "landmarks"]
        if len(marks):
            found = (f"`landmarks`: mediapipe found {int(marks['detected_faces'].iloc[0])} of {len(marks)} faces "
                     "(the others are scored as a flat map).\n\n")
    md = (f"# Benchmark: SIDE / MAD on the synthetic face set\n\n{setup}\n\n## Our results\n\n"
          f"{markdown_table(table)}\n{int(table['subgroups'].max())} subgroup means per cell.\n\n{found}"
          "![SIDE and MAD per variant](plots/side_mad.png)\n\n![subgroup spread](plots/subgroups.png)\n\n"
          f"{examples}{product_md}"
          f"## Variants\n\n{VARIANT_NOTES}\n## The thesis's numbers (BFM), for comparison\n\n{THESIS_TABLES}\n"
          "Our set is the project's own synthetic morphable faces (or a user's BFM file, `synth.source`), "
          "so absolute numbers are not interchangeable with the thesis's; the ratios between variants are "
          f"what carries over.\n\n## Metrics\n\n{METRIC_NOTES}\n## Stage times (s)\n\n| step | seconds |\n"
          f"|---|---|\n{times}\n")
    atomic_write_text(paths["markdown"], md)
    return paths
