"""The drill journal on real SQLite and PostgreSQL: recorded as it goes, a killed run
shows as interrupted and resumes, targets are locked, secrets never written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui.journal.store import Journal

from cli_support import REPO, drdeck, drdeck_env, json_events

RUNBOOK = """
[runbook]
name = "journal-drill"
title = "A drill that can be killed"
rto = "1h"
lock = "drill on ${target}"

[params.target]
type = "string"
default = "scratch"

[params.token]
type = "secret"

[[steps]]
id = "prepare"
title = "Prepare"
action = "shell"
capture = true
with = { command = "echo prepared-with-$TOKEN; echo ready", env = { TOKEN = "${token}" } }

[[steps]]
id = "slow"
title = "The long part"
action = "shell"
with = { command = "test -f ${env.DRDECK_TEST_GATE} || { echo waiting; sleep 60; }; echo open" }

[[steps]]
id = "use"
title = "Use what was prepared"
action = "shell"
with = { command = ["echo", "${steps.prepare.output}"] }

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }
"""
SECRET = "tok-9f8e7d-never-written"


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "journal-drill.toml"
    path.write_text(RUNBOOK)
    return path


def start(book: Path, state: Path, gate: Path, *extra: str, journal: str | None = None):
    env = drdeck_env(state, DRDECK_TEST_GATE=str(gate), DRDECK_SECRET_TOKEN=SECRET)
    if journal:
        env["DRDECK_JOURNAL"] = journal
    return subprocess.Popen(
        [sys.executable, "-m", "tui", "run", str(book), "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        stdin=subprocess.DEVNULL)


def wait_for_line(proc, needle: str, timeout: float = 30) -> list[dict]:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(json.loads(line))
        if needle in line:
            return seen
        assert time.monotonic() < deadline
    raise AssertionError(f"{needle!r} never came; stderr: {proc.stderr.read()}")


def wait_recorded(state: Path, url: str | None, run_id: str, text: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        journal = journal_at(state, url)
        try:
            if any(text in s.output_tail for s in journal.run(run_id).steps):
                return
        finally:
            journal.close()
        assert time.monotonic() < deadline, f"{text!r} never reached the journal"
        time.sleep(0.02)


def journal_at(state: Path, url: str | None = None) -> Journal:
    return Journal(url or str(state / "journal.sqlite"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_run_is_interrupted_then_resumed_to_success(book, tmp_path, backend,
                                                              request) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    url = None
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        cluster.execute("create database journal")
        url = cluster.dsn("journal")
    proc = start(book, state, gate, journal=url)
    events = wait_for_line(proc, '"waiting"')
    run_id = events[0]["run_id"]
    wait_recorded(state, url, run_id, "waiting")  # the running step's output, not only at its end
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    # the next drdeck command finds the run's process gone and says so
    listing = drdeck("resume", "nonexistent", state_dir=state,
                     **({"DRDECK_JOURNAL": url} if url else {}))
    assert listing.returncode == 2
    journal = journal_at(state, url)
    detail = journal.run(run_id)
    journal.close()
    assert detail.run.status == "interrupted"
    statuses = {s.step_id: s.status for s in detail.steps}
    assert statuses == {"prepare": "succeeded", "slow": "interrupted", "use": "pending",
                        "restored": "pending"}
    assert "waiting" in next(s for s in detail.steps if s.step_id == "slow").output_tail

    gate.touch()
    env = {"DRDECK_TEST_GATE": str(gate), **({"DRDECK_JOURNAL": url} if url else {})}
    missing = drdeck("resume", run_id, "--json", state_dir=state, **env)
    assert missing.returncode == 2 and "DRDECK_SECRET_TOKEN=..." in missing.stderr
    resumed = drdeck("resume", run_id[:6], "--json", state_dir=state,
                     DRDECK_SECRET_TOKEN=SECRET, **env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    events = json_events(resumed.stdout)
    assert [e["step"] for e in events if e["event"] == "step_started"] == ["slow", "use",
                                                                           "restored"]
    # the captured value came from the journal, where secrets are masked
    use = [e["line"] for e in events if e["event"] == "output" and e["step"] == "use"]
    assert use == ["prepared-with-***", "ready"]

    journal = journal_at(state, url)
    detail = journal.run(run_id)
    journal.close()
    assert detail.run.status == "succeeded" and detail.run.resumes == 1
    assert [s.status for s in detail.steps] == ["succeeded"] * 4
    # one run: its RTO counts from the first start, across the interruption
    assert detail.run.rto_s is not None
    assert detail.run.rto_s >= (detail.run.ended - detail.run.started).total_seconds() - 1
    assert [m["name"] for m in detail.milestones] == ["service-restored"]


def test_the_journal_never_holds_a_secret(book, tmp_path) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    gate.touch()
    proc = drdeck("run", str(book), state_dir=state,
                  DRDECK_TEST_GATE=str(gate), DRDECK_SECRET_TOKEN=SECRET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list(state.glob("journal.sqlite*"))
    assert files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    journal = journal_at(state)
    [run] = journal.runs()
    journal.close()
    assert run.params["token"] == "***"


def test_a_second_run_on_the_same_target_is_refused(book, tmp_path) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    first = start(book, state, gate)
    events = wait_for_line(first, '"waiting"')
    try:
        second = drdeck("run", str(book), state_dir=state,
                        DRDECK_TEST_GATE=str(gate), DRDECK_SECRET_TOKEN=SECRET)
        assert second.returncode == 1
        assert "another run works on the same target (drill on scratch)" in second.stderr
        assert events[0]["run_id"] in second.stderr
        gate.touch()
        other = drdeck("run", str(book), "-p", "target=elsewhere", state_dir=state,
                       DRDECK_TEST_GATE=str(gate), DRDECK_SECRET_TOKEN=SECRET)
        assert other.returncode == 0, other.stdout + other.stderr
    finally:
        first.kill()
        first.wait(timeout=10)


def test_a_run_waiting_in_silence_keeps_its_heartbeat(book, tmp_path) -> None:
    """No event for minutes (a person deciding, a command that prints nothing) is not a dead
    process: the heartbeat goes on, so drdeck on another host never takes the live run for
    an interrupted one and frees its lock."""
    from datetime import datetime

    state = tmp_path / "state"
    proc = start(book, state, tmp_path / "gate")
    try:
        seen = wait_for_line(proc, '"waiting"')  # the slow step: silent from here on
        run_id = seen[0]["run_id"]

        def heartbeat() -> datetime:
            journal = journal_at(state)
            try:
                return datetime.fromisoformat(journal.run(run_id).run.heartbeat_at)
            finally:
                journal.close()

        first = heartbeat()
        deadline = time.monotonic() + 15
        while (heartbeat() - first).total_seconds() < 4:
            assert time.monotonic() < deadline, "the heartbeat stopped while the step waited"
            time.sleep(0.2)
        assert proc.poll() is None  # still in the silent step
    finally:
        proc.terminate()
        proc.wait(timeout=30)
