"""Make an InterfaceGAN pose direction for any StyleGAN2 generator (``facerecon gan fit-direction``).

InterfaceGAN's method: sample latents, render them, score each image with an attribute
predictor (here: yaw from facial landmarks), take the highest- and lowest-scoring fraction as
the two classes, fit a linear SVM in W, and use its unit normal as the edit direction. The
result is saved in HyperStyle's ``pose.pt`` format, (1, n_latent, D) with the normal in every
row (``.npy`` output: InterfaceGAN's (1, D) boundary), oriented so that +α turns the head
towards positive yaw in facerecon's convention. A JSON file beside it records how it was made
and the measured degrees of yaw per unit α.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facerecon.errors import ConfigError, DatasetError, FaceReconError, NoFaceError
from facerecon.gan.stylegan2 import Generator, resize, to_uint8
from facerecon.io.atomic import atomic_save, atomic_write_text

log = logging.getLogger(__name__)

# images (B uint8 H×W×3) and their W codes (B, D) → yaw in degrees (NaN where no face was found)
Labeller = Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]


def landmark_labeller(min_face_size: int = 24) -> Labeller:
    """Yaw from mediapipe landmarks (facerecon.align's head-pose estimate); ignores the codes."""
    from facerecon.gan.interfacegan import landmark_yaw

    one = landmark_yaw(min_face_size)

    def label(images: Sequence[np.ndarray], latents: np.ndarray) -> np.ndarray:
        out = [one(im) for im in images]
        return np.array([np.nan if v is None else v for v in out], dtype=np.float64)

    return label


# ----------------------------------------------------------------------------- linear SVM


def linear_svm(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """L2-regularised squared-hinge linear SVM (LinearSVC's primal), solved with L-BFGS.

    ``y`` in {0, 1} or {−1, +1}. Minimises ½‖w‖² + C·Σ max(0, 1 − yᵢ(w·xᵢ + b))²; the bias is not
    regularised. Returns (w, b).
    """
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    yt = torch.where(yt > 0, 1.0, -1.0)
    if xt.ndim != 2 or yt.shape != (xt.shape[0],):
        raise ValueError(f"linear_svm: x must be (N, D) and y (N,), got {tuple(xt.shape)} and {tuple(yt.shape)}")
    if bool((yt > 0).all()) or bool((yt < 0).all()):
        raise ValueError("linear_svm: need samples of both classes")
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        margin = torch.clamp(1 - yt * (xt @ w + b), min=0)
        loss = 0.5 * (w @ w) + c * (margin * margin).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


@dataclass
class BoundaryFit:
    boundary: np.ndarray  # (1, D) unit normal, pointing to higher scores
    n_train: int
    n_val: int
    val_accuracy: float | None
    remaining_accuracy: float | None
    slope: float  # score units per unit step along the boundary (degrees per α for yaw)
    intercept: float


def fit_boundary(latents: np.ndarray, scores: np.ndarray, *, ratio: float = 0.02, split: float = 0.7,
                 c: float = 1.0, seed: int = 0) -> BoundaryFit:
    """InterfaceGAN's ``train_boundary``: top/bottom ``ratio`` of the scores (or that many samples if
    ``ratio`` > 1) are the classes, ``split`` of each for training, the rest for validation."""
    x = np.asarray(latents, np.float64)
    s = np.asarray(scores, np.float64).reshape(-1)
    keep = np.isfinite(s)
    x, s = x[keep], s[keep]
    n = len(s)
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    chosen = int(n * ratio) if ratio <= 1 else int(ratio)
    chosen = min(chosen, n // 2)
    if chosen < 2:
        raise ValueError(f"only {n} labelled samples: too few for a boundary (need ≥ 4 with this ratio)")
    order = np.argsort(-s, kind="stable")
    x, s = x[order], s[order]
    rng = np.random.default_rng(seed)
    n_train = max(int(chosen * split), 1)
    pos, neg = rng.permutation(chosen), rng.permutation(chosen)
    pos_x, neg_x = x[:chosen][pos], x[n - chosen:][neg]
    train_x = np.concatenate([pos_x[:n_train], neg_x[:n_train]])
    train_y = np.concatenate([np.ones(n_train), np.zeros(n_train)])
    w, b = linear_svm(train_x, train_y, c=c)

    def accuracy(xs: np.ndarray, ys: np.ndarray) -> float | None:
        return float(((xs @ w + b > 0) == (ys > 0)).mean()) if len(ys) else None

    val_x = np.concatenate([pos_x[n_train:], neg_x[n_train:]])
    val_y = np.concatenate([np.ones(chosen - n_train), np.zeros(chosen - n_train)])
    rest_x, rest_s = x[chosen:n - chosen], s[chosen:n - chosen]
    rest_y = (rest_s >= 0.5 * (s[0] + s[-1])).astype(float)
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("the SVM found no separating direction (all labels alike?)")
    unit = w / norm
    proj = x @ unit
    slope, intercept = np.polyfit(proj, s, 1) if np.ptp(proj) > 0 else (0.0, float(s.mean()))
    return BoundaryFit(boundary=unit[None].astype(np.float32), n_train=2 * n_train, n_val=len(val_y),
                       val_accuracy=accuracy(val_x, val_y), remaining_accuracy=accuracy(rest_x, rest_y),
                       slope=float(slope), intercept=float(intercept))


# ----------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_w(generator: Generator, n: int, *, seed: int = 0, truncation: float = 0.7,
             w_avg: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` W codes (n, D) from Gaussian Z, pulled ``truncation`` of the way from the average W."""
    device = generator.input.input.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, generator.style_dim, generator=g).to(device)
    w = torch.cat([generator.mapping(c) for c in z.split(512)])
    if truncation != 1.0:
        avg = w_avg if w_avg is not None else generator.mean_latent(4096, seed=seed + 1)
        w = avg.reshape(1, -1)[:, : generator.style_dim] + truncation * (w - avg.reshape(1, -1)[:, : generator.style_dim])
    return w


@dataclass
class DirectionFit:
    direction: torch.Tensor  # (1, n_latent, D)
    boundary: np.ndarray  # (1, D)
    meta: dict = field(default_factory=dict)


def fit_direction(generator: Generator, *, labeller: Labeller, n_samples: int = 2000, ratio: float = 0.2,
                  truncation: float = 0.7, seed: int = 0, batch_size: int = 4, image_size: int = 256,
                  c: float = 1.0, min_labelled: int = 20,
                  progress: Callable[[int, int], None] | None = None) -> DirectionFit:
    """Sample, render, label and fit (InterfaceGAN). Raises NoFaceError when too few samples get a label."""
    t0 = time.perf_counter()
    w = sample_w(generator, n_samples, seed=seed, truncation=truncation)
    scores = np.full(n_samples, np.nan)
    done = 0
    for start in range(0, n_samples, max(batch_size, 1)):
        chunk = w[start:start + batch_size]
        with torch.no_grad():
            imgs = to_uint8(resize(generator.synthesis(chunk, None, "const"), image_size))
        scores[start:start + len(chunk)] = np.asarray(labeller(imgs, chunk.cpu().numpy()), np.float64)
        done += len(chunk)
        if progress is not None:
            progress(done, n_samples)
    labelled = int(np.isfinite(scores).sum())
    if labelled < max(min_labelled, 4):
        raise NoFaceError(f"fit-direction: only {labelled} of {n_samples} samples got a yaw label (a face was "
                          f"found); need at least {max(min_labelled, 4)}: sample more or lower --truncation")
    try:
        fit = fit_boundary(w.cpu().numpy(), scores, ratio=ratio, c=c, seed=seed)
    except ValueError as exc:
        raise DatasetError(f"fit-direction: {exc}") from None
    boundary = torch.from_numpy(fit.boundary)
    direction = boundary[:, None, :].expand(1, generator.n_latent, generator.style_dim).clone()
    finite = scores[np.isfinite(scores)]
    meta = {"method": "InterfaceGAN linear SVM on W (squared hinge, L-BFGS)", "n_samples": n_samples,
            "n_labelled": labelled, "ratio": ratio, "truncation": truncation, "seed": seed, "C": c,
            "n_train": fit.n_train, "n_val": fit.n_val, "val_accuracy": fit.val_accuracy,
            "remaining_accuracy": fit.remaining_accuracy,
            "yaw_per_alpha_deg": round(fit.slope, 4), "yaw_at_alpha0_deg": round(fit.intercept, 3),
            "yaw_range_deg": [round(float(finite.min()), 2), round(float(finite.max()), 2)],
            "generator": {"size": generator.size, "n_latent": generator.n_latent, "style_dim": generator.style_dim},
            "seconds": round(time.perf_counter() - t0, 2)}
    return DirectionFit(direction=direction, boundary=fit.boundary, meta=meta)


def save_direction(path: str | Path, fit: DirectionFit) -> Path:
    """``.pt``: (1, n_latent, D) tensor (HyperStyle's format); ``.npy``: (1, D) (InterfaceGAN's); + ``.json``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        arr = np.asarray(fit.boundary, np.float32)
        atomic_save(path, lambda tmp: np.save(tmp, arr))
    else:
        tensor = fit.direction.detach().float().cpu().contiguous()
        atomic_save(path, lambda tmp: torch.save(tensor, tmp))
    atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(fit.meta, indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facerecon gan fit-direction",
        description="Fit an InterfaceGAN pose direction for a StyleGAN2 generator: sample faces, label their "
                    "yaw from landmarks, fit a linear SVM in W.")
    p.add_argument("--out", required=True, help="output file: .pt (HyperStyle's (1,18,512) format) or .npy")
    p.add_argument("--generator", default=None,
                   help="generator checkpoint (rosinality g_ema, or a HyperStyle/e4e file's decoder); "
                        "default: the one the params' invert backend uses")
    p.add_argument("--params", default=None, help="params.yaml (for the default generator, device, seed)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="override a parameter")
    p.add_argument("--samples", type=int, default=2000, help="latents to sample (InterfaceGAN used 500k)")
    p.add_argument("--ratio", type=float, default=0.2,
                   help="fraction (≤1) or count (>1) of highest/lowest-yaw samples used as the two classes")
    p.add_argument("--truncation", type=float, default=0.7, help="W truncation ψ of the samples")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=256, help="side the samples are labelled at")
    p.add_argument("--min-face-size", type=int, default=24)
    p.add_argument("--seed", type=int, default=None, help="default: params seed")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default: params device")
    return p


def _generator_for(args: argparse.Namespace, params, device):
    if args.generator:
        from facerecon.gan.backends import HOW
        from facerecon.gan.checkpoints import load_generator
        from facerecon.weights import resolve

        r = resolve(args.generator, key="--generator", how_to_get=HOW["generator"])
        return load_generator(r.path, device).generator, str(r.path), r.sha256
    if params.invert.backend not in ("hyperstyle", "e4e", "optimize"):
        params = _with_invert_backend(params, "optimize")
    from facerecon.gan.backends import inversion_generator

    g, _, w = inversion_generator(params, device)
    r = next(iter(w.values()))
    return g, str(r.path), r.sha256


def _with_invert_backend(params, backend: str):
    return dataclasses.replace(params, invert=dataclasses.replace(params.invert, backend=backend))


def cli_main(argv: list[str]) -> int:
    """``facerecon gan fit-direction``: 0 on success, 2 on a user error (message on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage
        return int(exc.code or 0)
    prog = "facerecon gan fit-direction"
    try:
        from facerecon.config import load_params
        from facerecon.stages.runtime import device_for

        params = load_params(args.params, args.set)
        if args.device:
            params = dataclasses.replace(params, device=args.device)
        if args.samples < 8:
            raise ConfigError("--samples: need at least 8")
        if not (0 < args.truncation <= 1.0):
            raise ConfigError("--truncation: must be in (0, 1]")
        if args.ratio <= 0 or (args.ratio > 1 and args.ratio != math.floor(args.ratio)):
            raise ConfigError("--ratio: a fraction in (0, 1] or a whole number of samples")
        out = Path(args.out)
        if out.suffix.lower() not in (".pt", ".pth", ".npy"):
            raise ConfigError(f"--out: {out} must end in .pt, .pth or .npy")
        device = device_for(params)
        seed = params.seed if args.seed is None else args.seed
        generator, gpath, gsha = _generator_for(args, params, device)
        labeller = landmark_labeller(args.min_face_size)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 5 or done == total:
                last[0] = now
                print(f"{prog}: {done}/{total} samples labelled", file=sys.stderr)

        fit = fit_direction(generator, labeller=labeller, n_samples=args.samples, ratio=args.ratio,
                            truncation=args.truncation, seed=seed, batch_size=args.batch_size,
                            image_size=args.image_size, progress=progress)
        fit.meta["generator_path"], fit.meta["generator_sha256"] = gpath, gsha
        save_direction(out, fit)
    except FaceReconError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    m = fit.meta
    print(f"wrote {out} ({m['n_labelled']}/{m['n_samples']} samples labelled, validation accuracy "
          f"{m['val_accuracy'] if m['val_accuracy'] is not None else 'n/a'}, "
          f"{m['yaw_per_alpha_deg']:.2f}° yaw per unit α)")
    return 0
