"""history: the History screen opening on a journal of 10,000 runs, against one of 12.

Two SQLite journals are written once with the Journal API, as the recorder
writes them: RUNS_LARGE and RUNS_SMALL runs of the test runbooks
(`tests/data/app`), one every three hours back from now, each with five steps
(one waiting on a person), a check, and for the drills that succeeded an RTO,
an achieved RPO, a measure and the `service-restored` milestone; some failed,
aborted, incidents, dry runs.

Each sample is one `DrdeckApp` under `run_test` (120x36) on one of them
(DRDECK_STATE_DIR), alternating: once Home has read the journal and the app is
idle, `h` is pressed, and the time runs from sending the key until the table
holds rows and the selected (newest) run's detail is drawn, i.e. the first
refresh after the screen took it in (the screen waits DETAIL_DELAY_S before it
reads a run's detail, so a held arrow key does not start one read per row: that
wait is in the time). Every sample checks the table shows the newest runs and
the detail is the newest run's; the large journal's samples then wait until
every run is read (the filter's view) and check all RUNS_LARGE are there.
Each app starts from a collected heap (see bench.tui.fresh_heap).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchError, Note, Report, Row, Target, interleaved, reproduce
from bench.fixtures import TESTS
from bench.tui import fresh_heap

NAME = "history"
RUNS_LARGE = 10_000
RUNS_SMALL = 12
RUNS = 5
WARMUP = 1
TARGET_S = 1.0
SIZE = (120, 36)
POLL_S = 0.001
TIMEOUT_S = 30.0
APP_RUNBOOKS = TESTS / "data" / "app"

STEPS = [  # id, title, action, start offset, duration, waited on a person (seconds)
    ("fetch", "Fetch the snapshot", "snapshot.fetch", 0, 612, 0),
    ("restore", "Restore into a new database", "snapshot.restore", 612, 1580, 0),
    ("check", "Check row counts", "sql", 2192, 95, 0),
    ("switch", "Point the application at it", "manual", 2287, 806, 806),
    ("restored", "Service restored", "milestone", 3093, 0, 0),
]
RUNBOOKS = ("restore-drill", "finish", "manual", "in-progress")
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "succeeded", "aborted",
            "succeeded", "interrupted")


def write_journal(path: Path, count: int) -> float:
    """`count` runs written with the Journal API in one transaction; returns the seconds."""
    from tui.journal.store import Journal, RunRow, StepRow
    from tui.runbook.loader import load_runbook

    books = {name: load_runbook(APP_RUNBOOKS / f"{name}.toml") for name in RUNBOOKS}
    now = datetime.now(UTC).replace(microsecond=0)
    started_writing = time.perf_counter()
    journal = Journal(str(path))
    try:
        with journal.transaction():
            for i in range(count):
                book = books[RUNBOOKS[i % len(RUNBOOKS)]]
                status = STATUSES[i % len(STATUSES)]
                began = now - timedelta(hours=3 * (i + 1))
                scale = 0.8 + (i % 13) / 20  # 0.8 to 1.4: some drills miss the RTO target
                steps = STEPS if status == "succeeded" else STEPS[:3]
                took = (steps[-1][3] + steps[-1][4]) * scale

                def at(seconds: float, began: datetime = began) -> str:
                    return (began + timedelta(seconds=seconds)).isoformat()

                rid = f"{0xbe0000000000 + i:012x}"
                rto = round(3093 * scale, 1) if status == "succeeded" else None
                journal.insert_run(RunRow(
                    id=rid, runbook=book.name, runbook_sha256=book.sha256, title=book.title,
                    scenario=book.scenario, mode="incident" if i % 17 == 5 else "drill",
                    operator="ana@db-admin-1", host="db-admin-1", pid=4242,
                    started_at=began.isoformat(), status=status,
                    params_json=json.dumps({"target_db": "orders_restored"}),
                    ended_at=at(took), heartbeat_at=at(took), rto_s=rto,
                    rto_target_s=book.rto, rpo_s=2280.0 if rto else None,
                    rpo_target_s=book.rpo, dry_run=int(i % 29 == 3),
                    error=None if status == "succeeded" else
                    f"{status}: pg_restore: error: could not connect to the server",
                    runbook_path=str(book.path)))
                for position, (sid, title, action, offset, length, waited) in enumerate(steps):
                    last = position == len(steps) - 1
                    step_status = status if last and status != "succeeded" else "succeeded"
                    journal.upsert_step(StepRow(
                        rid, sid, position, title, action, step_status, attempts=1,
                        started_at=at(offset * scale), ended_at=at((offset + length) * scale),
                        duration_s=length * scale, operator_wait_s=waited * scale,
                        error="could not connect to the server" if step_status != "succeeded"
                        else None,
                        output_tail="\n".join(f"{title}: line {n}" for n in range(3))))
                journal.add("checks", run_id=rid, step_id="check",
                            name="every table's row count matches the snapshot",
                            ok=int(status == "succeeded"), detail="48 tables, 1,204,332 rows",
                            at=at(2287 * scale))
                if rto is not None:
                    journal.add("measures", run_id=rid, step_id="restore", name="achieved_rpo",
                                value=2280.0, unit="s",
                                detail="incident time minus the snapshot time",
                                at=at(2192 * scale))
                    journal.add("milestones", run_id=rid, name="service-restored",
                                elapsed_s=rto, at=at(rto))
    finally:
        journal.close()
    return time.perf_counter() - started_writing


@contextmanager
def state_directory(path: Path) -> Iterator[None]:
    """The app reads the journal in DRDECK_STATE_DIR; no DRDECK_JOURNAL may point elsewhere."""
    saved = {key: os.environ.get(key) for key in ("DRDECK_STATE_DIR", "DRDECK_JOURNAL")}
    os.environ["DRDECK_STATE_DIR"] = str(path)
    os.environ.pop("DRDECK_JOURNAL", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Opening:
    """One app per call on the journal in `state`; returns h -> table filled and detail drawn."""

    def __init__(self, state: Path, runs: int, newest: str) -> None:
        self.state = state
        self.runs = runs
        self.newest = newest
        self.home: list[float] = []  # app created -> Home has read the journal
        self.table: list[float] = []  # h -> the table holds rows
        self.complete: list[float] = []  # h -> every run read (the filter sees them all)

    def __call__(self) -> float:
        fresh_heap()
        with state_directory(self.state):
            return asyncio.run(self._run())

    async def _run(self) -> float:
        from tui.app.app import DrdeckApp
        from tui.app.screens.history import CHUNK, HistoryScreen
        from tui.app.screens.home import HomeScreen
        from tui.runbook.discovery import load_directory

        created = time.perf_counter()
        app = DrdeckApp(runbooks=load_directory(APP_RUNBOOKS), cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            await self._until(lambda: isinstance(app.screen, HomeScreen)
                              and app.screen.journal_read is not None, "Home reads the journal")
            self.home.append(time.perf_counter() - created)
            await pilot.pause()  # idle: nothing of Home's start-up is left in the time

            marks: dict[str, float] = {}
            drawn: list[float] = []
            scheduled = False
            sent = time.perf_counter()
            press = asyncio.create_task(pilot.press("h"))
            deadline = sent + TIMEOUT_S
            while not drawn or "complete" not in marks:
                now = time.perf_counter()
                if now > deadline:
                    raise BenchError(f"History with {self.runs:,} runs: after {TIMEOUT_S:g} s, "
                                     f"reached only {sorted(marks)}")
                screen = app.screen
                if isinstance(screen, HistoryScreen):
                    if screen.loaded and screen.query_one("#runs").row_count:
                        marks.setdefault("table", now)
                    if screen.detail is not None and not scheduled:
                        scheduled = True  # drawn: the first refresh after the screen took it
                        screen.call_after_refresh(lambda: drawn.append(time.perf_counter()))
                    if screen.complete:
                        marks.setdefault("complete", now)
                await asyncio.sleep(POLL_S)
            await press

            screen = app.screen
            assert isinstance(screen, HistoryScreen)
            table = screen.query_one("#runs")
            if table.row_count != min(self.runs, CHUNK):
                raise BenchError(f"the table holds {table.row_count} rows, expected "
                                 f"{min(self.runs, CHUNK)}")
            if screen.detail is None or screen.detail.run.id != self.newest:
                raise BenchError("the detail shown is not the newest run's")
            if len(screen.runs) != self.runs:
                raise BenchError(f"History read {len(screen.runs):,} runs of {self.runs:,}")
        self.table.append(marks["table"] - sent)
        self.complete.append(marks["complete"] - sent)
        return drawn[0] - sent

    @staticmethod
    async def _until(predicate: Any, what: str) -> None:
        deadline = time.perf_counter() + TIMEOUT_S
        while not predicate():
            if time.perf_counter() > deadline:
                raise BenchError(f"timed out waiting until {what}")
            await asyncio.sleep(POLL_S)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values[WARMUP:]) * 1000:,.0f} ms"


def run() -> Report:
    scratch = Path(tempfile.mkdtemp(prefix="drdeck-bench-"))
    try:
        large_state, small_state = scratch / "large", scratch / "small"
        written = {count: write_journal(state / "journal.sqlite", count)
                   for count, state in ((RUNS_LARGE, large_state), (RUNS_SMALL, small_state))}
        size = (large_state / "journal.sqlite").stat().st_size
        newest = f"{0xbe0000000000:012x}"
        large = Opening(large_state, RUNS_LARGE, newest)
        small = Opening(small_state, RUNS_SMALL, newest)
        samples = interleaved({"small": small, "large": large}, runs=RUNS, warmup=WARMUP)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    row = Row(f"{NAME} ({RUNS_LARGE:,} runs)", "s", samples["large"],
              f"{RUNS_SMALL} runs", samples["small"], reproduce(NAME))
    row.targets = [Target(f"< {TARGET_S * 1000:.0f} ms", row.measured < TARGET_S)]
    notes = [
        Note(NAME, f"h pressed on Home until the table holds rows and the newest run's detail "
                   f"is drawn; {RUNS} runs each, alternating, median; SQLite journal of "
                   f"{RUNS_LARGE:,} runs x 5 steps + checks, measures, milestones "
                   f"({size / 2**20:.1f} MiB, written with the Journal API in "
                   f"{written[RUNS_LARGE]:.1f} s)"),
        Note(NAME, f"{RUNS_LARGE:,} runs against {RUNS_SMALL}: table filled {_ms(large.table)} "
                   f"vs {_ms(small.table)}; every run read (the filter's view) "
                   f"{_ms(large.complete)} vs {_ms(small.complete)}; Home from the app's "
                   f"creation to the journal read {_ms(large.home)} vs {_ms(small.home)}"),
    ]
    return Report(rows=[row], notes=notes)
