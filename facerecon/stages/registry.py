"""Every stage of the per-photo pipeline, written once.

One :class:`Stage` record per stage: its name (also its params section and its work-folder
prefix), the stages whose outputs it reads, the module holding its code, its backends and
whether it runs on the accelerator. Everything else is derived from :data:`STAGES`:

- the run order of ``facerecon.pipeline.face_stages`` and of the CLI's progress bar;
- the check of ``<stage>.backend`` in params.yaml (``facerecon.config``);
- the readiness check before a batch (``facerecon.stages.runtime``);
- the Prefect tasks' cache keys and ``gpu`` tags (``tasks/stages.py``).

A stage's module defines ``key_<name>(job, up)`` and ``run_<name>(job, up)``: ``job`` is the
:class:`~facerecon.stages.workspace.StageJob` (params, work folder, face), ``up`` maps each name
in ``upstream`` to that stage's :class:`~facerecon.stages.workspace.StageOut`; the key chains
the upstream keys in that order. A backend is
``"module:Class"``, imported only when selected, so the heavy thesis code (torch models,
diffusers) loads only for the runs that use it. This module imports nothing of the project:
``facerecon.config`` reads it to validate the backend names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


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
    Stage("align", (), "facerecon.stages.align", {"mediapipe": "facerecon.align:MediapipeAlign"},
          per_photo=True),
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

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
FACE_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if not s.per_photo)


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r} (stages: {', '.join(NAMES)})") from None


def backend_names(name: str) -> tuple[str, ...]:
    """The values ``<name>.backend`` may take (empty for a stage without backends)."""
    return tuple(BY_NAME[name].backends) if name in BY_NAME else ()


def add_backend(stage_name: str, backend: str, target: str) -> None:
    """Register ``"module:Class"`` as ``<stage_name>.backend: <backend>`` (plug-ins and tests)."""
    BY_NAME[stage_name].backends[backend] = target
