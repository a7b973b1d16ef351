"""Pretraining the autoencoder (the `pretrain` stage) and its checkpoint format.

A checkpoint is one ``torch.save`` dict, loadable with ``weights_only=True``::

    {"format": "facerecon-ae/1",
     "config": {"ae_model": {...}, "pretrain": {...}},   # what built and trained it
     "state_dict": {...},                                 # fp16 when exported for git
     "meta": {"epoch", "steps", "images_seen", "seconds", "perceptual", "dataset", "history"}}

Training state for resuming (fp32 weights + Adam moments + position in the epoch) goes to
``<out>.resume.pt`` after every epoch and when ``max_minutes`` runs out; a later run with the
same config continues from there. The final checkpoint is written atomically.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerecon.ae.losses import (
    depth_smoothness_loss,
    depth_supervision_loss,
    perceptual_features,
    pseudo_sample_loss,
    reconstruction_loss,
)
from facerecon.ae.model import decompose
from facerecon.ae.networks import AeNets, build_nets, count_parameters, zero_init_heads
from facerecon.config import AeModelParams, Params, section_hash
from facerecon.errors import CheckpointError, ConfigError
from facerecon.io.atomic import atomic_path

log = logging.getLogger(__name__)
FORMAT = "facerecon-ae/1"
# the supervised upper bound: truth terms outweigh the photometric loss (which still trains albedo,
# light and confidence) by this factor, so depth and viewpoint follow the truth
SUPERVISED_WEIGHT = 10.0


# ---------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, nets: AeNets, model_params: AeModelParams, *, meta: dict[str, Any],
                    pretrain: dict[str, Any] | None = None, half: bool = True) -> Path:
    """Write the checkpoint atomically; ``half`` stores floating weights as fp16 (~½ the size)."""
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
             for k, v in nets.state_dict().items()}
    blob = {"format": FORMAT, "config": {"ae_model": asdict(model_params), "pretrain": pretrain or {}},
            "state_dict": state, "meta": meta}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def _model_params_from(config: Any, path: Path) -> AeModelParams:
    if not isinstance(config, dict) or not isinstance(config.get("ae_model"), dict):
        raise CheckpointError(f"{path}: no ae_model config inside (not a facerecon AE checkpoint)")
    known = {f.name for f in fields(AeModelParams)}
    raw = dict(config["ae_model"])
    # written before the options existed: the networks as they were then
    raw.setdefault("upsample", "deconv")
    raw.setdefault("norm_group_size", 0)
    raw.setdefault("encoder_width", 0)
    raw.setdefault("skips", "none")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{path}: unknown ae_model keys {unknown} (written by a newer facerecon?)")
    try:
        return AeModelParams(**raw)
    except (TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid ae_model config ({exc})") from None


def load_checkpoint(path: str | Path) -> tuple[AeNets, AeModelParams, dict[str, Any]]:
    """(fp32 networks in eval mode, the model params they were built with, meta).

    Never unpickles arbitrary objects (``weights_only=True``); anything that is not a complete
    checkpoint of this format is a :class:`CheckpointError` naming the file and the problem.
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file does not exist") from None
    except Exception as exc:  # noqa: BLE001 - corrupt zip, pickle refused, truncated file...
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path}: not a facerecon AE checkpoint (format {got!r}, expected {FORMAT!r})")
    model_params = _model_params_from(blob.get("config"), path)
    nets = build_nets(model_params)
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict missing")
    expected = nets.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not match the networks its config describes "
                              f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                              f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    nets.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    nets.eval()
    meta = blob.get("meta") if isinstance(blob.get("meta"), dict) else {}
    return nets, model_params, dict(meta)


# ------------------------------------------------------------------------------------ training


def open_dataset(params: Params):
    """The pretraining images: the synthetic split, or one of the thesis's real face sets."""
    p = params.pretrain
    if p.dataset == "synth":
        from facerecon.io.datasets import SynthDataset

        return SynthDataset(Path(p.dataset_path) / "train", canonical=p.supervised)
    if p.supervised or p.face_mask:
        what = "supervised: needs ground-truth depth" if p.supervised else "face_mask: needs face masks"
        raise ConfigError(f"pretrain.{what}, which only dataset 'synth' has")
    from facerecon.io.datasets import FolderDataset

    return FolderDataset(p.dataset_path, p.dataset, params.ae_model.image_size, split="train")


def _batch(dataset, index: np.ndarray, size: int, supervised: bool = False) -> dict[str, torch.Tensor]:
    """Images (with face masks where the set has them, and truth for ``supervised``) of ``index``, in
    that order, at ``size`` pixels."""
    if hasattr(dataset, "batch"):
        order = np.argsort(index, kind="stable")  # sorted reads from the memory map, then back
        out = {k: v[np.argsort(order)] for k, v in dataset.batch(index[order]).items()}
        if not supervised:
            out = {k: out[k] for k in ("image", "mask")}
        else:
            out["view"] = torch.from_numpy(dataset.true_views()[index])
    else:
        items = [dataset[int(i)] for i in index]
        out = {"image": torch.stack([it["image"] for it in items])}
    img = out["image"]
    if img.shape[-1] != size:
        img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False,
                                              antialias=True)
        for k in ("depth", "mask", "canon_depth"):
            if k in out:
                out[k] = torch.nn.functional.interpolate(out[k][:, None].float(), size=(size, size),
                                                         mode="nearest")[:, 0]
    out["image"] = img
    return out


def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def views_per_face(dataset, p) -> int:
    """Views per identity the batches are drawn in: the set's, when ``pretrain.multi_view``."""
    return int(getattr(dataset, "views_per_face", 1)) if p.multi_view else 1


def epoch_order(n: int, views: int, seed: int, epoch: int) -> np.ndarray:
    """Image indices of one epoch: identities shuffled, each identity's ``views`` images together."""
    if views <= 1:
        return _permutation(n, seed, epoch)
    ids = _permutation(n // views, seed, epoch)
    return (ids[:, None] * views + np.arange(views)[None]).reshape(-1)


def canonical_sources(batch: int, views: int, rng: np.random.Generator) -> np.ndarray:
    """For each image of a batch of whole faces, the image (of the same face) whose canonical depth
    and albedo reconstruct it: a random permutation inside each face's ``views`` images, so most
    images are explained by another view of their face (multi-view pretraining)."""
    groups = batch // views
    perm = np.stack([rng.permutation(views) for _ in range(groups)]) if groups else np.zeros((0, views), int)
    return (np.arange(groups)[:, None] * views + perm).reshape(-1)


def augment(images: torch.Tensor, views: int, p_flip: float, rng: np.random.Generator,
            extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Mirror each face (all its views together) with probability ``p_flip`` (Unsup3D's flip
    augmentation); ``extra`` maps with a width axis last are mirrored alike, in place."""
    if p_flip <= 0:
        return images
    flip = np.repeat(rng.random(images.shape[0] // views) < p_flip, views)
    flip = torch.from_numpy(np.concatenate([flip, np.zeros(images.shape[0] - flip.size, bool)]))
    if extra:
        for k, v in extra.items():
            if k == "view":  # mirroring negates yaw, roll and the x shift
                extra[k] = torch.where(flip[:, None], v * v.new_tensor([1, -1, -1, -1, 1, 1]), v)
            else:
                extra[k] = torch.where(flip.view(-1, *([1] * (v.dim() - 1))), v.flip(-1), v)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


# the generic face of ``pretrain.prior_shape``: the face oval of an aligned crop (semi-axes as fractions of
# the half-width / half-height) and its relief at the centre, as a fraction of the depth range
PRIOR_AXES = (0.75, 0.9)
PRIOR_RELIEF = 0.4


def prior_shape(mp: AeModelParams) -> torch.Tensor:
    """(S, S) canonical depth of a half ellipsoid over the crop's face oval, mean 0 (relative depth)."""
    s = mp.image_size
    t = torch.linspace(-1.0, 1.0, s)
    y, x = torch.meshgrid(t, t, indexing="ij")
    r2 = (x / PRIOR_AXES[0]) ** 2 + (y / PRIOR_AXES[1]) ** 2
    d = -PRIOR_RELIEF * (mp.max_depth - mp.min_depth) * (1 - r2).clamp(min=0).sqrt()
    return d - d.mean()


def fit_prior_shape(nets: AeNets, mp: AeModelParams, images: torch.Tensor, steps: int, lr: float) -> float:
    """Train the depth network alone to predict :func:`prior_shape` for ``images`` (up to an offset):
    GAN2Shape's shape initialisation. Returns the final L1 in depth-range units."""
    from facerecon.ae.model import depth_from_raw, to_model_range

    target = prior_shape(mp).to(images.device)[..., 2:-2]
    opt = torch.optim.Adam(nets.depth.parameters(), lr=lr)
    x = to_model_range(images)
    err = float("nan")
    for step in range(steps):
        batch = x[torch.arange(step * 16, step * 16 + 16) % len(x)]
        d = depth_from_raw(nets.depth(batch), mp)[..., 2:-2]  # the border columns are fixed
        loss = (d - d.mean((-2, -1), keepdim=True) - target).abs().mean() / (mp.max_depth - mp.min_depth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        err = float(loss.detach())
    return err


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume.pt")


def _config_key(params: Params) -> str:
    keep = {k: v for k, v in asdict(params.pretrain).items()
            if k not in ("epochs", "max_minutes", "out", "supervised_out", "supervised_minutes")}
    return section_hash(params.ae_model) + ":" + str(sorted(keep.items()))


def pretrain(params: Params, *, progress: Callable[[int, int, dict[str, float]], None] | None = None,
             device: str = "cpu") -> dict[str, Any]:
    """Train the AE on ``pretrain.dataset`` and write ``pretrain.out``; returns the run summary.

    Deterministic for a seed on one device. ``progress(step, total_steps, losses)`` is called
    after every step (the flow drives a progress bar from it).
    """
    p, mp = params.pretrain, params.ae_model
    out = Path(p.out)
    dataset = open_dataset(params)
    n = len(dataset)
    views = views_per_face(dataset, p)
    batch = max(min(p.batch_size, n) // views * views, views)  # whole faces per batch
    steps_per_epoch = max(n // batch, 1)
    span = mp.max_depth - mp.min_depth
    torch.manual_seed(p.seed)
    nets = build_nets(mp)
    if p.zero_init_heads:
        zero_init_heads(nets)
    nets = nets.to(device)
    features, perc_kind = perceptual_features(p.perceptual, params.ae_optimize.vgg16_weights)
    if features is not None:
        features = features.to(device)
    opt = torch.optim.Adam(nets.parameters(), lr=p.lr, betas=(0.9, 0.999), weight_decay=5e-4)
    epoch, step_in_epoch, steps, history, seconds = 0, 0, 0, [], 0.0
    resume = _resume_path(out)
    if resume.exists():
        try:
            state = torch.load(resume, map_location=device, weights_only=True)
            if state.get("config_key") == _config_key(params):
                nets.load_state_dict(state["nets"])
                opt.load_state_dict(state["optimizer"])
                epoch, step_in_epoch, steps = int(state["epoch"]), int(state["step_in_epoch"]), int(state["steps"])
                history, seconds = list(state.get("history", [])), float(state.get("seconds", 0.0))
                log.info("resuming pretraining at epoch %d step %d", epoch, step_in_epoch)
            else:
                log.warning("%s was written with other pretrain params; starting over", resume)
        except Exception as exc:  # noqa: BLE001 - an unreadable resume file only costs the progress
            log.warning("ignoring unreadable %s (%s); starting over", resume, exc)

    if p.prior_shape == "ellipsoid" and p.prior_steps and steps == 0:  # a fresh run, not a resumed one
        sample = _batch(dataset, np.arange(min(n, 256)), mp.image_size)["image"].to(device)
        log.info("depth network fitted to the prior shape (L1 %.4f of the depth range)",
                 fit_prior_shape(nets, mp, sample, p.prior_steps, p.lr))

    def save_resume() -> None:
        state = {"config_key": _config_key(params), "nets": nets.state_dict(), "optimizer": opt.state_dict(),
                 "epoch": epoch, "step_in_epoch": step_in_epoch, "steps": steps, "history": history,
                 "seconds": seconds}
        with atomic_path(resume) as tmp:
            torch.save(state, tmp)

    total = p.epochs * steps_per_epoch
    t_start = time.perf_counter() - seconds
    stopped_early = False
    nets.train()
    while epoch < p.epochs:
        order = epoch_order(n, views, p.seed, epoch)
        losses: list[float] = []
        while step_in_epoch < steps_per_epoch:
            idx = order[step_in_epoch * batch:(step_in_epoch + 1) * batch]
            rng = np.random.default_rng([p.seed, epoch, step_in_epoch, 1])  # same draws after a resume
            data = _batch(dataset, idx, mp.image_size, supervised=p.supervised)
            extra = {k: v for k, v in data.items() if k != "image"}  # mask (+ truth): mirrored with the image
            images = augment(data["image"], views, p.flip_augment, rng, extra).to(device)
            truth = extra if p.supervised else None
            face_mask = extra["mask"].to(device) if p.face_mask else None
            canon = images[torch.from_numpy(canonical_sources(len(idx), views, rng))] if views > 1 else None
            dec = decompose(nets, mp, images, canon_images01=canon)
            loss, parts = reconstruction_loss(dec, images, features, lam_perc=params.ae_optimize.lam_perc,
                                              lam_flip=params.ae_optimize.lam_flip, face_mask=face_mask)
            if p.lam_depth_smooth > 0:
                smooth = depth_smoothness_loss(dec.canon_depth[:dec.batch], span)
                loss = loss + p.lam_depth_smooth * smooth
                parts["depth_smooth"] = float(smooth.detach())
            if p.lam_pseudo_view > 0:
                pseudo, pseudo_parts = pseudo_sample_loss(nets, mp, dec, rng, lam_depth=p.lam_pseudo_depth)
                loss = loss + p.lam_pseudo_view * pseudo
                parts.update(pseudo_parts)
            if truth is not None:
                truth = {k: v.to(device).float() for k, v in truth.items()}
                sup, sup_parts = depth_supervision_loss(dec, truth, mp)
                loss = loss + SUPERVISED_WEIGHT * sup
                parts.update(sup_parts)
            parts["total"] = float(loss.detach())
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"pretraining diverged at step {steps} (loss {float(loss)}); lower pretrain.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_in_epoch += 1
            steps += 1
            losses.append(parts["total"])
            if progress is not None:
                progress(steps, total, parts)
            seconds = time.perf_counter() - t_start
            if p.max_minutes and seconds > p.max_minutes * 60:
                stopped_early = True
                break
        history.append({"epoch": epoch, "steps": steps, "loss": float(np.mean(losses)) if losses else None,
                        "seconds": round(seconds, 1)})
        if stopped_early:
            save_resume()
            break
        epoch, step_in_epoch = epoch + 1, 0
        save_resume()
    nets.eval()
    meta = {"epoch": epoch, "steps": steps, "images_seen": steps * batch, "seconds": round(seconds, 1),
            "views_per_face": views,
            "perceptual": perc_kind, "dataset": p.dataset, "train_images": n, "supervised": p.supervised,
            "parameters": count_parameters(nets), "stopped_early": stopped_early,
            "history": history, "torch": str(torch.__version__)}
    save_checkpoint(out, nets, mp, meta=meta, pretrain=asdict(p))
    return meta
