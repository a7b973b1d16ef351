"""The synthetic benchmark set: morphable faces rendered at random pose and light, with ground truth.

Image formation follows Unsup3D's model on purpose, so a perfect photo-geometric autoencoder
could explain every image exactly: a canonical (frontal) face is shaded Lambertian in its
own frame (``ambient + diffuse · max(0, n·l)``, ``l = (dx, dy, 1)/‖·‖``, normals in Unsup3D's
orientation), multiplied by its albedo, and the resulting canonical image is carried as a
texture on the canonical depth mesh, which is rotated/translated into the view and rendered
with the project's rasterizer. Ground truth is the view depth of that mesh at the output
pixel centres (``max_depth`` on background, like Unsup3D's BFM set where background depth is
the far end of the range) and its coverage mask.

Images are rendered at ``supersample``× resolution and box-filtered (anti-aliased silhouettes,
like a downsampled high-resolution render); depth and mask are rasterized directly at the
output size so they are exact at the pixel centres the metrics use.

Layout written by :func:`make_synth_dataset` (each file atomically)::

    <out_dir>/{train,val,test}/images.npy       uint8 (N, S, S, 3)
                               depth.npy        float32 (N, S, S) view depth, max_depth off-face
                               mask.npy         bool (N, S, S)
                               canon_depth.npy  float32 (N, S, S) canonical (frontal) depth
                               params.npz       per-image face / pose / light parameters
                               meta.json        seed, params, version, counts, stats
    <out_dir>/samples.png                        a grid of test images for people to look at

Every batch draws from its own generator seeded by (seed, split, batch index), so the data
are identical whatever the number of workers.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facerecon.bench import face_model
from facerecon.config import SynthParams, to_dict
from facerecon.errors import ConfigError, DatasetError
from facerecon.geometry.camera import view_transform, view_vectors
from facerecon.geometry.mesh import grid_faces, normals_from_depth
from facerecon.io.atomic import atomic_save, atomic_write_text
from facerecon.render import Fragments, rasterize, sample_texture

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DATASET_VERSION = 1
_BATCH = 64
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
FILES = ("images.npy", "depth.npy", "mask.npy", "canon_depth.npy", "params.npz", "meta.json")


# ----------------------------------------------------------------------- pure rendering


def sample_render_params(n: int, rng: np.random.Generator, params: SynthParams) -> dict[str, np.ndarray]:
    """Pose (yaw/pitch/roll in degrees, tx/ty), light and background for ``n`` images."""
    deg = {
        "yaw": rng.uniform(-params.max_yaw, params.max_yaw, n),
        "pitch": rng.uniform(-params.max_pitch, params.max_pitch, n),
        "roll": rng.uniform(-params.max_roll, params.max_roll, n),
    }
    out = dict(deg)
    out["tx"] = rng.uniform(-params.max_translation, params.max_translation, n)
    out["ty"] = rng.uniform(-params.max_translation, params.max_translation, n)
    out["ambient"] = rng.uniform(params.min_ambient, params.max_ambient, n)
    out["diffuse"] = rng.uniform(params.min_diffuse, params.max_diffuse, n)
    out["light_dx"] = rng.uniform(-params.max_light_xy, params.max_light_xy, n)
    out["light_dy"] = rng.uniform(-params.max_light_xy, params.max_light_xy, n)
    # background: a colour, a linear gradient across the image and low-frequency noise
    grey = rng.uniform(0.1, 0.9, (n, 1))
    out["bg_colour"] = np.clip(grey + rng.normal(0.0, 0.12, (n, 3)), 0.0, 1.0)
    out["bg_gradient"] = rng.normal(0.0, 0.1, (n, 2, 1)) + rng.normal(0.0, 0.04, (n, 2, 3))
    out["bg_noise"] = rng.normal(0.0, 0.04, (n, 4, 4, 3))
    return out


def canonical_image(albedo: Tensor, depth_full: Tensor, rp: dict[str, np.ndarray], fov: float) -> Tensor:
    """Unsup3D's canonical image: albedo · (ambient + diffuse · max(0, n·l)), (B, 3, T, T) in [0, 1]."""
    n = normals_from_depth(depth_full.float(), fov, toward_camera=False)  # Unsup3D orientation
    return (albedo * lambert(n, rp).unsqueeze(1)).clamp(0.0, 1.0)


def background(rp: dict[str, np.ndarray], size: int) -> Tensor:
    """(B, 3, size, size) smooth backgrounds: colour + gradient + bicubic-upsampled noise."""
    B = rp["bg_colour"].shape[0]
    lin = torch.linspace(-1.0, 1.0, size)
    t, s = torch.meshgrid(lin, lin, indexing="ij")
    col = torch.as_tensor(rp["bg_colour"], dtype=torch.float32).view(B, 3, 1, 1)
    grad = torch.as_tensor(rp["bg_gradient"], dtype=torch.float32)  # (B, 2, 3)
    img = col + grad[:, 0].view(B, 3, 1, 1) * s + grad[:, 1].view(B, 3, 1, 1) * t
    noise = torch.as_tensor(rp["bg_noise"], dtype=torch.float32).permute(0, 3, 1, 2)
    img = img + F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=True)
    return img.clamp(0.0, 1.0)


def render_views(verts_canon: Tensor, tri: Tensor, keep: Tensor | None, colour: Callable[[Fragments], Tensor],
                 view: Tensor, bg: Tensor, image_size: int, *, fov: float, max_depth: float,
                 supersample: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Render canonical meshes into views → image (B, 3, S, S) in [0, 1], depth (B, S, S), mask (B, S, S).

    ``verts_canon`` (B, V, 3) are canonical-frame vertices, ``tri`` (F, 3) the shared triangles,
    ``keep`` (B, V) bool the vertices on the face or None (triangles touching another vertex
    are dropped by moving it behind the camera). ``colour(fragments)`` gives the surface colour
    (B, 3, H, W) at the ``supersample``× resolution (texture lookup or vertex colours);
    ``bg`` (B, 3, S·ss, S·ss) is composited behind. Depth and mask come from a second
    rasterization at the output size, exact at the pixel centres.
    """
    verts = view_transform(verts_canon.float(), view.float())
    if keep is not None:
        verts = torch.where(keep.unsqueeze(-1), verts, verts.new_tensor([0.0, 0.0, -1.0]))  # behind znear
    frag_hi = rasterize(verts, tri, image_size * supersample, fov_deg=fov)
    m = frag_hi.mask.unsqueeze(1).float()
    img = colour(frag_hi) * m + bg * (1.0 - m)
    if supersample > 1:
        img = F.avg_pool2d(img, supersample)
    frag = rasterize(verts, tri, image_size, fov_deg=fov)
    mask = frag.mask
    depth = torch.where(mask, frag.zbuf, frag.zbuf.new_tensor(max_depth))
    return img.clamp(0.0, 1.0), depth, mask


def lambert(normals: Tensor, rp: dict[str, np.ndarray]) -> Tensor:
    """Unsup3D shading ``ambient + diffuse · max(0, n·l)``, ``l = (dx, dy, 1)/‖·‖``, for normals
    (B, ..., 3) in Unsup3D's orientation (n_z > 0 facing the camera) → (B, ...)."""
    light = torch.as_tensor(np.stack([rp["light_dx"], rp["light_dy"], np.ones_like(rp["light_dx"])], 1),
                            dtype=normals.dtype)
    light = light / light.norm(dim=1, keepdim=True)
    shape = (-1,) + (1,) * (normals.dim() - 2)
    cos = (normals * light.view(*shape, 3)).sum(-1).clamp(min=0.0)
    amb = torch.as_tensor(rp["ambient"], dtype=normals.dtype).view(shape)
    dif = torch.as_tensor(rp["diffuse"], dtype=normals.dtype).view(shape)
    return amb + dif * cos


def face_mesh(fp: dict[str, np.ndarray], mask: Tensor, depth: Tensor, fov: float, min_depth: float,
              max_depth: float) -> tuple[Tensor, Tensor]:
    """Canonical vertices (B, R*R, 3) and texture uv (B, R*R, 2) of the faces' grid meshes.

    Interior vertices are the lifted depth grid; boundary vertices sit on the analytic outline
    (``face_model.snap_outline``) with the surface's depth there, so turned heads have smooth
    silhouettes.
    """
    B, R, _ = depth.shape
    s, t, edge = face_model.snap_outline(fp, mask)
    d_edge, _ = face_model.depth_at(fp, s, t, min_depth=min_depth, max_depth=max_depth)
    d = torch.where(edge, d_edge, depth.reshape(B, -1).float())
    tan = math.tan(math.radians(fov) / 2.0)
    verts = torch.stack([s * tan * d, t * tan * d, d], -1)  # X = (u-cx) d / f with (u-cx)/f = s·tan(fov/2)
    uv = torch.stack([(s + 1) / 2, (t + 1) / 2], -1)
    return verts, uv


def render_batch(n: int, rng: np.random.Generator, params: SynthParams, views_per_face: int = 1) -> dict[str, np.ndarray]:
    """``n`` images of random faces at random views: the arrays one dataset batch holds.

    With ``views_per_face`` V > 1 the batch holds ⌈n/V⌉ identities, each rendered V times in a row
    at its own pose and light (the multi-view pretraining set).
    """
    ids = face_model.sample_params(math.ceil(n / views_per_face), rng)
    fp = ids if views_per_face == 1 else {k: np.repeat(v, views_per_face, axis=0)[:n] for k, v in ids.items()}
    rp = sample_render_params(n, rng, params)
    return render_from_params(fp, rp, params)


def texture_size(params: SynthParams) -> int:
    """Canonical texture side ``(S-1)·ss + 1``: its every ss-th sample is the S-pixel mesh grid."""
    return (params.image_size - 1) * params.supersample + 1


def render_from_params(fp: dict[str, np.ndarray], rp: dict[str, np.ndarray],
                       params: SynthParams) -> dict[str, np.ndarray]:
    """Deterministic render of given face and render parameters (the reference path of the set)."""
    S, fov, ss = params.image_size, params.fov, params.supersample
    T = texture_size(params)
    full, tmask = face_model.face_depth(fp, T, min_depth=params.min_depth, max_depth=params.max_depth,
                                        fill_outside=False)
    albedo, _ = face_model.face_albedo(fp, T)
    mask_c = tmask[:, ::ss, ::ss]
    depth_c = torch.where(mask_c, full[:, ::ss, ::ss], full.new_tensor(params.max_depth))
    verts, uv = face_mesh(fp, mask_c, depth_c, fov, params.min_depth, params.max_depth)
    canon = canonical_image(albedo, full, rp, fov)
    tri = grid_faces(S, S)

    def colour(frag: Fragments) -> Tensor:
        return sample_texture(frag, tri, uv, canon)[0]

    img, depth, mask = render_views(verts, tri, mask_c.reshape(len(verts), -1), colour, view_vectors(rp),
                                    background(rp, S * ss), S, fov=fov, max_depth=params.max_depth,
                                    supersample=ss)
    out = finish_batch(img, depth, mask, params.max_depth)
    out["canon_depth"] = depth_c.numpy().astype(np.float32)
    out.update({f"face/{k}": np.asarray(v) for k, v in fp.items()})
    out.update({f"render/{k}": np.asarray(v) for k, v in rp.items()})
    return out


def finish_batch(img: Tensor, depth: Tensor, mask: Tensor, max_depth: float) -> dict[str, np.ndarray]:
    """Rendered tensors → stored arrays (uint8 images; face depth kept just below the background).

    A visible surface point at or beyond the background depth would be read as background by
    Unsup3D's mask rule (depth < max); such pixels are pulled just in front and counted.
    """
    face_far = max_depth - 1e-4
    clamped = int((mask & (depth > face_far)).sum())
    depth = torch.where(mask, depth.clamp(max=face_far), depth)
    return {
        "images": (img.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8),
        "depth": depth.numpy().astype(np.float32),
        "mask": mask.numpy(),
        "clamped": np.array(clamped),
    }


# --------------------------------------------------------------------------- file output


def _batch_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_ID[split], index, DATASET_VERSION]))


def _split_sizes(params: SynthParams) -> dict[str, int]:
    return {"train": params.n_train, "val": params.n_val, "test": params.n_test}


def _render_job(args: tuple[dict, str, int, int]) -> dict[str, np.ndarray]:
    pdict, split, index, n = args
    torch.set_num_threads(1)
    params = SynthParams(**pdict)
    return _render_source(params, n, _batch_rng(params.seed, split, index), views_of(params, split))


def views_of(params: SynthParams, split: str) -> int:
    """Views per identity in ``split``: ``views_per_face`` for a synthetic train split, else 1 (val
    and test, and the BFM sources, whose renderer draws one pose per sampled face)."""
    return params.views_per_face if split == "train" and params.source == "synthetic" else 1


def _render_source(params: SynthParams, n: int, rng: np.random.Generator, views_per_face: int = 1) -> dict[str, np.ndarray]:
    if params.source == "synthetic":
        return render_batch(n, rng, params, views_per_face)
    from facerecon.bench import bfm  # only users with a BFM file need it

    model = bfm.load_cached(params.bfm_path, params.source)
    return bfm.render_batch(model, n, rng, params)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_save(path, lambda tmp: np.save(tmp, arr, allow_pickle=False))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_save(path, write)


def check_params(params: SynthParams) -> None:
    """Cross-field checks the config loader cannot express (one clear error each)."""
    if params.min_depth >= params.max_depth:
        raise ConfigError(f"synth.min_depth: must be below synth.max_depth ({params.min_depth} >= {params.max_depth})")
    if params.min_ambient > params.max_ambient:
        raise ConfigError("synth.min_ambient: must not exceed synth.max_ambient")
    if params.min_diffuse > params.max_diffuse:
        raise ConfigError("synth.min_diffuse: must not exceed synth.max_diffuse")
    if _BATCH % params.views_per_face:
        raise ConfigError(f"synth.views_per_face: {params.views_per_face} does not divide the render batch of "
                          f"{_BATCH} (use 1, 2, 4, 8, 16, 32 or 64)")
    if params.source != "synthetic":
        if not params.bfm_path:
            raise ConfigError(f"synth.bfm_path: source {params.source!r} needs the path of a Basel Face Model file")
        if not Path(params.bfm_path).is_file():
            raise DatasetError(f"synth.bfm_path: {params.bfm_path} does not exist (source {params.source})")


def write_split(split_dir: Path, batches: list[dict[str, np.ndarray]], meta: dict) -> dict[str, Path]:
    """Concatenate rendered batches and write one split's files (atomically, meta.json last)."""
    cat = {k: np.concatenate([b[k] for b in batches]) if batches[0][k].ndim else None for k in batches[0]}
    split_dir.mkdir(parents=True, exist_ok=True)
    # meta.json is written last and removed first: a split interrupted mid-write has none, and
    # SynthDataset refuses it instead of pairing old metadata with new arrays
    (split_dir / "meta.json").unlink(missing_ok=True)
    paths = {}
    for key in ("images", "depth", "mask", "canon_depth"):
        paths[key] = split_dir / f"{key}.npy"
        _save_npy(paths[key], cat[key])
    pk = {k: v for k, v in cat.items() if "/" in k}
    paths["params"] = split_dir / "params.npz"
    _save_npz(paths["params"], pk)
    mask, depth = cat["mask"], cat["depth"]
    face = depth[mask]
    log_d = np.log(np.where(mask, depth, 1.0))
    cnt = mask.sum((1, 2))
    mean = log_d.sum((1, 2)) / np.maximum(cnt, 1)
    std = np.sqrt(((log_d - mean[:, None, None]) ** 2 * mask).sum((1, 2)) / np.maximum(cnt, 1))
    meta = dict(meta)
    meta["count"] = int(len(depth))
    meta["stats"] = {
        "mask_fraction": float(mask.mean()),
        "face_depth_min": float(face.min()) if face.size else None,
        "face_depth_max": float(face.max()) if face.size else None,
        "log_depth_std_in_mask": float(std.mean()),
        "clamped_pixels": int(sum(int(b["clamped"]) for b in batches)),
    }
    paths["meta"] = split_dir / "meta.json"
    atomic_write_text(paths["meta"], json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return paths


def make_synth_dataset(params: SynthParams, progress: bool = True, *,
                       on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Path]:
    """Render the train/val/test splits of ``params`` under ``params.out_dir``; returns split → folder.

    ``params.workers`` > 1 renders batches in a process pool; the data do not depend on it.
    ``progress`` shows a tqdm bar per split; ``on_progress(split, done, total)`` is called per batch.
    """
    check_params(params)
    out = Path(params.out_dir)
    pdict = to_dict(params)
    recorded = {k: v for k, v in pdict.items() if k != "workers"}  # the data do not depend on it
    dirs: dict[str, Path] = {}
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(params.workers) if params.workers > 1 else None
    threads = torch.get_num_threads()  # each job renders on one thread (the bytes depend on it): restored after
    try:
        for split, n in _split_sizes(params).items():
            jobs = [(pdict, split, i, min(_BATCH, n - i * _BATCH)) for i in range(math.ceil(n / _BATCH))]
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=n, desc=f"synth {split}", unit="img")
            it = pool.map(_render_job, jobs) if pool else map(_render_job, jobs)
            batches = []
            for job, res in zip(jobs, it, strict=True):
                batches.append(res)
                if bar is not None:
                    bar.update(job[3])
                if on_progress is not None:
                    on_progress(split, sum(j[3] for j in jobs[:len(batches)]), n)
            if bar is not None:
                bar.close()
            meta = {"dataset": "facerecon-synth", "version": DATASET_VERSION,
                    "face_model_version": face_model.PARAM_VERSION, "split": split, "seed": params.seed,
                    "params": recorded, "background_depth": params.max_depth,
                    "views_per_face": views_of(params, split),
                    "conventions": "facerecon.geometry.camera; depth = camera Z; mask = rendered coverage"}
            dirs[split] = write_split(out / split, batches, meta)["meta"].parent
            log.info("synth %s: %d images in %s", split, n, dirs[split])
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.shutdown()
    write_samples_png(out / "test", out / "samples.png")
    log.info("synth: done in %.1f s", time.perf_counter() - t0)
    return dirs


def write_samples_png(split_dir: Path, path: Path, n: int = 48, cols: int = 8) -> Path:
    """A grid of images (top) and their depth maps (below each row) for people to look at."""
    images = np.load(split_dir / "images.npy", mmap_mode="r")[:n]
    depth = np.load(split_dir / "depth.npy", mmap_mode="r")[:n]
    mask = np.load(split_dir / "mask.npy", mmap_mode="r")[:n]
    meta = json.loads((split_dir / "meta.json").read_text())
    lo, hi = meta["params"]["min_depth"], meta["params"]["max_depth"]
    n = len(images)
    S = images.shape[1]
    rows = math.ceil(n / cols)
    grid = np.full((rows * 2 * (S + 2), cols * (S + 2), 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * 2 * (S + 2), c * (S + 2)
        grid[y:y + S, x:x + S] = images[i]
        d = np.clip((hi - depth[i]) / (hi - lo), 0, 1)  # near = bright
        d = (d * 255 * mask[i]).astype(np.uint8)
        grid[y + S + 2:y + 2 * S + 2, x:x + S] = d[..., None]
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(buf, format="PNG")
    from facerecon.io.atomic import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
    return path
