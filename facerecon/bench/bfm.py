"""Basel Face Model readers: make the benchmark set from a user's BFM file instead of the procedural model.

Two published layouts, one in-memory :class:`MorphableModel`:

* **BFM 2009** ``01_MorphableModel.mat`` (MATLAB): ``shapeMU`` (3V, 1), ``shapePC`` (3V, K),
  ``shapeEV`` (K, 1) — standard deviations, sample = μ + PC · (α ⊙ EV) —, ``texMU`` / ``texPC``
  / ``texEV`` (colours 0..255), ``tl`` (F, 3) 1-based triangles. Coordinates in µm. A MATLAB
  v7.3 file (HDF5 inside) is read with h5py.
* **BFM 2017** ``model2017-1_bfm_nomouth.h5`` (statismo HDF5): ``shape/model/{mean, pcaBasis,
  pcaVariance}`` with an orthonormal basis (3V, K) and variances — sample = μ + U · (α ⊙ √var) —,
  ``color/model/...`` (colours 0..1), ``expression/model/...`` (optional, same layout),
  ``shape/representer/cells`` (3, F) 0-based triangles. Coordinates in mm. The BFM 2009
  re-release in this format (``model2009-publicmm1-bfm.h5``) has no expression group and reads
  the same way.

Both use x right, y up, z toward the viewer. :func:`render_batch` puts a sampled face in the
project camera frame (x right, y down, z away: ``(x, -y, -z)``), scaled so the mean face spans
the image like the procedural faces and its nose tip sits at depth ≈ 0.92, shades it with the
same Unsup3D Lambertian light per vertex, and renders it through the same mesh path as the
synthetic set (``synth.render_views``): a real mesh, not a depth grid.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facerecon.bench import synth
from facerecon.config import SynthParams
from facerecon.errors import DatasetError
from facerecon.geometry.mesh import vertex_normals
from facerecon.render import Fragments, interpolate, render_depth

_NOSE_DEPTH = 0.92   # where the mean face's nearest point goes
_HALF_WIDTH = 0.78   # mean face half-width in image half-widths (as the procedural model)
_CHUNK = 8           # faces per rasterizer call (BFM meshes have ~10⁵ triangles)


@dataclass(frozen=True)
class MorphableModel:
    """A linear face model. Bases are pre-scaled by their standard deviations, so
    ``instance = mean + basis @ α`` with α ~ N(0, I)."""

    shape_mean: np.ndarray   # (V, 3) float32, model units
    shape_basis: np.ndarray  # (3V, K) float32
    color_mean: np.ndarray   # (V, 3) float32 in [0, 1]
    color_basis: np.ndarray  # (3V, Kc) float32 (colour units 0..1)
    expr_mean: np.ndarray    # (V, 3) float32 (zeros without expressions)
    expr_basis: np.ndarray   # (3V, Ke) float32, Ke may be 0
    triangles: np.ndarray    # (F, 3) int64, 0-based
    source: str
    path: str

    @property
    def n_vertices(self) -> int:
        return self.shape_mean.shape[0]


def _fail(path: Path, source: str, why: str) -> DatasetError:
    return DatasetError(f"{path}: not a usable {source} file ({why})")


def _check(model: MorphableModel, path: Path) -> MorphableModel:
    """Shapes must agree; a mismatch is a clear error, not an index error deep in rendering."""
    V = model.n_vertices
    src = model.source
    if model.shape_mean.shape != (V, 3) or V < 3:
        raise _fail(path, src, f"shape mean has {model.shape_mean.size} values, not a multiple of 3")
    for name, basis in (("shape basis", model.shape_basis), ("colour basis", model.color_basis),
                        ("expression basis", model.expr_basis)):
        if basis.ndim != 2 or basis.shape[0] != 3 * V:
            raise _fail(path, src, f"{name} has shape {basis.shape}, expected ({3 * V}, K)")
    if model.color_mean.shape != (V, 3):
        raise _fail(path, src, f"colour mean has {model.color_mean.size} values for {V} vertices")
    tri = model.triangles
    if tri.ndim != 2 or tri.shape[1] != 3 or len(tri) == 0:
        raise _fail(path, src, f"triangle list has shape {tri.shape}, expected (F, 3)")
    if tri.min() < 0 or tri.max() >= V:
        raise _fail(path, src, f"triangle indices span {tri.min()}..{tri.max()} for {V} vertices")
    for name, arr in (("shape", model.shape_basis), ("shape mean", model.shape_mean)):
        if not np.isfinite(arr).all():
            raise _fail(path, src, f"{name} contains NaN/inf")
    return model


def _colours(mean: np.ndarray) -> float:
    """Scale of a colour model: BFM 2009 stores 0..255, BFM 2017 0..1."""
    return 255.0 if float(np.nanmax(mean)) > 2.0 else 1.0


def load_bfm2009(path: str | Path) -> MorphableModel:
    """Read ``01_MorphableModel.mat`` (MATLAB v5, or v7.3 through h5py)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: BFM 2009 file does not exist")
    keys = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
    data: dict[str, np.ndarray] = {}
    try:
        import scipy.io

        raw = scipy.io.loadmat(str(path), variable_names=list(keys))
        data = {k: np.asarray(raw[k]) for k in keys if k in raw}
    except NotImplementedError:  # v7.3: HDF5 inside, arrays stored transposed
        data = _read_h5(path, {k: k for k in keys}, transpose=True, source="BFM 2009 .mat (v7.3)")
    except Exception as exc:  # scipy raises ValueError/TypeError/... on foreign files
        raise _fail(path, "BFM 2009 .mat", f"cannot read it as a MATLAB file: {exc.__class__.__name__}") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise _fail(path, "BFM 2009 .mat", f"missing {', '.join(missing)}")
    try:
        mu = data["shapeMU"].astype(np.float32).reshape(-1, 3)
        ev = data["shapeEV"].astype(np.float32).reshape(-1)
        pc = data["shapePC"].astype(np.float32).reshape(3 * len(mu), -1)[:, :len(ev)] * ev[None, :]
        tmu = data["texMU"].astype(np.float32).reshape(-1, 3)
        scale = _colours(tmu)
        tev = data["texEV"].astype(np.float32).reshape(-1)
        tpc = data["texPC"].astype(np.float32).reshape(3 * len(tmu), -1)[:, :len(tev)] * tev[None, :]
        tri = np.asarray(data["tl"]).astype(np.int64).reshape(-1, 3) - 1  # MATLAB 1-based
    except ValueError as exc:
        raise _fail(path, "BFM 2009 .mat", f"arrays of inconsistent size ({exc})") from None
    V = len(mu)
    model = MorphableModel(mu, pc, tmu / scale, tpc / scale, np.zeros((V, 3), np.float32),
                           np.zeros((3 * V, 0), np.float32), tri, "bfm2009", str(path))
    return _check(model, path)


def _read_h5(path: Path, names: dict[str, str], transpose: bool = False,
             source: str = "BFM 2017 .h5") -> dict[str, np.ndarray]:
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as fh:
            for key, name in names.items():
                if name in fh and isinstance(fh[name], h5py.Dataset):
                    arr = np.asarray(fh[name])
                    out[key] = arr.T if transpose else arr
    except OSError as exc:
        raise _fail(path, source, f"cannot open it as HDF5: {exc}") from None
    return out


def load_bfm2017(path: str | Path) -> MorphableModel:
    """Read a statismo-layout BFM HDF5 file (2017 ``*_nomouth.h5``, or the 2009 re-release)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: BFM 2017 file does not exist")
    names = {
        "mean": "shape/model/mean", "basis": "shape/model/pcaBasis", "var": "shape/model/pcaVariance",
        "cmean": "color/model/mean", "cbasis": "color/model/pcaBasis", "cvar": "color/model/pcaVariance",
        "emean": "expression/model/mean", "ebasis": "expression/model/pcaBasis",
        "evar": "expression/model/pcaVariance", "cells": "shape/representer/cells",
    }
    data = _read_h5(path, names)
    missing = [names[k] for k in ("mean", "basis", "var", "cmean", "cbasis", "cvar", "cells") if k not in data]
    if missing:
        raise _fail(path, "BFM 2017 .h5", f"missing {', '.join(missing)}")

    def scaled(basis: np.ndarray, var: np.ndarray, rows: int, what: str) -> np.ndarray:
        basis = basis.astype(np.float32)
        var = var.astype(np.float32).reshape(-1)
        if basis.ndim != 2 or basis.shape[0] != rows:
            raise _fail(path, "BFM 2017 .h5", f"{what}/pcaBasis has shape {basis.shape}, expected ({rows}, K)")
        k = min(basis.shape[1], len(var))
        return basis[:, :k] * np.sqrt(np.clip(var[:k], 0.0, None))[None, :]

    mu = data["mean"].astype(np.float32).reshape(-1, 3)
    V = len(mu)
    shape_basis = scaled(data["basis"], data["var"], 3 * V, "shape/model")
    cmean = data["cmean"].astype(np.float32).reshape(-1, 3)
    cscale = _colours(cmean)
    color_basis = scaled(data["cbasis"], data["cvar"], 3 * V, "color/model") / cscale
    if "emean" in data and "ebasis" in data and "evar" in data:
        emean = data["emean"].astype(np.float32).reshape(-1, 3)
        ebasis = scaled(data["ebasis"], data["evar"], 3 * V, "expression/model")
    else:
        emean, ebasis = np.zeros((V, 3), np.float32), np.zeros((3 * V, 0), np.float32)
    cells = np.asarray(data["cells"]).astype(np.int64)
    if cells.ndim == 2 and cells.shape[0] == 3 and cells.shape[1] != 3:
        cells = cells.T  # statismo stores (3, F)
    if emean.shape != mu.shape:
        raise _fail(path, "BFM 2017 .h5", f"expression mean has {emean.size} values for {V} vertices")
    model = MorphableModel(mu, shape_basis, cmean / cscale, color_basis, emean, ebasis, cells, "bfm2017", str(path))
    return _check(model, path)


def load(path: str | Path, source: str) -> MorphableModel:
    """``source`` is ``bfm2009`` or ``bfm2017`` (``synth.source`` in params.yaml)."""
    if source == "bfm2009":
        return load_bfm2009(path)
    if source == "bfm2017":
        return load_bfm2017(path)
    raise DatasetError(f"unknown BFM source {source!r} (bfm2009 or bfm2017)")


@functools.lru_cache(maxsize=2)
def load_cached(path: str, source: str) -> MorphableModel:
    """One read per process (the render workers each load the file once)."""
    return load(path, source)


# ------------------------------------------------------------------------------ sampling


def sample_instances(model: MorphableModel, n: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``n`` random faces: vertices (n, V, 3) in model units, colours (n, V, 3) in [0, 1] and
    the coefficients α (shape, expression, colour; each (n, K), N(0, 1))."""
    V = model.n_vertices
    coef = {
        "shape": rng.standard_normal((n, model.shape_basis.shape[1])).astype(np.float32),
        "expression": rng.standard_normal((n, model.expr_basis.shape[1])).astype(np.float32),
        "colour": rng.standard_normal((n, model.color_basis.shape[1])).astype(np.float32),
    }
    verts = model.shape_mean[None] + (coef["shape"] @ model.shape_basis.T).reshape(n, V, 3)
    if model.expr_basis.shape[1]:
        verts = verts + model.expr_mean[None] + (coef["expression"] @ model.expr_basis.T).reshape(n, V, 3)
    cols = model.color_mean[None] + (coef["colour"] @ model.color_basis.T).reshape(n, V, 3)
    return verts, np.clip(cols, 0.0, 1.0), coef


def camera_transform(model: MorphableModel, fov: float) -> tuple[np.ndarray, float, float]:
    """(centre (3,), scale, z offset) mapping model coordinates to the canonical camera frame.

    Fixed by the mean face so every sample shares it (identity differences stay differences):
    ``cam = ((x, -y, -z) - centre) · scale + (0, 0, z0)``.
    """
    cam = model.shape_mean * np.array([1.0, -1.0, -1.0], np.float32)
    lo, hi = cam.min(0), cam.max(0)
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], np.float32)
    width = float(hi[0] - lo[0])
    if width <= 0:
        raise DatasetError(f"{model.path}: the mean face has no width")
    scale = 2.0 * _HALF_WIDTH * math.tan(math.radians(fov) / 2.0) / width
    return centre, scale, _NOSE_DEPTH


def to_camera(model: MorphableModel, verts: np.ndarray, fov: float) -> Tensor:
    centre, scale, z0 = camera_transform(model, fov)
    cam = (verts * np.array([1.0, -1.0, -1.0], np.float32) - centre) * scale
    cam[..., 2] += z0
    return torch.as_tensor(cam, dtype=torch.float32)


def _normal_sign(model: MorphableModel, tri: Tensor, fov: float) -> float:
    """+1 if the triangles' winding makes normals face the camera on the mean face, else −1."""
    mean = to_camera(model, model.shape_mean[None], fov)
    n = vertex_normals(mean, tri)
    return 1.0 if float(n[0, :, 2].mean()) < 0 else -1.0


def render_batch(model: MorphableModel, n: int, rng: np.random.Generator, params: SynthParams) -> dict[str, np.ndarray]:
    """``n`` random BFM faces at random views: the same arrays as ``synth.render_batch``."""
    fp_verts, fp_cols, coef = sample_instances(model, n, rng)
    rp = synth.sample_render_params(n, rng, params)
    S, ss, fov = params.image_size, params.supersample, params.fov
    tri = torch.as_tensor(model.triangles)
    sign = _normal_sign(model, tri, fov)
    views = synth.view_vectors(rp)
    bg = synth.background(rp, S * ss)
    parts = []
    for i in range(0, n, _CHUNK):
        sl = slice(i, min(n, i + _CHUNK))
        sub = {k: v[sl] for k, v in rp.items()}
        verts = to_camera(model, fp_verts[sl], fov)
        # Unsup3D's normal orientation points away from the camera on a facing surface
        normals = -sign * vertex_normals(verts, tri)
        rgb = torch.as_tensor(fp_cols[sl]) * synth.lambert(normals, sub).unsqueeze(-1)

        def colour(frag: Fragments, rgb: Tensor = rgb) -> Tensor:
            return interpolate(frag, tri, rgb).permute(0, 3, 1, 2)

        img, depth, mask = synth.render_views(verts, tri, None, colour, views[sl], bg[sl], S, fov=fov,
                                              max_depth=params.max_depth, supersample=ss)
        canon, _ = render_depth(verts, tri, S, fov, background=params.max_depth)  # frontal = canonical
        part = synth.finish_batch(img, depth, mask, params.max_depth)
        part["canon_depth"] = canon.numpy().astype(np.float32)
        parts.append(part)
    out = {k: (np.concatenate([p[k] for p in parts]) if k != "clamped" else
               np.array(sum(int(p[k]) for p in parts))) for k in parts[0]}
    out.update({f"face/{k}": v for k, v in coef.items()})
    out.update({f"render/{k}": np.asarray(v) for k, v in rp.items()})
    return out
