"""The bundled photos, at the default settings, give the same files as the recorded reference.

A refactor must not change what users get. `tests/fixtures/outputs_reference.json` holds, per
output file of `facerecon run data/photos`, the SHA-256 of its bytes (``result.json`` without
its timings and paths) and a coarse fingerprint (a 16×16 thumbnail of every image and array,
the vertex statistics of the mesh).

- On the platform the reference was recorded on (torch version and CPU kernel set), the files
  must be byte-identical (torch runs on one thread for this: the order of float sums, and so
  the bytes, depend on the thread count).
- Elsewhere float kernels sum in another order, so the thumbnails must agree within a small
  tolerance instead (a mis-wired stage moves them by far more).

A change that is meant to change the outputs re-records the reference:
``FACERECON_UPDATE_REFERENCE=1 bash scripts/test.sh tests/test_outputs_unchanged.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.cli import main

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "fixtures" / "outputs_reference.json"
FACES = ("astronaut", "grace_hopper")
FILES = ("albedo.png", "depth.npy", "depth.png", "normals.png", "render_front.png", "render_45.png",
         "render_left90.png", "render_right90.png", "views.png", "turntable.gif", "face.obj", "face.mtl",
         "face.glb", "result.json")
VOLATILE = {"seconds", "cached", "timings_s", "checkpoint", "cache", "params_sha256", "published_at", "versions",
            "source"}  # source: the SRC folder as given, here an absolute path that differs per checkout


def this_platform() -> dict:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def stable_json(data):
    """result.json without what changes from run to run (times, cache hits, absolute paths)."""
    if isinstance(data, dict):
        return {k: stable_json(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable_json(v) for v in data]
    return data


def thumbnail(arr: np.ndarray) -> list:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
    return torch.nn.functional.adaptive_avg_pool2d(t, 16)[0].numpy().round(4).tolist()


def fingerprint(path: Path) -> dict:
    data = path.read_bytes()
    if path.name == "result.json":
        stable = stable_json(json.loads(data))
        data = json.dumps(stable, sort_keys=True).encode()
        keys = {s: v.get("key") for s, v in stable.get("stages", {}).items()}
        return {"sha256": hashlib.sha256(data).hexdigest(), "stage_keys": keys}
    out: dict = {"sha256": hashlib.sha256(data).hexdigest()}
    if path.suffix == ".png":
        out["thumb"] = thumbnail(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    elif path.suffix == ".npy":
        depth = np.load(io.BytesIO(data))
        out["thumb"] = thumbnail(np.nan_to_num(depth, nan=0.0))
    elif path.suffix == ".obj":
        v = np.array([[float(x) for x in line.split()[1:4]] for line in data.decode().splitlines()
                      if line.startswith("v ")])
        out["vertices"] = [len(v), *v.mean(0).round(5).tolist(), *v.std(0).round(5).tolist()]
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("golden")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sums' order, and so the bytes, depend on it: one thread on every machine
    try:
        code = main(["run", str(ROOT / "data" / "photos"), str(base / "out"), "--no-progress",
                     "--set", f"cache.dir={base / 'cache'}"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return {f"{face}/{name}": fingerprint(base / "out" / face / name) for face in FACES for name in FILES}


def test_the_bundled_photos_give_the_recorded_outputs(outputs):
    if os.environ.get("FACERECON_UPDATE_REFERENCE") == "1":
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps({"platform": this_platform(), "files": outputs}, indent=1) + "\n")
        pytest.skip(f"reference re-recorded: {REFERENCE}")
    ref = json.loads(REFERENCE.read_text())
    assert set(outputs) == set(ref["files"])
    for name, got in outputs.items():
        want = ref["files"][name]
        if "stage_keys" in want:  # the stage folders' keys hash params and code versions only
            assert got["stage_keys"] == want["stage_keys"], name
    if ref["platform"] == this_platform():
        changed = [n for n in outputs if outputs[n]["sha256"] != ref["files"][n]["sha256"]]
        assert not changed, f"not byte-identical to the reference: {changed}"
        return
    for name, got in outputs.items():
        want = ref["files"][name]
        if "thumb" in want:
            a, b = np.array(got["thumb"]), np.array(want["thumb"])
            scale = 255.0 if name.endswith(".png") else max(float(np.abs(b).max()), 1e-6)
            assert np.abs(a - b).max() / scale < 0.03, name
        if "vertices" in want:
            assert got["vertices"][0] == want["vertices"][0], name
            np.testing.assert_allclose(got["vertices"][1:], want["vertices"][1:], atol=2e-3, err_msg=name)

