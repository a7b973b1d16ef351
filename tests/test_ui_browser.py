"""The Prefect UI of a real batch, in headless Chromium (what scripts/ui_screenshot.sh does by hand).

`facerecon ui` on a free port, one batch (a real face and a broken JPEG) through the CLI against
it, then the batch's flow-run page: the task names (`process_photo`, the stages, `publish`) and
the artifacts (`faces`, `batch-summary`) must be visible on the page. The screenshot goes to
docs/prefect_ui_flow_run.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import Browser, require_chromium
from ops_support import free_port, tiny_args, wait_http

ROOT = Path(__file__).resolve().parent.parent
FACERECON = str(Path(sys.executable).parent / "facerecon")


@pytest.mark.timeout(1200)
def test_prefect_ui_shows_the_batch_tasks_and_artifacts(tmp_path):
    binary = require_chromium()
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115
    ui = subprocess.Popen([FACERECON, "ui", "--port", str(port)], env={k: v for k, v in env.items()
                          if k != "PREFECT_API_URL"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", 180)
        src = tmp_path / "photos"
        src.mkdir()
        shutil.copy(ROOT / "data" / "photos" / "astronaut.jpg", src / "astronaut.jpg")
        (src / "broken.jpg").write_bytes((ROOT / "data" / "photos" / "astronaut.jpg").read_bytes()[:3000])
        proc = subprocess.run([FACERECON, "run", str(src), str(tmp_path / "out"), "--no-progress",
                               *tiny_args(tmp_path / "cache")], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]  # one face ok, one input failed
        run_id = subprocess.run([sys.executable, "-c", _LATEST_RUN], env=env, capture_output=True, text=True,
                                timeout=120, check=True).stdout.strip()
        url = f"http://127.0.0.1:{port}/runs/flow-run/{run_id}"
        with Browser(binary, width=1440, height=1000) as b:
            b.open(url, timeout=120)
            b.wait_for("document.body.innerText.includes('reconstruct-batch')", 120)
            click_tab(b, "Task Runs")  # the UI drops an unknown ?tab= and shows Logs
            for name in ("process_photo", "align", "ae_optimize", "export", "publish"):
                b.wait_for(f"document.body.innerText.includes({name!r})", 120)
            time.sleep(1)
            (ROOT / "docs").mkdir(exist_ok=True)
            (ROOT / "docs" / "prefect_ui_flow_run.png").write_bytes(b.screenshot())
            click_tab(b, "Artifacts")
            for key in ("faces", "batch-summary"):
                b.wait_for(f"document.body.innerText.includes({key!r})", 120)
            (ROOT / "docs" / "prefect_ui_artifacts.png").write_bytes(b.screenshot())
    finally:
        ui.terminate()
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            ui.kill()
        log.close()


def click_tab(b, label: str) -> None:
    """Click the page's tab called ``label`` (the innermost element with exactly that text)."""
    find = f"[...document.querySelectorAll('*')].find(e => e.children.length === 0 && e.textContent.trim() === {label!r})"
    b.wait_for(f"!!({find})", 120)
    b.eval(f"({find}).click()")


_LATEST_RUN = """
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

with get_client(sync_client=True) as c:
    runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["reconstruct-batch"])),
                            sort=FlowRunSort.START_TIME_DESC, limit=1)
    print(runs[0].id)
"""
