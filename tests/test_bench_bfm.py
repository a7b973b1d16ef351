"""BFM 2009 / 2017 readers on tiny files written in the published layouts, and the BFM synth path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from facerecon.bench import bfm, synth
from facerecon.config import SynthParams
from facerecon.errors import ConfigError, DatasetError

N = 13  # tiny face: an N×N vertex grid


def tiny_face(units: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A BFM-like mean face in model axes (x right, y up, z toward the viewer): a dome with a nose.

    Returns mean (V, 3), an orthonormal shape basis (3V, K), triangles (F, 3) 0-based, colours (V, 3).
    """
    lin = np.linspace(-1.0, 1.0, N)
    y, x = np.meshgrid(lin[::-1], lin, indexing="ij")  # row 0 = top (y up)
    z = 0.6 * np.sqrt(np.clip(1.2 - x ** 2 - y ** 2, 0, None)) + 0.3 * np.exp(-(x ** 2 + (y + 0.1) ** 2) / 0.04)
    mean = np.stack([x * 75, y * 95, z * 80], -1).reshape(-1, 3) * units  # ~15 cm wide face
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(3 * N * N, 4)))[0]  # orthonormal columns
    idx = np.arange(N * N).reshape(N, N)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    col = np.tile([0.8, 0.6, 0.5], (N * N, 1))
    return mean.astype(np.float32), basis.astype(np.float32), tri, col.astype(np.float32)


def write_bfm2009(path: Path) -> Path:
    mean, basis, tri, col = tiny_face(units=1000.0)  # µm, like the real file
    ev = np.array([[3000.0], [2000.0], [1000.0], [500.0]], np.float32)  # standard deviations
    scipy.io.savemat(path, {
        "shapeMU": mean.reshape(-1, 1), "shapePC": basis, "shapeEV": ev,
        "texMU": (col * 255).reshape(-1, 1), "texPC": basis, "texEV": np.full((4, 1), 10.0, np.float32),
        "tl": (tri + 1).astype(np.float64),  # MATLAB 1-based, stored as doubles
        "segbin": np.zeros((N * N, 4), np.uint8),
    })
    return path


def write_bfm2017(path: Path, expressions: bool = True) -> Path:
    mean, basis, tri, col = tiny_face(units=1.0)  # mm
    with h5py.File(path, "w") as fh:
        fh["shape/model/mean"] = mean.reshape(-1)
        fh["shape/model/pcaBasis"] = basis
        fh["shape/model/pcaVariance"] = np.array([9.0, 4.0, 1.0, 0.25], np.float32)
        fh["shape/model/noiseVariance"] = np.float32(0.0)
        fh["shape/representer/points"] = mean.T
        fh["shape/representer/cells"] = tri.T.astype(np.uint32)  # statismo: (3, F)
        fh["color/model/mean"] = col.reshape(-1)
        fh["color/model/pcaBasis"] = basis
        fh["color/model/pcaVariance"] = np.full(4, 1e-3, np.float32)
        if expressions:
            fh["expression/model/mean"] = np.zeros(mean.size, np.float32)
            fh["expression/model/pcaBasis"] = basis[:, :2]
            fh["expression/model/pcaVariance"] = np.array([4.0, 1.0], np.float32)
    return path


def test_bfm2009_reader_matches_the_published_sampling_rule(tmp_path):
    path = write_bfm2009(tmp_path / "01_MorphableModel.mat")
    m = bfm.load_bfm2009(path)
    mean, basis, tri, col = tiny_face(units=1000.0)
    assert m.source == "bfm2009" and m.n_vertices == N * N
    np.testing.assert_allclose(m.shape_mean, mean, rtol=1e-6)
    np.testing.assert_array_equal(m.triangles, tri)  # 1-based → 0-based
    np.testing.assert_allclose(m.color_mean, col, atol=1e-6)  # 0..255 → 0..1
    # BFM 2009's EV are standard deviations: instance = μ + PC (α ⊙ EV)
    alpha = np.array([1.0, -0.5, 0.25, 2.0], np.float32)
    want = mean.reshape(-1) + basis @ (alpha * np.array([3000, 2000, 1000, 500], np.float32))
    np.testing.assert_allclose(m.shape_mean.reshape(-1) + m.shape_basis @ alpha, want, rtol=1e-5, atol=1e-2)


def test_bfm2017_reader_uses_variances_and_statismo_cells(tmp_path):
    path = write_bfm2017(tmp_path / "model2017-1_bfm_nomouth.h5")
    m = bfm.load_bfm2017(path)
    mean, basis, tri, _ = tiny_face(units=1.0)
    np.testing.assert_array_equal(m.triangles, tri)
    # statismo stores variances: instance = μ + U (α ⊙ √var)
    alpha = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    want = mean.reshape(-1) + basis @ (alpha * np.array([3.0, 2.0, 1.0, 0.5], np.float32))
    np.testing.assert_allclose(m.shape_mean.reshape(-1) + m.shape_basis @ alpha, want, rtol=1e-5, atol=1e-4)
    assert m.expr_basis.shape == (3 * N * N, 2)
    # the 2009 re-release in this layout has no expression group
    m2 = bfm.load_bfm2017(write_bfm2017(tmp_path / "model2009-publicmm1-bfm.h5", expressions=False))
    assert m2.expr_basis.shape[1] == 0


@pytest.mark.parametrize("source,make", [
    ("bfm2009", lambda p: p.write_text("this is not a MATLAB file\n")),
    ("bfm2017", lambda p: p.write_text("this is not an HDF5 file\n")),
    ("bfm2009", lambda p: scipy.io.savemat(p, {"shapeMU": np.zeros((6, 1))})),
    ("bfm2017", lambda p: h5py.File(p, "w").create_dataset("shape/model/mean", data=np.zeros(6)).file.close()),
])
def test_wrong_format_is_one_clear_dataset_error(tmp_path, source, make):
    path = tmp_path / ("bad.mat" if source == "bfm2009" else "bad.h5")
    make(path)
    with pytest.raises(DatasetError) as err:
        bfm.load(path, source)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    assert ("missing" in msg) or ("cannot" in msg)


def test_inconsistent_arrays_are_reported(tmp_path):
    path = tmp_path / "m.h5"
    write_bfm2017(path)
    with h5py.File(path, "a") as fh:
        del fh["shape/representer/cells"]
        fh["shape/representer/cells"] = np.array([[0, 1, 10_000]], np.uint32).T
    with pytest.raises(DatasetError, match="triangle indices"):
        bfm.load_bfm2017(path)


def test_bfm_source_makes_the_same_dataset_layout(tmp_path):
    mat = write_bfm2009(tmp_path / "01_MorphableModel.mat")
    params = SynthParams(source="bfm2009", bfm_path=str(mat), n_train=3, n_val=2, n_test=4, image_size=32,
                         out_dir=str(tmp_path / "synth"))
    dirs = synth.make_synth_dataset(params, progress=False)
    test = dirs["test"]
    images = np.load(test / "images.npy")
    depth, mask = np.load(test / "depth.npy"), np.load(test / "mask.npy")
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert mask.any(axis=(1, 2)).all()  # every image shows a face
    assert (depth[mask] < params.max_depth).all() and (depth[~mask] == params.max_depth).all()
    assert 0.85 < depth[mask].min() < 1.0  # nose near the front of the [0.9, 1.1] range
    assert json.loads((test / "meta.json").read_text())["params"]["source"] == "bfm2009"
    # the face is not a flat card: depth varies inside the mask
    assert np.std(depth[0][mask[0]]) > 1e-3


def test_bfm_source_needs_an_existing_file(tmp_path):
    with pytest.raises(ConfigError, match="bfm_path"):
        synth.check_params(SynthParams(source="bfm2017"))
    with pytest.raises(DatasetError, match="does not exist"):
        synth.check_params(replace(SynthParams(source="bfm2017"), bfm_path=str(tmp_path / "none.h5")))
