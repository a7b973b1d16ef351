"""GAN inversion on tensors: HyperStyle, e4e and optimisation into W+. No file I/O here.

All functions take the aligned face as a (1, 3, H, W) tensor in [-1, 1] and return the W+
code, the HyperStyle weight offsets (or None) and the generator's reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from facerecon.gan.checkpoints import E4eModel, HyperStyleModel
from facerecon.gan.stylegan2 import Generator, resize

Deltas = list[torch.Tensor | None]


@dataclass
class Inversion:
    latent: torch.Tensor  # (1, n_latent, D)
    image: torch.Tensor  # (1, 3, S, S) generator output in [-1, 1]
    weights_deltas: Deltas | None = None
    history: list[float] = field(default_factory=list)  # per-step / per-iteration reconstruction MSE


def _mse(a: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    return F.mse_loss(resize(a, size), resize(b, size))


def add_deltas(acc: Deltas | None, new: Deltas) -> Deltas:
    """HyperStyle's refinement: offsets of successive passes add up (None stays None)."""
    if acc is None:
        return list(new)
    return [a + n if a is not None and n is not None else a if n is None else n for a, n in zip(acc, new, strict=True)]


@torch.no_grad()
def hyperstyle_invert(model: HyperStyleModel, x: torch.Tensor, iterations: int,
                      round_deltas: Callable[[Deltas], Deltas] | None = None) -> Inversion:
    """W encoder → initial W+; then ``iterations`` hypernetwork passes, each seeing the input next to
    the current reconstruction and adding weight offsets (HyperStyle's iterative refinement)."""
    size = model.input_size
    x_in = resize(x, size)
    codes = model.w_encoder(x_in) + model.latent_avg[None]
    y = model.decoder.synthesis(codes, None, "const")
    history = [float(_mse(y, x_in, size))]
    deltas: Deltas | None = None
    for it in range(iterations):
        out = model.hypernet(torch.cat([x_in, resize(y, size)], dim=1))
        deltas = add_deltas(deltas, out)
        if it == iterations - 1 and round_deltas is not None:
            deltas = round_deltas(deltas)  # render with the offsets exactly as they will be stored
        y = model.decoder.synthesis(codes, deltas, "const")
        history.append(float(_mse(y, x_in, size)))
    return Inversion(latent=codes, image=y, weights_deltas=deltas, history=history)


@torch.no_grad()
def e4e_invert(model: E4eModel, x: torch.Tensor) -> Inversion:
    codes = model.encode(x)
    y = model.decoder.synthesis(codes, None, "const")
    return Inversion(latent=codes, image=y, history=[float(_mse(y, x, model.input_size))])


def lr_schedule(t: float, base: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Warm up over the first ``rampup`` of the run, cosine-decay over the last ``rampdown``."""
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    return base * up * (0.5 - 0.5 * math.cos(down * math.pi))


def optimize_invert(generator: Generator, target: torch.Tensor, w_init: torch.Tensor, *, steps: int,
                    lr: float, loss_size: int = 256, latent_reg: float = 0.0,
                    callback: Callable[[int, float], None] | None = None) -> Inversion:
    """Adam on the W+ code alone (generator frozen, noise fixed) to reproduce ``target``.

    Loss: MSE at ``loss_size`` (both images area-resampled) plus ``latent_reg`` × mean squared
    distance to the starting code, which keeps the code in the region the generator knows.
    """
    size = min(loss_size, generator.size, target.shape[-1])
    goal = resize(target, size).detach()
    anchor = w_init.detach().clone()
    w = anchor.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    history: list[float] = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_schedule(step / max(steps, 1), lr)
        img = generator.synthesis(w, None, "const")
        mse = F.mse_loss(resize(img, size), goal)
        loss = mse + latent_reg * (w - anchor).pow(2).mean() if latent_reg > 0 else mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(mse.detach()))
        if callback is not None:
            callback(step, history[-1])
    with torch.no_grad():
        w = w.detach()
        img = generator.synthesis(w, None, "const")
        history.append(float(F.mse_loss(resize(img, size), goal)))
    return Inversion(latent=w, image=img, history=history)


# ------------------------------------------------------------------- weight-offset storage


def pack_deltas(deltas: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Offsets for one face as a flat dict for safetensors: batch dim dropped, per-channel offsets
    (constant over the kernel window, most non-shared layers) stored as (out, in, 1, 1), float16
    (the reconstruction is recomputed from the rounded values so stored and used offsets agree)."""
    out: dict[str, torch.Tensor] = {}
    for i, d in enumerate(deltas):
        if d is None:
            continue
        t = d.detach()
        if t.ndim == 5:
            if t.shape[0] != 1:
                raise ValueError("pack_deltas stores one face; got a batch of offsets")
            t = t[0]
        if t.shape[-1] > 1 and torch.equal(t, t[..., :1, :1].expand_as(t)):
            t = t[..., :1, :1]
        half = t.to(torch.float16)
        out[f"layer_{i}"] = (half if torch.isfinite(half).all() else t.float()).contiguous().cpu()
    return out


def unpack_deltas(packed: dict[str, torch.Tensor], n_layers: int, device: torch.device | str = "cpu") -> Deltas:
    """Inverse of :func:`pack_deltas`: a list of (1, out, in, k|1, k|1) float32 tensors or None."""
    deltas: Deltas = [None] * n_layers
    for key, t in packed.items():
        i = int(key.split("_", 1)[1])
        if not 0 <= i < n_layers:
            raise ValueError(f"weight offset {key} outside the generator's {n_layers} layers")
        deltas[i] = t.to(device=device, dtype=torch.float32)[None]
    return deltas


def round_deltas(deltas: Deltas) -> Deltas:
    """The offsets as they will be stored (see :func:`pack_deltas`), back in float32."""
    out: Deltas = []
    for d in deltas:
        if d is None:
            out.append(None)
            continue
        half = d.to(torch.float16)
        out.append(half.to(d.dtype) if torch.isfinite(half).all() else d)
    return out
