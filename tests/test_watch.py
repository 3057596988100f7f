"""`drdeck watch`: a read-only run screen following a run that a separate process executes,
through the journal. Steps turn from running to succeeded as they do there, within 2 s;
output and checks arrive; no key acts on the run."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.config import load_config
from tui.journal.follow import Tails, _overlap

from app_support import live_app, wait_for
from cli_support import REPO, drdeck, drdeck_env, running_id

BOOK = """[runbook]
name = "slow-drill"
title = "A slow drill"
rto = "1h"

[[steps]]
id = "one"
title = "First"
action = "shell"
with = { command = "echo first; sleep 1.5" }

[[steps]]
id = "two"
title = "Second"
action = "shell"
with = { command = "for i in 1 2 3; do echo line $i; sleep 0.4; done" }
checks = [{ name = "it said line 3", command = "echo line 3", expect = { contains = "line 3" } }]

[[steps]]
id = "three"
title = "Third"
action = "shell"
with = { command = "echo done" }
"""


async def follow_a_run(tmp_path: Path, **env: str) -> None:
    """A run executed by a separate process, followed by `watch` in this one: both find
    the journal as `env` says (the test's own environment says the same)."""
    from tui.app.screens.watch import WatchScreen
    from tui.journal.store import open_journal

    state = tmp_path / "state"
    book = tmp_path / "slow.toml"
    book.write_text(BOOK)
    config_path = tmp_path / "drdeck.toml"
    config_path.write_text("")
    config = load_config(config_path)
    runner = subprocess.Popen([sys.executable, "-m", "tui", "--config", str(config_path),
                               "run", str(book), "--headless"], cwd=REPO,
                              env=drdeck_env(state, **env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        run_id = running_id(config)
        app = live_app(config=config, watch=run_id[:6])
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen)
                           and app.screen.state is not None, what="the first read")
            screen = app.screen
            assert screen.run_id == run_id  # the prefix found the run
            await pilot.press("y", "enter", "r", "a", "e")  # no key acts on the run

            def status(step: str) -> str:
                return screen.state.steps[step].status

            await wait_for(pilot, lambda: status("one") == "succeeded", what="step one")
            seen_at = datetime.now(UTC)
            journal = open_journal(config)
            try:
                ended = datetime.fromisoformat(journal.run(run_id).steps[0].ended_at)
            finally:
                journal.close()
            assert (seen_at - ended).total_seconds() < 2.0  # within 2 s of the journal
            await wait_for(pilot, lambda: status("two") == "running", what="step two")
            await wait_for(pilot, lambda: screen.state.finished is not None, what="the end")
            assert [s.status for s in screen.state.steps.values()] == ["succeeded"] * 3
            assert [(c.name, c.ok) for c in screen.state.all_checks] == [
                ("it said line 3", True)]
            shown = "\n".join(screen.query_one("#output-panel").log_widget.lines)
            assert "first" in shown and "line 3" in shown and "done" in shown
            assert "SUCCEEDED" in str(screen.query_one("#watch-status").render())
        assert runner.wait(timeout=30) == 0, runner.stdout.read() if runner.stdout else ""
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


async def test_watch_follows_a_run_another_process_executes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path / "state"))
    await follow_a_run(tmp_path)
    assert (tmp_path / "state" / "journal.sqlite").exists()


@pytest.mark.slow
async def test_watch_follows_a_run_through_a_shared_postgresql_journal(
        pg_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How a team outgrows one machine: the run records into PostgreSQL, the watcher
    reads it from there."""
    pg_cluster.execute("create database journal")
    url = pg_cluster.dsn("journal")
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRDECK_JOURNAL", url)
    await follow_a_run(tmp_path, DRDECK_JOURNAL=url)
    assert not (tmp_path / "state" / "journal.sqlite").exists()


def test_watch_without_a_running_run_says_so(tmp_path: Path) -> None:
    config = tmp_path / "drdeck.toml"
    config.write_text("")
    proc = drdeck("--config", str(config), "watch", state_dir=tmp_path / "state")
    assert proc.returncode == 2
    assert "no run is running in the journal" in proc.stderr
    proc = drdeck("--config", str(config), "watch", "feedface", state_dir=tmp_path / "state")
    assert proc.returncode == 2 and "no run 'feedface'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_tail_that_slides_on_gives_only_its_new_lines() -> None:
    assert _overlap(["a", "b", "c"], ["b", "c", "d", "e"]) == 2
    assert _overlap([], ["a"]) == 0
    assert _overlap(["x"], ["y"]) == 0
    tails = Tails()

    class Row:
        def __init__(self, step_id: str, tail: str) -> None:
            self.step_id, self.output_tail = step_id, tail

    class Detail:
        def __init__(self, *rows: Row) -> None:
            self.steps = list(rows)

    assert tails.new_lines(Detail(Row("s", "a\nb"))) == ["a", "b"]
    assert tails.new_lines(Detail(Row("s", "a\nb\nc"))) == ["c"]
    assert tails.new_lines(Detail(Row("s", "b\nc\nd"), Row("t", "x"))) == ["d", "x"]


async def test_a_run_whose_drdeck_falls_silent_is_said_to_be_until_it_is_heard_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's drdeck stopped (SIGSTOP: as hung as a process gets): past the time a live
    run is ever silent the watcher is told, and told no more once it beats again."""
    import os
    import signal
    from datetime import timedelta

    from tui.app.screens.watch import WatchScreen
    from tui.journal.store import Journal

    state = tmp_path / "state"
    monkeypatch.setenv("DRDECK_STATE_DIR", str(state))
    book = tmp_path / "long.toml"
    book.write_text('[runbook]\nname = "long"\ntitle = "Long"\n\n[[steps]]\nid = "wait"\n'
                    'title = "Wait"\naction = "shell"\nwith = { command = "sleep 60" }\n')
    config_path = tmp_path / "drdeck.toml"
    config_path.write_text("")
    config = load_config(config_path)
    runner = subprocess.Popen([sys.executable, "-m", "tui", "--config", str(config_path),
                               "run", str(book), "--headless"], cwd=REPO,
                              env=drdeck_env(state), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        run_id = running_id(config)
        os.kill(runner.pid, signal.SIGSTOP)
        journal = Journal(state / "journal.sqlite")
        try:  # as the journal is ten minutes on
            journal.update_run(run_id, heartbeat_at=(datetime.now(UTC) - timedelta(minutes=10))
                               .isoformat())
        finally:
            journal.close()
        app = live_app(config=config, watch=run_id)
        async with app.run_test(size=(80, 24)) as pilot:
            def said() -> str:
                screen = app.screen
                return str(screen.query_one("#watch-status").render()) \
                    if isinstance(screen, WatchScreen) and screen.state is not None else ""

            await wait_for(pilot, lambda: "no word since" in said(), what="the silence said")
            assert f"from drdeck (pid {runner.pid}) on " in said()
            assert said().endswith(f": drdeck resume {run_id}")
            os.kill(runner.pid, signal.SIGCONT)
            await wait_for(pilot, lambda: "watching long run" in said()
                           and "no word" not in said(), timeout=20, what="its heartbeat")
    finally:
        os.kill(runner.pid, signal.SIGCONT)
        runner.kill()
        runner.wait()


def test_a_heartbeat_seen_to_change_is_alive_whatever_its_hosts_clock_says() -> None:
    """The run's host may keep a clock minutes behind the watcher's: a heartbeat that keeps
    changing is a live run; one unchanged for as long as a live run is never silent, by
    the watcher's own clock, is not."""
    from datetime import timedelta

    from tui.journal.follow import Silence

    wall = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
    behind = wall - timedelta(minutes=10)  # the run's host's clock

    def words(silence: Silence, beat: datetime, now: float) -> str:
        return silence.words("abc123", "running", beat.isoformat(), "db1", 4242, wall, now)

    silence = Silence()
    first = words(silence, behind, 0.0)  # first look: ten minutes old, nothing else known
    assert first == ("no word since 20:50:00 UTC from drdeck (pid 4242) on db1: it may be "
                     "dead; if so, on db1: drdeck resume abc123")
    later = behind + timedelta(seconds=5)
    assert words(silence, later, 5.0) == ""  # it beats: alive, whatever its time
    assert words(silence, later, 5.0 + 119) == ""
    assert words(silence, later, 5.0 + 121).startswith("no word since 20:50:05 UTC")
    assert Silence().words("abc123", "succeeded", behind.isoformat(), "db1", 1, wall, 0) == ""
