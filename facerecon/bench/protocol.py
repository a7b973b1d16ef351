"""The thesis's evaluation protocol (§6.1): 1000 test faces → 10 subgroups × 100, repeated 10 times.

A *variant* is any callable ``predict_depth(images) -> depth``: images (N, 3, S, S) in [0, 1],
predicted **view** depth (N, S, S) in the project camera (Unsup3D's recon depth; pixels the
prediction does not cover may be left at or beyond ``max_depth + (max_depth - min_depth)/2``,
Unsup3D's far clamp, and are then not scored). Every metric is computed once per face
(:func:`per_image_metrics`); the subgroups only decide how per-face values are averaged
(:func:`aggregate`): each repeat draws a fresh random partition (seeded by ``(seed, repeat)``),
each subgroup gives one mean, and the table reports the mean ± standard deviation over all
``repeats × n_subgroups`` subgroup means.

Baseline variants so every number has a floor: :func:`constant_predictor` (flat depth) and
:func:`mean_depth_predictor` (the training set's average ground-truth view depth, Unsup3D's
"average g.t. depth") / :func:`mean_shape_predictor` (its average frontal shape).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from facerecon import registry
from facerecon.bench.metrics import METRICS, evaluate_depths
from facerecon.errors import ConfigError, DatasetError
from facerecon.io.atomic import atomic_save, atomic_write_text
from facerecon.io.datasets import SynthDataset

log = logging.getLogger(__name__)

Predictor = Callable[[Tensor], Tensor]


def make_subgroups(n_faces: int, n_subgroups: int, subgroup_size: int, repeats: int, seed: int) -> np.ndarray:
    """Face indices (repeats, n_subgroups, subgroup_size): per repeat, disjoint random subgroups of range(n_faces)."""
    for key, value in (("n_faces", n_faces), ("n_subgroups", n_subgroups), ("subgroup_size", subgroup_size),
                       ("repeats", repeats)):
        if int(value) != value or value < 1:
            raise ConfigError(f"evaluate.{key}: must be a positive integer, got {value!r}")
    need = n_subgroups * subgroup_size
    if need > n_faces:
        raise ConfigError(f"evaluate.n_subgroups: {n_subgroups} subgroups × {subgroup_size} faces need {need} "
                          f"distinct faces, but only {n_faces} are evaluated")
    out = np.empty((repeats, n_subgroups, subgroup_size), dtype=np.int64)
    for r in range(repeats):
        rng = np.random.default_rng(np.random.SeedSequence([seed, r]))
        out[r] = rng.permutation(n_faces)[:need].reshape(n_subgroups, subgroup_size)
    return out


def check_faces(n_available: int, n_faces: int, n_subgroups: int, subgroup_size: int, where: str) -> None:
    """The split must hold the faces the protocol asks for (one clear error otherwise)."""
    if n_faces > n_available:
        need = n_subgroups * subgroup_size
        raise DatasetError(f"{where}: holds {n_available} faces, but evaluate.n_faces is {n_faces} "
                           f"({n_subgroups} subgroups × {subgroup_size} = {need} needed); make a larger test split "
                           f"(synth.n_test) or lower evaluate.n_faces / n_subgroups / subgroup_size")


def _check_prediction(name: str, pred: Tensor, want: tuple[int, ...]) -> Tensor:
    if not isinstance(pred, Tensor) or tuple(pred.shape) != want:
        shape = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ValueError(f"variant {name!r} returned {shape}, expected a depth tensor {want}")
    if not torch.isfinite(pred).all() or (pred <= 0).any():
        raise ValueError(f"variant {name!r} returned non-finite or non-positive depth")
    return pred


def per_image_metrics(predict: Predictor, dataset: SynthDataset, n_faces: int, *, name: str = "variant",
                      batch_size: int = 100) -> pd.DataFrame:
    """Every metric for faces 0..n_faces-1 of ``dataset`` under ``predict``: one row per face.

    Columns: ``face`` and the raw metric values of :data:`metrics.METRICS` (SIDE unscaled,
    MAD in degrees) plus ``pixels`` (scored pixels).
    """
    cam = dataset.camera
    S = dataset.image_size
    rows = []
    for start in range(0, n_faces, batch_size):
        sl = slice(start, min(n_faces, start + batch_size))
        batch = dataset.batch(sl)
        with torch.no_grad():
            pred = predict(batch["image"])
        pred = _check_prediction(name, pred, (sl.stop - sl.start, S, S))
        m = evaluate_depths(pred, batch["depth"], batch["mask"], **cam)
        frame = pd.DataFrame({k: v.numpy() for k, v in m.items()})
        frame.insert(0, "face", np.arange(sl.start, sl.stop))
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    bad = int(out["pixels"].eq(0).sum())
    if bad:
        log.warning("%s: %d faces have no scored pixel (empty mask); their metrics are NaN", name, bad)
    return out


def aggregate(per_image: pd.DataFrame, subgroups: np.ndarray) -> pd.DataFrame:
    """Mean ± std over subgroup means, per variant and metric, in display units.

    ``per_image`` has columns ``face``, metric keys and optionally ``variant``; returns one row
    per (variant, metric) with ``label``, ``mean``, ``std`` (sample std over the
    ``repeats × n_subgroups`` subgroup means), ``std_of_repeats`` (std of the per-repeat means)
    and ``subgroups``.
    """
    frame = per_image if "variant" in per_image else per_image.assign(variant="variant")
    rows = []
    for variant, part in frame.groupby("variant", sort=False):
        by_face = part.set_index("face")
        if not by_face.index.is_unique:
            raise ValueError(f"variant {variant!r}: a face appears twice in the per-image metrics")
        missing = np.setdiff1d(np.unique(subgroups), by_face.index.to_numpy())
        if missing.size:
            raise DatasetError(f"variant {variant!r}: no metrics for faces {missing[:5].tolist()}…")
        for key, (label, scale) in METRICS.items():
            if key not in by_face:
                continue
            vals = by_face[key].reindex(subgroups.reshape(-1)).to_numpy(dtype=np.float64).reshape(subgroups.shape)
            group_means = np.nanmean(vals, axis=-1) * scale  # (repeats, n_subgroups)
            flat = group_means.reshape(-1)
            rows.append({
                "variant": variant, "metric": key, "label": label,
                "mean": float(np.nanmean(flat)),
                "std": float(np.nanstd(flat, ddof=1)) if flat.size > 1 else 0.0,
                "std_of_repeats": float(np.nanstd(np.nanmean(group_means, axis=1), ddof=1))
                if group_means.shape[0] > 1 else 0.0,
                "subgroups": int(flat.size),
            })
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame, digits: dict[str, int] | None = None) -> str:
    """Variants × metrics as a markdown table of ``mean ± std`` with the metric labels as headers."""
    digits = digits or {"side": 3, "side_eq61": 3, "mad": 2, "mad_exact": 2, "mad_eq62": 2}
    metrics = [k for k in METRICS if k in set(table["metric"])]
    head = "| variant | " + " | ".join(METRICS[k][0].replace("|", "\\|") for k in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for variant, part in table.groupby("variant", sort=False):
        cells = []
        for k in metrics:
            r = part[part["metric"] == k]
            if r.empty:
                cells.append("")
                continue
            d = digits.get(k, 3)
            cells.append(f"{r['mean'].iloc[0]:.{d}f} ± {r['std'].iloc[0]:.{d}f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_protocol(variants: Mapping[str, Predictor], split_dir: str | Path, *, n_faces: int = 1000,
                 n_subgroups: int = 10, subgroup_size: int = 100, repeats: int = 10, seed: int = 0,
                 batch_size: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every variant on the split's first ``n_faces`` faces → (per-image frame, summary table)."""
    subgroups = make_subgroups(n_faces, n_subgroups, subgroup_size, repeats, seed)
    dataset = SynthDataset(split_dir)
    check_faces(len(dataset), n_faces, n_subgroups, subgroup_size, str(split_dir))
    frames = []
    for name, predict in variants.items():
        frame = per_image_metrics(predict, dataset, n_faces, name=name, batch_size=batch_size)
        frame.insert(0, "variant", name)
        frames.append(frame)
    per_image = pd.concat(frames, ignore_index=True)
    return per_image, aggregate(per_image, subgroups)


# ---------------------------------------------------------------------------- baselines


def constant_predictor(value: float = 1.0) -> Predictor:
    """A flat depth map: the floor that knows nothing."""

    def predict(images: Tensor) -> Tensor:
        n, _, h, w = images.shape
        return torch.full((n, h, w), float(value))

    return predict


def _fixed_map(depth: np.ndarray) -> Predictor:
    ref = torch.from_numpy(depth.astype(np.float32))

    def predict(images: Tensor) -> Tensor:
        n, _, h, w = images.shape
        if (h, w) != tuple(ref.shape):
            raise ValueError(f"baseline depth is {tuple(ref.shape)}, images are {h}×{w}")
        return ref.expand(n, h, w).clone()

    return predict


def _masked_mean_map(depth: np.ndarray, background: float) -> np.ndarray:
    """Per-pixel mean over the maps whose face covers the pixel; uncovered pixels get the map's
    farthest value, so the average face has no cliff down to the background depth (a cliff
    would make the baseline worse than a flat map for reasons that have nothing to do with shape)."""
    cover = depth < background
    count = cover.sum(0)
    mean = np.where(cover, depth, 0.0).sum(0) / np.maximum(count, 1)
    far = mean[count > 0].max() if (count > 0).any() else background
    return np.where(count > 0, mean, far)


def mean_depth_predictor(train_dir: str | Path, max_items: int = 5000) -> Predictor:
    """The average ground-truth view depth of the training set (Unsup3D's "average g.t. depth"
    baseline), averaged over the faces covering each pixel; the same map for every image."""
    ds = SynthDataset(train_dir)
    n = min(len(ds), max_items)
    return _fixed_map(_masked_mean_map(np.asarray(ds.depth[:n], dtype=np.float64), ds.camera["max_depth"]))


def mean_shape_predictor(train_dir: str | Path, max_items: int = 5000) -> Predictor:
    """The average frontal (canonical) face of the training set: a pose-blind mean shape."""
    ds = SynthDataset(train_dir, canonical=True)
    n = min(len(ds), max_items)
    return _fixed_map(_masked_mean_map(np.asarray(ds.canon[:n], dtype=np.float64), ds.camera["max_depth"]))


def constant_baseline(train_dir: str | Path) -> Predictor:
    """A flat depth map (the `constant` variant): the floor every number is compared with."""
    return constant_predictor(1.0)


def baseline_predictors(train_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, Predictor]:
    """The baseline variants (``facerecon.registry``), or those of ``names``, by name."""
    names = registry.of_kind(registry.VARIANT_NAMES if names is None else names, registry.BASELINE)
    return {n: registry.baseline_predictor(n, train_dir) for n in names}


def summary_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{variant: {metric: mean, metric_std: std}}`` for reports/metrics.json (DVC metrics)."""
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples():
        d = out.setdefault(str(row.variant), {})
        d[str(row.metric)] = None if math.isnan(row.mean) else round(float(row.mean), 6)
        d[f"{row.metric}_std"] = None if math.isnan(row.std) else round(float(row.std), 6)
    return out


METRIC_NOTES = """\
- **SIDE ×10⁻² (Unsup3D)**: per image, sqrt of the masked variance of log d_pred − log d_gt
  (scale-invariant), ×100; masks = ground-truth face ∩ prediction, each eroded by one pixel.
- **MAD ° (Unsup3D normals)**: per image, masked mean angle between normals of the predicted and
  true depth, with Unsup3D's n/(|n|+1e-7): at 64 px, FOV 10° identical maps already differ by
  ~6°, which the published numbers (e.g. 16.51°) include.
- **MAD ° (exact unit normals)**: the same angle with n/|n|.
- **thesis eq. 6.1**: masked mean of |log d_pred − log d_gt| (not scale-invariant), ×100.
- **thesis eq. 6.2**: arccos of the masked mean of cos θ (exact unit normals).
- mean ± std: over repeats × subgroups subgroup means (thesis §6.1: 10 subgroups × 100, 10 repeats).
"""


def write_results(per_image: pd.DataFrame, table: pd.DataFrame, out_dir: str | Path, *,
                  title: str = "Benchmark") -> dict[str, Path]:
    """Write ``per_image.parquet``, ``metrics_table.parquet``, ``metrics.json`` (DVC metrics) and
    ``benchmark.md`` under ``out_dir``, each atomically."""
    out = Path(out_dir)
    paths = {"per_image": out / "per_image.parquet", "table": out / "metrics_table.parquet",
             "metrics": out / "metrics.json", "markdown": out / "benchmark.md"}
    for key, frame in (("per_image", per_image), ("table", table)):
        atomic_save(paths[key], lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    atomic_write_text(paths["metrics"], json.dumps(summary_metrics(table), indent=2, sort_keys=True) + "\n")
    n_sub = int(table["subgroups"].max()) if len(table) else 0
    md = f"# {title}\n\n{markdown_table(table)}\n{n_sub} subgroup means per cell.\n\n{METRIC_NOTES}"
    atomic_write_text(paths["markdown"], md)
    return paths
