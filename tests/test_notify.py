"""Webhook notifications against a real HTTP server on 127.0.0.1: a failed run, an RPO
breach, an overdue drill. The URL is a secret: it never shows in any output."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tui.config import ConfigInvalid, load_config_text
from tui.notify import RunNotifier, send, shown_url
from tui.storage import LocalStore

from cli_support import REPO, drdeck
from engine_support import make_runner
from repo_support import fake_snapshot

TOKEN = "Xq7TOKENs3cr3t9"  # the secret part of every webhook URL here

FAILING = """
[runbook]
name = "nightly-restore"
title = "Restore last night's snapshot"
scenario = "snapshot"
rto = "1h"

[params.cluster]
type = "string"
default = "prod"

[[steps]]
id = "fetch"
title = "Fetch the snapshot"
action = "shell"
with = { command = "echo fetching; echo 'An error occurred (NoSuchKey) <the key>' >&2; exit 3" }

[[steps]]
id = "restore"
title = "Restore it"
action = "shell"
with = { command = "echo restoring" }
"""

SUCCEEDING = """
[runbook]
name = "fine"
title = "Nothing goes wrong"

[[steps]]
id = "one"
title = "One"
action = "shell"
with = { command = "echo fine" }
"""


class Hook:
    """A webhook receiver: every POST's path and JSON body, answered with `answer`."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer = 200
        self.delay = 0.0
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                time.sleep(hook.delay)
                hook.received.append({"path": self.path, "body": body,
                                      "type": self.headers.get("Content-Type")})
                hook.arrived.set()
                self.send_response(hook.answer)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str = "main") -> str:
        return f"http://127.0.0.1:{self.port}/services/{name}/{TOKEN}?token={TOKEN}"

    def bodies(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received if event is None or r["body"]["event"] == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/gone/{TOKEN}"


def config_with(*webhooks: str, extra: str = "") -> Any:
    return load_config_text("[notify]\nwebhooks = [\n" + "".join(f"  {w},\n" for w in webhooks)
                            + "]\n" + extra)


# --- runs ---------------------------------------------------------------------------------


def run_with_notifier(text: str, tmp_path: Path, config: Any, **kwargs: Any):
    runner, _ = make_runner(text, tmp_path / "work", config=config)
    reported: list[str] = []
    notifier = RunNotifier(runner, report=reported.append, **kwargs)
    runner.subscribe(notifier)
    result = asyncio.run(runner.run())
    notifier.wait(10)
    return runner, result, notifier, reported


def test_a_failed_run_posts_run_failed(hook: Hook, tmp_path: Path) -> None:
    config = config_with(f'{{ url = "{hook.url()}", events = ["run_failed"] }}')
    runner, result, notifier, reported = run_with_notifier(FAILING, tmp_path, config)
    assert result.status == "failed"
    assert reported == [] and notifier.delivered == 1
    [received] = hook.received
    assert received["path"].startswith("/services/main/") and received["type"] == \
        "application/json"
    body = received["body"]
    assert body["event"] == "run_failed" and body["source"] == "drdeck"
    assert (body["run_id"], body["runbook"], body["status"], body["mode"]) == (
        runner.run_id, "nightly-restore", "failed", "drill")
    assert body["failed_step"] == "fetch" and body["cluster"] == "prod"
    assert body["error"] == "command exited with code 3"
    assert body["rto_s"] is None and body["rto_target_s"] == 3600
    text = body["text"]  # Slack's field: one readable line, <> escaped as Slack wants
    assert text.startswith("drdeck: nightly-restore on prod FAILED (drill, run ")
    assert runner.run_id in text and "at step fetch" in text
    assert text.endswith("exited with code 3. Not restored (target 1h).")


def test_text_is_escaped_for_slack(hook: Hook) -> None:
    config = config_with(f'{{ url = "{hook.url()}" }}')
    assert send(config, "rpo_breach", "a <b> & c", cluster="prod") == 1
    [body] = hook.bodies()
    assert body["text"] == "a &lt;b&gt; &amp; c" and body["cluster"] == "prod"


def test_a_successful_run_posts_nothing(hook: Hook, tmp_path: Path) -> None:
    config = config_with(f'{{ url = "{hook.url()}" }}')
    _, result, notifier, _ = run_with_notifier(SUCCEEDING, tmp_path, config)
    assert result.status == "succeeded" and notifier.thread is None
    assert hook.received == []


def test_an_aborted_run_posts_too(hook: Hook, tmp_path: Path) -> None:
    config = config_with(f'{{ url = "{hook.url()}" }}')
    runner, events = make_runner(FAILING.replace("exit 3", "sleep 30"), tmp_path / "w",
                                 config=config)
    notifier = RunNotifier(runner, report=lambda message: None)
    runner.subscribe(notifier)

    async def run_and_abort():
        task = asyncio.create_task(runner.run())
        while not events.of("output"):
            await asyncio.sleep(0.02)
        runner.abort("stopped by the operator")
        return await task

    result = asyncio.run(run_and_abort())
    notifier.wait(10)
    assert result.status == "aborted"
    [body] = hook.bodies()
    assert body["status"] == "aborted" and "ABORTED" in body["text"]


def test_each_webhook_gets_only_the_events_it_wants(hook: Hook, tmp_path: Path) -> None:
    config = config_with(f'{{ url = "{hook.url("failures")}", events = ["run_failed"] }}',
                         f'{{ url = "{hook.url("rpo")}", events = ["rpo_breach"] }}',
                         f'{{ url = "{hook.url("everything")}" }}')
    run_with_notifier(FAILING, tmp_path, config)
    assert sorted(r["path"].split("/")[2] for r in hook.received) == ["everything", "failures"]


def test_undeliverable_notifications_are_reported_not_raised(hook: Hook, tmp_path: Path
                                                             ) -> None:
    hook.answer = 500
    config = config_with(f'{{ url = "{closed_port_url()}" }}', f'{{ url = "{hook.url()}" }}')
    _, result, notifier, reported = run_with_notifier(FAILING, tmp_path, config)
    assert result.status == "failed" and notifier.delivered == 0
    assert len(reported) == 2
    assert "unreachable" in reported[0] and "HTTP 500" in reported[1]
    for message in reported:
        assert message.startswith("drdeck: notification run_failed not delivered: webhook "
                                  "http://127.0.0.1:")
        assert TOKEN not in message and "/services/" not in message


def test_a_slow_webhook_times_out(hook: Hook) -> None:
    hook.delay = 2.0
    reported: list[str] = []
    config = config_with(f'{{ url = "{hook.url()}" }}')
    started = time.monotonic()
    assert send(config, "rpo_breach", "late", report=reported.append, timeout=0.3) == 0
    assert time.monotonic() - started < 1.9
    assert reported and "did not answer within 0.3s" in reported[0]
    assert TOKEN not in reported[0]


def test_a_bad_url_is_refused_by_the_config_without_showing_it() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        config_with(f'{{ url = "ftp://files.example/{TOKEN}" }}')
    assert "starts with https://" in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_bad_urls_are_reported_without_showing_them(monkeypatch) -> None:
    reported: list[str] = []
    monkeypatch.setenv("HOOK_A", f"ftp://files.example/{TOKEN}")
    monkeypatch.setenv("HOOK_B", f"hooks.example.com/{TOKEN}")
    config = config_with('{ url_env = "HOOK_A" }', '{ url_env = "HOOK_B" }')
    assert send(config, "run_failed", "x", report=reported.append) == 0
    assert len(reported) == 2
    assert all(TOKEN not in message for message in reported), reported


def test_shown_url_keeps_only_scheme_and_host() -> None:
    assert shown_url(f"https://hooks.slack.com/services/T0/B0/{TOKEN}") == \
        "https://hooks.slack.com/…"
    assert shown_url(f"http://user:{TOKEN}@127.0.0.1:8080/x?k={TOKEN}") == \
        "http://127.0.0.1:8080/…"
    assert shown_url("not a url") == "<webhook>"


# --- drdeck status --notify ------------------------------------------------------------------


def status_config(tmp_path: Path, *webhooks: str) -> Path:
    repo = tmp_path / "repo"
    fake_snapshot(LocalStore(repo), "prod", "app", datetime.now(UTC) - timedelta(hours=30),
                  verified=("full", True))
    path = tmp_path / "drdeck.toml"
    path.write_text(f"""
[repositories.nearby]
type = "local"
path = "{repo}"

[clusters.prod]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app"]
rpo = "24h"

[notify]
webhooks = [{", ".join(webhooks)}]
""")
    return path


def test_status_notify_posts_rpo_breach_and_drill_overdue(hook: Hook, tmp_path: Path) -> None:
    path = status_config(tmp_path, f'{{ url = "{hook.url()}" }}')
    result = drdeck("--config", str(path), "status", "--notify", state_dir=tmp_path / "state")
    assert result.returncode == 2, result.stderr
    assert result.stderr == ""
    breach = hook.bodies("rpo_breach")
    overdue = hook.bodies("drill_overdue")
    assert len(breach) == 1 and len(overdue) == 1
    assert breach[0]["cluster"] == "prod" and breach[0]["rpo_s"] == 86400
    assert breach[0]["text"].startswith("drdeck: RPO breach on cluster prod: snapshot: "
                                        "newest snapshot of app is 1d06h old")
    assert [i["check"] for i in breach[0]["items"]] == ["snapshot"]
    assert overdue[0]["cluster"] == "prod" and "never drilled" in overdue[0]["text"]
    for text in (result.stdout, result.stderr):
        assert TOKEN not in text and "/services/" not in text


def test_status_without_notify_posts_nothing(hook: Hook, tmp_path: Path) -> None:
    path = status_config(tmp_path, f'{{ url = "{hook.url()}" }}')
    result = drdeck("--config", str(path), "status", "--json", state_dir=tmp_path / "state")
    assert result.returncode == 2
    assert hook.received == []
    assert TOKEN not in result.stdout


def test_status_notify_failure_keeps_the_exit_code(tmp_path: Path) -> None:
    path = status_config(tmp_path, f'{{ url = "{closed_port_url()}" }}')
    result = drdeck("--config", str(path), "status", "--notify", state_dir=tmp_path / "state")
    assert result.returncode == 2
    assert "notification rpo_breach not delivered: webhook http://127.0.0.1:" in result.stderr
    assert "notification drill_overdue not delivered" in result.stderr
    assert TOKEN not in result.stderr + result.stdout and "/services/" not in result.stderr


def test_status_notify_filters_by_event(hook: Hook, tmp_path: Path) -> None:
    path = status_config(tmp_path, f'{{ url = "{hook.url()}", events = ["drill_overdue"] }}')
    drdeck("--config", str(path), "status", "--notify", state_dir=tmp_path / "state")
    assert [b["event"] for b in hook.bodies()] == ["drill_overdue"]


# --- a headless run through the CLI (once tui/commands/run.py subscribes RunNotifier) ------

WIRED = "RunNotifier" in (REPO / "tui" / "commands" / "run.py").read_text()


@pytest.mark.skipif(not WIRED, reason="RunNotifier is not yet subscribed in `drdeck run`")
def test_a_failing_headless_run_notifies(hook: Hook, tmp_path: Path) -> None:
    book = tmp_path / "nightly-restore.toml"
    book.write_text(FAILING)
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[notify]\nwebhooks = [{{ url = "{hook.url()}" }}]\n')
    result = drdeck("--config", str(config), "run", str(book), "--headless",
                    state_dir=tmp_path / "state")
    assert result.returncode == 1
    [body] = hook.bodies("run_failed")
    assert body["runbook"] == "nightly-restore" and body["failed_step"] == "fetch"
    assert TOKEN not in result.stdout + result.stderr


# --- a webhook that answers a byte at a time ------------------------------------------------


class Trickle:
    """A server that reads the request, then answers one byte every `every` seconds: each
    read succeeds well within a socket timeout, and the answer never ends."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/slow/{TOKEN}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                while not self.stop.is_set():
                    conn.sendall(b"H")
                    time.sleep(self.every)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    yield server
    server.close()


def test_a_webhook_answering_a_byte_at_a_time_is_given_up_at_its_deadline(
        trickle: Trickle, hook: Hook) -> None:
    reported: list[str] = []
    config = config_with(f'{{ url = "{trickle.url()}" }}', f'{{ url = "{hook.url()}" }}')
    started = time.monotonic()
    assert send(config, "rpo_breach", "late", report=reported.append, timeout=1.5) == 1
    took = time.monotonic() - started
    assert 1.4 < took < 3.0, took
    assert trickle.requests == 1
    assert reported == [f"drdeck: notification rpo_breach not delivered: webhook "
                        f"http://127.0.0.1:{trickle.port}/… did not answer within 1.5s"]
    # the other webhook got it, without waiting for the slow one
    assert [b["text"] for b in hook.bodies("rpo_breach")] == ["late"]


def test_a_headless_run_exits_despite_a_webhook_that_never_finishes(
        trickle: Trickle, tmp_path: Path) -> None:
    from tui.notify import EXIT_GRACE_S, TIMEOUT_S

    book = tmp_path / "nightly-restore.toml"
    book.write_text(FAILING)
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[notify]\nwebhooks = [{{ url = "{trickle.url()}" }}]\n')
    started = time.monotonic()
    result = drdeck("--config", str(config), "run", str(book), "--headless",
                    state_dir=tmp_path / "state", timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < TIMEOUT_S + EXIT_GRACE_S + 10, took
    assert "notification run_failed not delivered: webhook http://127.0.0.1:" in result.stderr
    assert f"did not answer within {TIMEOUT_S:g}s" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_status_notify_exits_despite_a_webhook_that_never_finishes(
        trickle: Trickle, tmp_path: Path) -> None:
    from tui.notify import TIMEOUT_S

    path = status_config(tmp_path, f'{{ url = "{trickle.url()}" }}')
    started = time.monotonic()
    result = drdeck("--config", str(path), "status", "--notify", state_dir=tmp_path / "state",
                    timeout=60)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 2 * TIMEOUT_S + 10  # rpo_breach, then drill_overdue
    assert result.stderr.count("did not answer within") == 2, result.stderr
    assert TOKEN not in result.stdout + result.stderr


QUITS_AT_ONCE = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tui.config import load_config_text
from tui.notify import RunNotifier
from engine_support import make_runner

config = load_config_text('[notify]\\nwebhooks = [{{ url = "{url}" }}]\\n')
runner, _ = make_runner({book!r}, Path({work!r}), config=config)
runner.subscribe(RunNotifier(runner, report=print))  # as the app does: nobody waits
asyncio.run(runner.run())
"""


@pytest.mark.parametrize("slow", ["one second", "never ends"])
def test_a_process_that_quits_right_after_a_failure_notifies_within_a_bound(
        hook: Hook, trickle: Trickle, tmp_path: Path, slow: str) -> None:
    import subprocess
    import sys

    from tui.notify import EXIT_GRACE_S, TIMEOUT_S

    hook.delay = 1.0
    url = hook.url() if slow == "one second" else trickle.url()
    script = QUITS_AT_ONCE.format(tests=str(REPO / "tests"), url=url, book=FAILING,
                                  work=str(tmp_path / "work"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    if slow == "one second":
        assert [b["runbook"] for b in hook.bodies("run_failed")] == ["nightly-restore"]
        assert result.stdout == ""
    else:
        assert took < TIMEOUT_S + EXIT_GRACE_S + 8, took
        assert "did not answer within" in result.stdout
