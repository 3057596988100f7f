"""Debian's Chromium, headless, driven through its DevTools protocol (a WebSocket): open a
page, read it with JavaScript, take screenshots. No driver of its own to install."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cli_support import REPO, stop

ARTEFACTS = Path(os.environ.get("DRDECK_TEST_ARTEFACTS", REPO / "test-artefacts"))
# the flags a closed network needs: no background connections, no updates, no sync
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,900", "--remote-debugging-port=0"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, spoken to over its DevTools WebSocket."""

    def __init__(self, socket: Any):
        self._socket = socket
        self._next = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=30))
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def go(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def value(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait(self, expression: str, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.value(expression)
            if found:
                return found
            time.sleep(0.05)
        shown = self.value("document.body ? document.body.innerText : ''")
        raise AssertionError(f"the page never showed {what}; it shows:\n{shown}")

    def screenshot(self, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / name
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def browser() -> Iterator[Callable[[], Page]]:
    """A headless Chromium with an empty profile; yields a function opening a new tab."""
    from websockets.sync.client import connect

    program = chromium_path()
    assert program, "chromium is not installed (make test installs it)"
    profile = tempfile.mkdtemp(prefix="drdeck-chromium-")
    proc = subprocess.Popen([program, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sockets = contextlib.ExitStack()
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"chromium stopped with {proc.returncode}")
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(found[1]) if found else None
        assert port, "chromium never said where DevTools listens"
        # read on, or a chatty browser fills the pipe and stops
        threading.Thread(target=proc.stderr.read, daemon=True).start()

        def new_page() -> Page:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank",
                                             method="PUT")
            with urllib.request.urlopen(request, timeout=10) as answer:
                target = json.load(answer)
            page = Page(sockets.enter_context(connect(target["webSocketDebuggerUrl"],
                                                      max_size=None)))
            page.call("Page.enable")
            return page

        yield new_page
    finally:
        sockets.close()
        stop(proc)
        shutil.rmtree(profile, ignore_errors=True)
