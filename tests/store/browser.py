"""A real headless Chromium driven over the DevTools protocol (aiohttp's websocket client, no extra package).

Debian's ``chromium`` (``scripts/system-deps.sh`` installs it on a fresh machine). Used by the
deal-page test: open a page, fill and submit a form, read the DOM, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1200, height: int = 1400):
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="activity-scorer-chromium-"))
        cmd = [chromium_path() or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--metrics-recording-only", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
               f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.ws_url = self._devtools_url()
        self._ids = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())

    def _devtools_url(self, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        seen = b""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            seen += line
            m = re.search(rb"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1).decode()
        self.close()
        raise RuntimeError(f"chromium did not start: {seen.decode(errors='replace')[-1500:]}")

    async def _connect(self) -> None:
        import aiohttp

        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.ws_url, max_msg_size=0)
        target = await self._send("Target.createTarget", {"url": "about:blank"})
        attached = await self._send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        await self._send("Page.enable", session=True)
        await self._send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                                  "deviceScaleFactor": 1, "mobile": False}, session=True)

    async def _send(self, method: str, params: dict | None = None, session: bool = False) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        await self.ws.send_str(json.dumps(msg))
        while True:
            reply = await asyncio.wait_for(self.ws.receive_json(), timeout=60)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def call(self, method: str, params: dict | None = None) -> dict[str, Any]:
        return self.loop.run_until_complete(self._send(method, params, session=True))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def wait_loaded(self, path_prefix: str | None = None, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.evaluate("document.readyState + ' ' + location.pathname")
            if state and state.startswith("complete") and (path_prefix is None or state.split(" ", 1)[1].startswith(path_prefix)):
                return
            time.sleep(0.1)
        raise TimeoutError(f"page did not load: {state}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        time.sleep(0.2)
        self.wait_loaded()

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if hasattr(self, "ws"):
            async def shut() -> None:
                await self.ws.close()
                await self.http.close()
            self.loop.run_until_complete(shut())
            self.loop.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
