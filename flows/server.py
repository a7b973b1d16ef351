"""A local Prefect server for the UI and schedules, and the `gpu` concurrency limit on it.

`facerecon ui` runs ``prefect server start`` on 127.0.0.1:4200 (the UI and its API at /api);
the CLI then runs against it whenever PREFECT_API_URL points there. Without PREFECT_API_URL
flows use Prefect's ephemeral mode, which has no UI and no scheduler.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from facerecon.errors import ConfigError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4200
GPU_TAG = "gpu"


def api_url() -> str | None:
    """The configured Prefect API (env or profile), None in ephemeral mode."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def gpu_slots() -> int:
    """How many `gpu`-tagged tasks may run at once: FACERECON_GPU_SLOTS, else one per CUDA device,
    else (a CPU-only machine, where those stages run on the CPU cores) one per core."""
    env = os.environ.get("FACERECON_GPU_SLOTS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ConfigError(f"FACERECON_GPU_SLOTS={env!r}: expected a whole number") from None
        if n < 1:
            raise ConfigError("FACERECON_GPU_SLOTS must be at least 1")
        return n
    try:
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable torch.cuda: count cores
        pass
    return max(1, os.cpu_count() or 1)


def ensure_gpu_limit(slots: int | None = None) -> int | None:
    """Create the `gpu` tag concurrency limit on the server if it has none (a limit someone set
    by hand is kept). Returns the limit in force, or None when no server is configured."""
    if api_url() is None:
        return None
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            try:
                return int(client.read_concurrency_limit_by_tag(GPU_TAG).concurrency_limit)
            except ObjectNotFound:
                n = slots or gpu_slots()
                client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=n)
                return n
    except httpx.TransportError as exc:
        raise ConfigError(f"PREFECT_API_URL={api_url()}: no Prefect server answers there ({exc.__class__.__name__}); "
                          "start one with `facerecon ui` or unset PREFECT_API_URL") from None


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ConfigError(f"the Prefect server exited (code {proc.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise ConfigError(f"the Prefect server at {url} did not become ready within {timeout:.0f} s")


def start_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_file: Path | None = None,
                 ui: bool = True) -> tuple[subprocess.Popen, str]:
    """Start ``prefect server start`` and wait until its API answers; returns (process, API URL)."""
    if not port_free(host, port):
        raise ConfigError(f"{host}:{port} is in use (another Prefect server?); pick one with --port, or use it: "
                          f"export PREFECT_API_URL=http://{host}:{port}/api")
    exe = Path(sys.executable).parent / "prefect"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "true" if ui else "false"}
    env.pop("PREFECT_API_URL", None)  # the server itself must not point at another API
    url = f"http://{host}:{port}/api"
    # the UI's pages call this API from the browser; unset, Prefect points them at port 4200 whatever --port says
    env["PREFECT_UI_API_URL"] = env["PREFECT_SERVER_UI_API_URL"] = url
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen([str(exe), "server", "start", "--host", host, "--port", str(port)], env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_ui(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """`facerecon ui`: the server in the foreground until Ctrl-C (or SIGTERM)."""
    import signal

    proc, url = start_server(host, port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the server too, via finally
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url}):
            slots = ensure_gpu_limit()
        print(f"Prefect UI: http://{host}:{port}   (API {url}; `gpu` concurrency limit: {slots})")
        print(f"In another shell:  export PREFECT_API_URL={url}   then facerecon run/serve use this server.")
        print("Ctrl-C stops the server.", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(proc)
