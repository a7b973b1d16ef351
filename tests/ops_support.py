"""Real servers for the operations tests: moto's S3 on 127.0.0.1, a fault-injecting HTTP proxy
in front of it, and a Prefect server subprocess. Nothing here mocks boto3 or Prefect."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from tiny import TINY

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "data" / "photos"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_bytes(name: str, size: int = 320) -> bytes:
    import io

    im = Image.open(PHOTOS / name).convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tiny_overrides(cache: Path) -> tuple[str, ...]:
    return (*TINY, f"cache.dir={cache}")


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.time() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.3)


class MotoS3:
    """moto's standalone server (the `moto_server` program) on a free port, with AWS test creds."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.url}/moto-api/", 30)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class FaultProxy:
    """An HTTP proxy to ``upstream`` that answers 503 SlowDown instead of forwarding when told to:
    the next ``fail_next`` requests, every ``fail_every``-th request, or every request whose
    "METHOD path" matches ``fail_pattern``. Every request is logged as (method, path, status)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.fail_next = 0
        self.fail_every = 0
        self.fail_pattern: str | None = None
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.count = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                status = proxy._forward_or_fail(self, body)
                with proxy.lock:
                    proxy.log.append((self.command, self.path, status))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _should_fail(self, method: str, path: str) -> bool:
        with self.lock:
            self.count += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            if self.fail_every and self.count % self.fail_every == 0:
                return True
            return bool(self.fail_pattern and re.search(self.fail_pattern, f"{method} {path}"))

    def _forward_or_fail(self, h: BaseHTTPRequestHandler, body: bytes) -> int:
        if self._should_fail(h.command, h.path):
            err = b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            h.send_response(503)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(err)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(err)
            return 503
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        headers["Content-Length"] = str(len(body))
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        conn.close()
        return resp.status

    def failures(self) -> int:
        return sum(s == 503 for _, _, s in self.log)

    def stop(self) -> None:
        self.server.shutdown()


class PrefectServer:
    """`prefect server start` on 127.0.0.1:<free port> with its own home (database) folder."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
        env.pop("PREFECT_API_URL", None)
        exe = Path(sys.executable).parent / "prefect"
        self.log = home / "server.log"
        self.proc = subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.api_url}/health", 120)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- session fixtures (registered in tests/conftest.py): each server starts once per test session ------------
FACERECON = str(Path(sys.executable).parent / "facerecon")


@pytest.fixture(scope="session")
def moto_s3():
    """(server, proxy, client): moto on 127.0.0.1, a fault proxy in front, AWS test credentials in os.environ."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = MotoS3()
    proxy = FaultProxy(server.url)
    client = server.client()
    for bucket in ("photos", "faces", "unit"):
        client.create_bucket(Bucket=bucket)
    yield server, proxy, client
    proxy.stop()
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    srv = PrefectServer(tmp_path_factory.mktemp("prefect-home"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def ops_cache(tmp_path_factory) -> Path:
    """One stage cache for the ops tests: the same tiny photos are computed once per session."""
    return tmp_path_factory.mktemp("ops-cache")


def cli_env(server: PrefectServer) -> dict:
    return {**os.environ, **S3_ENV, "PREFECT_API_URL": server.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "OMP_NUM_THREADS": "1", "FACERECON_GPU_SLOTS": "2"}


def tiny_args(cache: Path) -> list[str]:
    out = []
    for s in tiny_overrides(cache):
        out += ["--set", s]
    return out


def facerecon(server: PrefectServer, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The console script, run as a user runs it, against the test's Prefect server."""
    proc = subprocess.run([FACERECON, *args], env=cli_env(server), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def s3_batch(moto_s3, prefect_server, ops_cache):
    """`facerecon run s3://photos/in s3://faces/out` against the Prefect server while every 20th S3
    request is a 503. Returns (injected 503 count, seconds)."""
    server, proxy, client = moto_s3
    for name in ("astronaut.jpg", "grace_hopper.jpg"):
        client.put_object(Bucket="photos", Key=f"in/{name}", Body=photo_bytes(name))
    proxy.fail_every, before, t0 = 20, proxy.failures(), time.time()
    try:
        facerecon(prefect_server, "run", "s3://photos/in", "s3://faces/out", "--endpoint-url", proxy.url,
                  "--no-progress", *tiny_args(ops_cache))
    finally:
        proxy.fail_every = 0
    return proxy.failures() - before, time.time() - t0
