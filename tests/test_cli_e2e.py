"""The CLI end to end, as a user runs it: real photos and bad files in, files out, manifest read back."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny import TINY

from flows.cli import main

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"


def tiny_args(cache: Path) -> list[str]:
    out = []
    for s in TINY + ["export.likeness=on", f"cache.dir={cache}"]:  # this module checks result.json's likeness
        out += ["--set", s]
    return out


def small_photo(name: str, size: int = 320) -> Image.Image:
    im = Image.open(PHOTOS / name).convert("RGB")
    im.thumbnail((size, size))
    return im


def read_manifest(dst: Path) -> pd.DataFrame:
    return pd.read_parquet(dst / "manifest.parquet")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    src, dst, cache = base / "photos", base / "out", base / "cache"
    src.mkdir()
    small_photo("astronaut.jpg").save(src / "astronaut.jpg", quality=90)
    code = main(["run", str(src), str(dst), "--no-progress", *tiny_args(cache)])
    return src, dst, cache, code


def test_outputs_of_a_face(first_run):
    src, dst, cache, code = first_run
    assert code == 0
    face = dst / "astronaut"
    for name in ("face.obj", "face.mtl", "albedo.png", "face.glb", "depth.png", "normals.png", "render_front.png",
                 "render_45.png", "render_left90.png", "render_right90.png", "turntable.gif", "views.png",
                 "result.json", "depth.npy"):
        assert (face / name).is_file(), name
    obj = (face / "face.obj").read_text()
    n_v = sum(line.startswith("v ") for line in obj.splitlines())
    n_f = sum(line.startswith("f ") for line in obj.splitlines())
    assert n_v > 100 and n_f > 100
    glb = (face / "face.glb").read_bytes()
    magic, version, length = struct.unpack("<4sII", glb[:12])
    assert magic == b"glTF" and version == 2 and length == len(glb)
    front = np.asarray(Image.open(face / "render_front.png").convert("RGB")).astype(float)
    assert front.std() > 5  # a picture, not a blank
    result = json.loads((face / "result.json").read_text())
    assert result["photo"]["key"] == "astronaut.jpg" and result["photo"]["face"] == "face0"
    assert result["photo"]["sha256"] == hashlib.sha256((src / "astronaut.jpg").read_bytes()).hexdigest()
    assert set(result["timings_s"]) >= {"align", "invert", "pose_sweep", "dreambooth", "profile", "ae_optimize",
                                        "combine", "correct", "export"}
    assert result["stages"]["dreambooth"]["summary"]["skipped"] is True
    lk = result["likeness"]  # dlib's identity distance photo ↔ renders, measured, not assumed
    assert lk["photo_detected"] is True and set(lk["views"]) == {"+0", "-30", "+30", "-45", "+45"}
    assert all(0.0 < v["distance"] < 2.0 for v in lk["views"].values())
    assert 0.0 < lk["landmark_error_front"] < 1.0
    turn = lk["turntable"]  # 3 frames at 0°, ±78°: only the frontal one is a face dlib can judge
    assert turn["yaws"] == [0.0] and len(turn["distance"]) == 1 and 0.0 < turn["mean_distance"] < 2.0
    page = (dst / "index.html").read_text()
    assert "identity distance to the photo" in page
    m = read_manifest(dst)
    assert list(m["status"]) == ["ok"] and m["stages_run"][0].startswith("align")
    sheet = Image.open(face / "views.png")
    assert sheet.size[0] > 64 * 4


def test_a_texture_without_photo_detail_is_exported(first_run, tmp_path):
    src, _, _, _ = first_run
    args = tiny_args(tmp_path / "cache") + ["--set", "export.photo_detail=0", "--set", "export.likeness=off"]
    assert main(["run", str(src), str(tmp_path / "out"), "--no-progress", *args]) == 0
    assert (tmp_path / "out" / "astronaut" / "albedo.png").is_file()


def test_rerun_recomputes_nothing(first_run):
    src, dst, cache, _ = first_run
    assert main(["run", str(src), str(dst), "--no-progress", *tiny_args(cache)]) == 0
    m = read_manifest(dst)
    assert m["cached"].tolist() == [True] and m["stages_run"].tolist() == [""]


def test_param_change_reruns_only_downstream(first_run):
    src, dst, cache, _ = first_run
    args = tiny_args(cache) + ["--set", "combine.blur_sigma=4"]
    assert main(["run", str(src), str(dst), "--no-progress", *args]) == 0
    m = read_manifest(dst)
    assert m["stages_run"].tolist() == ["combine,export"]


# Bad, convertible and hostile inputs (CMYK, EXIF, 16-bit, alpha, truncated...): tests/test_reliability.py


def test_console_script_is_clean_for_user_mistakes(tmp_path):
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    exe = Path(sys.executable).parent / "facerecon"
    proc = subprocess.run([str(exe), "run", str(PHOTOS), str(tmp_path / "o"), "--set", "ae_optimize.stpes=3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "ae_optimize.stpes: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    proc = subprocess.run([str(exe), "run", str(tmp_path / "missing"), str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "missing" in proc.stderr
