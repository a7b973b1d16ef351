"""Does the autoencoder learn? Network/loss fixes against Unsup3D, multi-view pretraining, the
view-recoverability diagnostic of issue 13 (the viewpoint can be found through the warp), the
oracle views and the product's geometry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facerecon.ae.losses import depth_smoothness_loss, depth_supervision_loss
from facerecon.ae.model import decompose
from facerecon.ae.networks import build_nets
from facerecon.ae.train import (
    augment,
    canonical_sources,
    epoch_order,
    load_checkpoint,
    save_checkpoint,
)
from facerecon.bench import synth
from facerecon.config import AeModelParams, SynthParams
from facerecon.io.datasets import SynthDataset
from facerecon.render.warp import warp_canonical_to_view

SMALL = SynthParams(image_size=32, n_train=64, n_val=1, n_test=8, supersample=1, views_per_face=1)


def _groups(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [(m.num_groups, m.num_channels) for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]


def test_group_norm_keeps_four_channels_per_group_and_old_checkpoints_keep_theirs(tmp_path):
    nets = build_nets(AeModelParams(width=16))
    assert all(c // g == 4 for g, c in _groups(nets.depth))  # Unsup3D's ratio at any width
    old = AeModelParams(width=16, norm_group_size=0, encoder_width=0, upsample="deconv")
    path = save_checkpoint(tmp_path / "old.pt", build_nets(old), old, meta={})
    blob = torch.load(path, weights_only=True)
    for key in ("norm_group_size", "encoder_width"):  # as written before the options existed
        del blob["config"]["ae_model"][key]
    torch.save(blob, path)
    loaded, mp, _ = load_checkpoint(path)
    assert (mp.norm_group_size, mp.encoder_width) == (0, 0)
    assert _groups(loaded.depth)[0] == (16, 16)  # one channel per group, as those weights were trained
    assert loaded.view.net[0].out_channels == 8


def test_skip_connections_carry_the_image_past_the_bottleneck_and_old_checkpoints_have_none(tmp_path):
    torch.manual_seed(0)
    plain, skipped = build_nets(AeModelParams(width=8, skips="none")), build_nets(AeModelParams(width=8, skips="albedo"))
    skipped.load_state_dict(plain.state_dict())  # no extra weights: the same keys and shapes
    for nets in (plain, skipped):
        torch.nn.init.zeros_(nets.albedo.encoder[12].weight)  # the 256-number code is now always 0
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(plain.albedo(x), plain.albedo(y))  # only the code reaches Unsup3D's decoder
        assert (skipped.albedo(x) - skipped.albedo(y)).abs().mean() > 1e-3  # the skips carry the image
        assert torch.equal(skipped.depth(x), plain.depth(x))  # "albedo": the depth net is unchanged
    mp = AeModelParams(width=8, skips="albedo")
    path = save_checkpoint(tmp_path / "old.pt", build_nets(mp), mp, meta={})
    blob = torch.load(path, weights_only=True)
    del blob["config"]["ae_model"]["skips"]  # written before the option
    torch.save(blob, path)
    assert load_checkpoint(path)[1].skips == "none"


def test_light_and_view_encoders_have_their_own_width():
    nets = build_nets(AeModelParams(width=16, encoder_width=32))
    assert nets.view.net[0].out_channels == 32 and nets.light.net[0].out_channels == 32
    assert nets.depth.encoder[0].out_channels == 16


def test_depth_smoothness_sees_the_checkerboard_normals_miss():
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    plane = (1.0 + 0.02 * x + 0.01 * y)[None]
    bowl = (1.0 + 0.05 * (x ** 2 + y ** 2))[None]
    board = plane + 0.002 * ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2)[None]
    assert float(depth_smoothness_loss(plane, 0.2)) < 1e-5
    # a ±1%-of-range checkerboard costs far more than a bowl as deep as half the range
    assert float(depth_smoothness_loss(board, 0.2)) > 5 * float(depth_smoothness_loss(bowl, 0.2))


def test_multi_view_synth_renders_each_identity_several_times(tmp_path):
    dirs = synth.make_synth_dataset(replace(SMALL, views_per_face=4, out_dir=str(tmp_path)), progress=False)
    train, test = SynthDataset(dirs["train"], canonical=True), SynthDataset(dirs["test"], canonical=True)
    assert train.views_per_face == 4 and test.views_per_face == 1
    canon = np.asarray(train.canon)
    assert np.array_equal(canon[0], canon[3]) and not np.array_equal(canon[3], canon[4])  # 4 views, one face
    yaw = train.true_views()[:, 1]
    assert np.ptp(yaw[:4]) > 0.05  # ...at different poses
    single = synth.make_synth_dataset(replace(SMALL, out_dir=str(tmp_path / "one")), progress=False)
    assert np.array_equal(np.load(dirs["test"] / "images.npy"), np.load(single["test"] / "images.npy"))
    with pytest.raises(Exception, match="views_per_face"):
        synth.check_params(replace(SMALL, views_per_face=3))


def test_batches_keep_faces_together_and_sources_stay_inside_each_face():
    order = epoch_order(40, 4, seed=0, epoch=0)
    assert sorted(order.tolist()) == list(range(40))
    assert all(len({int(i) // 4 for i in order[k:k + 4]}) == 1 for k in range(0, 40, 4))
    src = canonical_sources(16, 4, np.random.default_rng(0))
    assert all(set(src[k:k + 4].tolist()) == set(range(k, k + 4)) for k in range(0, 16, 4))
    assert (src != np.arange(16)).mean() > 0.5  # most images are explained by another view


def test_flip_augmentation_mirrors_whole_faces_and_their_truth():
    images = torch.rand(8, 3, 8, 8)
    truth = {"view": torch.tensor([[0.1, 0.3, 0.05, 0.01, 0.02, 0.0]]).repeat(8, 1), "depth": torch.rand(8, 8, 8)}
    depth0 = truth["depth"].clone()
    out = augment(images, 4, 1.0, np.random.default_rng(0), truth)
    assert torch.equal(out, images.flip(-1)) and torch.equal(truth["depth"], depth0.flip(-1))
    assert torch.allclose(truth["view"][0], torch.tensor([0.1, -0.3, -0.05, -0.01, 0.02, 0.0]))
    half = augment(images, 4, 0.5, np.random.default_rng(3))
    flipped = [torch.equal(half[i], images[i].flip(-1)) for i in range(8)]
    assert flipped[:4] == [flipped[0]] * 4 and flipped[4:] == [flipped[4]] * 4


def _rendered(n: int, seed: int, size: int = 32):
    p = replace(SMALL, image_size=size)
    fp = synth.face_model.sample_params(n, np.random.default_rng(seed))
    rp = synth.sample_render_params(n, np.random.default_rng(seed + 1), p)
    return synth.render_from_params(fp, rp, p), synth.view_vectors(rp), p


def test_the_viewpoint_is_recoverable_through_the_warp():
    # diagnostic (a): with the true canonical depth and canonical image, optimising only the 6-D
    # view from zero finds the true yaw; if it did not, no view network could learn it
    out, true_view, p = _rendered(8, 11)
    canon = torch.from_numpy(out["canon_depth"])
    target = torch.from_numpy(out["images"]).permute(0, 3, 1, 2).float() / 255
    face = torch.from_numpy(out["mask"]).float()[:, None]
    # the canonical image: the face seen frontally under the same light (identity view)
    fp = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("face/")}
    rp = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("render/")}
    rp.update({k: np.zeros(8) for k in ("yaw", "pitch", "roll", "tx", "ty")})
    canon_img = torch.from_numpy(synth.render_from_params(fp, rp, p)["images"]).permute(0, 3, 1, 2).float() / 255
    view = torch.zeros(8, 6, requires_grad=True)
    opt = torch.optim.Adam([view], lr=0.02)
    for _ in range(150):
        img, seen, _ = warp_canonical_to_view(canon_img, canon, view, p.fov, depth_range=None)
        m = seen[:, None].float() * face
        loss = ((img - target).abs() * m).sum() / m.sum() + 0.1 * (1 - (seen[:, None].float() * face).sum() / face.sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    yaw, want = view.detach()[:, 1].numpy(), true_view[:, 1].numpy()
    corr = np.corrcoef(yaw, want)[0, 1]
    assert corr > 0.95, (corr, np.degrees(yaw).round(1), np.degrees(want).round(1))
    assert np.degrees(np.abs(yaw - want)).mean() < 8


def test_supervised_loss_is_zero_for_the_truth_and_large_for_a_wrong_view():
    out, view, p = _rendered(4, 5)
    mp = AeModelParams(image_size=32, width=4, zdim=16)
    truth = {"depth": torch.from_numpy(out["depth"]), "mask": torch.from_numpy(out["mask"]).float(),
             "canon_depth": torch.from_numpy(out["canon_depth"]), "view": view}

    class Dec:  # the fields depth_supervision_loss reads, filled with the truth
        batch = 4

    def dec_for(v):
        d = Dec()
        _, seen, depth = warp_canonical_to_view(torch.zeros(4, 3, 32, 32), truth["canon_depth"], v, p.fov)
        d.canon_depth, d.view = truth["canon_depth"], v
        d.recon_depth, d.recon_mask = depth, seen[:, None].float()
        return d

    right, _ = depth_supervision_loss(dec_for(view), truth, mp)
    wrong, _ = depth_supervision_loss(dec_for(view * torch.tensor([1, -1, 1, 1, 1, 1.0])), truth, mp)
    assert float(right) < 0.05 < float(wrong)


def test_decompose_with_other_views_as_canonical_sources():
    mp = AeModelParams(image_size=32, width=4, zdim=16)
    nets = build_nets(mp)
    x = torch.rand(4, 3, 32, 32)
    src = x[torch.tensor([1, 0, 3, 2])]
    dec = decompose(nets, mp, x, canon_images01=src)
    alone = decompose(nets, mp, src)
    assert torch.allclose(dec.canon_depth[:4], alone.canon_depth[:4])
    assert torch.allclose(dec.view[:4], decompose(nets, mp, x).view[:4])


def test_true_views_turn_the_test_face_itself(tmp_path):
    from facerecon.bench.variants import TrueViews

    dirs = synth.make_synth_dataset(replace(SMALL, n_test=4, max_pitch=0.0, max_roll=0.0, max_translation=0.0,
                                            out_dir=str(tmp_path)), progress=False)
    test = SynthDataset(dirs["test"])
    yaw = float(np.degrees(test.true_views()[0, 1]))
    views = TrueViews(dirs["test"]).views(0, [yaw, -yaw, 90.0])
    image = test.batch(slice(0, 1))["image"][0]
    assert views.shape == (3, 3, 32, 32)
    assert float((views[0] - image).abs().mean()) < 0.01  # its own pose reproduces the render
    assert float((views[1] - image).abs().mean()) > 0.03  # the mirrored pose does not


def test_product_geometry_round_trip_keeps_a_frontal_depth():
    # with no crop, no head rotation and an identity alignment, putting the pipeline's frontal
    # depth "back into the view" must give the same depth map back
    from facerecon.bench.product import posed_surface, to_view_depth

    y, x = np.mgrid[0:32, 0:32] / 31.0 * 2 - 1
    face = x ** 2 + y ** 2 < 0.6
    depth = np.where(face, 1.0 - 0.05 * np.cos(x * 1.2) * np.cos(y * 1.2), 1.1).astype(np.float32)
    pts = posed_surface(depth, np.eye(3), np.array([15.5, 15.5]), face, aligned_size=32, crop=1.0, fov=10.0)
    view = to_view_depth(pts, face, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 1.0, 32, 10.0, far=1.2)
    inner = torch.from_numpy(face) & (torch.nn.functional.avg_pool2d(torch.from_numpy(face).float()[None], 3, 1, 1)[0] > 0.99)
    assert torch.allclose(view[inner], torch.from_numpy(depth)[inner].float(), atol=2e-3)
    assert float(view[~torch.from_numpy(face)].min()) >= 1.19  # no surface outside the head
    # a head rotation about the vertical axis moves the near (nose) point sideways
    turn = np.radians(25)
    rot = np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]])
    turned = to_view_depth(posed_surface(depth, rot, np.array([15.5, 15.5]), face, aligned_size=32, crop=1.0,
                                         fov=10.0), face, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 1.0, 32, 10.0, 1.2)
    col = lambda d: int(torch.argmin(d.reshape(-1))) % 32  # noqa: E731
    assert col(turned) != col(view)


def test_face_mask_confines_the_loss_to_the_face():
    """With ``face_mask`` an error on the background costs nothing; on the face it does."""
    from facerecon.ae.losses import reconstruction_loss

    mp = AeModelParams(image_size=32, width=8, zdim=32)
    torch.manual_seed(0)
    nets = build_nets(mp).eval()
    images = torch.rand(2, 3, 32, 32)
    face = torch.zeros(2, 32, 32)
    face[:, 8:24, 8:24] = 1
    with torch.no_grad():
        dec = decompose(nets, mp, images)
        base, _ = reconstruction_loss(dec, images, None, lam_perc=0.0, lam_flip=0.5, face_mask=face)
        off_face = images.clone()
        off_face[:, :, :4] = 1 - off_face[:, :, :4]  # change rows 0-3: background only
        same, _ = reconstruction_loss(dec, off_face, None, lam_perc=0.0, lam_flip=0.5, face_mask=face)
        on_face = images.clone()
        on_face[:, :, 10:20, 10:20] += 2.0  # far from any reconstruction
        other, _ = reconstruction_loss(dec, on_face, None, lam_perc=0.0, lam_flip=0.5, face_mask=face)
        whole, _ = reconstruction_loss(dec, off_face, None, lam_perc=0.0, lam_flip=0.5)
        whole_base, _ = reconstruction_loss(dec, images, None, lam_perc=0.0, lam_flip=0.5)
    assert float(same) == pytest.approx(float(base), abs=1e-6)
    assert float(other) > float(base) + 1e-3
    assert float(whole) != pytest.approx(float(whole_base), abs=1e-4)  # without the mask it counts


def test_prior_shape_fit_gives_the_depth_network_a_convex_face():
    from facerecon.ae.model import depth_from_raw, to_model_range
    from facerecon.ae.networks import zero_init_heads
    from facerecon.ae.train import fit_prior_shape, prior_shape

    mp = AeModelParams(image_size=32, width=8, zdim=32)
    torch.manual_seed(0)
    nets = zero_init_heads(build_nets(mp))
    target = prior_shape(mp)
    assert target[16, 16] < target[16, 4] and target[16, 16] < target[4, 16]  # the centre is nearest
    images = torch.rand(16, 3, 32, 32)
    err = fit_prior_shape(nets, mp, images, steps=150, lr=2e-3)
    with torch.no_grad():
        d = depth_from_raw(nets.depth(to_model_range(torch.rand(4, 3, 32, 32))), mp)[..., 2:-2]
    assert err < 0.05  # of the depth range
    relief = d[:, 12:20, 10:18].mean() - d[:, 12:20, :2].mean()  # centre nearer than the side columns
    assert relief < -0.15 * (mp.max_depth - mp.min_depth)


def test_pseudo_samples_teach_the_viewpoint_network_the_turns_the_warp_makes():
    # the pseudo-sample loss trains the viewpoint network on the model's own face turned by known
    # views; what it learns must be the convention decompose() warps with: re-rendering the face at
    # the predicted view reproduces the turned image better than the frontal view does
    from facerecon.ae.losses import pseudo_sample_loss
    from facerecon.ae.model import render, view_from_raw
    from facerecon.ae.networks import zero_init_heads
    from facerecon.ae.train import fit_prior_shape

    mp = AeModelParams(image_size=32, width=8, zdim=32)
    torch.manual_seed(0)
    nets = zero_init_heads(build_nets(mp))
    out, _, _ = _rendered(16, 5)
    images = torch.from_numpy(out["images"]).permute(0, 3, 1, 2).float() / 255
    images = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", antialias=True)
    fit_prior_shape(nets, mp, images, steps=100, lr=2e-3)
    opt = torch.optim.Adam(nets.view.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        dec = decompose(nets, mp, images)
    depth_before = [t.clone() for t in nets.depth.parameters()]
    nets.zero_grad(set_to_none=True)  # the prior fit leaves its last gradients
    for _ in range(150):
        loss, parts = pseudo_sample_loss(nets, mp, dec, rng)
        opt.zero_grad()
        loss.backward()
        assert all(t.grad is None for t in nets.depth.parameters())  # lam_depth = 0: depth untouched
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(depth_before, nets.depth.parameters(), strict=True))
    # fresh pseudo samples: the predicted yaw follows the known one
    test_rng = np.random.default_rng(99)
    raw = torch.from_numpy(test_rng.uniform(-0.9, 0.9, 16)).float()
    view = torch.zeros(16, 6)
    view[:, 1] = raw * np.radians(mp.xyz_rotation_range)
    with torch.no_grad():
        b = dec.batch
        turned = render(mp, dec.canon_depth[:b], dec.canon_albedo[:b], dec.light[:b], view)["recon_image"]
        predicted = view_from_raw(nets.view(turned), mp)
        corr = np.corrcoef(predicted[:, 1].numpy(), view[:, 1].numpy())[0, 1]
        assert corr > 0.8, corr
        again = render(mp, dec.canon_depth[:b], dec.canon_albedo[:b], dec.light[:b], predicted)["recon_image"]
        front = render(mp, dec.canon_depth[:b], dec.canon_albedo[:b], dec.light[:b], torch.zeros(16, 6))["recon_image"]
        assert (again - turned).abs().mean() < 0.7 * (front - turned).abs().mean()
    assert {"pseudo_view", "pseudo_light"} <= set(parts)
