"""The thesis's GAN backends: ``invert.backend: hyperstyle | e4e | optimize`` and
``pose_sweep.backend: interfacegan``.

``check_ready`` resolves every weight file through :func:`facerecon.weights.resolve` (local
path, models/, $FACERECON_MODELS; a hub id only with ``invert.allow_download``) and raises one
:class:`MissingWeightsError` naming each missing file, where it was looked for and where to get
it; ``facerecon run`` calls it before any face is processed. Models are loaded once per process
and device. Each face's inversion writes its W+ code (``latent.npy``) and, for HyperStyle, its
generator weight offsets (``weight_deltas.safetensors``); the sweep reads them back, so the 14
views come from the same per-face generator that reconstructed the photo.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from facerecon import registry
from facerecon.config import Params
from facerecon.errors import CheckpointError, ConfigError, MissingWeightsError
from facerecon.io.atomic import atomic_save
from facerecon.stages.base import AlignedFace, InvertResult, View

log = logging.getLogger(__name__)

GAN_INVERT_BACKENDS = registry.backends_in("invert", "facerecon.gan")  # the `invert` backends that make a W+ latent

HOW = {
    "hyperstyle": ("download 'HyperStyle - Human Faces' (hyperstyle_ffhq.pt) from the Pretrained Models table of "
                   "github.com/yuval-alaluf/hyperstyle into models/ (or $FACERECON_MODELS), or set "
                   "invert.hyperstyle_checkpoint to its path"),
    "w_encoder": ("download HyperStyle's 'Faces W-Encoder' (faces_w_encoder.pt, listed with HyperStyle's auxiliary "
                  "models at github.com/yuval-alaluf/hyperstyle) into models/, or set invert.w_encoder_checkpoint"),
    "e4e": ("download 'FFHQ Inversion' (e4e_ffhq_encode.pt) from github.com/omertov/encoder4editing into models/, "
            "or set invert.e4e_checkpoint"),
    "generator": ("download the FFHQ config-f generator converted for rosinality/stylegan2-pytorch "
                  "(stylegan2-ffhq-config-f.pt; or convert NVIDIA's .pkl with that repo's convert_weight.py) into "
                  "models/, or set invert.generator"),
    "direction": ("copy HyperStyle's editing/interfacegan_directions/pose.pt (github.com/yuval-alaluf/hyperstyle) "
                  "into models/, or make one for your generator with `facerecon gan fit-direction --out "
                  "models/pose.pt`, or set pose_sweep.direction"),
}
PARAM_KEY = {"hyperstyle": "invert.hyperstyle_checkpoint", "w_encoder": "invert.w_encoder_checkpoint",
             "e4e": "invert.e4e_checkpoint", "generator": "invert.generator", "direction": "pose_sweep.direction"}


def _torch_device(device: Any):
    import torch

    return torch.device(device) if device is not None else torch.device("cpu")


def _hub_id(name: str) -> str | None:
    """``org/repo`` (no file suffix) may be fetched from the hub when downloads are allowed."""
    if Path(name).suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return None
    return name


def _pick_file(path: Path, default_name: str) -> Path:
    """A hub snapshot is a folder: take the default file name in it, else its only checkpoint."""
    if path.is_file():
        return path
    direct = path / default_name
    if direct.is_file():
        return direct
    found = sorted(p for ext in ("*.pt", "*.pth", "*.npy") for p in path.rglob(ext))
    if len(found) == 1:
        return found[0]
    raise MissingWeightsError(f"{path}: folder without {default_name} (found {len(found)} checkpoint files)")


DEFAULT_NAMES = {"hyperstyle": "hyperstyle_ffhq.pt", "w_encoder": "faces_w_encoder.pt", "e4e": "e4e_ffhq_encode.pt",
                 "generator": "stylegan2-ffhq-config-f.pt", "direction": "pose.pt"}


def weight_names(params: Params) -> dict[str, str]:
    """The files the selected GAN backends need: role → configured name."""
    inv = params.invert
    table = {"hyperstyle": {"hyperstyle": inv.hyperstyle_checkpoint, "w_encoder": inv.w_encoder_checkpoint},
             "e4e": {"e4e": inv.e4e_checkpoint}, "optimize": {"generator": inv.generator}}
    out = dict(table.get(inv.backend, {}))
    if params.pose_sweep.backend == "interfacegan":
        out["direction"] = params.pose_sweep.direction
    return out


def resolve_weights(params: Params, roles: list[str], hash_it: bool = True) -> dict[str, Any]:
    """Resolve ``roles`` (keys of :func:`weight_names`); one error listing every missing file."""
    from facerecon.weights import ResolvedWeights, resolve, sha256_of

    names = weight_names(params)
    found: dict[str, ResolvedWeights] = {}
    missing: list[str] = []
    for role in roles:
        name = names[role]
        try:
            r = resolve(name, key=PARAM_KEY[role], how_to_get=HOW[role], allow_download=params.invert.allow_download,
                        hub_id=_hub_id(name), hash_it=False)
            path = _pick_file(r.path, DEFAULT_NAMES[role])
            found[role] = ResolvedWeights(path=path, sha256=sha256_of(path) if hash_it else "")
        except MissingWeightsError as exc:
            missing.append(str(exc))
    if missing:
        raise MissingWeightsError("; ".join(missing))
    return found


# ------------------------------------------------------------------------------ model cache

_LOCK = threading.Lock()
_MODELS: dict[tuple, Any] = {}


def _cached(kind: str, paths: tuple[Path, ...], device, build):
    key = (kind, *(str(p.resolve()) for p in paths), *(p.stat().st_mtime for p in paths), str(device))
    with _LOCK:
        if key not in _MODELS:
            log.info("loading %s from %s", kind, ", ".join(map(str, paths)))
            _MODELS[key] = build()
        return _MODELS[key]


def clear_cache() -> None:
    with _LOCK:
        _MODELS.clear()


def load_hyperstyle_cached(params: Params, device) -> tuple[Any, dict]:
    from facerecon.gan.checkpoints import load_hyperstyle

    w = resolve_weights(params, ["hyperstyle", "w_encoder"])
    model = _cached("hyperstyle", (w["hyperstyle"].path, w["w_encoder"].path), device,
                    lambda: load_hyperstyle(w["hyperstyle"].path, w["w_encoder"].path, device))
    return model, w


def load_e4e_cached(params: Params, device) -> tuple[Any, dict]:
    from facerecon.gan.checkpoints import load_e4e

    w = resolve_weights(params, ["e4e"])
    return _cached("e4e", (w["e4e"].path,), device, lambda: load_e4e(w["e4e"].path, device)), w


def inversion_generator(params: Params, device) -> tuple[Any, Any, dict]:
    """(generator, average latent (n_latent, D) or None, resolved weights) of the selected inversion
    backend: HyperStyle's/e4e's decoder or ``invert.generator``; an already loaded HyperStyle/e4e
    model is reused rather than read again."""
    from facerecon.gan.checkpoints import load_generator

    backend = params.invert.backend
    role = {"hyperstyle": "hyperstyle", "e4e": "e4e", "optimize": "generator"}[backend]
    w = resolve_weights(params, [role])
    path = w[role].path
    with _LOCK:
        for key, model in _MODELS.items():
            if key[0] == backend and key[1] == str(path.resolve()) and key[-1] == str(device):
                return model.decoder, model.latent_avg, w
    loaded = _cached("generator", (path,), device, lambda: load_generator(path, device))
    return loaded.generator, loaded.latent_avg, w


def _weights_info(w: dict) -> dict:
    return {role: {"path": str(r.path), "sha256": r.sha256} for role, r in w.items()}


def _save_latent(workdir: Path, latent) -> Path:
    path = Path(workdir) / "latent.npy"
    arr = latent.detach().float().cpu().numpy().reshape(latent.shape[-2:]).astype(np.float32)
    atomic_save(path, lambda tmp: np.save(tmp, arr))
    return path


def _save_deltas(workdir: Path, deltas) -> Path:
    from safetensors.torch import save_file

    from facerecon.gan.invert import pack_deltas

    path = Path(workdir) / "weight_deltas.safetensors"
    packed = pack_deltas(deltas)
    atomic_save(path, lambda tmp: save_file(packed, str(tmp), metadata={"n_layers": str(len(deltas))}))
    return path


def _reconstruction(image, size: int) -> np.ndarray:
    from facerecon.gan.stylegan2 import resize, to_uint8

    return to_uint8(resize(image, size))[0]


# ------------------------------------------------------------------------------ invert


class _GanInvert:
    backend = ""

    def __init__(self, params: Params, device: Any) -> None:
        self.params = params
        self.device = _torch_device(device)

    def _check_selected(self) -> None:
        if self.params.invert.backend != self.backend:
            raise ConfigError(f"invert.backend: {self.__class__.__name__} built for {self.backend!r}, "
                              f"params select {self.params.invert.backend!r}")

    def _target(self, face: AlignedFace):
        from facerecon.gan.stylegan2 import from_uint8

        if face.image.ndim != 3 or face.image.shape[0] != face.image.shape[1]:
            raise ConfigError(f"invert: expected a square aligned face, got {face.image.shape}")
        return from_uint8(face.image, device=self.device)

    def _result(self, inv, face: AlignedFace, workdir: Path, weights: dict, info: dict) -> InvertResult:
        files = {"latent": str(_save_latent(workdir, inv.latent))}
        if inv.weights_deltas is not None:
            files["weight_deltas"] = str(_save_deltas(workdir, inv.weights_deltas))
        latent = inv.latent.detach().float().cpu().numpy().reshape(inv.latent.shape[-2:])
        info = {"backend": self.backend, "weights": _weights_info(weights),
                "mse_history": [round(v, 6) for v in inv.history], **info}
        return InvertResult(latent=latent, reconstruction=_reconstruction(inv.image, face.image.shape[0]),
                            files=files, info=info)


class HyperStyleInvert(_GanInvert):
    """W encoder → W+, then HyperStyle's hypernetwork refines per-layer generator weights."""

    backend = "hyperstyle"

    def check_ready(self) -> None:
        self._check_selected()
        resolve_weights(self.params, ["hyperstyle", "w_encoder"], hash_it=False)

    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult:
        from facerecon.gan.invert import hyperstyle_invert, round_deltas

        t0 = time.perf_counter()
        model, w = load_hyperstyle_cached(self.params, self.device)
        iters = self.params.invert.iterations or model.default_iterations
        inv = hyperstyle_invert(model, self._target(face), iters, round_deltas=round_deltas)
        return self._result(inv, face, workdir, w, {"iterations": iters,
                                                    "seconds": round(time.perf_counter() - t0, 3)})


class E4eInvert(_GanInvert):
    """e4e encoder → W+ (no weight offsets)."""

    backend = "e4e"

    def check_ready(self) -> None:
        self._check_selected()
        resolve_weights(self.params, ["e4e"], hash_it=False)

    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult:
        from facerecon.gan.invert import e4e_invert

        t0 = time.perf_counter()
        model, w = load_e4e_cached(self.params, self.device)
        inv = e4e_invert(model, self._target(face))
        return self._result(inv, face, workdir, w, {"seconds": round(time.perf_counter() - t0, 3)})


class OptimizeInvert(_GanInvert):
    """Adam on W+ from the average latent; needs only the generator."""

    backend = "optimize"

    def check_ready(self) -> None:
        self._check_selected()
        resolve_weights(self.params, ["generator"], hash_it=False)

    def invert(self, face: AlignedFace, workdir: Path) -> InvertResult:
        import torch

        from facerecon.gan.invert import optimize_invert

        p = self.params.invert
        t0 = time.perf_counter()
        generator, loaded_avg, w = inversion_generator(self.params, self.device)
        if loaded_avg is None:
            loaded_avg = generator.mean_latent(4096, seed=self.params.seed).expand(generator.n_latent, -1)
        w_init = loaded_avg.to(self.device).reshape(1, generator.n_latent, generator.style_dim)
        torch.manual_seed(self.params.seed)
        inv = optimize_invert(generator, self._target(face), w_init, steps=p.optimize_steps, lr=p.optimize_lr,
                              loss_size=p.optimize_loss_size, latent_reg=p.optimize_latent_reg)
        hist = inv.history
        keep = sorted({0, len(hist) - 1, *range(0, len(hist), max(len(hist) // 20, 1))})
        inv.history = [hist[i] for i in keep]
        return self._result(inv, face, workdir, w, {"steps": p.optimize_steps, "history_steps": keep,
                                                    "seconds": round(time.perf_counter() - t0, 3)})


# ------------------------------------------------------------------------------ pose sweep


class InterfaceGanSweep:
    """14 views ``G_θ+Δ(w + α·n)``: the inverted code moved along the pose normal, rendered by the
    generator with this face's HyperStyle offsets (none for e4e/optimize)."""

    def __init__(self, params: Params, device: Any, yaw_estimator=None) -> None:
        self.params = params
        self.device = _torch_device(device)
        self._yaw = yaw_estimator

    def check_ready(self) -> None:
        if self.params.invert.backend not in GAN_INVERT_BACKENDS:
            raise ConfigError(f"pose_sweep.backend: 'interfacegan' edits a GAN latent; set invert.backend to one "
                              f"of {', '.join(GAN_INVERT_BACKENDS)} (got {self.params.invert.backend!r})")
        role = {"hyperstyle": "hyperstyle", "e4e": "e4e", "optimize": "generator"}[self.params.invert.backend]
        resolve_weights(self.params, [role, "direction"], hash_it=False)

    def yaw_estimator(self):
        if not self.params.pose_sweep.estimate_yaw:
            return None
        if self._yaw is None:
            from facerecon.gan.interfacegan import landmark_yaw

            self._yaw = landmark_yaw(min_face_size=max(self.params.align.min_face_size, 16))
        return self._yaw

    def _inputs(self, inverted: InvertResult, generator):
        import torch

        from facerecon.gan.invert import unpack_deltas

        if inverted.latent is not None:
            latent = np.asarray(inverted.latent, np.float32)
        elif "latent" in inverted.files:
            latent = np.load(inverted.files["latent"], allow_pickle=False).astype(np.float32)
        else:
            raise ConfigError("pose_sweep.backend: 'interfacegan' needs a W+ latent from a GAN invert backend")
        if latent.shape != (generator.n_latent, generator.style_dim):
            raise CheckpointError(f"latent of shape {latent.shape} does not fit the generator "
                                  f"({generator.n_latent}, {generator.style_dim})")
        deltas = None
        if inverted.files.get("weight_deltas"):
            from safetensors.torch import load_file

            packed = load_file(inverted.files["weight_deltas"])
            deltas = unpack_deltas(packed, 3 * len(generator.to_rgbs) + 2, self.device)
        return torch.from_numpy(latent).to(self.device)[None], deltas

    def sweep(self, face: AlignedFace, inverted: InvertResult, alphas: list[int], workdir: Path) -> list[View]:
        from facerecon.gan.interfacegan import (
            alpha_to_yaw,
            direction_agreement,
            edit_latents,
            load_direction,
            render_latents,
        )

        p = self.params.pose_sweep
        generator, _, w = inversion_generator(self.params, self.device)
        d = resolve_weights(self.params, ["direction"])["direction"]
        direction = load_direction(d.path, generator.n_latent, generator.style_dim).to(self.device)
        if p.flip_direction:
            direction = -direction
        latent, deltas = self._inputs(inverted, generator)
        codes = edit_latents(latent, direction, alphas)
        t0 = time.perf_counter()
        images = render_latents(generator, codes, deltas, batch_size=p.batch_size, out_size=p.image_size)
        seconds = time.perf_counter() - t0
        codes_np = codes.cpu().numpy().astype(np.float32)
        atomic_save(Path(workdir) / "sweep_latents.npy", lambda tmp: np.save(tmp, codes_np))
        est = self.yaw_estimator()
        yaws = [est(img) if est is not None else None for img in images]
        agree = direction_agreement(alphas, yaws)
        if agree is not None and agree < 0:
            log.warning("pose direction %s turns heads against facerecon's yaw sign (corr %.2f); "
                        "set pose_sweep.flip_direction: true", d.path, agree)
        span = (p.alpha_span_min, p.alpha_span_max)
        views = []
        for a, img, y in zip(alphas, images, yaws, strict=True):
            info = {"yaw_estimated": None if y is None else round(float(y), 2), "direction": str(d.path),
                    "direction_sha256": d.sha256, "generator": _weights_info(w),
                    "weight_deltas": bool(deltas is not None), "render_seconds": round(seconds / len(alphas), 3)}
            views.append(View(image=img, yaw=float(alpha_to_yaw(a, span)), name=f"sweep_a{a:+d}", alpha=float(a),
                              info=info))
        return views
