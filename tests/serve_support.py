"""A real `drdeck serve` in a subprocess, and plain HTTP and server-sent-event clients for it
(the standard library's http.client: what a script on the bridge would use)."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cli_support import REPO, drdeck_env, stop

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str  # http://127.0.0.1:PORT/
    printed: list[str]

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.base)
        return parts.hostname or "", parts.port or 80

    def get(self, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None,
            timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection(*self.host_port, timeout=timeout)
        try:
            conn.request("GET", path, headers=sent)
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)


@contextlib.contextmanager
def serving(state_dir: Path, config: Path, token: str | None = TOKEN,
            **env: str) -> Iterator[Served]:
    """`drdeck serve --listen 127.0.0.1:0`, up and answering, stopped afterwards."""
    extra = dict(env)
    if token is not None:
        extra["DRDECK_SERVE_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "--config", str(config), "serve", "--listen",
         "127.0.0.1:0"], cwd=REPO, env=drdeck_env(state_dir, **extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    printed: list[str] = []
    base = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while not printed or "ctrl+c stops it" not in printed[-1]:
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"drdeck serve stopped: {''.join(printed)}")
            printed.append(line)
            if "open http://" in line:
                base = line.split("open ", 1)[1].split("?", 1)[0].split()[0]
        assert base, printed
        served = Served(proc, base, printed)
        _wait_answering(served)
        yield served
    finally:
        stop(proc)


def _wait_answering(served: Served) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            served.get("/api/runs", token=None)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Stream:
    """What one event-stream client received: each event's id, name ("message" for a
    run's event) and object, and the end."""

    ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    error: str | None = None


def read_events(served: Served, run_id: str, token: str = TOKEN,
                timeout: float = 120) -> Stream:
    """Follow /api/runs/<id>/events until its `end` event, as a script would. A run's
    events are named "message"; a notice between them has a name of its own."""
    got = Stream()
    conn = http.client.HTTPConnection(*served.host_port, timeout=timeout)
    try:
        conn.request("GET", f"/api/runs/{run_id}/events",
                     headers={"Authorization": f"Bearer {token}",
                              "Accept": "text/event-stream"})
        answer = conn.getresponse()
        if answer.status != 200:
            got.error = f"HTTP {answer.status}: {answer.read()!r}"
            return got
        name, data, ident = "message", [], None
        while True:
            raw = answer.readline()
            if not raw:
                got.error = "the stream closed before its end event"
                return got
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    body = json.loads("\n".join(data))
                    if name == "end":
                        got.end = body
                        return got
                    got.events.append(body)
                    got.names.append(name)
                    got.ids.append(int(ident) if ident is not None else -1)
                name, data, ident = "message", [], None
            elif line.startswith(":"):
                continue  # a ping
            else:
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "data":
                    data.append(value)
                elif key == "event":
                    name = value
                elif key == "id":
                    ident = value
    except OSError as exc:
        got.error = str(exc)
        return got
    finally:
        conn.close()
