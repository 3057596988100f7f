"""History and the journal on Home: runs, a run's time line, RTO over time, export, the
next drill due, and resuming an interrupted run from the app."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from tui.app.screens.history import HistoryScreen
from tui.app.screens.home import HomeScreen, ResumeSecrets
from tui.journal.store import Journal, RunRow, StepRow, open_journal

from app_support import TERMINAL, app_runbook, frozen_app, live_app, wait_for
from cli_support import REPO, drdeck_env

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

# restore-drill (scenario snapshot, RTO 2h, RPO 1h): monthly drills, one over its target,
# one failed; its last success is 2026-10-18, so the next drill (every 30 days) is overdue.
DRILL_STEPS = [
    # id, title, action, start offset, duration, waited on a person (seconds)
    ("fetch", "Fetch the snapshot", "snapshot.fetch", 0, 612, 0),
    ("restore", "Restore into a new database", "snapshot.restore", 612, 1580, 0),
    ("check", "Check row counts", "sql", 2192, 95, 0),
    ("switch", "Point the application at it", "manual", 2287, 806, 806),
    ("restored", "Service restored", "milestone", 3093, 0, 0),
]
DRILLS = [  # started, status, RTO seconds
    (datetime(2026, 5, 12, 9, 30), "succeeded", 3730),
    (datetime(2026, 6, 9, 9, 30), "succeeded", 3340),
    (datetime(2026, 7, 14, 9, 30), "failed", None),
    (datetime(2026, 7, 15, 9, 30), "succeeded", 4865),
    (datetime(2026, 8, 11, 9, 30), "succeeded", 8070),
    (datetime(2026, 9, 8, 9, 30), "succeeded", 2892),
    (datetime(2026, 10, 18, 10, 0), "succeeded", 3093),
]
SELECTED = "7f3a2c9e0106"  # the drill of 2026-10-18, the fifth row of the table


def run_id(index: int) -> str:
    return f"{0x7f3a2c9e0100 + index:012x}"


def iso(moment: datetime, plus: float = 0) -> str:
    return (moment.replace(tzinfo=UTC) + timedelta(seconds=plus)).isoformat()


def record(journal: Journal, rid: str, runbook: str, started: datetime, status: str, *,
           mode: str = "drill", rto: float | None = None, rpo: float | None = None,
           steps=(), error: str | None = None, dry: bool = False, checks=(),
           measures=(), milestones=()) -> None:
    book = app_runbook(runbook)
    duration = max((offset + took for _, _, _, offset, took, _ in steps), default=60)
    ended = None if status == "running" else iso(started, duration)
    journal.insert_run(RunRow(
        id=rid, runbook=runbook, runbook_sha256=book.sha256, title=book.title,
        scenario=book.scenario, mode=mode, operator="ana@db-admin-1", host="db-admin-1",
        pid=1, started_at=iso(started), status=status, params_json=json.dumps(
            {"target_db": "orders_restored"} if runbook == "restore-drill" else {}),
        ended_at=ended,
        heartbeat_at=iso(started, duration), rto_s=rto, rto_target_s=book.rto, rpo_s=rpo,
        rpo_target_s=book.rpo, error=error, dry_run=int(dry),
        runbook_path=str(book.path.resolve())))
    for position, (sid, title, action, offset, took, waited) in enumerate(steps):
        step_status = status if position == len(steps) - 1 and status != "succeeded" \
            else "succeeded"
        journal.upsert_step(StepRow(
            rid, sid, position, title, action, step_status, attempts=1,
            started_at=iso(started, offset), ended_at=iso(started, offset + took),
            duration_s=float(took), operator_wait_s=float(waited),
            error=error if step_status == "failed" else None))
    for sid, name, ok, detail, at in checks:
        journal.add("checks", run_id=rid, step_id=sid, name=name, ok=int(ok), detail=detail,
                    at=iso(started, at))
    for sid, name, value, unit, detail, at in measures:
        journal.add("measures", run_id=rid, step_id=sid, name=name, value=value, unit=unit,
                    detail=detail, at=iso(started, at))
    for name, elapsed in milestones:
        journal.add("milestones", run_id=rid, name=name, elapsed_s=elapsed,
                    at=iso(started, elapsed))


def fill_journal() -> None:
    """The same runs every time, written where the app's journal opens ($DRDECK_STATE_DIR)."""
    journal = open_journal()
    try:
        for index, (started, status, rto) in enumerate(DRILLS):
            steps = DRILL_STEPS if status == "succeeded" else DRILL_STEPS[:2]
            scale = (rto or 3093) / 3093
            steps = [(s, t, a, round(o * scale), round(d * scale), round(w * scale))
                     for s, t, a, o, d, w in steps]
            record(journal, run_id(index), "restore-drill", started, status, rto=rto,
                   rpo=2280.0 if status == "succeeded" else None, steps=steps,
                   error="pg_restore: error: could not open input file" if rto is None
                   else None,
                   checks=[("check", "every table's row count matches the snapshot",
                            status == "succeeded", "48 tables, 1,204,332 rows", 2287)],
                   measures=[("restore", "restored_rows", 1204332, "rows",
                              "orders 1,204,332", 2192),
                             ("restore", "achieved_rpo", 2280.0, "s",
                              "incident time minus the snapshot time", 2192)]
                   if status == "succeeded" else [],
                   milestones=[("service-restored", rto)] if rto else [])
        record(journal, run_id(7), "restore-drill", datetime(2026, 11, 10, 16, 0), "succeeded",
               dry=True, steps=DRILL_STEPS[:1])
        record(journal, run_id(8), "restore-drill", datetime(2026, 11, 20, 3, 12), "failed",
               mode="incident", steps=DRILL_STEPS[:2],
               error="pg_restore: error: connection to server failed")
        record(journal, run_id(9), "in-progress", datetime(2026, 5, 2, 14, 0), "aborted",
               steps=[("preflight", "Pre-flight checks", "shell", 0, 2, 0),
                      ("copy", "Fetch the base backup", "shell", 2, 300, 0)],
               error="aborted by the operator")
        record(journal, run_id(10), "manual", datetime(2026, 11, 25, 22, 40), "interrupted",
               steps=[("check", "Check the restored data", "shell", 0, 3, 0),
                      ("switch", "Point the application at the new database", "manual",
                       3, 120, 120)],
               error="the drdeck process ended without finishing the run")
        record(journal, run_id(11), "finish", datetime(2026, 11, 26, 8, 15), "succeeded",
               rto=4.2, steps=[("restore", "Restore", "shell", 0, 3, 0),
                               ("restored", "Service restored", "milestone", 3, 0, 0),
                               ("cleanup", "Clean up", "shell", 3, 1, 0)],
               milestones=[("service-restored", 4.2)])
    finally:
        journal.close()


def history(pilot) -> HistoryScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, HistoryScreen))


def home(pilot) -> HomeScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, HomeScreen))


def showing(pilot, rid: str) -> bool:
    detail = history(pilot).detail
    return detail is not None and detail.run.id == rid


async def open_history(pilot) -> HistoryScreen:
    await wait_for(pilot, lambda: home(pilot).journal_read is not None)
    await pilot.press("h")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen)
                   and pilot.app.screen.loaded)
    screen = history(pilot)
    await wait_for(pilot, lambda: showing(pilot, screen.matching[0].id))
    return screen


def plain(renderable, width: int) -> str:
    """A rich renderable as the text it shows at `width` columns."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def cells(screen: HistoryScreen) -> list[list[str]]:
    table = screen.query_one("#runs")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


# --- History ----------------------------------------------------------------------------


def test_history_screen(snap_compare) -> None:
    """Runs newest first; a drill's steps on a time line, its runbook's RTO against 2h."""
    fill_journal()

    async def select_a_drill(pilot) -> None:
        await open_history(pilot)
        await pilot.press("down", "down", "down", "down")
        await wait_for(pilot, lambda: showing(pilot, SELECTED))

    app = frozen_app(utc_now=lambda: NOW)
    assert snap_compare(app, terminal_size=TERMINAL, run_before=select_a_drill)


async def test_the_table_lists_every_run_newest_first() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=TERMINAL) as pilot:
        screen = await open_history(pilot)
        rows = cells(screen)
        assert len(rows) == 12
        assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
        assert rows[0] == ["2026-11-26 08:15", "finish", "DRILL", "✓ succeeded", "0:00:04",
                           "0%", "-", "-"]
        assert rows[2][1:4] == ["restore-drill", "INCIDENT", "✗ failed"]
        assert rows[3] == ["2026-11-10 16:00", "restore-drill", "DRILL dry", "✓ succeeded",
                           "-", "-", "-", "-"]
        over = next(r for r in rows if r[0].startswith("2026-08-11"))
        assert over[4:] == ["2:14:30", "112%", "38m", "-"]  # run before forecasts were kept
        assert "Runs  12" in screen.query_one("#history-list").border_title


async def test_the_filter_narrows_the_runs() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=TERMINAL) as pilot:
        screen = await open_history(pilot)
        await pilot.press("slash", *"restore failed")
        await wait_for(pilot, lambda: len(screen.matching) == 2)
        assert [r[1:4] for r in cells(screen)] == [
            ["restore-drill", "INCIDENT", "✗ failed"], ["restore-drill", "DRILL", "✗ failed"]]
        await wait_for(pilot, lambda: showing(pilot, run_id(8)))  # the detail follows

        await pilot.press(*["backspace"] * len("restore failed"), *"incident")
        await wait_for(pilot, lambda: len(cells(screen)) == 1)
        assert "1 of 12 match" in screen.query_one("#history-list").border_title

        await pilot.press(*["backspace"] * len("incident"), *"nothing-like-this")
        await wait_for(pilot, lambda: not cells(screen))
        assert screen.detail is None
        assert "no run matches" in str(screen.query_one("#run-detail-body").render())

        await pilot.press("escape")  # clears the filter
        await wait_for(pilot, lambda: len(cells(screen)) == 12)


async def test_the_detail_shows_the_steps_of_the_selected_run() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=TERMINAL) as pilot:
        screen = await open_history(pilot)
        await pilot.press("down", "down", "down", "down")  # past the dry run: 2026-10-18
        await wait_for(pilot, lambda: showing(pilot, SELECTED))
        body = screen.query_one("#run-detail-body")
        text = plain(body.content, body.content_size.width)
        for step in DRILL_STEPS:  # long titles end in "…" beside the bars
            assert step[1][:20] in text
        assert "every table's row count matches the snapshot" in text
        assert "achieved_rpo" in text and "38m" in text
        # each step's bar: the wait shaded apart, a later step further right
        lines = {s[1]: line for line in text.splitlines() for s in DRILL_STEPS
                 if s[1][:20] in line}
        fetch, switch = lines["Fetch the snapshot"], lines["Point the application at it"]
        assert "█" in fetch and "░" not in fetch
        assert "░" in switch and "█" not in switch
        assert switch.index("░") > fetch.index("█")
        assert "0:51:33" in text  # the RTO
        chart = screen.query_one("#rto-chart")
        assert chart.border_title == "RTO of restore-drill over time (target 2h)"
        picture = "\n".join(line.text for line in chart.render_lines(chart.region.reset_offset))
        assert "▲" in picture and "2h" in picture and "─" in picture

        await pilot.press("up")  # the dry run: its own steps
        await wait_for(pilot, lambda: showing(pilot, run_id(7)))


async def test_export_writes_the_selected_runs_report(tmp_path: Path, monkeypatch) -> None:
    fill_journal()
    monkeypatch.chdir(tmp_path)
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=TERMINAL) as pilot:
        await open_history(pilot)
        await pilot.press("down", "down", "down", "down")
        await wait_for(pilot, lambda: showing(pilot, SELECTED))
        await pilot.press("e")
        path = tmp_path / f"drdeck-run-{SELECTED}.md"
        await wait_for(pilot, path.exists, what="the export")
        await wait_for(pilot, lambda: any(str(path) in n.message
                                          for n in app._notifications))
    report = path.read_text()
    assert SELECTED in report
    for step in DRILL_STEPS:
        assert step[1] in report
    assert "every table's row count matches the snapshot" in report


# --- Home -------------------------------------------------------------------------------


def home_rows(pilot) -> dict[str, list[str]]:
    table = home(pilot).query_one("#home-table")
    rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[1]: row for row in rows}


def test_home_with_the_journal(snap_compare) -> None:
    """Last run and its result, the next drill (overdue in yellow), the interrupted run."""
    fill_journal()

    async def until_read(pilot) -> None:
        await wait_for(pilot, lambda: home(pilot).journal_read is not None)

    app = frozen_app(utc_now=lambda: NOW)
    assert snap_compare(app, terminal_size=TERMINAL, run_before=until_read)


async def test_home_shows_the_last_run_and_the_next_drill() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=TERMINAL) as pilot:
        await wait_for(pilot, lambda: home(pilot).journal_read is not None)
        rows = home_rows(pilot)
        # the failed incident is the last run; the last success (10-18) + 30 days is past
        assert rows["restore-drill"][4:] == ["2026-11-20 ✗", "OVERDUE 10d04h"]
        assert rows["finish"][4:] == ["2026-11-26 ✓", "-"]  # not a drill
        assert rows["in-progress"][4:] == ["2026-05-02 ■", "never drilled"]
        assert rows["confirm"][4:] == ["-", "-"]
        offer = str(home(pilot).query_one("#home-resume").render())
        assert f"1 interrupted run: manual {run_id(10)[:8]}" in offer
        assert "press u to resume it" in offer


async def test_home_is_due_in_days_after_a_recent_success() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: datetime(2026, 10, 20, 12, 0, tzinfo=UTC))
    async with app.run_test(size=TERMINAL) as pilot:
        await wait_for(pilot, lambda: home(pilot).journal_read is not None)
        assert home_rows(pilot)["restore-drill"][5] == "in 27d22h"  # 10-18 10:51 + 30d


# --- resume from Home -------------------------------------------------------------------

KILLABLE = """
[runbook]
name = "journal-drill"
title = "A drill that can be killed"
scenario = "snapshot"
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
title = "Use the secret again"
action = "shell"
with = { command = "echo using-$TOKEN", env = { TOKEN = "${token}" } }
"""
SECRET = "tok-5b1e-never-written"


def killed_run(book: Path, gate: Path) -> str:
    """Run `book` through the real CLI in INCIDENT mode and SIGKILL it mid-step."""
    state = Path(os.environ["DRDECK_STATE_DIR"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "run", str(book), "--json", "--incident"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=drdeck_env(state, DRDECK_TEST_GATE=str(gate), DRDECK_SECRET_TOKEN=SECRET),
        stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    run = None
    for line in proc.stdout:
        event = json.loads(line)
        run = run or event.get("run_id")
        if event.get("line") == "waiting":
            break
    else:
        raise AssertionError(proc.stderr.read() if proc.stderr else "no output")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert run is not None
    return run


async def test_an_interrupted_run_is_resumed_from_home(tmp_path: Path, monkeypatch) -> None:
    from tui.app.screens.run import RunScreen
    from tui.app.screens.summary import RunSummary

    book, gate = tmp_path / "journal-drill.toml", tmp_path / "gate"
    book.write_text(KILLABLE)
    rid = killed_run(book, gate)
    gate.touch()
    journal = open_journal()
    prepared = journal.run(rid).steps[0]
    journal.close()
    monkeypatch.setenv("DRDECK_TEST_GATE", str(gate))

    app = live_app()
    async with app.run_test(size=TERMINAL) as pilot:
        # Home finds the run's process gone, marks it interrupted and offers it
        await wait_for(pilot, lambda: home(pilot).interrupted)
        assert [r.id for r in home(pilot).interrupted] == [rid]
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ResumeSecrets))
        await pilot.press("enter")  # empty: refused
        assert isinstance(app.screen, ResumeSecrets)
        await pilot.press(*SECRET, "enter")
        await wait_for(pilot, lambda: any(isinstance(s, RunScreen) for s in app.screen_stack))
        run = next(s for s in app.screen_stack if isinstance(s, RunScreen))
        assert run.runner.run_id == rid and run.mode == "incident" == app.mode
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary), timeout=30)
        assert run.state.finished.status == "succeeded"
        await pilot.press("escape")
        app.go_home()
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
        await wait_for(pilot, lambda: not home(pilot).interrupted)  # nothing left to offer

    journal = open_journal()
    detail = journal.run(rid)
    journal.close()
    assert detail.run.status == "succeeded" and detail.run.resumes == 1
    assert detail.run.mode == "incident"
    assert [s.status for s in detail.steps] == ["succeeded"] * 3
    # the step done before the kill was not run again; the captured value came back masked
    assert (detail.steps[0].started_at, detail.steps[0].ended_at) == \
        (prepared.started_at, prepared.ended_at)
    tails = "\n".join(s.output_tail for s in detail.steps)
    assert "using-***" in tails and SECRET not in tails
    journal_files = Path(os.environ["DRDECK_STATE_DIR"]).glob("journal.sqlite*")
    assert all(SECRET.encode() not in p.read_bytes() for p in journal_files)


async def test_a_run_without_secrets_resumes_at_once() -> None:
    """An interrupted INCIDENT run of `finish` (no secrets): u goes straight to the run."""
    from tui.app.screens.run import RunScreen
    from tui.app.screens.summary import RunSummary

    journal = open_journal()
    record(journal, "5e7d00c0ffee", "finish", datetime.now(UTC) - timedelta(minutes=5),
           "interrupted", mode="incident",
           steps=[("restore", "Restore", "shell", 0, 1, 0),
                  ("restored", "Service restored", "milestone", 1, 0, 0)])
    journal.upsert_step(StepRow("5e7d00c0ffee", "cleanup", 2, "Clean up", "shell",
                                "pending"))
    before = journal.run("5e7d00c0ffee").steps[0].ended_at
    journal.close()

    app = live_app()
    async with app.run_test(size=TERMINAL) as pilot:
        await wait_for(pilot, lambda: home(pilot).interrupted)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, (RunScreen, RunSummary)))
        run = next(s for s in app.screen_stack if isinstance(s, RunScreen))
        assert run.mode == "incident" and run.runner.run_id == "5e7d00c0ffee"
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary), timeout=30)
        assert run.state.finished.status == "succeeded"

    journal = open_journal()
    detail = journal.run("5e7d00c0ffee")
    journal.close()
    assert detail.run.status == "succeeded" and detail.run.resumes == 1
    assert [s.status for s in detail.steps] == ["succeeded"] * 3
    assert detail.steps[0].ended_at == before  # done before: not run again
