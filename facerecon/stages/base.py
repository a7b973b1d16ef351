"""Data passed between stages and the backend protocol of each stage that has backends.

Stage functions (``run_<stage>`` in ``facerecon/stages/<stage>.py``) read and write a face's
work folder; backends are the swappable compute behind them (DESIGN.md §1), offline ones in
``facerecon.offline`` and thesis ones in ``facerecon.gan`` / ``facerecon.diffusion``, named in
``facerecon.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facerecon.geometry.camera import yaw_alpha

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


class AlignBackend(Protocol):
    def __init__(self, params: Params, device: torch.device) -> None: ...
    def check_ready(self) -> None: ...
    def align(self, rgb: np.ndarray) -> list[AlignedFace]:
        """The photo's aligned faces (largest first); NoFaceError when there is none."""


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


def sweep_alphas(params: Params) -> list[int]:
    """The pose sweep's InterfaceGAN steps α (the thesis: −7..6, 14 views)."""
    return list(range(params.pose_sweep.alpha_min, params.pose_sweep.alpha_max + 1))


def alpha_yaws(alphas: list[int], params: Params) -> list[float]:
    """Yaw in degrees of each pose-sweep step α (the thesis's −10..9 span onto −90°..90°)."""
    span = (params.pose_sweep.alpha_span_min, params.pose_sweep.alpha_span_max)
    return [float(yaw_alpha(a, span=span)) for a in alphas]


def profile_yaws(params: Params) -> list[float]:
    """Yaw in degrees of the left and right profile views."""
    return [-params.profile.yaw_degrees, params.profile.yaw_degrees]
