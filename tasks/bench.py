"""Prefect tasks of the benchmark pipeline (synth → pretrain → evaluate → report), thin wrappers
over ``facerecon.bench`` and ``facerecon.ae`` that add names, tags and progress bars."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from tqdm import tqdm

from facerecon.config import Params
from facerecon.registry import PRODUCT
from facerecon.stages.runtime import device_for


@task(name="synth", cache_policy=NONE)
def synth_task(params: Params) -> dict[str, str]:
    from facerecon.bench.synth import make_synth_dataset

    dirs = make_synth_dataset(params.synth, progress=True)
    return {k: str(v) for k, v in dirs.items()}


@task(name="pretrain", cache_policy=NONE, tags=["gpu"])
def pretrain_task(params: Params, label: str) -> dict[str, Any]:
    from facerecon.ae.train import pretrain

    with tqdm(desc=f"pretrain {label}", unit="step") as b:
        def progress(step: int, total: int, parts: dict[str, float]) -> None:
            b.total = total
            b.n = step
            b.set_postfix(loss=f"{parts['total']:.3f}", refresh=False)
            b.refresh()

        return pretrain(params, progress=progress, device=str(device_for(params)))  # `cuda` without one: an error


def _protocol(params: Params, predictors: dict) -> Any:
    from facerecon.bench.protocol import run_protocol

    e = params.evaluate
    per_image, _ = run_protocol(predictors, Path(e.dataset_path) / "test", n_faces=e.n_faces,
                                n_subgroups=e.n_subgroups, subgroup_size=e.subgroup_size, repeats=e.repeats,
                                seed=e.seed, batch_size=e.batch_size)
    return per_image


@task(name="baselines", cache_policy=NONE)
def baseline_task(params: Params, names: list[str]) -> tuple[Any, float]:
    from facerecon.bench.protocol import baseline_predictors

    t0 = time.perf_counter()
    return _protocol(params, baseline_predictors(Path(params.evaluate.dataset_path) / "train", names)), \
        time.perf_counter() - t0


@task(name="landmarks", cache_policy=NONE)
def landmarks_task(params: Params, name: str) -> tuple[Any, float, dict[str, int]]:
    """The offline invert proxy (mediapipe landmarks → dense depth) on every test render."""
    from facerecon.bench.variants import LandmarkPredictor, far_depth

    t0 = time.perf_counter()
    pred = LandmarkPredictor(params.ae_model.fov, far_depth(params.ae_model))
    per_image = _protocol(params, {name: pred})
    return per_image, time.perf_counter() - t0, {"detected": pred.detected, "faces": pred.faces}


@task(name="product", cache_policy=NONE, tags=["gpu"])
def product_task(params: Params) -> tuple[Any, float]:
    """The default offline pipeline on the first ``evaluate.product_faces`` test renders."""
    from facerecon.bench.product import product_depths
    from facerecon.bench.protocol import per_image_metrics
    from facerecon.bench.variants import far_depth, lookup_predictor
    from facerecon.io.datasets import SynthDataset

    t0 = time.perf_counter()
    e = params.evaluate
    ds = SynthDataset(Path(e.dataset_path) / "test")
    n = min(e.product_faces, len(ds))
    images = ds.batch(slice(0, n))["image"]
    with tqdm(desc="product (facerecon run)", total=n, unit="face") as b:
        depths = product_depths(params, images, far_depth(params.ae_model), workers=e.workers, on_chunk=b.update)
    frame = per_image_metrics(lookup_predictor(images, depths, PRODUCT), ds, n, name=PRODUCT)
    frame.insert(0, "variant", PRODUCT)
    return frame, time.perf_counter() - t0


@task(name="checkpoint-variant", cache_policy=NONE, tags=["gpu"])
def checkpoint_variant_task(params: Params, name: str, checkpoint: str) -> tuple[Any, float]:
    from facerecon.ae.train import load_checkpoint
    from facerecon.bench.variants import ae_predictor

    t0 = time.perf_counter()
    nets, mp, _ = load_checkpoint(checkpoint)
    return _protocol(params, {name: ae_predictor(nets, mp)}), time.perf_counter() - t0


@task(name="pipeline-variants", cache_policy=NONE, tags=["gpu"])
def pipeline_variants_task(params: Params, names: list[str], checkpoint: str) -> tuple[Any, float]:
    """The per-face pipeline variants, all faces precomputed (in parallel), then scored."""
    from facerecon.bench.protocol import check_faces
    from facerecon.bench.variants import lookup_predictor, pipeline_depths
    from facerecon.io.datasets import SynthDataset

    t0 = time.perf_counter()
    e = params.evaluate
    test = Path(e.dataset_path) / "test"
    ds = SynthDataset(test)
    check_faces(len(ds), e.n_faces, e.n_subgroups, e.subgroup_size, str(test))
    images = ds.batch(slice(0, e.n_faces))["image"]
    with tqdm(desc="pipeline variants", total=e.n_faces, unit="face") as b:
        depths = pipeline_depths(checkpoint, params, images, tuple(names), workers=e.workers,
                                 on_chunk=b.update, split_dir=test)
    preds = {n: lookup_predictor(images, depths[n], n) for n in names}
    return _protocol(params, preds), time.perf_counter() - t0


@task(name="examples", cache_policy=NONE)
def examples_task(params: Params, names: list[str], path: Path, n: int = 6) -> str:
    """reports/eval/examples.png: the first ``n`` test faces under every variant, shaded."""
    from facerecon import registry
    from facerecon.ae.train import load_checkpoint
    from facerecon.bench.examples import plot_examples
    from facerecon.bench.protocol import baseline_predictors
    from facerecon.bench.variants import LandmarkPredictor, ae_predictor, far_depth, pipeline_depths
    from facerecon.io.datasets import SynthDataset

    e = params.evaluate
    ds = SynthDataset(Path(e.dataset_path) / "test")
    batch = ds.batch(slice(0, min(n, len(ds))))
    images, preds = batch["image"], {}
    baselines = baseline_predictors(Path(e.dataset_path) / "train", names)
    pipes = tuple(registry.of_kind(names, registry.PIPELINE))
    piped = pipeline_depths(registry.checkpoint_path(params, pipes[0]), params, images, pipes,
                            split_dir=Path(e.dataset_path) / "test") if pipes else {}
    for name in names:
        kind = registry.variant(name).kind
        if kind == registry.BASELINE:
            preds[name] = baselines[name](images)
        elif kind == registry.LANDMARKS:
            preds[name] = LandmarkPredictor(params.ae_model.fov, far_depth(params.ae_model))(images)
        elif kind == registry.PRODUCT:
            from facerecon.bench.product import ProductPredictor

            preds[name] = ProductPredictor(params, far_depth(params.ae_model))(images)
        elif kind == registry.PIPELINE:
            preds[name] = piped[name]
        else:
            nets, mp, _ = load_checkpoint(registry.checkpoint_path(params, name))
            preds[name] = ae_predictor(nets, mp)(images)
    return str(plot_examples(images, batch["depth"], batch["mask"], preds, path, fov=ds.camera["fov"]))


@task(name="likeness", cache_policy=NONE, tags=["gpu"])
def likeness_task(params: Params, label: str, overrides: list[str], photos: str, n_photos: int, out: str,
                  cache: str) -> tuple[Any, dict]:
    """One row of the likeness benchmark: the real-photo set through `facerecon run`'s batch flow
    (the rows share one stage cache, so rows that differ only late reuse the early stages)."""
    from facerecon.bench.likeness_set import per_photo, summary
    from facerecon.config import with_overrides
    from flows.reconstruct import batch_flow

    row_params = with_overrides(params, [*overrides, *params.likeness.overrides, "export.likeness=on",
                                         f"cache.dir={cache}"])
    t0 = time.perf_counter()
    batch_flow()(photos, out, row_params)
    frame = per_photo(Path(out), label)
    return frame, {"label": label, "overrides": overrides, **summary(frame, n_photos, time.perf_counter() - t0)}


def with_section(params: Params, section: str, **changes: Any) -> Params:
    """``params`` with some keys of one section replaced."""
    return dataclasses.replace(params, **{section: dataclasses.replace(getattr(params, section), **changes)})
