"""`facerecon gan fit-direction`: InterfaceGAN's SVM boundary, checked on a planted linear yaw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facerecon.gan import fit_direction as fd
from facerecon.gan.checkpoints import load_generator
from facerecon.gan.interfacegan import load_direction
from facerecon.gan.tiny import GanSpec, write_gan_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return write_gan_models(tmp_path_factory.mktemp("fit_models"), GanSpec(), seed=1)


def planted(n: np.ndarray, scale: float = 30.0, noise: float = 1.0, seed: int = 0) -> fd.Labeller:
    """Yaw that is exactly linear in W along ``n`` (plus noise); a few samples get no label."""
    rng = np.random.default_rng(seed)

    def label(images, latents):
        assert all(im.dtype == np.uint8 and im.shape == (32, 32, 3) for im in images)
        y = latents @ n * scale + rng.normal(0, noise, len(latents))
        y[rng.random(len(latents)) < 0.05] = np.nan  # "no face found"
        return y

    return label


def test_linear_svm_separates_and_finds_the_normal():
    rng = np.random.default_rng(0)
    n = rng.normal(size=6)
    n /= np.linalg.norm(n)
    x = rng.normal(size=(400, 6))
    y = (x @ n > 0.1).astype(int)
    w, b = fd.linear_svm(x, y, c=10.0)
    assert ((x @ w + b > 0) == (y > 0)).mean() > 0.98
    assert float(w @ n / np.linalg.norm(w)) > 0.97
    with pytest.raises(ValueError):
        fd.linear_svm(x, np.ones(400))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_direction_recovers_a_planted_direction(models, sign):
    g = load_generator(models["generator"]).generator
    rng = np.random.default_rng(7)
    n = rng.normal(size=g.style_dim)
    n /= np.linalg.norm(n)
    fit = fd.fit_direction(g, labeller=planted(sign * n), n_samples=1500, ratio=0.5, truncation=0.7, seed=0,
                           batch_size=250, image_size=32)
    assert fit.direction.shape == (1, g.n_latent, g.style_dim)
    cos = float(fit.boundary[0] @ n)
    assert sign * cos > 0.95  # the planted normal, oriented towards higher yaw
    assert torch.allclose(fit.direction[0], fit.direction[0, :1].expand(g.n_latent, -1))
    assert fit.meta["n_labelled"] < 1500 and fit.meta["val_accuracy"] > 0.9
    assert fit.meta["yaw_per_alpha_deg"] == pytest.approx(30.0 * abs(cos), rel=0.25)


def test_too_few_faces_is_a_clear_error(models):
    g = load_generator(models["generator"]).generator
    nothing = lambda images, latents: np.full(len(images), np.nan)  # noqa: E731
    with pytest.raises(fd.NoFaceError, match="only 0 of 40 samples"):
        fd.fit_direction(g, labeller=nothing, n_samples=40, image_size=32)


def test_cli_writes_a_direction_the_sweep_can_load(models, tmp_path, monkeypatch, capsys):
    g = load_generator(models["generator"]).generator
    n = np.random.default_rng(3).normal(size=g.style_dim)
    n /= np.linalg.norm(n)
    monkeypatch.setattr(fd, "landmark_labeller", lambda min_face_size=24: planted(n))
    out = tmp_path / "pose.pt"
    code = fd.cli_main(["--generator", str(models["generator"]), "--out", str(out), "--samples", "600",
                        "--ratio", "0.5", "--batch-size", "100", "--image-size", "32", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    direction = load_direction(out, g.n_latent, g.style_dim)
    assert float(direction[0, 0] @ torch.from_numpy(n).float()) > 0.9
    meta = json.loads((tmp_path / "pose.pt.json").read_text())
    assert meta["generator_sha256"] and meta["n_samples"] == 600
    assert "wrote" in capsys.readouterr().out
    # InterfaceGAN's own format, (1, D)
    assert fd.cli_main(["--generator", str(models["generator"]), "--out", str(tmp_path / "b.npy"), "--samples",
                        "200", "--ratio", "0.5", "--image-size", "32", "--device", "cpu"]) == 0
    assert np.load(tmp_path / "b.npy").shape == (1, g.style_dim)


def test_cli_errors_are_one_line(models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACERECON_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert fd.cli_main(["--out", str(tmp_path / "p.pt"), "--generator", "missing.pt"]) == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and "looked in" in err and "Traceback" not in err
    assert fd.cli_main(["--out", str(tmp_path / "p.txt"), "--generator", str(models["generator"])]) == 2
    assert "--out" in capsys.readouterr().err
    # the real labeller finds no faces in a random tiny generator's images: clear error, no file
    code = fd.cli_main(["--generator", str(models["generator"]), "--out", str(tmp_path / "p.pt"), "--samples", "8",
                        "--image-size", "64", "--device", "cpu"])
    assert code == 2 and "samples got a yaw label" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()
    assert fd.cli_main(["--samples", "10"]) == 2  # argparse: --out is required
