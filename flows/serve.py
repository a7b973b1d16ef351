"""`facerecon serve SRC DST --cron "*/30 * * * *"`: the batch flow on a schedule, new photos only.

``scheduled_batch`` is the served flow: JSON-able parameters (a deployment stores them), params
loaded and checked per run, and the batch run incrementally (flows/incremental.py), so a run
with no new or changed photo does no work and says so. ``serve`` registers it as a deployment
with the cron schedule on the Prefect server (PREFECT_API_URL, or a local one it starts) and
runs the scheduled runs in this process until stopped; at most one run at a time, so two runs
never race on DST's state. prefect.yaml holds the same flow as a work-pool deployment.
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger

FLOW_NAME = "facerecon-scheduled-batch"


@flow(name=FLOW_NAME, log_prints=False)
def scheduled_batch(src: str, dst: str, params_file: str | None = None, overrides: list[str] | None = None,
                    endpoint_url: str | None = None, workers: int = 1, dask_address: str | None = None,
                    include_hidden: bool = False) -> dict:
    """One scheduled iteration: photos new or changed since the last successful run → DST."""
    from flows.incremental import describe
    from flows.reconstruct import run_batch

    summary = run_batch(src, dst, params_file, tuple(overrides or ()), workers=workers, dask_address=dask_address,
                        endpoint_url=endpoint_url, incremental=True, include_hidden=include_hidden)
    get_run_logger().info("%s; %d faces ok, %d failed", describe(summary.get("incremental", {})),
                          summary["faces_ok"], summary["failed"])
    return summary


def validate(src: str, dst: str, params_file: str | None, overrides: tuple[str, ...],
             endpoint_url: str | None) -> None:
    """Everything a user can get wrong, checked once before serving rather than at 3 a.m."""
    from facerecon.config import load_params
    from facerecon.io.storage import open_storage
    from facerecon.stages.runtime import check_backends_ready

    check_backends_ready(load_params(params_file, overrides))
    open_storage(src, endpoint_url=endpoint_url)
    open_storage(dst, endpoint_url=endpoint_url, create=True)


def check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    from facerecon.errors import ConfigError

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ConfigError(f"--cron {cron!r}: not a cron expression (e.g. \"*/30 * * * *\")") from None


def serve(src: str, dst: str, cron: str, *, name: str = "facerecon", params_file: str | None = None,
          overrides: tuple[str, ...] = (), endpoint_url: str | None = None, workers: int = 1,
          dask_address: str | None = None, port: int = 4200, include_hidden: bool = False) -> None:
    """Register the deployment with its cron schedule and serve it until interrupted."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.types.entrypoint import EntrypointType

    from flows.server import api_url, ensure_gpu_limit, start_server, stop_server

    check_cron(cron)
    validate(src, dst, params_file, overrides, endpoint_url)
    proc, url = (None, api_url())
    if url is None:  # ephemeral mode has no scheduler: run a local server for the schedule (and the UI)
        import signal
        import sys

        proc, url = start_server(port=port)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop it on `kill` too
        print(f"started a Prefect server for the schedule: UI http://127.0.0.1:{port}  (API {url})", flush=True)
    params = {"src": src, "dst": dst, "params_file": os.path.abspath(params_file) if params_file else None,
              "overrides": list(overrides), "endpoint_url": endpoint_url, "workers": workers,
              "dask_address": dask_address, "include_hidden": include_hidden}
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            os.environ["PREFECT_API_URL"] = url  # for the flow-run processes the runner starts
            ensure_gpu_limit()
            scheduled_batch.serve(name=name, cron=cron, parameters=params, limit=1,
                                  description=f"facerecon: new/changed photos {src} -> {dst}",
                                  tags=["facerecon"], entrypoint_type=EntrypointType.MODULE_PATH)
    finally:
        if proc is not None:
            stop_server(proc)
