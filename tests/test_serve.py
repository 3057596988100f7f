"""`drdeck serve`: the journal as a read-only web page and JSON API, followed live by
server-sent events. A real server in a subprocess; runs executed by separate processes;
clients over plain HTTP."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tui.config import load_config

from cli_support import drdeck, drdeck_in_background, json_events, running_id, stop
from serve_support import TOKEN, read_events, serving

LINES = 10_000
CLIENTS = 20

GATED_FLOOD = """[runbook]
name = "gated-flood"
title = "Wait for a file, then print {lines} lines"
rto = "1h"

[[steps]]
id = "gate"
title = "Wait for the go file"
action = "shell"
with = {{ command = "while [ ! -f '{go}' ]; do sleep 0.05; done; echo through the gate" }}

[[steps]]
id = "flood"
title = "Print many lines"
action = "shell"
with = {{ command = "seq 1 {lines}" }}
checks = [{{ name = "the last line", command = "echo {lines}", expect = {{ equals = {lines} }} }}]
"""


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The state directory the runs, the server and this process share, and a config."""
    config = tmp_path / "drdeck.toml"
    config.write_text("")
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state", config


def _start_run(tmp_path: Path, state: Path, config: Path, lines: int = LINES,
               *extra: str) -> tuple[subprocess.Popen[str], Path]:
    go = tmp_path / "go"
    book = tmp_path / "gated.toml"
    book.write_text(GATED_FLOOD.format(lines=lines, go=go))
    run = drdeck_in_background("--config", str(config), "run", str(book), "--headless", *extra,
                               state_dir=state, log=tmp_path / "run.log")
    return run, go


def test_every_request_needs_the_token(place: tuple[Path, Path]) -> None:
    state, config = place
    with serving(state, config) as served:
        assert any("DRDECK_SERVE_TOKEN" in line for line in served.printed)
        assert not any(TOKEN in line for line in served.printed)  # from the environment
        for path in ("/", "/runs/abc", "/page/app.js", "/api/runs", "/api/runs/abc",
                     "/api/runs/abc/events", "/no/such/thing"):
            status, headers, body = served.get(path, token=None)
            assert status == 401, path
            assert headers["www-authenticate"].startswith("Bearer")
            assert b"token" in body
            assert served.get(path, token="not-the-token-at-all-000")[0] == 401
            assert served.get(path, token=None,
                              headers={"Authorization": "Basic " + TOKEN})[0] == 401
        assert served.get("/api/runs")[0] == 200
        assert served.get("/api/runs")[2] == b"[]"
        status, headers, _ = served.get("/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"]
        # a browser: the printed address carries the token once; the answer keeps it as a
        # cookie and sends it on without it
        status, headers, _ = served.get(f"/runs/abc?token={TOKEN}", token=None)
        assert status == 303 and headers["location"] == "/runs/abc"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = cookie.split(";", 1)[0]
        assert served.get("/api/runs", token=None, headers={"Cookie": jar})[0] == 200
        assert served.get("/api/runs", token=None,
                          headers={"Cookie": "drdeck_serve=wrong"})[0] == 401
        assert served.get("/api/runs?token=wrong", token=None)[0] == 401


def test_a_token_is_made_and_printed_when_none_is_given(place: tuple[Path, Path]) -> None:
    state, config = place
    with serving(state, config, token=None) as served:
        shown = "".join(served.printed)
        token = shown.split("?token=", 1)[1].split()[0]
        assert len(token) >= 24 and f"Bearer {token}" in shown
        assert served.get("/api/runs", token=token)[0] == 200
        assert served.get("/api/runs", token=None)[0] == 401


def test_bad_listen_addresses_and_tokens_are_clear_errors(place: tuple[Path, Path]) -> None:
    state, config = place
    for listen in ("8765", "host:port", "127.0.0.1:70000"):
        proc = drdeck("--config", str(config), "serve", "--listen", listen, state_dir=state)
        assert proc.returncode == 2 and "HOST:PORT" in proc.stderr, proc.stderr
    proc = drdeck("--config", str(config), "serve", "--listen", "203.0.113.7:8765",
                  state_dir=state)  # an address this machine does not have
    assert proc.returncode == 2 and "cannot listen on 203.0.113.7:8765" in proc.stderr
    proc = drdeck("--config", str(config), "serve", state_dir=state,
                  DRDECK_SERVE_TOKEN="short")
    assert proc.returncode == 2 and "at least 16" in proc.stderr
    assert "short" not in proc.stdout
    with serving(state, config) as served:
        _, port = served.host_port
        proc = drdeck("--config", str(config), "serve", "--listen", f"127.0.0.1:{port}",
                      state_dir=state)
        assert proc.returncode == 2 and "cannot listen on 127.0.0.1" in proc.stderr
        assert "in use" in proc.stderr


def test_the_api_lists_runs_and_gives_one(tmp_path: Path, place: tuple[Path, Path]) -> None:
    state, config = place
    run, go = _start_run(tmp_path, state, config, 3)
    go.touch()
    assert run.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()
    with serving(state, config) as served:
        runs = served.json("/api/runs")
        assert [(r["runbook"], r["status"]) for r in runs] == [("gated-flood", "succeeded")]
        run_id = runs[0]["id"]
        one = served.json(f"/api/runs/{run_id}")
        assert one["run"]["id"] == run_id and one["run"]["status"] == "succeeded"
        assert [(s["id"], s["status"]) for s in one["steps"]] == [
            ("gate", "succeeded"), ("flood", "succeeded")]
        assert one["steps"][1]["checks"][0]["name"] == "the last line"
        assert one["run"]["forecast"]["steps"][0]["basis"] == "no history"
        assert served.json(f"/api/runs/{run_id[:6]}")["run"]["id"] == run_id  # a prefix
        status, _, body = served.get("/api/runs/feedface")
        assert status == 404 and "no run 'feedface'" in json.loads(body)["error"]
        assert served.get("/api/runs/feedface/events")[0] == 404
        ended = read_events(served, run_id)  # an ended run: its events, then the end
        assert ended.end == {"status": "succeeded", "error": None}
        assert [e["event"] for e in ended.events][:2] == ["run_started", "step_started"]
        assert ended.events[-1]["event"] == "run_finished"


def test_the_event_stream_carries_what_json_prints(tmp_path: Path,
                                                   place: tuple[Path, Path]) -> None:
    """The same objects, in the same order, as `drdeck run --json` printed for the run."""
    state, config = place
    run, go = _start_run(tmp_path, state, config, 50, "--json")
    go.touch()
    assert run.wait(timeout=60) == 0
    printed = (tmp_path / "run.log").read_text()
    with serving(state, config) as served:
        run_id = served.json("/api/runs")[0]["id"]
        stream = read_events(served, run_id)
    assert stream.events == json_events(printed)
    assert stream.ids == list(range(len(stream.events)))


def test_twenty_viewers_follow_ten_thousand_lines_and_none_misses_one(
        tmp_path: Path, place: tuple[Path, Path]) -> None:
    state, config = place
    run, go = _start_run(tmp_path, state, config)
    try:
        run_id = running_id(load_config(config))
        with serving(state, config) as served:
            streams = [None] * CLIENTS

            def viewer(index: int) -> None:
                streams[index] = read_events(served, run_id)

            threads = [threading.Thread(target=viewer, args=(i,)) for i in range(CLIENTS)]
            for thread in threads[:CLIENTS // 2]:  # before the flood
                thread.start()
            go.touch()
            for thread in threads[CLIENTS // 2:]:  # while it comes, or after: replayed
                thread.start()
            for thread in threads:
                thread.join(timeout=180)
            assert run.wait(timeout=60) == 0
            stored = served.json(f"/api/runs/{run_id}")
        from tui.journal.store import open_journal

        journal = open_journal(load_config(config))
        try:
            total = journal.last_event(run_id) + 1
        finally:
            journal.close()
        lines = [str(n) for n in range(1, LINES + 1)]
        for index, stream in enumerate(streams):
            assert stream is not None and stream.error is None, (index, stream and stream.error)
            assert stream.end == {"status": "succeeded", "error": None}
            assert stream.ids == list(range(total)), index  # every event, once, in order
            flood = [e["line"] for e in stream.events
                     if e["event"] == "output" and e["step"] == "flood"]
            assert flood == lines, index
            assert stream.events[-1]["event"] == "run_finished"
        assert stored["run"]["status"] == "succeeded"
    finally:
        stop(run)


def test_a_run_whose_drdeck_was_killed_is_said_to_be_silent_until_it_is_marked(
        tmp_path: Path, place: tuple[Path, Path]) -> None:
    """SIGKILL leaves no chance to write an end: the journal says "running" still. Once
    the run's heartbeat is older than a live run's ever is, the API and the stream say
    so; when drdeck on its host marks it interrupted, the stream ends."""
    import os
    import signal
    import socket
    from datetime import UTC, datetime, timedelta

    from tui.journal.store import Journal

    state, config = place
    run, _go = _start_run(tmp_path, state, config, 3)  # waits at its gate for ever
    run_id = running_id(load_config(config))
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    journal = Journal(state / "journal.sqlite")
    beat = datetime.now(UTC) - timedelta(minutes=10)
    try:  # the journal as it is ten minutes later
        journal.update_run(run_id, heartbeat_at=beat.isoformat())
    finally:
        journal.close()
    host = socket.gethostname()
    with serving(state, config) as served:
        [listed] = served.json("/api/runs")
        assert listed["status"] == "running"
        said = listed["unheard"]
        assert said.startswith("no word since ") and f"{beat:%H:%M:%S} UTC" in said
        assert said.endswith(f" UTC from drdeck (pid {run.pid}) on {host}: it may be dead; if "
                             f"so, on {host}: drdeck resume {run_id}")
        assert served.json(f"/api/runs/{run_id}")["run"]["unheard"] == listed["unheard"]
        got: dict = {}
        reader = threading.Thread(target=lambda: got.update(stream=read_events(served, run_id)))
        reader.start()
        threading.Event().wait(2)  # the viewer follows the silent run
        marked = drdeck("--config", str(config), "drills", state_dir=state)  # on its host
        assert marked.returncode == 0, marked.stderr
        reader.join(timeout=60)
    stream = got["stream"]
    notices = [e for name, e in zip(stream.names, stream.events, strict=True) if name == "unheard"]
    assert notices == [{"unheard": listed["unheard"]}, {"unheard": ""}]
    assert stream.names.index("unheard") > stream.names.index("message")  # after the events
    assert stream.end == {"status": "interrupted", "error": None}
