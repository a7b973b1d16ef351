"""Against a real `prefect server start` on 127.0.0.1: the CLI runs there when PREFECT_API_URL is set
(flow run, stage task runs tagged `gpu`, artifacts and the `gpu` limit read back with the Prefect
client), `--workers 2` (Dask) gives the same faces as a sequential run, and `facerecon serve --cron`
registers a scheduled deployment and serves it. The batch read back is the S3 one (conftest's s3_batch)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from ops_support import FACERECON, cli_env, facerecon, photo_bytes, tiny_args

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parent.parent


def client(server):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(server.api_url)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    for name in ("astronaut.jpg", "grace_hopper.jpg"):
        (src / name).write_bytes(photo_bytes(name))
    return src


@pytest.fixture(scope="module")
def sequential(moto_s3, s3_batch, tmp_path_factory):
    """The faces of the sequential S3 batch, downloaded."""
    _, _, s3 = moto_s3
    out = tmp_path_factory.mktemp("seq-out")
    for face in ("astronaut", "grace_hopper"):
        (out / face).mkdir()
        for name in ("depth.npy", "face.obj"):
            (out / face / name).write_bytes(s3.get_object(Bucket="faces", Key=f"out/{face}/{name}")["Body"].read())
    return out


def test_batch_on_the_server_reads_back(prefect_server, s3_batch):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    with client(prefect_server) as c:
        runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["reconstruct-batch"])))
        run = min(runs, key=lambda r: r.start_time)  # the first: the batch that computed
        assert run.state.is_completed() and run.parameters["src"] == "s3://photos/in"
        tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        names = {t.name for t in tasks}
        assert {"align", "pose_sweep", "ae_optimize", "export"} <= names
        assert any(n.startswith("publish") for n in names) and any(n.startswith("process_photo") for n in names)
        ae = [t for t in tasks if t.name == "ae_optimize"]
        assert len(ae) == 2 and all("gpu" in t.tags for t in ae)
        assert all("gpu" not in t.tags for t in tasks if t.name in ("align", "combine", "export"))
        arts = c.read_artifacts()
        by_key = {a.key: a for a in arts if a.flow_run_id == run.id}
        assert {"faces", "batch-summary"} <= set(by_key)
        assert "render_front.png" in by_key["batch-summary"].data and "2 faces reconstructed" in \
            by_key["batch-summary"].data
        assert c.read_concurrency_limit_by_tag("gpu").concurrency_limit == 2  # created at startup


def test_two_dask_workers_give_the_same_faces(prefect_server, photos, sequential, tmp_path):
    dst = tmp_path / "out"
    t0 = time.time()
    facerecon(prefect_server, "run", str(photos), str(dst), "--no-progress", "--workers", "2",
              *tiny_args(tmp_path / "cache"))
    print(f"--workers 2 run: {time.time() - t0:.1f} s")
    for face in ("astronaut", "grace_hopper"):
        a, b = np.load(sequential / face / "depth.npy"), np.load(dst / face / "depth.npy")
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        va = [line for line in (sequential / face / "face.obj").read_text().splitlines() if line.startswith("v ")]
        vb = [line for line in (dst / face / "face.obj").read_text().splitlines() if line.startswith("v ")]
        assert len(va) == len(vb) > 100
        np.testing.assert_allclose(np.array([v.split()[1:] for v in va], float),
                                   np.array([v.split()[1:] for v in vb], float), atol=1e-4)


def test_serve_registers_a_cron_deployment(prefect_server, photos, tmp_path, ops_cache):
    """`facerecon serve --cron` registers the deployment with its schedule and polls for runs
    (a triggered run executing it end to end is checked by hand: README, Operations)."""
    from flows.serve import FLOW_NAME

    dst, log_path = tmp_path / "served", tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([FACERECON, "serve", str(photos), str(dst), "--cron", "*/30 * * * *", "--name",
                                 "ops-test", *tiny_args(ops_cache)], env=cli_env(prefect_server), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline, dep = time.time() + 120, None
        with client(prefect_server) as c:
            while time.time() < deadline:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    dep = c.read_deployment_by_name(f"{FLOW_NAME}/ops-test")
                    if dep.status is not None and dep.status.value == "READY":  # the runner has polled
                        break
                except Exception:  # noqa: BLE001 - not registered yet
                    pass
                time.sleep(1)
        assert dep is not None, log_path.read_text()[-3000:]
        assert dep.status.value == "READY"
        assert [s.schedule.cron for s in dep.schedules] == ["*/30 * * * *"] and dep.schedules[0].active
        assert dep.parameters["src"] == str(photos) and dep.parameters["dst"] == str(dst)
        assert dep.entrypoint == "flows.serve.scheduled_batch"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prefect_yaml_deploys_to_a_process_work_pool(prefect_server):
    prefect = str(Path(FACERECON).parent / "prefect")
    env = cli_env(prefect_server)
    for cmd in ([prefect, "work-pool", "create", "facerecon-process", "--type", "process"],
                [prefect, "--no-prompt", "deploy", "--name", "batch"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from flows.serve import FLOW_NAME

    with client(prefect_server) as c:
        dep = c.read_deployment_by_name(f"{FLOW_NAME}/batch")
    assert dep.work_pool_name == "facerecon-process" and dep.entrypoint == "flows/serve.py:scheduled_batch"
    assert [s.schedule.cron for s in dep.schedules] == ["*/30 * * * *"]


def test_the_ui_on_another_port_calls_its_own_api(tmp_path, monkeypatch):
    """`facerecon ui --port N`: the pages the browser loads must call the API on N, not Prefect's 4200."""
    import json
    import urllib.request

    from ops_support import free_port

    from flows.server import start_server, stop_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    port = free_port()
    proc, url = start_server(port=port, log_file=tmp_path / "server.log")
    try:
        settings = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=30))
    finally:
        stop_server(proc)
    assert url == f"http://127.0.0.1:{port}/api"
    assert settings["api_url"] == url
