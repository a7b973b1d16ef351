"""The DreamBooth and ControlNet-profile backends as the pipeline uses them, on tiny random SD
components written to a models folder (same classes and code paths as SD-1.5, CPU-sized)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import torch  # noqa: E402

from facerecon.config import load_params  # noqa: E402
from facerecon.diffusion import dreambooth as db  # noqa: E402
from facerecon.diffusion.backends import ControlNetProfile, DiffusersDreambooth  # noqa: E402
from facerecon.diffusion.components import clear_cache, load_base_model, load_controlnet  # noqa: E402
from facerecon.diffusion.controlnet_sampling import Score, heuristic_score, make_default_scorer, make_pipeline  # noqa: E402
from facerecon.diffusion.single_file import save_single_file  # noqa: E402
from facerecon.diffusion.skeleton import profile_skeleton  # noqa: E402
from facerecon.diffusion.tiny import build_tiny, save_config_folder, save_diffusers_folder  # noqa: E402
from facerecon.errors import MissingWeightsError  # noqa: E402
from facerecon.stages.base import AlignedFace, DreamboothResult, InvertResult, View  # noqa: E402

PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"
CPU = torch.device("cpu")
FACE_SIZE = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """models/tiny-sd (diffusers folder) and models/tiny-openpose (ControlNet folder)."""
    root = tmp_path_factory.mktemp("models")
    tiny = build_tiny(seed=0, tokenizer_dir=root / ".tok")
    save_diffusers_folder(tiny, root / "tiny-sd", with_controlnet=root / "tiny-openpose")
    # the same model as one single-file checkpoint + its config folder (how community models ship)
    save_single_file(root / "tiny-sd.safetensors", tiny.unet, tiny.vae, tiny.text_encoder)
    save_config_folder(tiny, root / "tiny-configs")
    return root


@pytest.fixture(scope="module")
def face() -> AlignedFace:
    """The astronaut's face cropped to 64 px with its mediapipe landmarks in crop pixels."""
    from facerecon.align import find_faces, get_detector

    img = Image.open(PHOTOS / "astronaut.jpg").convert("RGB")
    lm = find_faces(np.asarray(img), get_detector(), max_faces=1, min_face_size=24)[0].astype(np.float64)
    c = 0.5 * (lm[:, :2].min(0) + lm[:, :2].max(0))
    half = 0.8 * np.ptp(lm[:, :2], axis=0).max()
    box = (c[0] - half, c[1] - half, c[0] + half, c[1] + half)
    crop = np.asarray(img.crop(tuple(int(round(v)) for v in box)).resize((FACE_SIZE, FACE_SIZE), Image.LANCZOS))
    k = FACE_SIZE / (2 * half)
    lm_c = np.concatenate([(lm[:, :2] - [box[0], box[1]]) * k, lm[:, 2:] * k], axis=1).astype(np.float32)
    return AlignedFace(image=crop, mask=np.ones((FACE_SIZE, FACE_SIZE), bool), landmarks=lm_c)


@pytest.fixture()
def views(face) -> list[View]:
    return [View(image=np.roll(face.image, s, axis=1), yaw=float(s), name=f"sweep_{i}")
            for i, s in enumerate((-4, 0, 4))]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERECON_DIFFUSION_CACHE", str(tmp_path / "cache"))
    clear_cache()
    yield
    clear_cache()


def params_for(models: Path, *sets: str):
    base = [f"dreambooth.base_model={models / 'tiny-sd'}", f"profile.controlnet={models / 'tiny-openpose'}",
            "dreambooth.backend=diffusers", "profile.backend=controlnet", "dreambooth.resolution=32",
            "dreambooth.steps=6", "dreambooth.learning_rate=0.01", "dreambooth.lora_rank=4",
            "dreambooth.mixed_precision=fp32", "dreambooth.gradient_checkpointing=false", "dreambooth.log_every=3",
            "profile.resolution=32", "profile.image_size=40", "profile.num_samples=2", "profile.steps=2",
            "profile.scheduler=ddim", "profile.guidance_scale=2.0", "seed=7"]
    return load_params(None, base + list(sets))


def unet_eps(unet, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, emb = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, 500, emb).sample


def test_lora_dreambooth_saves_only_the_adapter_and_it_loads(models, face, views, tmp_path):
    params = params_for(models)
    backend = DiffusersDreambooth(params, CPU)
    backend.check_ready()
    res = backend.train(face, views, tmp_path / "work")
    assert not res.skipped and res.info["mode"] == "lora" and res.info["steps"] == 6
    curve = res.info["loss_curve"]
    assert res.info["loss"]["finite"] and len(curve) == 6 and len(set(curve)) > 1
    weights = Path(res.weights_dir)
    assert sorted(p.name for p in weights.iterdir()) == sorted([db.LORA_FILE, db.CONFIG_FILE])
    unet_bytes = sum(p.numel() * 4 for p in load_base_model(models / "tiny-sd").unet.parameters())
    assert (weights / db.LORA_FILE).stat().st_size < 0.25 * unet_bytes
    cfg = json.loads((weights / db.CONFIG_FILE).read_text())
    assert cfg["mode"] == "lora" and cfg["lora_rank"] == 4 and cfg["prompt"] == "a photo of sks person"
    assert len(json.loads((tmp_path / "work" / "dreambooth_loss.json").read_text())["loss"]) == 6

    # load the result the way the profile stage does: the adapter changes the UNet, removing it restores it
    comps = load_base_model(models / "tiny-sd")
    pipe = make_pipeline(comps, load_controlnet(models / "tiny-openpose"), scheduler="ddim", device=CPU,
                         dtype=torch.float32, progress=False)
    before = unet_eps(pipe.unet)
    applied = db.apply_to_pipeline(pipe, weights)
    with_lora = unet_eps(pipe.unet)
    assert (with_lora - before).abs().max() > 1e-5
    db.remove_from_pipeline(pipe, applied, comps.unet)
    torch.testing.assert_close(unet_eps(pipe.unet), before)


def test_full_dreambooth_saves_the_unet_and_leaves_the_base_alone(models, face, views, tmp_path):
    params = params_for(models, "dreambooth.mode=full", "dreambooth.steps=3", "dreambooth.learning_rate=0.001",
                        "dreambooth.gradient_checkpointing=true")
    backend = DiffusersDreambooth(params, CPU)
    res = backend.train(face, views, tmp_path / "work")
    weights = Path(res.weights_dir)
    assert (weights / "unet" / "config.json").is_file() and (weights / db.CONFIG_FILE).is_file()
    from diffusers import UNet2DConditionModel

    tuned = UNet2DConditionModel.from_pretrained(str(weights / "unet"))
    fresh = load_base_model(models / "tiny-sd").unet
    assert (unet_eps(tuned) - unet_eps(fresh)).abs().max() > 1e-5
    # the process-wide cached base UNet was not trained in place
    cached = backend._load_base(backend._resolve_base([]), torch.float32).unet
    torch.testing.assert_close(unet_eps(cached), unet_eps(fresh))


def test_dreambooth_is_deterministic(models, face, views, tmp_path):
    params = params_for(models, "dreambooth.steps=4")
    a = DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "a")
    b = DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "b")  # reuses the cached base model
    assert a.info["loss_curve"] == b.info["loss_curve"]
    c = DiffusersDreambooth(params_for(models, "dreambooth.steps=4", "seed=8"), CPU).train(face, views, tmp_path / "c")
    assert c.info["loss_curve"] != a.info["loss_curve"]


def test_dreambooth_on_a_single_file_base_model(models, face, views, tmp_path):
    params = params_for(models, f"dreambooth.base_model={models / 'tiny-sd.safetensors'}", "dreambooth.steps=2",
                        f"dreambooth.single_file_config={models / 'tiny-configs'}")
    res = DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "a")
    assert res.info["base_model"]["layout"] == "single_file" and res.info["loss"]["finite"]
    (tmp_path / "empty").mkdir()
    bad = params_for(models, f"dreambooth.base_model={models / 'tiny-sd.safetensors'}",
                     f"dreambooth.single_file_config={tmp_path / 'empty'}")
    with pytest.raises(MissingWeightsError, match="single_file_config.*unet/config.json"):
        DiffusersDreambooth(bad, CPU).check_ready()


def test_prior_preservation_makes_class_images_once(models, face, views, tmp_path):
    class_dir = tmp_path / "class"
    params = params_for(models, "dreambooth.prior_preservation=true", "dreambooth.num_class_images=2",
                        "dreambooth.class_image_steps=2", f"dreambooth.class_data_dir={class_dir}",
                        "dreambooth.steps=2")
    res = DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "a")
    made = sorted(class_dir.glob("*.png"))
    assert len(made) == 2 and res.info["prior_preservation"] and res.info["class_images"] == 2
    assert Image.open(made[0]).size == (32, 32)
    stamps = [p.stat().st_mtime_ns for p in made]
    DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "b")
    assert [p.stat().st_mtime_ns for p in sorted(class_dir.glob("*.png"))] == stamps


def test_controlnet_profiles_with_dreambooth_weights(models, face, views, tmp_path):
    params = params_for(models)
    trained = DiffusersDreambooth(params, CPU).train(face, views, tmp_path / "db")
    profile = ControlNetProfile(params, CPU, scorer=make_default_scorer(use_landmarks=False))
    profile.check_ready()
    work = tmp_path / "profile"
    out = profile.profiles(face, InvertResult(), trained, work)
    assert [v.name for v in out] == ["profile_left", "profile_right"]
    assert [v.yaw for v in out] == [-90.0, 90.0]
    for v in out:
        assert v.image.shape == (40, 40, 3) and v.image.dtype == np.uint8
        assert v.info["identity"] == "dreambooth (lora)" and v.info["candidates"] == 2
    for side in ("profile_left", "profile_right"):
        sk = np.asarray(Image.open(work / f"{side}_skeleton.png"))
        assert sk.shape == (32, 32, 3) and sk.any()
        assert len(list((work / "candidates").glob(f"{side}_*.png"))) == 2
    report = json.loads((work / "profile_scores.json").read_text())
    assert all(len(report["sides"][s]["candidates"]) == 2 for s in ("profile_left", "profile_right"))
    assert "sks person" in report["prompt"]
    # the skeletons of the two sides are (near) mirror images
    left = np.asarray(Image.open(work / "profile_left_skeleton.png")).any(-1)
    right = np.asarray(Image.open(work / "profile_right_skeleton.png")).any(-1)
    assert left.sum() > 0 and not np.array_equal(left, right)


def test_injected_scorer_decides_and_skipped_dreambooth_uses_the_class_prompt(models, face, tmp_path):
    params = params_for(models, "profile.num_samples=3")

    def brightest(image, sk):
        return Score(float(image.mean()), "test")

    skipped = DreamboothResult(skipped=True, reason="test")
    out = ControlNetProfile(params, CPU, scorer=brightest).profiles(face, InvertResult(), skipped, tmp_path)
    report = json.loads((tmp_path / "profile_scores.json").read_text())
    assert report["identity"].startswith("base model") and report["prompt"].startswith("a photo of a person")
    for view in out:
        cands = [np.asarray(Image.open(tmp_path / "candidates" / f"{view.name}_{k}.png")) for k in range(3)]
        best = int(np.argmax([c.mean() for c in cands]))
        assert report["sides"][view.name]["best"] == best
        want = np.asarray(Image.fromarray(cands[best]).resize((40, 40), Image.LANCZOS))
        np.testing.assert_array_equal(view.image, want)


def test_heuristic_prefers_the_face_where_the_skeleton_puts_it(face):
    sk = profile_skeleton(face.landmarks, 90.0, src_size=FACE_SIZE, out_size=128)
    skin, grey = np.array([224, 172, 140], np.uint8), np.array([90, 110, 130], np.uint8)

    def blob(shift: float) -> np.ndarray:
        img = np.broadcast_to(grey, (128, 128, 3)).copy()
        pts = sk.face[sk.face_visible]
        v, u = np.mgrid[0:128, 0:128]
        cu, cv = pts.mean(0)
        r = 0.6 * np.ptp(pts, axis=0).max()
        img[(u - cu - shift) ** 2 + (v - cv) ** 2 < r * r] = skin
        return img

    # +90°: the face looks toward the image left, so a head shifted left covers the space in front
    good, _ = heuristic_score(blob(0.0), sk)
    wrong, _ = heuristic_score(blob(-25.0), sk)
    blank, _ = heuristic_score(np.broadcast_to(grey, (128, 128, 3)).copy(), sk)
    assert good > wrong and good > blank


def test_default_scorer_uses_landmarks_when_a_face_is_found(face, monkeypatch):
    import facerecon.align as align

    sk = profile_skeleton(face.landmarks, 90.0, src_size=FACE_SIZE, out_size=FACE_SIZE)
    img = face.image
    monkeypatch.setattr(align, "detect_landmarks", lambda image: None, raising=False)
    none = make_default_scorer()(img, sk)
    assert none.method == "heuristic" and none.detail["landmarks"] == "no face detected"

    from facerecon.diffusion.skeleton import head_frame, rot_y

    def turned(deg):  # the face's own landmarks turned to ``deg`` about the ears, as a detector would see it
        centre, r = head_frame(face.landmarks.astype(np.float64))
        q = (face.landmarks - centre) @ r
        return q @ rot_y(deg).T + centre

    monkeypatch.setattr(align, "detect_landmarks", lambda image: turned(80.0), raising=False)
    close = make_default_scorer()(img, sk)
    monkeypatch.setattr(align, "detect_landmarks", lambda image: turned(10.0), raising=False)
    frontal = make_default_scorer()(img, sk)
    assert close.method == "landmarks+heuristic" and close.score > frontal.score
    assert close.score > none.score > frontal.score


def test_missing_weights_fail_fast_naming_every_file(tmp_path):
    from facerecon.stages.runtime import backend  # what `facerecon run` checks before any face

    params = load_params(None, ["dreambooth.backend=diffusers", "profile.backend=controlnet",
                                f"dreambooth.base_model={tmp_path / 'realisticVisionV20.safetensors'}",
                                f"profile.controlnet={tmp_path / 'control_v11p_sd15_openpose'}"])
    with pytest.raises(MissingWeightsError) as err:
        backend("dreambooth", params).check_ready()
    msg = str(err.value)
    assert "dreambooth.base_model" in msg and "realisticVisionV20.safetensors" in msg
    with pytest.raises(MissingWeightsError) as err:
        backend("profile", params).check_ready()
    msg = str(err.value)
    assert "profile.controlnet" in msg and "control_v11p_sd15_openpose" in msg and "realisticVisionV20" in msg
    assert "\n" not in msg


def test_missing_extras_are_one_clear_error(models, monkeypatch):
    import sys

    from facerecon.errors import ConfigError

    monkeypatch.setitem(sys.modules, "peft", None)  # as if `facerecon[diffusion]` were not installed
    with pytest.raises(ConfigError, match=r"dreambooth.backend: needs the Python package\(s\) peft.*facerecon\[diffusion\]"):
        DiffusersDreambooth(params_for(models), CPU).check_ready()
    # full fine-tuning does not need peft
    DiffusersDreambooth(params_for(models, "dreambooth.mode=full"), CPU).check_ready()


def test_dreambooth_stage_output_feeds_the_profile_backend(models, face, views, tmp_path):
    """run_dreambooth (stage folder, cache key, dreambooth.json) → load_dreambooth → ControlNet profiles."""
    from facerecon.stages.dreambooth import load_dreambooth, run_dreambooth
    from facerecon.stages.workspace import StageJob, StageOut, save_face, save_views

    params = params_for(models, "dreambooth.steps=2")
    save_face(tmp_path / "aligned", face)
    save_views(tmp_path / "sweep", views)
    sweep = StageOut(stage="pose_sweep", key="k0", dir=str(tmp_path / "sweep"))
    job = StageJob(params, tmp_path / "work", face_dir=tmp_path / "aligned")
    out = run_dreambooth(job, {"pose_sweep": sweep})
    again = run_dreambooth(job, {"pose_sweep": sweep})
    assert again.cached and again.dir == out.dir
    result = load_dreambooth(out.path)
    assert not result.skipped and Path(result.weights_dir).is_relative_to(out.path)
    views_out = ControlNetProfile(params, CPU, scorer=make_default_scorer(False)).profiles(
        face, InvertResult(), result, tmp_path / "profile")
    assert [v.info["identity"] for v in views_out] == ["dreambooth (lora)"] * 2
