"""Every stage of the per-photo pipeline and every benchmark variant, each written once.

**Stages.** One :class:`Stage` record per stage: its name (also its params section and its
work-folder prefix), the stages whose outputs it reads, the module holding its code, its
backends and whether it runs on the accelerator. Derived from :data:`STAGES`: the run order of
``facerecon.pipeline.face_stages`` and of the CLI's progress bar; the check of
``<stage>.backend`` in params.yaml (``facerecon.config``); the readiness check before a batch
(``facerecon.stages.runtime``); the Prefect tasks' cache keys and ``gpu`` tags
(``tasks/stages.py``). A stage's module defines ``key_<name>(job, up)`` and
``run_<name>(job, up)``: ``job`` is the :class:`~facerecon.stages.workspace.StageJob` (params,
work folder, face), ``up`` maps each name in ``upstream`` to that stage's
:class:`~facerecon.stages.workspace.StageOut`; the key chains the upstream keys in that order.
A backend is ``"module:Class"``, imported only when selected, so the heavy thesis code (torch
models, diffusers) loads only for the runs that use it.

**Benchmark variants.** One :class:`Variant` per row of the benchmark table; the evaluate flow
(``flows/benchmark.py``), its tasks (``tasks/bench.py``), the predictors
(``facerecon.bench.variants``, ``facerecon.bench.protocol``), the default of
``evaluate.variants`` and the examples picture derive from :data:`VARIANTS`. A variant's
``kind`` says which evaluate task computes it:

- ``baseline``: a fixed map from the training split (``predictor`` names its factory);
- ``landmarks``: the offline `invert` proxy on each render;
- ``checkpoint``: a pretrained AE alone (``checkpoint`` names the pretrain field of its file);
- ``pipeline``: the per-face pipeline on the AE's own (or, with ``oracle``, the true) views;
- ``product``: ``facerecon run``'s default pipeline end to end.

This module imports nothing of the project, so every layer may read it (``facerecon.config``
validates backend names and takes the default variants from it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

# ------------------------------------------------------------------------------------ stages

@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    module: str
    backends: dict[str, str] = field(default_factory=dict)  # params value -> "module:Class"
    accelerator: bool = False  # runs on the GPU when there is one; Prefect tags its task runs `gpu`
    per_photo: bool = False  # runs once per photo, before the photo's faces are split
    sees_all: bool = False  # also gets every earlier stage's output (export records them all)

    def _function(self, kind: str) -> Any:
        return getattr(importlib.import_module(self.module), f"{kind}_{self.name}")

    def key(self, job: Any, up: dict) -> str:
        """The stage folder's cache key: params section, code version, upstream keys."""
        return self._function("key")(job, up)

    def run(self, job: Any, up: dict) -> Any:
        """Compute the stage into its folder (or return the folder a previous run completed)."""
        return self._function("run")(job, up)

    def upstream_keys(self, up: dict) -> list[str]:
        """The upstream stages' keys, in ``upstream`` order: what this stage's key chains."""
        return [up[name].key for name in self.upstream]

    def inputs(self, outputs: dict) -> dict:
        """The upstream outputs this stage reads, from the outputs computed so far (in order)."""
        if self.sees_all:
            return dict(outputs)
        return {name: outputs[name] for name in self.upstream}


STAGES: tuple[Stage, ...] = (
    Stage("align", (), "facerecon.stages.align", {
        "auto": "facerecon.dlib_align:AutoAlign",  # dlib for the GAN invert backends, else mediapipe
        "mediapipe": "facerecon.align:MediapipeAlign",
        "dlib": "facerecon.dlib_align:DlibAlign",
    }, per_photo=True),
    Stage("invert", ("align",), "facerecon.stages.invert", {
        "landmarks": "facerecon.offline.invert:LandmarkDepthInvert",
        "ae_depth": "facerecon.offline.invert:AeDepthInvert",
        "hyperstyle": "facerecon.gan.backends:HyperStyleInvert",
        "e4e": "facerecon.gan.backends:E4eInvert",
        "optimize": "facerecon.gan.backends:OptimizeInvert",
    }, accelerator=True),
    Stage("pose_sweep", ("invert",), "facerecon.stages.pose_sweep", {
        "reproject": "facerecon.offline.reproject:ReprojectSweep",
        "interfacegan": "facerecon.gan.backends:InterfaceGanSweep",
    }, accelerator=True),
    Stage("dreambooth", ("pose_sweep",), "facerecon.stages.dreambooth", {
        "skip": "facerecon.offline.dreambooth:SkipDreambooth",
        "diffusers": "facerecon.diffusion.backends:DiffusersDreambooth",
    }, accelerator=True),
    Stage("profile", ("invert", "dreambooth"), "facerecon.stages.profile", {
        "reproject": "facerecon.offline.reproject:ReprojectProfile",
        "controlnet": "facerecon.diffusion.backends:ControlNetProfile",
    }, accelerator=True),
    Stage("ae_optimize", ("pose_sweep", "profile"), "facerecon.stages.ae_optimize",
          {"unsup3d": "facerecon.stages.ae_optimize:Unsup3dOptimize"}, accelerator=True),
    Stage("combine", ("ae_optimize",), "facerecon.stages.combine"),
    Stage("correct", ("ae_optimize", "invert"), "facerecon.stages.correct"),
    Stage("export", ("correct", "combine", "pose_sweep", "profile"), "facerecon.stages.export", sees_all=True),
)

STAGES_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES_BY_NAME)
FACE_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if not s.per_photo)


def stage(name: str) -> Stage:
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r} (stages: {', '.join(STAGE_NAMES)})") from None


def backend_names(name: str) -> tuple[str, ...]:
    """The values ``<name>.backend`` may take (empty for a stage without backends)."""
    return tuple(STAGES_BY_NAME[name].backends) if name in STAGES_BY_NAME else ()


def backends_in(name: str, package: str) -> tuple[str, ...]:
    """The ``<name>.backend`` values implemented in ``package`` (e.g. the GAN ones: "facerecon.gan")."""
    return tuple(b for b, target in stage(name).backends.items() if target.startswith(f"{package}."))


# ------------------------------------------------------------------------- benchmark variants

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

VARIANTS_BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}
VARIANT_NAMES: tuple[str, ...] = tuple(VARIANTS_BY_NAME)


def variant(name: str) -> Variant:
    try:
        return VARIANTS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no benchmark variant {name!r} (variants: {', '.join(VARIANT_NAMES)})") from None


def of_kind(names: Any, kind: str) -> list[str]:
    """The names among ``names`` whose variant is of ``kind``, in the given order."""
    return [n for n in names if variant(n).kind == kind]


def checkpoint_path(params: Any, name: str) -> str:
    """The checkpoint file a checkpoint or pipeline variant scores (an output of the pretrain stage)."""
    return getattr(params.pretrain, variant(name).checkpoint)


def baseline_predictor(name: str, train_dir: Any) -> Any:
    module, fn = variant(name).predictor.split(":")
    return getattr(importlib.import_module(module), fn)(train_dir)
