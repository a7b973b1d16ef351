"""InterfaceGAN pose edits: ``x' = G(w + α·n)`` with a unit pose normal ``n`` (thesis eq. 4.2).

Direction files: HyperStyle ships ``pose.pt``, a (1, 18, 512) tensor with the same unit normal
in every W+ row; InterfaceGAN's boundaries are (1, 512) ``.npy`` arrays of a W-space normal.
Both load here as (1, n_latent, D); ``facerecon gan fit-direction`` writes the former.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from facerecon.errors import CheckpointError
from facerecon.gan.stylegan2 import Generator, resize, to_uint8

log = logging.getLogger(__name__)

YawEstimator = Callable[[np.ndarray], float | None]


def direction_tensor(value, n_latent: int, style_dim: int, source: str) -> torch.Tensor:
    """(1, n_latent, D) float32 from a (D,), (1, D), (n_latent, D) or (1, n_latent, D) array."""
    t = value.detach().float() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value)).float()
    shape = tuple(t.shape)
    rows = None
    if shape in ((style_dim,), (1, style_dim), (1, 1, style_dim)):
        rows = t.reshape(1, style_dim).expand(n_latent, style_dim)
    elif shape in ((n_latent, style_dim), (1, n_latent, style_dim)):
        rows = t.reshape(n_latent, style_dim)
    if rows is None:
        raise CheckpointError(f"{source}: direction has shape {shape}; expected (1, {style_dim}) or "
                              f"(1, {n_latent}, {style_dim})")
    if not torch.isfinite(rows).all() or float(rows.norm()) == 0.0:
        raise CheckpointError(f"{source}: direction is zero or not finite")
    return rows[None].clone()


def load_direction(path: str | Path, n_latent: int, style_dim: int) -> torch.Tensor:
    """Read ``.pt``/``.pth`` (a tensor, or a dict with ``direction``/``boundary``) or ``.npy``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable .npy direction ({exc})") from None
    else:
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - bad file for the user, not a bug
            raise CheckpointError(f"{path}: not a loadable direction tensor ({str(exc).splitlines()[0][:160]})") \
                from None
        if isinstance(value, dict):
            value = value.get("direction", value.get("boundary"))
            if value is None:
                raise CheckpointError(f"{path}: dict without a 'direction' or 'boundary' entry")
    return direction_tensor(value, n_latent, style_dim, str(path))


def alpha_to_yaw(alpha: float, span: tuple[float, float] = (-10, 9)) -> float:
    """Thesis mapping: α = span[0] … span[1] spans −90° … +90° linearly (α = −7 → −61.6°)."""
    lo, hi = span
    return -90.0 + (float(alpha) - lo) * 180.0 / (hi - lo)


def edit_latents(latent: torch.Tensor, direction: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """(A, n_latent, D): ``latent + α·direction`` for every α."""
    w = latent.reshape(1, *latent.shape[-2:])
    a = torch.as_tensor(list(alphas), dtype=w.dtype, device=w.device).view(-1, 1, 1)
    return w + a * direction.to(w)


@torch.no_grad()
def render_latents(generator: Generator, latents: torch.Tensor, weights_deltas=None, *, batch_size: int = 2,
                   out_size: int | None = None) -> list[np.ndarray]:
    """uint8 images of W+ codes (fixed noise), ``batch_size`` at a time, resized to ``out_size``."""
    images: list[np.ndarray] = []
    for chunk in latents.split(max(batch_size, 1)):
        y = generator.synthesis(chunk, weights_deltas, "const")
        if out_size is not None:
            y = resize(y, out_size)
        images += to_uint8(y)
    return images


def landmark_yaw(min_face_size: int = 24) -> YawEstimator:
    """Yaw (degrees, facerecon's sign) of the face in an image from mediapipe landmarks; None if no face."""

    def estimate(image: np.ndarray) -> float | None:
        from facerecon.align import estimate_head_pose, find_faces, get_detector

        faces = find_faces(np.ascontiguousarray(image[..., :3]), get_detector(), max_faces=1,
                           min_face_size=min_face_size)
        return float(estimate_head_pose(faces[0])[0]) if faces else None

    return estimate


def direction_agreement(alphas: Sequence[float], yaws: Sequence[float | None]) -> float | None:
    """Correlation of α with measured yaw (None with fewer than 3 measured views); negative means
    the direction turns the head against facerecon's yaw sign."""
    pairs = [(a, y) for a, y in zip(alphas, yaws, strict=True) if y is not None]
    if len(pairs) < 3:
        return None
    a, y = np.array(pairs, dtype=np.float64).T
    if a.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(a, y)[0, 1])
