"""Fine-tuning the pretrained autoencoder on one face's views (the thesis's per-face step).

The thesis fine-tunes Unsup3D on the images generated for one person (the pose sweep and the
±90° profiles). Here every view is explained by the canonical depth and albedo predicted from
the *front* image, while light, viewpoint and confidence are predicted per view: the extra
views then constrain exactly the shape the front image is reconstructed with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from facerecon.ae.losses import perceptual_features, reconstruction_loss
from facerecon.ae.model import decompose, predict
from facerecon.ae.networks import AeNets
from facerecon.config import AeModelParams, AeOptimizeParams

__all__ = ["DepthPrior", "FinetuneResult", "finetune_on_views", "fit_face", "predict"]


@dataclass(frozen=True)
class DepthPrior:
    """A canonical (frontal) depth map the fine-tuning is pulled towards on ``mask``, up to an offset."""

    depth: Tensor  # (S, S)
    mask: Tensor  # (S, S) float/bool
    weight: float


def depth_prior_loss(canon_depth: Tensor, prior: DepthPrior, depth_span: float) -> Tensor:
    """Masked L1 between mean-removed canonical depth and mean-removed prior, in depth-range units."""
    m = prior.mask.float()
    n = m.sum().clamp_min(1.0)
    d = canon_depth - (canon_depth * m).sum((-2, -1), keepdim=True) / n
    p = prior.depth - (prior.depth * m).sum() / n
    return ((d - p).abs() * m).sum((-2, -1)).mean() / n / max(depth_span, 1e-6)


@dataclass
class FinetuneResult:
    steps: int
    first_loss: float
    final_loss: float
    perceptual: str


def finetune_on_views(nets: AeNets, model_params: AeModelParams, front: Tensor, views: Tensor,
                      settings: AeOptimizeParams, *, seed: int = 0, include_front: bool = True,
                      prior: DepthPrior | None = None) -> FinetuneResult:
    """Fine-tune ``nets`` in place. ``front`` (3, S, S) and ``views`` (N, 3, S, S) in [0, 1].

    Each of ``settings.steps`` steps draws ``settings.batch_size`` views (the front image is
    always one of them when ``include_front``) and minimises Unsup3D's reconstruction loss with
    the front's canonical depth/albedo shared by all of them (``settings``: lr, perceptual loss
    and its weights). ``prior`` adds a pull of the canonical depth towards a given frontal depth
    (the offline pipeline's landmark depth), weighted by ``prior.weight``.
    """
    steps, lr, batch_size = settings.steps, settings.lr, settings.batch_size
    features, kind = perceptual_features(settings.perceptual, settings.vgg16_weights)
    pool = torch.cat([front[None], views], 0) if include_front else views
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(nets.parameters(), lr=lr, betas=(0.9, 0.999))
    nets.train()
    first = final = float("nan")
    for step in range(steps):
        k = min(batch_size, len(pool))
        idx = torch.randperm(len(pool), generator=gen)[:k]
        if include_front and 0 not in idx:
            idx[0] = 0
        batch = pool[idx]
        dec = decompose(nets, model_params, batch, canon_images01=front[None])
        loss, parts = reconstruction_loss(dec, batch, features, lam_perc=settings.lam_perc,
                                          lam_flip=settings.lam_flip)
        if prior is not None and prior.weight > 0:
            span = model_params.max_depth - model_params.min_depth
            loss = loss + prior.weight * depth_prior_loss(dec.canon_depth[:1], prior, span)
            parts["total"] = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        final = parts["total"]
        if step == 0:
            first = final
    nets.eval()
    return FinetuneResult(steps=steps, first_loss=first, final_loss=final, perceptual=kind)


def fit_face(base: AeNets, model_params: AeModelParams, front: Tensor, views: Tensor, settings: AeOptimizeParams,
             *, seed: int = 0, prior: DepthPrior | None = None) -> tuple[AeNets, FinetuneResult]:
    """A copy of ``base`` fine-tuned on one face (``base`` is left untouched); the per-face step
    of both the ``ae_optimize`` stage and the benchmark's pipeline variants."""
    nets = copy.deepcopy(base)
    torch.manual_seed(seed)
    return nets, finetune_on_views(nets, model_params, front, views, settings, seed=seed, prior=prior)
