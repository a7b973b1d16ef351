"""The thesis GAN path as the pipeline uses it: params select HyperStyle/e4e/optimisation and the
InterfaceGAN sweep; tiny random checkpoints in the published layouts stand in for the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon.config import load_params
from facerecon.errors import ConfigError, MissingWeightsError
from facerecon.gan import backends
from facerecon.gan.backends import E4eInvert, HyperStyleInvert, InterfaceGanSweep, OptimizeInvert
from facerecon.gan.tiny import GanSpec, write_gan_models
from facerecon.stages.base import AlignedFace, InvertResult, View
from facerecon.stages.workspace import load_inverted, save_inverted

PHOTO = Path(__file__).resolve().parent.parent / "data" / "photos" / "grace_hopper.jpg"
FACE = 64
ALPHAS = list(range(-7, 7))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gan_models")
    write_gan_models(root, GanSpec(), seed=0)
    return root


@pytest.fixture(scope="module")
def face() -> AlignedFace:
    img = Image.open(PHOTO).convert("RGB")
    side = min(img.size)
    img = img.crop((0, 0, side, side)).resize((FACE, FACE), Image.LANCZOS)
    return AlignedFace(image=np.asarray(img), mask=np.ones((FACE, FACE), bool), landmarks=None)


@pytest.fixture(autouse=True)
def fresh_models(monkeypatch, models):
    monkeypatch.setenv("FACERECON_MODELS", str(models))
    backends.clear_cache()
    yield
    backends.clear_cache()


def gan_params(backend: str, *sets: str):
    return load_params(None, [f"invert.backend={backend}", "pose_sweep.backend=interfacegan",
                              "pose_sweep.image_size=48", "pose_sweep.batch_size=5", "invert.optimize_steps=40",
                              "invert.optimize_lr=0.1", "invert.optimize_loss_size=32", "seed=3", *sets])


def no_yaw(image: np.ndarray) -> None:
    return None


def run_gan(backend: str, face: AlignedFace, workdir: Path, *sets: str) -> tuple[InvertResult, list[View]]:
    params = gan_params(backend, *sets)
    inv_cls = {"hyperstyle": HyperStyleInvert, "e4e": E4eInvert, "optimize": OptimizeInvert}[backend]
    inv = inv_cls(params, "cpu")
    sweep = InterfaceGanSweep(params, "cpu", yaw_estimator=no_yaw)
    inv.check_ready()
    sweep.check_ready()
    (workdir / "invert").mkdir(parents=True)
    (workdir / "sweep").mkdir()
    result = inv.invert(face, workdir / "invert")
    save_inverted(workdir / "invert", result)  # as the stage does: the sweep reads it back from disk
    views = sweep.sweep(face, load_inverted(workdir / "invert"), ALPHAS, workdir / "sweep")
    return result, views


@pytest.mark.parametrize("backend", ["hyperstyle", "e4e", "optimize"])
def test_invert_then_sweep_gives_14_views(backend, face, tmp_path):
    result, views = run_gan(backend, face, tmp_path)
    assert result.latent.shape == (8, 32)  # the tiny generator's W+ (18×512 for the real one)
    assert result.reconstruction.shape == (FACE, FACE, 3) and result.reconstruction.dtype == np.uint8
    assert Path(result.files["latent"]).is_file()
    assert ("weight_deltas" in result.files) == (backend == "hyperstyle")
    assert result.info["weights"] and all(len(w["sha256"]) == 64 for w in result.info["weights"].values())
    assert len(views) == 14
    assert [v.alpha for v in views] == [float(a) for a in ALPHAS]
    assert all(v.image.shape == (48, 48, 3) and v.image.dtype == np.uint8 for v in views)
    yaws = [v.yaw for v in views]
    assert yaws[0] == pytest.approx(-90 + 3 * 180 / 19) and yaws[-1] == pytest.approx(90 - 3 * 180 / 19)
    assert all("yaw_estimated" in v.info for v in views)
    # moving along the direction changes the image, more for larger |α|
    base = views[ALPHAS.index(0)].image.astype(float)
    d1 = np.abs(views[ALPHAS.index(1)].image - base).mean()
    d6 = np.abs(views[ALPHAS.index(6)].image - base).mean()
    assert 0 < d1 < d6


def test_hyperstyle_refines_and_sweep_uses_the_offsets(face, tmp_path):
    result, views = run_gan("hyperstyle", face, tmp_path, "pose_sweep.image_size=64")
    assert result.info["iterations"] == 3  # from the checkpoint's opts (n_iters_per_batch)
    assert len(result.info["mse_history"]) == 4  # W-encoder start + one value per refinement pass
    # α = 0 re-renders the reconstruction: the sweep used the same per-face generator weights
    zero = views[ALPHAS.index(0)].image.astype(int)
    assert np.abs(zero - result.reconstruction.astype(int)).max() <= 1
    # without the offsets the image differs: the offsets were actually applied
    plain = InvertResult(latent=result.latent, files={})
    params = gan_params("hyperstyle", "pose_sweep.image_size=64")
    (tmp_path / "plain").mkdir()
    other = InterfaceGanSweep(params, "cpu", yaw_estimator=no_yaw).sweep(face, plain, [0], tmp_path / "plain")
    assert np.abs(other[0].image.astype(int) - zero).mean() > 0.5
    more, _ = run_gan("hyperstyle", face, tmp_path / "more", "invert.iterations=5")
    assert more.info["iterations"] == 5 and len(more.info["mse_history"]) == 6


def test_deterministic_under_seed(face, tmp_path):
    first, v1 = run_gan("optimize", face, tmp_path / "a")
    backends.clear_cache()
    second, v2 = run_gan("optimize", face, tmp_path / "b")
    np.testing.assert_array_equal(first.latent, second.latent)
    for a, b in zip(v1, v2, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    _, h1 = run_gan("hyperstyle", face, tmp_path / "c")
    backends.clear_cache()
    _, h2 = run_gan("hyperstyle", face, tmp_path / "d")
    assert all(np.array_equal(a.image, b.image) for a, b in zip(h1, h2, strict=True))


def test_optimisation_lowers_its_loss(face, tmp_path):
    result, _ = run_gan("optimize", face, tmp_path)
    hist = result.info["mse_history"]
    assert hist[-1] < 0.7 * hist[0]


def test_yaw_estimates_and_flip(face, tmp_path):
    """Each view carries the estimator's yaw; a direction turning heads the wrong way is flipped by the param."""
    params = gan_params("e4e")
    inv = E4eInvert(params, "cpu").invert(face, tmp_path)
    brightness = lambda img: float(img[:, : img.shape[1] // 2].mean() - img[:, img.shape[1] // 2:].mean())  # noqa: E731
    views = InterfaceGanSweep(params, "cpu", yaw_estimator=brightness).sweep(face, inv, ALPHAS, tmp_path)
    assert [v.info["yaw_estimated"] for v in views] == [round(brightness(v.image), 2) for v in views]
    flipped = InterfaceGanSweep(gan_params("e4e", "pose_sweep.flip_direction=true"), "cpu",
                                yaw_estimator=no_yaw).sweep(face, inv, ALPHAS, tmp_path)
    np.testing.assert_array_equal(flipped[ALPHAS.index(-6)].image, views[ALPHAS.index(6)].image)


def test_missing_weights_fail_fast_with_a_clear_error(tmp_path, monkeypatch):
    """What `facerecon run` calls before any face: every missing file named, with where to get it."""
    from facerecon.stages.runtime import check_backends_ready

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FACERECON_MODELS", str(empty))
    monkeypatch.chdir(tmp_path)
    params = load_params(None, ["invert.backend=hyperstyle", "pose_sweep.backend=interfacegan",
                                "invert.hyperstyle_checkpoint=nowhere_hyperstyle.pt"])
    with pytest.raises(MissingWeightsError) as err:
        check_backends_ready(params)
    msg = str(err.value)
    assert "invert.hyperstyle_checkpoint" in msg and "nowhere_hyperstyle.pt" in msg
    assert "faces_w_encoder.pt" in msg and str(empty / "faces_w_encoder.pt") in msg
    assert "github.com/yuval-alaluf/hyperstyle" in msg
    for backend, needle in [("e4e", "e4e_ffhq_encode.pt"), ("optimize", "stylegan2-ffhq-config-f.pt")]:
        p = load_params(None, [f"invert.backend={backend}"])
        with pytest.raises(MissingWeightsError, match=needle):
            {"e4e": E4eInvert, "optimize": OptimizeInvert}[backend](p, "cpu").check_ready()
    with pytest.raises(MissingWeightsError, match="pose_sweep.direction.*fit-direction"):
        InterfaceGanSweep(load_params(None, ["invert.backend=optimize", "pose_sweep.backend=interfacegan"]),
                          "cpu").check_ready()


def test_interfacegan_needs_a_gan_inversion(models):
    params = load_params(None, ["invert.backend=landmarks", "pose_sweep.backend=interfacegan"])
    with pytest.raises(ConfigError, match="invert.backend"):
        InterfaceGanSweep(params, "cpu").check_ready()


def test_direction_in_interfacegan_npy_format(face, tmp_path, models):
    """A (1, 512)-style ``.npy`` boundary works like HyperStyle's (1, 18, 512) pose.pt."""
    import torch

    pose = torch.load(models / "pose.pt", weights_only=True)
    np.save(tmp_path / "pose.npy", pose[0, :1].numpy())
    params = gan_params("e4e")
    inv = E4eInvert(params, "cpu").invert(face, tmp_path)
    a = InterfaceGanSweep(params, "cpu", yaw_estimator=no_yaw).sweep(face, inv, [-3, 3], tmp_path)
    p2 = gan_params("e4e", f"pose_sweep.direction={tmp_path / 'pose.npy'}")
    b = InterfaceGanSweep(p2, "cpu", yaw_estimator=no_yaw).sweep(face, inv, [-3, 3], tmp_path)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
