"""The benchmark's variants (thesis Tables 6.1/6.2) as depth predictors built from the pipeline's code.

Every variant maps images (N, 3, S, S) in [0, 1] to predicted view depth (N, S, S) (see
``facerecon.bench.protocol``). The pipeline variants run, per face, what the per-face stages run:

1. the pretrained AE's canonical depth and image give the frontal face (``FrontalFace``, the
   same structure the ``reproject`` backends turn),
2. ``pose_sweep`` / ``profile`` views are rendered from it with ``render_yaw`` at the stages'
   yaws (``alpha_yaws``, ``profile_yaws``),
3. the AE is fine-tuned on the face's views with ``fit_face`` (the ``ae_optimize`` step), and
4. for ``full`` the canonical depth gets the ``correct`` stage's forehead correction
   (``combine`` only touches albedo, which the metrics do not see),

then the fine-tuned AE's view depth of the input is scored. The offline views are rendered from
the AE's own depth, so they carry no shape information the AE did not already have; the
thesis's views come from a GAN and a diffusion model, which do. The table shows what that costs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facerecon import registry
from facerecon.ae.finetune import fit_face
from facerecon.ae.model import predict, render
from facerecon.ae.networks import AeNets
from facerecon.bench.protocol import Predictor
from facerecon.config import AeModelParams, Params
from facerecon.offline.reproject import FrontalFace, render_yaw
from facerecon.post.correct import correct_forehead
from facerecon.stages.base import alpha_yaws, profile_yaws, sweep_alphas

log = logging.getLogger(__name__)

def far_depth(mp: AeModelParams) -> float:
    """Unsup3D's far clamp: pixels at or beyond it are not scored."""
    return mp.max_depth + (mp.max_depth - mp.min_depth) / 2


def ae_predictor(nets: AeNets, mp: AeModelParams) -> Predictor:
    """The AE alone (Unsup3D): its view depth of each image, in one batched forward pass."""

    def predict_depth(images: Tensor) -> Tensor:
        with torch.no_grad():
            return predict(nets, mp, images)["recon_depth"].float()

    return predict_depth


class LandmarkPredictor:
    """The offline ``invert`` proxy as a variant: mediapipe's 3D landmarks of each render (upscaled
    to ``detect_size``, as a photo would be), turned into dense depth by the same
    ``landmark_depth`` interpolation, but in the image's own view (no frontalisation), so it is
    scored like every other prediction. Faces mediapipe does not find get a flat map (what a user
    would get is no face at all); ``detected`` counts the others."""

    def __init__(self, fov: float, far: float, detect_size: int = 256) -> None:
        self.fov, self.far, self.detect_size = fov, far, detect_size
        self.detected = self.faces = 0

    def depth(self, image: Tensor) -> Tensor:
        from facerecon.align import detect_landmarks
        from facerecon.geometry.depth_proxy import landmark_depth

        s = image.shape[-1]
        big = torch.nn.functional.interpolate(image[None], size=(self.detect_size,) * 2, mode="bicubic",
                                              align_corners=False)[0].clamp(0, 1)
        rgb = (big.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        self.faces += 1
        lm = detect_landmarks(rgb)
        if lm is None:
            return torch.ones(s, s)
        self.detected += 1
        lm = lm * (s / self.detect_size)  # x, y and z (z is in x-pixels) into the image's pixels
        depth, _ = landmark_depth(lm, s, fov=self.fov)
        return torch.from_numpy(np.minimum(depth, self.far - 1e-3))

    def __call__(self, images: Tensor) -> Tensor:
        return torch.stack([self.depth(images[i]) for i in range(images.shape[0])])


def frontal_from_prediction(pred: dict[str, Tensor], mp: AeModelParams, image: Tensor) -> FrontalFace:
    """The AE's canonical (frontal) face as the ``FrontalFace`` the view renderers turn."""
    depth = pred["canon_depth"].reshape(mp.image_size, mp.image_size).numpy().astype(np.float32)
    texture = pred["canon_image"].reshape(3, mp.image_size, mp.image_size).permute(1, 2, 0).numpy()
    head = depth < mp.max_depth - 0.02 * (mp.max_depth - mp.min_depth)
    photo = image.permute(1, 2, 0).numpy()
    border = np.concatenate([photo[:2].reshape(-1, 3), photo[-2:].reshape(-1, 3)])
    return FrontalFace(texture=np.clip(texture, 0, 1).astype(np.float32), depth=depth, mask=head, face_mask=head,
                       background=np.median(border, axis=0))


def corrected_view_depth(pred: dict[str, Tensor], mp: AeModelParams, params: Params) -> Tensor:
    """View depth after the ``correct`` stage's forehead correction of the canonical depth."""
    c = params.correct
    canon = pred["canon_depth"].reshape(mp.image_size, mp.image_size).numpy()
    head = canon < mp.max_depth - 0.02 * (mp.max_depth - mp.min_depth)
    fixed = correct_forehead(canon, head, layers=c.layers, source_layer=c.source_layer, target_layer=c.target_layer,
                             strength=c.strength)
    depth = torch.from_numpy(fixed.astype(np.float32))[None]
    albedo = pred["canon_albedo"].reshape(1, 3, mp.image_size, mp.image_size) * 2 - 1
    r = render(mp, depth, albedo, pred["light"].reshape(1, -1), pred["view"].reshape(1, -1))
    return torch.where(r["mask"][0] > 0, r["recon_depth"][0], r["recon_depth"].new_tensor(far_depth(mp)))


def face_views(front: FrontalFace, yaws: list[float], fov: float, size: int) -> Tensor:
    """(len(yaws), 3, size, size) renders of the frontal face, in [0, 1]."""
    imgs = [torch.from_numpy(render_yaw(front, y, fov, size)).permute(2, 0, 1).float() / 255.0 for y in yaws]
    return torch.stack(imgs)


class TrueViews:
    """Renders of test faces of a synthetic split at other yaws: the face, light and background of
    the test image, frontal pitch/roll and no shift (the pose sweep's turn)."""

    def __init__(self, split_dir: str | Path) -> None:
        from facerecon.config import SynthParams

        split = Path(split_dir)
        meta = json.loads((split / "meta.json").read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(SynthParams)}
        self.params = SynthParams(**{k: v for k, v in meta["params"].items() if k in known})
        with np.load(split / "params.npz") as z:
            self.arrays = {k: z[k] for k in z.files}

    def views(self, index: int, yaws: list[float]) -> Tensor:
        """(len(yaws), 3, S, S) in [0, 1]: face ``index`` turned to each yaw (degrees)."""
        from facerecon.bench.synth import render_from_params

        n = len(yaws)
        fp = {k.split("/", 1)[1]: np.repeat(v[index:index + 1], n, 0) for k, v in self.arrays.items()
              if k.startswith("face/")}
        rp = {k.split("/", 1)[1]: np.repeat(v[index:index + 1], n, 0) for k, v in self.arrays.items()
              if k.startswith("render/")}
        rp["yaw"] = np.asarray(yaws, np.float64)
        for k in ("pitch", "roll", "tx", "ty"):
            rp[k] = np.zeros(n)
        out = render_from_params(fp, rp, self.params)
        return torch.from_numpy(out["images"]).permute(0, 3, 1, 2).float() / 255.0


class PipelineVariants:
    """The per-face pipeline (views → fine-tune → optional correction) as depth predictors.

    Variants that differ only after the fine-tuning (``ae_sweep`` and ``full``) share it: the
    fine-tuned prediction of each face is kept (a few 64×64 maps) for the next variant.
    """

    def __init__(self, nets: AeNets, mp: AeModelParams, params: Params,
                 on_face: Callable[[str], None] | None = None, true_views: TrueViews | None = None) -> None:
        self.nets, self.mp, self.params, self.on_face = nets, mp, params, on_face
        self.true_views = true_views
        self._tuned: dict[tuple[bytes, bool, bool, bool], dict[str, Tensor]] = {}

    def yaws(self, sweep: bool, profiles: bool) -> list[float]:
        return (alpha_yaws(sweep_alphas(self.params), self.params) if sweep else []) + \
            (profile_yaws(self.params) if profiles else [])

    def tuned_prediction(self, image: Tensor, sweep: bool, profiles: bool,
                         true_index: int | None = None) -> dict[str, Tensor]:
        """The AE's outputs for ``image`` after fine-tuning on the face's views: generated from the
        AE's own frontal face, or with ``true_index`` the test face ``true_index`` truly turned."""
        key = (hashlib.sha1(image.numpy().tobytes()).digest(), sweep, profiles, true_index is not None)
        if key in self._tuned:
            return self._tuned[key]
        mp, e = self.mp, self.params.evaluate
        if true_index is not None:
            if self.true_views is None:
                raise ValueError("oracle views need the test split's face parameters (true_views)")
            views = self.true_views.views(true_index, self.yaws(sweep, profiles))
        else:
            with torch.no_grad():
                pred = predict(self.nets, mp, image)
            views = face_views(frontal_from_prediction(pred, mp, image), self.yaws(sweep, profiles), mp.fov,
                               mp.image_size)
        seed = self.params.seed + int.from_bytes(key[0][:4], "little")
        settings = dataclasses.replace(self.params.ae_optimize, steps=e.finetune_steps,
                                       batch_size=e.finetune_batch_size)  # the benchmark's per-face budget
        tuned, _ = fit_face(self.nets, mp, image, views, settings, seed=seed % 2**31)
        with torch.no_grad():
            out = {k: v.detach() for k, v in predict(tuned, mp, image).items()}
        self._tuned[key] = out
        return out

    def depths(self, name: str, images: Tensor, indices: list[int]) -> Tensor:
        """View depth (N, S, S) of test images ``images`` (faces ``indices`` of the split) under ``name``."""
        v = registry.variant(name)
        sweep, profiles, correct, oracle = v.sweep, v.profiles, v.correct, v.oracle
        out = []
        for image, index in zip(images, indices, strict=True):
            tuned = self.tuned_prediction(image, sweep, profiles, index if oracle else None)
            out.append((corrected_view_depth(tuned, self.mp, self.params) if correct else tuned["recon_depth"]).float())
            if self.on_face is not None:
                self.on_face(name)
        return torch.stack(out)


# ------------------------------------------------------------------ all faces, in parallel

def image_key(image: Tensor) -> bytes:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).digest()


_WORKER: dict[str, object] = {}


def _worker_init(checkpoint: str, params: Params, split_dir: str | None = None) -> None:
    from facerecon.ae.train import load_checkpoint

    torch.set_num_threads(1)
    nets, mp, _ = load_checkpoint(checkpoint)
    _WORKER["variants"] = PipelineVariants(nets, mp, params, true_views=TrueViews(split_dir) if split_dir else None)


def _worker_faces(job: tuple[Tensor, tuple[str, ...], list[int]]) -> dict[str, Tensor]:
    images, names, indices = job
    pv: PipelineVariants = _WORKER["variants"]  # type: ignore[assignment]
    out = {n: pv.depths(n, images, indices) for n in names}
    pv._tuned.clear()
    return out


def map_chunks(fn: Callable, jobs: list, *, workers: int = 1, initializer: Callable | None = None,
               initargs: tuple = (), on_chunk: Callable[[int], None] | None = None,
               size: Callable[[object], int] = len) -> list:
    """``[fn(job) for job in jobs]``, in order, inline or over ``workers`` spawned processes (one torch
    thread each); ``on_chunk(size(job))`` after each. The result does not depend on ``workers``."""
    out: list = []
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            if initializer is not None:
                initializer(*initargs)
            torch.set_num_threads(1)
            for job in jobs:
                out.append(fn(job))
                if on_chunk:
                    on_chunk(size(job))
        finally:
            torch.set_num_threads(threads)
        return out
    import multiprocessing as mpc
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mpc.get_context("spawn"), initializer=initializer,
                             initargs=initargs) as pool:
        for job, res in zip(jobs, pool.map(fn, jobs), strict=True):
            out.append(res)
            if on_chunk:
                on_chunk(size(job))
    return out


def pipeline_depths(checkpoint: str, params: Params, images: Tensor, names: tuple[str, ...], *, workers: int = 1,
                    chunk: int = 8, on_chunk: Callable[[int], None] | None = None,
                    split_dir: str | Path | None = None) -> dict[str, Tensor]:
    """View depth of every image under each pipeline variant in ``names`` → {name: (N, S, S)}.

    ``images`` are faces 0..N-1 of the test split ``split_dir`` (needed by ``oracle_views``,
    which renders the true faces). Faces are independent, so they are spread over ``workers``
    processes (one torch thread each: per-face fine-tuning works on a few 64×64 images, where one
    process per core beats intra-op threads). The result does not depend on ``workers``.
    """
    if any(registry.variant(n).oracle for n in names) and split_dir is None:
        raise ValueError("oracle_views needs split_dir, the test split the images come from")
    split = str(split_dir) if split_dir is not None else None
    jobs = [(images[i:i + chunk], names, list(range(i, min(i + chunk, images.shape[0]))))
            for i in range(0, images.shape[0], chunk)]
    results = map_chunks(_worker_faces, jobs, workers=workers, initializer=_worker_init,
                         initargs=(checkpoint, params, split), on_chunk=on_chunk, size=lambda job: job[0].shape[0])
    _WORKER.clear()
    return {n: torch.cat([r[n] for r in results]) for n in names}


def lookup_predictor(images: Tensor, depths: Tensor, name: str) -> Predictor:
    """A predictor that answers with precomputed depths, found by image content."""
    table = {image_key(images[i]): depths[i] for i in range(images.shape[0])}

    def predict_depth(batch: Tensor) -> Tensor:
        try:
            return torch.stack([table[image_key(batch[i])] for i in range(batch.shape[0])])
        except KeyError:
            raise ValueError(f"variant {name!r}: an image was not precomputed") from None

    return predict_depth
