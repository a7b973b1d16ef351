"""S3 against a real S3 server (moto_server on 127.0.0.1), with injected 503s in front of it:
storage round trips, a face never half-published, a batch s3:// → s3:// that survives faults,
a re-run that publishes exactly the missing face, and `dvc push`/`dvc pull` through the remote."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ops_support import S3_ENV, facerecon, tiny_args

from facerecon.errors import InputImageError, StorageError
from facerecon.io.s3 import S3Storage
from facerecon.io.storage import COMPLETE, open_storage

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def s3(moto_s3):
    return moto_s3


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_storage_round_trip_survives_503s(s3):
    server, proxy, client = s3
    proxy.fail_next, before = 2, proxy.failures()
    st = open_storage("s3://unit/a/b", endpoint_url=proxy.url)
    st.write_bytes("x/y.bin", b"hello")
    assert [(e.key, e.size) for e in st.list()] == [("x/y.bin", 5)]
    assert st.read_bytes("x/y.bin") == b"hello"
    with pytest.raises(InputImageError, match="larger than the limit"):
        st.read_bytes("x/y.bin", max_bytes=4)
    assert st.exists("x/y.bin") and not st.exists("x/nope")
    assert proxy.failures() - before == 2  # the first two requests were refused and retried
    assert keys(client, "unit", "a/") == ["a/b/x/y.bin"]
    with pytest.raises(StorageError, match="bucket does not exist"):
        open_storage("s3://no-such-bucket/p", endpoint_url=proxy.url)
    with pytest.raises(StorageError, match="not a valid key"):
        st.write_bytes("../escape", b"x")


def test_a_face_is_never_half_published(s3, tmp_path):
    server, proxy, client = s3
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir(), v2.mkdir()
    (v1 / "face.obj").write_text("v1")
    (v1 / "old_only.png").write_bytes(b"old")
    for name in ("face.obj", "depth.npy", "render.png"):
        (v2 / name).write_bytes(os.urandom(64))
    (v2 / "_done.json").write_text("{}")  # stage bookkeeping is never published
    st = S3Storage("s3://unit/faces", endpoint_url=proxy.url, max_attempts=2)
    st.put_tree(v1, "f", {"export_key": "k1"})
    assert st.complete_marker("f")["meta"] == {"export_key": "k1"}

    proxy.fail_pattern = r"^PUT /unit/faces/f/render\.png"  # the copy into place keeps failing
    with pytest.raises(StorageError, match="render.png"):
        st.put_tree(v2, "f", {"export_key": "k2"})
    proxy.fail_pattern = None
    assert st.complete_marker("f") is None  # v1 retired, v2 not complete: readers see "not there"

    st.put_tree(v2, "f", {"export_key": "k2"})
    marker = st.complete_marker("f")
    assert marker["meta"] == {"export_key": "k2"}
    assert keys(client, "unit", "faces/") == sorted(
        [f"faces/f/{n}" for n in ("face.obj", "depth.npy", "render.png")] + [f"faces/f/{COMPLETE}"])
    for name, info in marker["files"].items():
        assert hashlib.sha256(st.read_bytes(f"f/{name}")).hexdigest() == info["sha256"]
        assert (v2 / name).read_bytes() == st.read_bytes(f"f/{name}")


def test_batch_s3_to_s3_survives_faults(s3, s3_batch):
    server, proxy, client = s3
    injected, _ = s3_batch  # the CLI exited 0: every photo gave a face
    assert injected >= 3  # every 20th request of the run was a 503
    listed = keys(client, "faces", "out/")
    assert "out/manifest.parquet" in listed and not [k for k in listed if "_staging" in k]
    for face in ("astronaut", "grace_hopper"):
        marker = json.loads(client.get_object(Bucket="faces", Key=f"out/{face}/{COMPLETE}")["Body"].read())
        files = [k.split("/", 2)[2] for k in listed if k.startswith(f"out/{face}/")]
        assert sorted(files) == sorted([*marker["files"], COMPLETE])
        assert {"face.obj", "face.glb", "depth.npy", "render_front.png", "result.json"} <= set(marker["files"])
        depth = np.load(io.BytesIO(client.get_object(Bucket="faces", Key=f"out/{face}/depth.npy")["Body"].read()))
        assert depth.ndim == 2 and np.isfinite(depth).any()
    m = pd.read_parquet(io.BytesIO(client.get_object(Bucket="faces", Key="out/manifest.parquet")["Body"].read()))
    assert sorted(m["output"]) == ["s3://faces/out/astronaut", "s3://faces/out/grace_hopper"]
    # the batch report is on S3 too, with what it needs next to it
    page = client.get_object(Bucket="faces", Key="out/index.html")["Body"].read().decode()
    assert page.count("<model-viewer") == 2 and 'data-photo="grace_hopper.jpg"' in page
    assert "out/_report/model-viewer-4.4.0-umd.min.js" in listed
    assert len([k for k in listed if k.startswith("out/_report/glb/")]) == 2


def test_rerun_publishes_exactly_the_missing_face(s3, s3_batch, prefect_server, ops_cache):
    """A run killed while publishing grace_hopper: no marker, a file missing, a staging leftover."""
    server, proxy, client = s3
    before = {k: client.get_object(Bucket="faces", Key=k)["Body"].read() for k in keys(client, "faces", "out/")}
    client.delete_object(Bucket="faces", Key=f"out/grace_hopper/{COMPLETE}")
    client.delete_object(Bucket="faces", Key="out/grace_hopper/face.glb")
    client.put_object(Bucket="faces", Key="out/_staging/grace_hopper/dead0/face.obj", Body=b"half")
    proxy.log.clear()
    facerecon(prefect_server, "run", "s3://photos/in", "s3://faces/out", "--endpoint-url", proxy.url,
              "--no-progress", *tiny_args(ops_cache))
    writes = [p for m, p, _ in proxy.log if m in ("PUT", "POST", "DELETE") and p.startswith("/faces/")]
    assert writes and not [p for p in writes if p.startswith("/faces/out/astronaut")]  # the complete face: untouched
    assert any(p.startswith("/faces/out/grace_hopper/face.glb") for p in writes)
    after = {k: client.get_object(Bucket="faces", Key=k)["Body"].read() for k in keys(client, "faces", "out/")}
    assert sorted(after) == sorted(before)  # the same objects: nothing duplicated, the leftover gone
    for k in after:
        if not k.endswith((COMPLETE, "manifest.parquet", "result.json", "index.html")):  # index: this run's
            assert after[k] == before[k], k


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_dvc_push_pull_through_the_s3_remote(s3, tmp_path):
    server, proxy, client = s3
    client.create_bucket(Bucket="dvc-remote")
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, **S3_ENV, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    repo, clone = tmp_path / "repo", tmp_path / "clone"
    repo.mkdir()
    (repo / "data").mkdir()
    payload = {"data/blob.bin": os.urandom(50_000), "data/notes.txt": b"tracked by dvc\n"}
    for rel, data in payload.items():
        (repo / rel).write_bytes(data)
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run([dvc, "init", "-q"], repo, env)
    # the project's .dvc/config (its S3 remote `storage`), pointed at this bucket/endpoint the documented way
    (repo / ".dvc" / "config").write_text((ROOT / ".dvc" / "config").read_text())
    local = [[dvc, "remote", "modify", "--local", "storage", "url", "s3://dvc-remote/cache"],
             [dvc, "remote", "modify", "--local", "storage", "endpointurl", server.url]]
    for cmd in local:
        _run(cmd, repo, env)
    _run([dvc, "add", "-q", "data"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "data"], repo, env)
    _run([dvc, "push", "-q"], repo, env)
    assert keys(client, "dvc-remote", "cache/")  # content-addressed objects are on the remote
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not (clone / "data" / "blob.bin").exists()
    for cmd in local:  # config.local is not in git: a fresh clone sets it again
        _run(cmd, clone, env)
    _run([dvc, "pull", "-q"], clone, env)
    for rel, data in payload.items():
        assert (clone / rel).read_bytes() == data, rel
