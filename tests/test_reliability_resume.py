"""SIGKILL the real CLI at several points of one face's run, re-run, and compare with an uninterrupted run.

The CLI runs as a subprocess (``python -m flows.cli run ...``, what the ``facerecon`` script calls).
Kill points are found by watching the work folder: after `align` finished, in the middle of
`ae_optimize` (its temp folder exists), after `export` finished (publish / manifest). Checked:
after every kill the cache and DST hold only complete stage folders / faces; the final run's
files equal the uninterrupted run's byte for byte (result.json and the publish marker carry
timings and dates, so they are left out); no stage that had finished was computed again.

The subprocesses talk to one Prefect server started for this test with its own PREFECT_HOME
(so each run does not start a temporary server, and nothing a killed run leaves in Prefect's
database reaches the user's ~/.prefect). A task run killed while it holds a `gpu` concurrency
slot never gives it back (Prefect's tag-limit leases do not expire), so FACERECON_GPU_SLOTS is
set high enough that the three kills cannot use up the limit. The reference run is in-process
with one torch thread, like the subprocesses (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from tiny import TINY

ROOT = Path(__file__).resolve().parent.parent
FACE_FILES = ("face.obj", "face.mtl", "albedo.png", "face.glb", "depth.npy", "depth.png", "normals.png",
              "render_front.png", "turntable.gif", "views.png", "result.json")
NOT_COMPARED = {"result.json", "_complete.json"}  # timings, dates


@pytest.fixture()
def env(tmp_path):
    import prefect

    home = tmp_path / "prefect_home"
    base = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    base.pop("PREFECT_API_URL", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"],
        env={**base, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() - t0 < 90, "test Prefect server did not start"
            time.sleep(0.2)
        yield {**base, "PREFECT_API_URL": url, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
               "FACERECON_GPU_SLOTS": "64"}
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def reference_run(src: Path, dst: Path, cache: Path) -> int:
    import torch

    from flows.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(["run", str(src), str(dst), "--no-progress",
                     *[a for s in TINY + [f"cache.dir={cache}"] for a in ("--set", s)]])
    finally:
        torch.set_num_threads(threads)


def start(src: Path, dst: Path, cache: Path, env: dict, log: Path) -> subprocess.Popen:
    args = [a for s in TINY + [f"cache.dir={cache}"] for a in ("--set", s)]
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(src), str(dst), "--no-progress", *args],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 240) -> bool:
    """SIGKILL the run's process group as soon as ``condition()`` holds; True if it was still running."""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if condition():
                running = proc.poll() is None
                return running
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError("kill point never reached")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def finished_stages(cache: Path) -> dict[str, tuple[int, int]]:
    """stage folder -> identity of its _done.json (inode, mtime): unchanged = not recomputed."""
    out = {}
    for done in (cache / "work").rglob("_done.json"):
        st = done.stat()
        out[done.parent.relative_to(cache / "work").as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def stage_names(stages: dict) -> set[str]:
    return {k.rsplit("/", 1)[-1].split("-", 1)[0] for k in stages}


def has(cache: Path, pattern: str) -> bool:
    return any((cache / "work").glob(pattern)) if (cache / "work").exists() else False


def assert_consistent(cache: Path, dst: Path) -> None:
    """Cache: every visible stage folder is finished. DST: the face is complete or absent."""
    work = cache / "work"
    for d in [*work.glob("*/*-*"), *work.glob("*/face*/*-*")]:  # <photo>/align-KEY, <photo>/face0/<stage>-KEY
        if d.is_dir() and not d.name.startswith("."):
            assert (d / "_done.json").is_file(), f"unfinished stage folder {d}"
    if dst.exists():
        for p in dst.iterdir():
            if p.name.startswith(".") or p.name == "_report":  # _report/: the batch page's files
                continue
            if p.is_dir():
                names = {f.name for f in p.iterdir()}
                assert set(FACE_FILES) <= names, f"incomplete face {p}: {sorted(names)}"
            elif p.name == "index.html":
                assert "</html>" in p.read_text(encoding="utf-8"), p  # written whole or not at all
            else:
                assert p.name == "manifest.parquet", p
                pd.read_parquet(p)  # readable, not half written


def test_sigkill_at_any_stage_resumes_to_identical_outputs(tmp_path, env):
    src = tmp_path / "photos"
    src.mkdir()
    im = Image.open(ROOT / "data" / "photos" / "astronaut.jpg").convert("RGB")
    im.thumbnail((320, 320))
    im.save(src / "astronaut.jpg", quality=90)
    log = tmp_path / "runs.log"

    ref_dst, ref_cache = tmp_path / "ref_out", tmp_path / "ref_cache"
    assert reference_run(src, ref_dst, ref_cache) == 0

    dst, cache = tmp_path / "out", tmp_path / "cache"
    kill_points = [  # (label, condition on the cache given the run's pid)
        ("after align", lambda pid: has(cache, "*/align-*/_done.json")),
        ("inside ae_optimize", lambda pid: has(cache, f"*/face0/.ae_optimize-*.{pid}.*")),  # this run's temp dir
        ("after export", lambda pid: has(cache, "*/face0/export-*/_done.json")),
    ]
    history = []
    for label, condition in kill_points:
        proc = start(src, dst, cache, env, log)
        was_running = kill_when(proc, lambda c=condition, pid=proc.pid: c(pid))
        assert_consistent(cache, dst)
        history.append((label, was_running, finished_stages(cache)))
    for label, running, snap in history:  # shown with -s: what each kill interrupted
        print(f"kill {label}: run still going={running}, finished stages={sorted(stage_names(snap))}")
    for (label, running, _), must in zip(history, (True, True, False), strict=True):
        assert running or not must, f"the run ended before the kill point '{label}'"
    done_sets = [stage_names(h[2]) for h in history]
    assert done_sets[0] < done_sets[1] < done_sets[2], done_sets  # each kill later in the pipeline
    assert "align" in done_sets[0] and "ae_optimize" not in done_sets[1] and "export" in done_sets[2], done_sets

    proc = start(src, dst, cache, env, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert_consistent(cache, dst)

    # identical to the uninterrupted run
    ref_face, face = ref_dst / "astronaut", dst / "astronaut"
    names = sorted(p.name for p in ref_face.iterdir())
    assert names == sorted(p.name for p in face.iterdir())
    for name in set(names) - NOT_COMPARED:
        assert (face / name).read_bytes() == (ref_face / name).read_bytes(), name

    # nothing finished before was computed again
    before_final = history[-1][2]
    after = finished_stages(cache)
    for stage_dir, ident in before_final.items():
        assert after[stage_dir] == ident, f"{stage_dir} was recomputed"
    for _, _, snapshot in history:
        for stage_dir, ident in snapshot.items():
            assert after.get(stage_dir) == ident, f"{stage_dir} was recomputed"
    m = pd.read_parquet(dst / "manifest.parquet")
    assert list(m["status"]) == ["ok"]
    rerun = {s for s in m["stages_run"][0].split(",") if s}
    assert not rerun & stage_names(before_final), rerun

    # no leftovers of the killed runs: their temp folders were swept when the stage ran again
    leftovers = [p for p in [*cache.rglob(".*"), *dst.rglob(".*")] if p.name.startswith(".")]
    assert not leftovers, leftovers
