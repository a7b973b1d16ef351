"""Headless Chromium driven over the DevTools protocol (CDP), for tests that look at pages.

A tiny client on purpose (the ``websockets`` package Prefect already brings): it opens a URL,
collects console errors, uncaught exceptions and failed loads as they happen, evaluates
JavaScript and takes screenshots. Chromium comes from Debian's ``chromium`` package
(scripts/setup.sh installs it when apt works); without it the tests skip saying so.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         # WebGL on the CPU (SwiftShader): the 3D viewer must draw on machines without a GPU
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def chromium_binary() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no headless Chromium: `apt-get install -y chromium` was not possible on this machine "
                    "(scripts/setup.sh tries it; or set CHROMIUM=/path/to/chrome)")
    return binary


class Browser:
    """One Chromium process with one page; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
        self.binary, self.width, self.height = binary, width, height
        self.errors: list[str] = []
        self._id = 0

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="facerecon-chromium-")
        self._log = open(Path(self._profile) / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self._profile}",
                                      "--remote-debugging-port=0", f"--window-size={self.width},{self.height}",
                                      "about:blank"], stdout=self._log, stderr=subprocess.STDOUT)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start: {(Path(self._profile) / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import urllib.request

        for _ in range(100):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
                page = next(p for p in pages if p.get("type") == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.1)
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=2**28, open_timeout=30)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(method)
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- protocol -------------------------------------------------------------------------------
    def send(self, method: str, timeout: float = 60, **params):
        self._id += 1
        my_id = self._id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console." + p["type"] + ": " +
                               " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}".strip())

    # -- conveniences ---------------------------------------------------------------------------
    def open(self, url: str, timeout: float = 60) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def eval(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.25)
        text = self.eval("document.body ? document.body.innerText : ''") or ""
        raise TimeoutError(f"waited {timeout:.0f} s for {expression} on {self.eval('location.href')}; "
                           f"the page says: {' '.join(text.split())[:1500]!r}")

    def screenshot(self, clip: dict | None = None, full_page: bool = False):
        """PNG bytes; ``clip`` = {x, y, width, height} in CSS pixels, ``full_page`` the whole document."""
        params: dict = {"format": "png"}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            clip = {"x": 0, "y": 0, "width": w, "height": h}
            params["captureBeyondViewport"] = True
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    def element_clip(self, selector: str) -> dict:
        r = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                      " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return {x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width,"
                      " height: r.height}; })()")
        assert r, f"no element {selector}"
        return r


def pixel_std(png: bytes) -> float:
    """Standard deviation of the grey values: ~0 for a blank (single-colour) area."""
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64).std())
