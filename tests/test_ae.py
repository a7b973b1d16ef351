"""The Unsup3D photo-geometric autoencoder: networks, decomposition, losses, checkpoints, training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facerecon.ae.finetune import fit_face
from facerecon.ae.losses import VggFeatures, perceptual_features, photometric_loss, reconstruction_loss
from facerecon.ae.model import decompose, depth_from_raw, predict, view_depth
from facerecon.ae.networks import build_nets, count_parameters
from facerecon.ae.train import load_checkpoint, pretrain, save_checkpoint
from facerecon.config import AeModelParams, AeOptimizeParams, load_params
from facerecon.errors import CheckpointError

TINY = AeModelParams(image_size=32, width=4, zdim=16)


def tiny_nets(seed: int = 0, p: AeModelParams = TINY):
    torch.manual_seed(seed)
    return build_nets(p)


def face_images(n: int, size: int = 32) -> torch.Tensor:
    """Smooth, roughly face-like test images: a lit disc on a darker background."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for i in range(n):
        r = ((x - 0.05 * i) ** 2 + y ** 2).sqrt()
        disc = (r < 0.7).float() * (0.6 + 0.3 * x)
        out.append(torch.stack([disc * 0.9 + 0.05, disc * 0.7 + 0.05, disc * 0.6 + 0.05]))
    return torch.stack(out).clamp(0, 1)


def test_parameter_count_grows_with_width():
    small = count_parameters(build_nets(AeModelParams(width=4, zdim=16, image_size=64)))
    default = count_parameters(build_nets(AeModelParams()))
    assert small < default
    assert 6e6 < default < 9e6  # width 16, encoders 32: ~7.4M parameters over depth/albedo/light/view/confidence


def test_depth_stays_in_range_with_border():
    raw = torch.randn(2, 32, 32) * 10
    d = depth_from_raw(raw, TINY)
    assert float(d.min()) >= TINY.min_depth - 1e-6 and float(d.max()) <= TINY.max_depth + 1e-6
    assert torch.allclose(d[..., :2], torch.full_like(d[..., :2], TINY.border_depth))
    assert torch.allclose(d[..., -2:], torch.full_like(d[..., -2:], TINY.border_depth))


def test_decompose_shapes_and_flip_twins():
    nets = tiny_nets()
    x = face_images(3)
    dec = decompose(nets, TINY, x)
    assert dec.canon_depth.shape == (6, 32, 32)  # each image and its mirror twin
    assert torch.allclose(dec.canon_depth[3:], dec.canon_depth[:3].flip(2))
    assert dec.recon_image.shape == (6, 3, 32, 32)
    assert view_depth(nets, TINY, x).shape == (3, 32, 32)


def test_shared_canonical_depth_for_views():
    nets = tiny_nets()
    front, views = face_images(1), face_images(4)
    dec = decompose(nets, TINY, views, canon_images01=front)
    for i in range(1, 4):
        assert torch.equal(dec.canon_depth[0], dec.canon_depth[i])
    assert not torch.equal(dec.light[0], dec.light[1]) or not torch.equal(dec.view[0], dec.view[1])


def test_predict_ranges():
    with torch.no_grad():
        out = predict(tiny_nets(), TINY, face_images(1)[0])
    assert out["canon_depth"].shape == (32, 32)
    assert 0 <= float(out["canon_albedo"].min()) and float(out["canon_albedo"].max()) <= 1
    assert out["recon_depth"].shape == (32, 32)
    assert torch.isfinite(out["recon_depth"]).all()


def test_photometric_loss_is_zero_only_for_equal_images():
    a = face_images(2)
    assert float(photometric_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(photometric_loss(a, a + 0.1)) > 0.05


def test_vgg_loader_reads_torchvision_keys_and_rejects_others(tmp_path):
    from facerecon.ae.losses import _VGG_CONVS

    torch.manual_seed(1)
    sd = {}
    for i, cin, cout in _VGG_CONVS:
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * 0.01
        sd[f"features.{i}.bias"] = torch.randn(cout) * 0.01
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # a full VGG16 file has the classifier too
    good = tmp_path / "vgg16.pth"
    torch.save(sd, good)
    feats = VggFeatures.from_file(good)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert feats(x).shape[1] == 256  # relu3_3
    bad = dict(sd)
    bad["features.14.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError):
        VggFeatures.from_file(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        VggFeatures.from_file(tmp_path / "junk.pth")


def test_perceptual_auto_falls_back_to_documented_substitute(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERECON_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    feats, kind = perceptual_features("auto", "vgg16.pth")
    assert kind == "random_conv" and feats is not None
    assert perceptual_features("none", "vgg16.pth")[0] is None


def test_checkpoint_roundtrip_fp16(tmp_path):
    nets = tiny_nets(3)
    path = save_checkpoint(tmp_path / "ae.pt", nets, TINY, meta={"note": "x"})
    loaded, mp, meta = load_checkpoint(path)
    assert mp == TINY and meta["note"] == "x"
    x = face_images(2)
    with torch.no_grad():
        a, b = view_depth(nets.eval(), TINY, x), view_depth(loaded, TINY, x)
    assert float((a - b).abs().max()) < 2e-3  # fp16 storage


def test_decoder_upsampling_choice_and_checkpoints_from_before_it(tmp_path):
    def has_deconv(net):
        return any(isinstance(m, torch.nn.ConvTranspose2d) and m.stride == (2, 2) for m in net.decoder.modules())

    resize, deconv = tiny_nets(p=dataclasses.replace(TINY, upsample="resize")), tiny_nets(p=dataclasses.replace(TINY, upsample="deconv"))
    assert not has_deconv(resize.depth) and not has_deconv(resize.albedo)
    assert has_deconv(deconv.depth) and has_deconv(deconv.albedo)
    assert decompose(resize, dataclasses.replace(TINY, upsample="resize"), face_images(2)).canon_depth.shape == (4, 32, 32)
    # a checkpoint written before `upsample` existed holds Unsup3D's transposed convolutions
    path = save_checkpoint(tmp_path / "old.pt", resize, dataclasses.replace(TINY, upsample="resize"), meta={})
    assert load_checkpoint(path)[1].upsample == "resize"
    path = save_checkpoint(tmp_path / "old.pt", deconv, dataclasses.replace(TINY, upsample="deconv"), meta={})
    blob = torch.load(path, weights_only=True)
    del blob["config"]["ae_model"]["upsample"]
    torch.save(blob, path)
    loaded, mp, _ = load_checkpoint(path)
    assert mp.upsample == "deconv" and has_deconv(loaded.depth)


@pytest.mark.parametrize("damage", ["truncated", "not_torch", "wrong_shape", "no_config"])
def test_malformed_checkpoints_are_clear_errors(tmp_path, damage):
    path = save_checkpoint(tmp_path / "ae.pt", tiny_nets(), TINY, meta={})
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "not_torch":
        path.write_text("hello")
    elif damage == "wrong_shape":
        save_checkpoint(path, tiny_nets(p=dataclasses.replace(TINY, width=8)), TINY, meta={})
    else:
        torch.save({"format": "facerecon-ae/1", "state_dict": {}}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_fine_tuning_lowers_the_loss_and_leaves_the_base_alone():
    base = tiny_nets(5)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    front, views = face_images(1)[0], face_images(6)
    settings = AeOptimizeParams(steps=25, lr=1e-3, batch_size=4, perceptual="none")
    tuned, result = fit_face(base, TINY, front, views, settings)
    assert result.final_loss < result.first_loss
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in tuned.state_dict().items())


def _tiny_synth(tmp_path: Path) -> Path:
    from facerecon.bench.synth import make_synth_dataset

    p = load_params(None, ["synth.n_train=32", "synth.n_val=2", "synth.n_test=2", "synth.image_size=32",
                           f"synth.out_dir={tmp_path / 'synth'}"])
    make_synth_dataset(p.synth, progress=False)
    return tmp_path / "synth"


def test_pretrain_learns_resumes_and_records(tmp_path):
    synth = _tiny_synth(tmp_path)
    over = ["ae_model.image_size=32", "ae_model.width=4", "ae_model.zdim=16", f"pretrain.dataset_path={synth}",
            "pretrain.batch_size=8", "pretrain.lr=0.001", "pretrain.perceptual=none", f"pretrain.out={tmp_path / 'ae.pt'}"]
    one = pretrain(load_params(None, over + ["pretrain.epochs=1"]))
    assert one["steps"] == 4 and Path(tmp_path / "ae.pt.resume.pt").exists()
    # a second call with more epochs resumes after the first epoch instead of starting over
    steps_seen = []
    three = pretrain(load_params(None, over + ["pretrain.epochs=3"]), progress=lambda s, t, parts: steps_seen.append(s))
    assert steps_seen[0] == 5 and three["steps"] == 12
    losses = [h["loss"] for h in three["history"]]
    assert losses[-1] < losses[0]
    nets, mp, meta = load_checkpoint(tmp_path / "ae.pt")
    assert mp.width == 4 and meta["train_images"] == 32
    json.dumps(meta)  # the meta is plain data


def test_supervised_pretraining_needs_ground_truth(tmp_path):
    from facerecon.errors import ConfigError

    params = load_params(None, ["pretrain.dataset=celeba", f"pretrain.dataset_path={tmp_path}", "pretrain.supervised=true"])
    with pytest.raises(ConfigError):
        pretrain(params)


def test_supervised_loss_pulls_depth_to_ground_truth(tmp_path):
    synth = _tiny_synth(tmp_path)
    over = ["ae_model.image_size=32", "ae_model.width=4", "ae_model.zdim=16", f"pretrain.dataset_path={synth}",
            "pretrain.batch_size=8", "pretrain.lr=0.002", "pretrain.perceptual=none", "pretrain.supervised=true",
            "pretrain.epochs=4", f"pretrain.out={tmp_path / 'sup.pt'}"]
    meta = pretrain(load_params(None, over))
    assert meta["supervised"] is True
    assert np.isfinite([h["loss"] for h in meta["history"]]).all()


def test_reconstruction_loss_is_finite_with_random_features():
    nets = tiny_nets()
    x = face_images(2)
    dec = decompose(nets, TINY, x)
    loss, parts = reconstruction_loss(dec, x, VggFeatures.random(), lam_perc=1.0, lam_flip=0.5)
    assert torch.isfinite(loss) and set(parts) >= {"total", "l1", "perc"}
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in nets.parameters())


# ------------------------------------------------------------ the offline anchoring of ae_optimize

def _bump(size: int = 64, cx: float = 0.0, width: float = 0.35, height: float = 0.05) -> np.ndarray:
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    return height * np.exp(-((x - cx) ** 2 + y ** 2) / width ** 2)


def _prior(depth: np.ndarray, weight: float = 1.0):
    from facerecon.ae.finetune import DepthPrior

    y, x = np.mgrid[-1:1:depth.shape[0] * 1j, -1:1:depth.shape[1] * 1j]
    mask = (x ** 2 + y ** 2) < 0.8
    return DepthPrior(torch.from_numpy(depth.astype(np.float32)), torch.from_numpy(mask).float(), weight)


def test_anchored_depth_drops_scale_and_pixel_noise_but_keeps_broad_shape():
    from facerecon.stages.ae_optimize import anchored_depth

    base = 1.0 - _bump()
    prior = _prior(base)
    m = prior.mask.numpy() > 0.5
    noise = np.random.default_rng(0).normal(0, 0.01, base.shape)
    ae = (1.0 - 3 * _bump() + noise).astype(np.float32)  # 3× too deep and speckled
    out = anchored_depth(ae, prior, sigma=3.0)
    assert np.abs(out - base)[m].mean() < 0.2 * np.abs(ae - base)[m].mean()
    # a broad feature the prior lacks (a cheek bump off-centre) survives, smoothly
    ae2 = (base - _bump(cx=0.4, width=0.25, height=0.03)).astype(np.float32)
    out2 = anchored_depth(ae2, prior, sigma=2.0)
    i, j = 32, int(32 + 0.4 * 32)
    assert base[i, j] - out2[i, j] > 0.01
    assert anchored_depth(ae, prior, sigma=0.0) is ae


def test_detailed_depth_keeps_the_aes_broad_shape_and_takes_the_priors_fine_detail():
    from facerecon.stages.ae_optimize import detailed_depth

    prior = _prior(1.0 - _bump(width=0.12, height=0.05))  # a sharp "nose" on a flat face
    hull = prior.mask.numpy() > 0.5
    head = (1.0 - _bump(width=0.9, height=0.2)).astype(np.float32)  # the AE: a round head, no nose
    out = detailed_depth(head, prior, hull, sigma=3.0)
    # the AE's broad curvature stays: the rim of the hull is as far back as the AE put it
    ring = hull & ~(np.hypot(*np.mgrid[-1:1:64j, -1:1:64j]) < 0.6)
    assert np.abs(out - head)[ring].mean() < 0.005
    # the prior's nose is added on top (it sticks out of the AE's head by most of its height)
    assert head[32, 32] - out[32, 32] > 0.03
    assert np.array_equal(out[~hull], head[~hull])  # nothing changes outside the landmark hull
    assert detailed_depth(head, prior, hull, sigma=0.0) is head


def test_delit_photo_recovers_albedo_under_the_predicted_light():
    from facerecon.ae.model import shading
    from facerecon.geometry.mesh import normals_from_depth
    from facerecon.stages.ae_optimize import delit_photo

    mp = AeModelParams()
    depth = (1.0 - _bump()).astype(np.float32)
    light = np.array([0.4, 0.6, 0.5, -0.2], np.float32)
    with torch.no_grad():
        n = normals_from_depth(torch.from_numpy(depth)[None], mp.fov, toward_camera=False)
        shade = shading(n, torch.from_numpy(light)[None])[0, 0].numpy()
    albedo = np.dstack([np.full(depth.shape, 0.5), np.full(depth.shape, 0.4), np.full(depth.shape, 0.3)])
    photo = np.clip(albedo * shade[..., None] / np.median(shade), 0, 1)
    out = delit_photo(photo.astype(np.float32), depth, light, mp)
    assert np.abs(out - albedo).max() < 0.02
    assert np.abs(photo - albedo).max() > 0.05  # the photo itself was shaded


def test_depth_prior_loss_ignores_offset_and_pulls_towards_shape():
    from facerecon.ae.finetune import depth_prior_loss

    base = torch.from_numpy((1.0 - _bump()).astype(np.float32))
    prior = _prior(base.numpy())
    assert float(depth_prior_loss((base + 0.03)[None], prior, 0.2)) < 1e-6
    assert float(depth_prior_loss(torch.ones(1, 64, 64), prior, 0.2)) > 0.01
