"""Prefect flows of the benchmark, one per DVC stage: synth → pretrain → evaluate → report, and
likeness (real photos → 3D faces → identity distance).

    python -m flows.benchmark synth|pretrain|evaluate|report|likeness [--params params.yaml] [--set k=v ...]

``dvc repro`` calls exactly these; the same code runs in CI with tiny ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
from prefect import flow

from facerecon import registry
from facerecon.config import Params, load_params
from facerecon.errors import ConfigError, FaceReconError
from facerecon.io.atomic import atomic_save, atomic_write_text
from tasks.bench import (
    baseline_task,
    checkpoint_variant_task,
    examples_task,
    landmarks_task,
    likeness_task,
    pipeline_variants_task,
    pretrain_task,
    product_task,
    synth_task,
    with_section,
)


def eval_dir(params: Params) -> Path:
    return Path(params.evaluate.out_dir) / "eval"


def check_variants(params: Params) -> list[str]:
    names = list(params.evaluate.variants)
    bad = [n for n in names if n not in registry.VARIANT_NAMES]
    if bad or not names:
        raise ConfigError(f"evaluate.variants: unknown {bad or 'empty list'}; choose from {', '.join(registry.VARIANT_NAMES)}")
    return names


@flow(name="bench-synth", validate_parameters=False)
def synth_flow(params: Params) -> dict[str, str]:
    return synth_task(params)


@flow(name="bench-pretrain", validate_parameters=False)
def pretrain_flow(params: Params) -> dict:
    p = params.pretrain
    out = {"self_supervised": pretrain_task(params, "self-supervised")}
    wanted = {registry.variant(n).checkpoint for n in check_variants(params)
              if registry.variant(n).kind == registry.CHECKPOINT}
    if p.supervised_minutes > 0 and "supervised_out" in wanted:
        sup = with_section(params, "pretrain", supervised=True, out=p.supervised_out, max_minutes=p.supervised_minutes)
        out["supervised"] = pretrain_task(sup, "supervised")
    return out


@flow(name="bench-evaluate", validate_parameters=False)
def evaluate_flow(params: Params) -> dict[str, float]:
    """Every variant on the test split → reports/eval/{per_image,metrics_table}.parquet + timings."""
    from facerecon.bench.protocol import aggregate, make_subgroups

    names = check_variants(params)
    e, timings = params.evaluate, {}
    frames = []
    base = registry.of_kind(names, registry.BASELINE)
    if base:
        frame, timings["baselines"] = baseline_task(params, base)
        frames.append(frame)
    for name in registry.of_kind(names, registry.LANDMARKS):
        frame, timings[name], found = landmarks_task(params, name)
        frames.append(frame.assign(detected_faces=found["detected"]))
    for name in registry.of_kind(names, registry.CHECKPOINT):
        ckpt = registry.checkpoint_path(params, name)
        if not Path(ckpt).is_file():
            raise ConfigError(f"evaluate.variants: {name!r} needs the checkpoint {ckpt}; run the pretrain stage")
        frame, timings[name] = checkpoint_variant_task(params, name, ckpt)
        frames.append(frame)
    pipes = registry.of_kind(names, registry.PIPELINE)
    if pipes:
        ckpt = registry.checkpoint_path(params, pipes[0])
        if not Path(ckpt).is_file():
            raise ConfigError(f"evaluate.variants: {pipes} need the checkpoint {ckpt}; run pretrain")
        frame, timings["pipeline variants"] = pipeline_variants_task(params, pipes, ckpt)
        frames.append(frame)
    per_image = pd.concat(frames, ignore_index=True)
    order = {n: i for i, n in enumerate(names)}
    per_image = per_image.sort_values("variant", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    subgroups = make_subgroups(e.n_faces, e.n_subgroups, e.subgroup_size, e.repeats, e.seed)
    table = aggregate(per_image, subgroups)
    out = eval_dir(params)
    written = [("per_image.parquet", per_image), ("metrics_table.parquet", table)]
    if registry.PRODUCT in names:
        product, timings[registry.PRODUCT] = product_task(params)
        written.append(("product_table.parquet", product_table(per_image, product, e)))
        per_image = pd.concat([per_image, product], ignore_index=True)
        written[0] = ("per_image.parquet", per_image)
    for name, frame in written:
        atomic_save(out / name, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2) + "\n")
    examples_task(params, names, out / "examples.png")
    _publish_table(table)
    return timings


def product_table(per_image: pd.DataFrame, product: pd.DataFrame, e) -> pd.DataFrame:
    """Every variant and `product` on the faces `product` ran on: 10 subgroups × n/10, e.repeats."""
    from facerecon.bench.protocol import aggregate, make_subgroups

    n = int(product["face"].max()) + 1
    both = pd.concat([per_image[per_image["face"] < n], product], ignore_index=True)
    return aggregate(both, make_subgroups(n, 10, n // 10, e.repeats, e.seed))


def _publish_table(table: pd.DataFrame) -> None:
    """The SIDE/MAD table as a Prefect artifact (visible in the UI when a server is running)."""
    try:
        from prefect.artifacts import create_markdown_artifact

        from facerecon.bench.protocol import markdown_table

        create_markdown_artifact(key="benchmark-side-mad", markdown="# SIDE / MAD\n\n" + markdown_table(table),
                                 description="facerecon benchmark: mean ± std over subgroup means")
    except Exception:  # noqa: BLE001 - an artifact is a nicety; the files are the result
        pass


@flow(name="bench-report", validate_parameters=False)
def report_flow(params: Params) -> dict[str, str]:
    from facerecon.bench.protocol import make_subgroups
    from facerecon.bench.report import write_report

    src = eval_dir(params)
    if not (src / "metrics_table.parquet").is_file():
        raise ConfigError(f"{src}: no evaluation results; run the evaluate stage first")
    per_image = pd.read_parquet(src / "per_image.parquet")
    per_image = per_image[per_image["variant"] != registry.PRODUCT]  # scored on a subset: its own table
    table = pd.read_parquet(src / "metrics_table.parquet")
    product = pd.read_parquet(src / "product_table.parquet") if (src / "product_table.parquet").is_file() else None
    e = params.evaluate
    timings = json.loads((src / "timings.json").read_text()) if (src / "timings.json").is_file() else {}
    stage_times = Path(e.out_dir) / "stage_times.json"
    if stage_times.is_file():
        timings = {**{f"stage {k}": v for k, v in json.loads(stage_times.read_text()).items()}, **timings}
    setup = (f"{e.n_faces} test faces, {e.n_subgroups} subgroups × {e.subgroup_size}, {e.repeats} repeats "
             f"(seed {e.seed}); AE {params.ae_model.width}-wide at {params.ae_model.image_size} px; pipeline "
             f"variants fine-tune {e.finetune_steps} steps × {e.finetune_batch_size} views per face.")
    subgroups = make_subgroups(e.n_faces, e.n_subgroups, e.subgroup_size, e.repeats, e.seed)
    paths = write_report(per_image, table, subgroups, e.out_dir, timings=timings, setup=setup, product=product)
    _publish_table(table)
    return {k: str(v) for k, v in paths.items()}


@flow(name="bench-likeness", validate_parameters=False)
def likeness_flow(params: Params) -> dict:
    """The real-photo set (6 versions of every photo in ``likeness.photos``) through every configured
    row → <out_dir>/likeness/{likeness.md, per_photo.parquet, likeness.png}."""
    import tempfile

    from facerecon.bench.likeness_set import real_photo_set, write_likeness
    from facerecon.config import labelled_overrides

    lp = params.likeness
    configs = [labelled_overrides(c, "likeness.configs") for c in lp.configs]
    frames, rows = [], []
    with tempfile.TemporaryDirectory(prefix="facerecon-likeness-") as tmp:
        photos = Path(tmp) / "photos"
        n = len(real_photo_set(Path(lp.photos), photos))
        for i, (label, overrides) in enumerate(configs):
            frame, row = likeness_task(params, label, overrides, str(photos), n, str(Path(tmp) / f"out{i}"),
                                       str(Path(tmp) / "cache"))
            frames.append(frame)
            rows.append(row)
    write_likeness(rows, pd.concat(frames, ignore_index=True), Path(lp.out_dir) / "likeness", lp.photos)
    return {"rows": len(rows)}


def preflight(params: Params, stage: str) -> None:
    """User mistakes found before Prefect starts: one clear line instead of a failed flow run."""
    if stage in ("evaluate", "report"):
        check_variants(params)
        from facerecon.bench.protocol import make_subgroups

        e = params.evaluate
        make_subgroups(e.n_faces, e.n_subgroups, e.subgroup_size, 1, e.seed)
    if stage == "evaluate":
        from facerecon.bench.protocol import check_faces
        from facerecon.io.datasets import SynthDataset

        test = Path(params.evaluate.dataset_path) / "test"
        e = params.evaluate
        check_faces(len(SynthDataset(test)), e.n_faces, e.n_subgroups, e.subgroup_size, str(test))
    if stage == "synth":
        from facerecon.bench.synth import check_params

        check_params(params.synth)
    if stage == "likeness":
        from facerecon import likeness
        from facerecon.config import labelled_overrides, with_overrides

        likeness.require()
        photos = Path(params.likeness.photos)
        if not photos.is_dir():
            raise ConfigError(f"likeness.photos: {photos} is not a folder")
        for text in params.likeness.configs:  # every row's overrides checked before any face
            with_overrides(params, [*labelled_overrides(text, "likeness.configs")[1], *params.likeness.overrides])


FLOWS = {"synth": synth_flow, "pretrain": pretrain_flow, "evaluate": evaluate_flow, "report": report_flow,
         "likeness": likeness_flow}


def record_stage_time(params: Params, stage: str, seconds: float) -> None:
    """reports/stage_times.json: wall time of each stage's last run (the report shows them)."""
    path = Path(params.likeness.out_dir if stage == "likeness" else params.evaluate.out_dir) / "stage_times.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    data[stage] = round(seconds, 1)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=list(FLOWS))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        params = load_params(args.params, args.set)
        preflight(params, args.stage)
        t0 = time.perf_counter()
        FLOWS[args.stage](params)
        seconds = time.perf_counter() - t0
        if args.stage != "report":
            record_stage_time(params, args.stage, seconds)
        print(f"{args.stage}: done in {seconds:.1f} s")
    except FaceReconError as exc:
        print(f"facerecon benchmark: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # hide the ephemeral server's exit noise
    sys.exit(code)
