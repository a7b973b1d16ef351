"""The procedural face model and the synthetic dataset: ranges, conventions, determinism, files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facerecon.bench import face_model, metrics, synth
from facerecon.config import SynthParams, load_params
from facerecon.errors import ConfigError

SMALL = SynthParams(image_size=32, n_train=6, n_val=3, n_test=7)


def _render(n: int, seed: int, **kw) -> dict[str, np.ndarray]:
    return synth.render_batch(n, np.random.default_rng(seed), replace(SMALL, **kw))


def test_faces_are_deterministic_in_range_and_masked():
    a = face_model.sample_faces(4, np.random.default_rng(1), grid=48)
    b = face_model.sample_faces(4, np.random.default_rng(1), grid=48)
    c = face_model.sample_faces(4, np.random.default_rng(2), grid=48)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.albedo, b.albedo)
    assert not torch.equal(a.depth, c.depth)
    inside = a.depth[a.mask]
    assert 0.9 <= inside.min() and inside.max() < 1.1
    assert (a.depth[~a.mask] == 1.1).all()  # background at the far end, like Unsup3D's set
    assert 0.2 < a.mask.float().mean() < 0.8
    assert a.albedo.min() >= 0 and a.albedo.max() <= 1


def test_mean_face_is_left_right_symmetric_and_has_a_nose():
    f = face_model.mean_face(grid=63)
    d = f.depth[0]
    assert torch.allclose(d, d.flip(1), atol=1e-5)
    assert torch.equal(f.mask[0], f.mask[0].flip(1))
    v, u = divmod(int(d.argmin()), d.shape[1])
    assert u == 31 and 31 < v < 50  # nearest point: the nose tip, on the midline below the centre


def test_grid_and_texture_resolutions_sample_the_same_surface():
    p = face_model.sample_params(2, np.random.default_rng(3))
    d32, m32 = face_model.face_depth(p, 32)
    d63, m63 = face_model.face_depth(p, 63)  # 2·32 − 1: every other sample is the 32 grid
    assert torch.allclose(d32, d63[:, ::2, ::2], atol=1e-6) and torch.equal(m32, m63[:, ::2, ::2])


def test_frontal_render_reproduces_the_canonical_depth_at_pixel_centres():
    fp = face_model.sample_params(3, np.random.default_rng(4))
    rp = synth.sample_render_params(3, np.random.default_rng(5), SMALL)
    for k in ("yaw", "pitch", "roll", "tx", "ty"):
        rp[k] = np.zeros(3)
    out = synth.render_from_params(fp, rp, SMALL)
    depth, mask, canon = out["depth"], out["mask"], out["canon_depth"]
    inner = torch.nn.functional.avg_pool2d(torch.from_numpy(canon < 1.1).float()[:, None], 3, 1, 1)[:, 0] > 0.99
    inner = inner.numpy() & mask
    assert inner.sum() > 200
    np.testing.assert_allclose(depth[inner], canon[inner], atol=1e-5)  # identity view: same surface


def test_positive_yaw_turns_the_nose_to_the_image_left():
    fp = face_model.mean_params(2)
    rp = synth.sample_render_params(2, np.random.default_rng(0), SMALL)
    rp.update(yaw=np.array([30.0, -30.0]), pitch=np.zeros(2), roll=np.zeros(2), tx=np.zeros(2), ty=np.zeros(2))
    out = synth.render_from_params(fp, rp, replace(SMALL, image_size=48))
    cols = [divmod(int(np.argmin(d)), 48)[1] for d in out["depth"]]
    assert cols[0] < 23 < cols[1]


def test_the_autoencoders_warp_explains_the_set_exactly():
    # the AE's renderer, given the true canonical depth and viewpoint, must reproduce the true
    # view depth: otherwise no amount of training could reach the ground truth
    from facerecon.render.warp import warp_canonical_to_view

    params = replace(SMALL, image_size=64)
    fp = face_model.sample_params(6, np.random.default_rng(8))
    rp = synth.sample_render_params(6, np.random.default_rng(9), params)
    out = synth.render_from_params(fp, rp, params)
    gt, mask = torch.from_numpy(out["depth"]), torch.from_numpy(out["mask"])
    canon = torch.from_numpy(out["canon_depth"])

    def scored(view):
        _, seen, depth = warp_canonical_to_view(torch.zeros(6, 3, 64, 64), canon, view, params.fov)
        return metrics.evaluate_depths(torch.where(seen, depth, torch.tensor(1.2)), gt, mask)

    right, mirrored = scored(synth.view_vectors(rp)), scored(synth.view_vectors(rp) * torch.tensor([1, -1, 1, 1, 1, 1.0]))
    assert right["side"].mean() < 3e-4 and right["mad_exact"].mean() < 2.0
    assert mirrored["side"].mean() > 10 * right["side"].mean()  # the yaw convention matters


def test_renders_vary_enough_that_trivial_depths_score_badly():
    out = _render(24, 7)
    gt, mask = torch.from_numpy(out["depth"]), torch.from_numpy(out["mask"])
    assert np.abs(out["render/yaw"]).max() <= 60 and np.abs(out["render/pitch"]).max() <= 15
    assert out["images"].dtype == np.uint8 and out["images"].std() > 20
    flat = metrics.evaluate_depths(torch.ones_like(gt), gt, mask)
    mean_map = gt.mean(0, keepdim=True).expand_as(gt)  # the batch's own average depth map
    avg = metrics.evaluate_depths(mean_map, gt, mask)
    perfect = metrics.evaluate_depths(gt, gt, mask)
    assert flat["side"].mean() > 0.01 and flat["mad_exact"].mean() > 25  # far from the ground truth
    assert avg["side"].mean() > 0.006 and avg["mad_exact"].mean() > 15
    assert perfect["side"].max() == 0 and perfect["mad_exact"].max() < 1e-3


def test_dataset_files_layout_meta_and_determinism(tmp_path):
    params = replace(SMALL, out_dir=str(tmp_path / "a"))
    dirs = synth.make_synth_dataset(params, progress=False)
    assert set(dirs) == {"train", "val", "test"}
    for split, n in (("train", 6), ("val", 3), ("test", 7)):
        d = dirs[split]
        assert sorted(p.name for p in d.iterdir()) == sorted(synth.FILES)  # no temp files left over
        images, depth = np.load(d / "images.npy"), np.load(d / "depth.npy")
        mask, canon = np.load(d / "mask.npy"), np.load(d / "canon_depth.npy")
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
        assert depth.shape == mask.shape == canon.shape == (n, 32, 32) and depth.dtype == np.float32
        assert (depth[~mask] == 1.1).all() and (depth[mask] < 1.1).all()
        meta = json.loads((d / "meta.json").read_text())
        assert meta["seed"] == 0 and meta["count"] == n and meta["split"] == split
        assert meta["params"]["image_size"] == 32 and meta["version"] == synth.DATASET_VERSION
        assert len(np.load(d / "params.npz")["render/yaw"]) == n
    png = tmp_path / "a" / "samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same seed → same bytes; the splits differ from each other; another seed differs
    again = synth.make_synth_dataset(replace(params, out_dir=str(tmp_path / "b")), progress=False)
    for split in dirs:
        assert (dirs[split] / "depth.npy").read_bytes() == (again[split] / "depth.npy").read_bytes()
        assert (dirs[split] / "images.npy").read_bytes() == (again[split] / "images.npy").read_bytes()
    assert not np.array_equal(np.load(dirs["train"] / "depth.npy")[:3], np.load(dirs["val"] / "depth.npy"))
    other = synth.make_synth_dataset(replace(params, seed=1, out_dir=str(tmp_path / "c")), progress=False)
    assert not np.array_equal(np.load(dirs["test"] / "images.npy"), np.load(other["test"] / "images.npy"))


def test_worker_count_does_not_change_the_data(tmp_path):
    one = synth.make_synth_dataset(replace(SMALL, n_train=70, n_val=1, n_test=1, out_dir=str(tmp_path / "1")),
                                   progress=False)
    two = synth.make_synth_dataset(replace(SMALL, n_train=70, n_val=1, n_test=1, workers=2,
                                           out_dir=str(tmp_path / "2")), progress=False)
    assert (one["train"] / "images.npy").read_bytes() == (two["train"] / "images.npy").read_bytes()


def test_bad_synth_params_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="synth.min_depth"):
        synth.check_params(replace(SMALL, min_depth=1.2))
    with pytest.raises(ConfigError, match="synth.min_ambient"):
        synth.check_params(replace(SMALL, min_ambient=0.9, max_ambient=0.1))
    yaml = tmp_path / "params.yaml"
    yaml.write_text("synth:\n  max_yaw: 120\n")
    with pytest.raises(ConfigError, match="synth.max_yaw"):
        load_params(yaml)


def test_samples_png_shows_images_and_depth(tmp_path):
    d = synth.make_synth_dataset(replace(SMALL, n_train=1, n_val=1, n_test=9, out_dir=str(tmp_path)),
                                 progress=False)["test"]
    from PIL import Image

    png = np.asarray(Image.open(Path(tmp_path) / "samples.png"))
    assert png.shape[0] == 2 * 2 * 2 * 34 and png.shape[1] == 2 * 8 * 34  # 2 rows of (image + depth), ×2 zoom
    first = np.load(d / "images.npy")[0]
    assert np.array_equal(png[:64:2, :64:2], first)
