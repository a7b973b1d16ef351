"""Data passed between stages and the backend protocols each pluggable stage implements.

Stage functions (``run_<stage>`` in ``facerecon/stages/<stage>.py``) read and write a face's
work folder; backends are the swappable compute behind four of them (DESIGN.md §1). A
registry maps the params.yaml string to ``"module:Class"`` so heavy modules (diffusers,
the GAN code) are imported only when selected.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facerecon.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from facerecon.config import Params


@dataclass
class AlignedFace:
    """Output of `align`: an FFHQ-style aligned crop of one face."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    mask: np.ndarray  # (S, S) bool, face region (landmark hull)
    landmarks: np.ndarray | None  # (468, 3) float32: x, y in aligned pixels; z in pixels, smaller = closer
    yaw: float = 0.0  # head pose of the photo, degrees (positive: see facerecon.geometry.camera)
    pitch: float = 0.0
    roll: float = 0.0
    meta: dict = field(default_factory=dict)  # crop quad in the source photo, detector score, ...


@dataclass
class InvertResult:
    """Output of `invert`: what the pose sweep needs to make new views of the face."""

    depth: np.ndarray | None = None  # (S, S) float32 canonical (frontal) depth proxy; None for GAN backends
    latent: np.ndarray | None = None  # (18, 512) W+ code for GAN backends
    reconstruction: np.ndarray | None = None  # (S, S, 3) uint8 image the inversion reproduces
    files: dict[str, str] = field(default_factory=dict)  # extra files the backend wrote (name -> path)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able details (loss, iterations, ...)


@dataclass
class View:
    """One generated view of the face (pose-sweep image or profile)."""

    image: np.ndarray  # (S, S, 3) uint8
    yaw: float  # target yaw in degrees (same sign convention as AlignedFace.yaw)
    name: str  # file stem, e.g. "sweep_a-7" or "profile_left"
    alpha: float | None = None  # InterfaceGAN α for sweep views
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DreamboothResult:
    skipped: bool
    reason: str = ""
    weights_dir: str | None = None  # LoRA adapter or full UNet folder
    info: dict[str, Any] = field(default_factory=dict)


class InvertBackend(Protocol):
    def __init__(self, params: Params, device: torch.device) -> None: ...
    def check_ready(self) -> None:
        """Raise MissingWeightsError now, before any face is processed, if weights are absent."""
    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult: ...


class PoseSweepBackend(Protocol):
    def __init__(self, params: Params, device: torch.device) -> None: ...
    def check_ready(self) -> None: ...
    def sweep(self, face: AlignedFace, inverted: InvertResult, alphas: list[int], workdir: Path) -> list[View]: ...


class DreamboothBackend(Protocol):
    def __init__(self, params: Params, device: torch.device) -> None: ...
    def check_ready(self) -> None: ...
    def train(self, face: AlignedFace, views: list[View], workdir: Path) -> DreamboothResult: ...


class ProfileBackend(Protocol):
    def __init__(self, params: Params, device: torch.device) -> None: ...
    def check_ready(self) -> None: ...
    def profiles(self, face: AlignedFace, inverted: InvertResult, dreambooth: DreamboothResult,
                 workdir: Path) -> list[View]:
        """Return [left, right] views at -yaw_degrees and +yaw_degrees."""


BACKENDS: dict[str, dict[str, str]] = {
    "invert": {
        "landmarks": "facerecon.stages.invert:LandmarkDepthInvert",
        "ae_depth": "facerecon.stages.invert:AeDepthInvert",
        "hyperstyle": "facerecon.gan.backends:HyperStyleInvert",
        "e4e": "facerecon.gan.backends:E4eInvert",
        "optimize": "facerecon.gan.backends:OptimizeInvert",
    },
    "pose_sweep": {
        "reproject": "facerecon.stages.pose_sweep:ReprojectSweep",
        "interfacegan": "facerecon.gan.backends:InterfaceGanSweep",
    },
    "dreambooth": {
        "skip": "facerecon.stages.dreambooth:SkipDreambooth",
        "diffusers": "facerecon.diffusion.backends:DiffusersDreambooth",
    },
    "profile": {
        "reproject": "facerecon.stages.profile:ReprojectProfile",
        "controlnet": "facerecon.diffusion.backends:ControlNetProfile",
    },
}


def backend_class(stage: str, name: str) -> type:
    table = BACKENDS.get(stage)
    if table is None:
        raise ConfigError(f"{stage}: this stage has no pluggable backend")
    target = table.get(name)
    if target is None:
        raise ConfigError(f"{stage}.backend: unknown backend {name!r} (known: {', '.join(table)})")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(stage: str, params: Params, device: torch.device) -> Any:
    name = getattr(params, stage).backend
    return backend_class(stage, name)(params, device)
