"""Every benchmark variant, written once: its name, how it is computed, what it reads.

The evaluate flow (``flows/benchmark.py``), its tasks (``tasks/bench.py``), the predictors
(``facerecon.bench.variants``, ``facerecon.bench.protocol``), the default of
``evaluate.variants`` and the examples picture all derive from :data:`VARIANTS`. A variant's
``kind`` says which evaluate task computes it:

- ``baseline``: a fixed map from the training split (``predictor`` names its factory);
- ``landmarks``: the offline `invert` proxy on each render;
- ``checkpoint``: a pretrained AE alone (``checkpoint`` names the pretrain field of its file);
- ``pipeline``: the per-face pipeline on the AE's own (or, with ``oracle``, the true) views;
- ``product``: ``facerecon run``'s default pipeline end to end.

This module imports nothing of the project (``facerecon.config`` reads it for the default).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

BASELINE, LANDMARKS, CHECKPOINT, PIPELINE, PRODUCT = "baseline", "landmarks", "checkpoint", "pipeline", "product"


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    predictor: str = ""  # baseline: "module:function", called with the training split's folder
    checkpoint: str = "out"  # checkpoint/pipeline: the `pretrain` field holding the checkpoint's path
    sweep: bool = False  # pipeline: fine-tune on the 14 pose-sweep yaws
    profiles: bool = False  # pipeline: ... and on the ±90° profiles
    correct: bool = False  # pipeline: apply the forehead correction
    oracle: bool = False  # pipeline: the views are true renders of the test face, not the AE's own


# in the order of the benchmark table; cumulative like thesis Table 6.2 for the pipeline rows
VARIANTS: tuple[Variant, ...] = (
    Variant("constant", BASELINE, predictor="facerecon.bench.protocol:constant_baseline"),
    Variant("mean_depth", BASELINE, predictor="facerecon.bench.protocol:mean_depth_predictor"),
    Variant("mean_shape", BASELINE, predictor="facerecon.bench.protocol:mean_shape_predictor"),
    Variant("landmarks", LANDMARKS),
    Variant("ae_only", CHECKPOINT),
    Variant("ae_profile", PIPELINE, profiles=True),
    Variant("ae_sweep", PIPELINE, sweep=True, profiles=True),
    Variant("full", PIPELINE, sweep=True, profiles=True, correct=True),
    Variant("oracle_views", PIPELINE, sweep=True, profiles=True, oracle=True),
    Variant("supervised", CHECKPOINT, checkpoint="supervised_out"),
    Variant(PRODUCT, PRODUCT),
)

BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def variant(name: str) -> Variant:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no benchmark variant {name!r} (variants: {', '.join(NAMES)})") from None


def of_kind(names: Any, kind: str) -> list[str]:
    """The names among ``names`` whose variant is of ``kind``, in the given order."""
    return [n for n in names if variant(n).kind == kind]


def checkpoint_path(params: Any, name: str) -> str:
    """The checkpoint file a checkpoint or pipeline variant scores (an output of the pretrain stage)."""
    return getattr(params.pretrain, variant(name).checkpoint)


def baseline_predictor(name: str, train_dir: Any) -> Any:
    module, fn = variant(name).predictor.split(":")
    return getattr(importlib.import_module(module), fn)(train_dir)
