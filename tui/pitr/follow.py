"""Follow a recovering server: replay position, commit time, speed, ETA, and how it ended.

Two sources, read together every half second: the server's log (which
segments were restored, where recovery stopped, whether it failed) and SQL
while hot standby accepts connections (replay LSN, last replayed commit).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.errors import PermanentFailure
from tui.wal.names import format_lsn, parse_lsn

_RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')
_STOPPING = re.compile(r"recovery stopping (before|after) (commit|abort) of transaction (\d+), "
                       r"time (.+)$")
_LAST_TX = re.compile(r"last completed transaction was at log time (.+)$")
_NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
_CONSISTENT = re.compile(r"consistent recovery state reached at ([0-9A-F]+/[0-9A-F]+)")
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_PROMOTED = "database system is ready to accept connections"  # not "read-only" ones
# what our own polling connections are told while the server starts: never a failure
_NOT_YET_OPEN = ("the database system is starting up",
                 "the database system is not yet accepting connections")
POLL_S = 0.5
LOG_CHECK_S = 0.05  # the log is read this often between polls: a file read, no query
START_GRACE_S = 60.0


class RecoveryFailed(PermanentFailure):
    pass


def parse_pg_time(text: str) -> datetime | None:
    """'2026-11-27 14:29:59.123456+00' (PostgreSQL's log format) -> an aware datetime."""
    text = text.strip()
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::?\d\d)?)?"
                         r"(?: ([A-Z]{2,5}))?", text)
    if match is None:
        return None
    stamp, offset, zone = match.groups()
    if offset:
        if ":" not in offset and len(offset) == 3:
            offset += ":00"
        return datetime.fromisoformat(stamp + offset)
    if zone in (None, "UTC", "GMT"):
        return datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    return None


@dataclass
class RecoveryState:
    restored_segments: int = 0
    last_segment: str | None = None
    consistent_at: str | None = None
    stopped: str | None = None  # "before commit of transaction 745"
    stop_time: datetime | None = None
    last_transaction: datetime | None = None
    new_timeline: int | None = None
    failure: str | None = None
    fatal_lines: list[str] = field(default_factory=list)
    replay_lsn: int | None = None
    replay_time: datetime | None = None
    in_recovery: bool | None = None


class LogReader:
    """New lines of the server log since the last read."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.pending = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.pending + data
        *lines, self.pending = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


def read_log_line(state: RecoveryState, line: str) -> None:
    if match := _RESTORED.search(line):
        state.restored_segments += 1
        state.last_segment = match[1]
    elif match := _STOPPING.search(line):
        state.stopped = f"{match[1]} {match[2]} of transaction {match[3]}"
        state.stop_time = parse_pg_time(match[4])
    elif match := _LAST_TX.search(line):
        state.last_transaction = parse_pg_time(match[1])
    elif match := _NEW_TIMELINE.search(line):
        state.new_timeline = int(match[1])
    elif match := _CONSISTENT.search(line):
        state.consistent_at = match[1]
    if _NOT_REACHED in line:
        state.failure = _NOT_REACHED
    if ("FATAL:" in line or "PANIC:" in line) and not any(s in line for s in _NOT_YET_OPEN):
        state.fatal_lines.append(line.split("FATAL:", 1)[-1].split("PANIC:", 1)[-1].strip())


async def poll_sql(dsn: str, state: RecoveryState) -> None:
    """What the server says about itself; silent while it does not accept connections yet."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         connect_timeout=2) as conn:
            row = await (await conn.execute(
                "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                "pg_last_xact_replay_timestamp()")).fetchone()
    except psycopg.Error:
        return
    state.in_recovery = bool(row[0])
    if row[1]:
        state.replay_lsn = parse_lsn(row[1])
    if row[2] is not None:
        state.replay_time = row[2]


@dataclass(frozen=True)
class Goal:
    start_lsn: int  # the base backup's start
    end_lsn: int  # the end of the contiguous WAL (an upper bound)
    base_stopped: datetime
    target_time: datetime | None


def estimate(goal: Goal, state: RecoveryState) -> tuple[float, float]:
    """(WAL replayed, WAL to replay) in bytes.

    For a time target the goal LSN is estimated from how far commit time has
    come per byte so far; otherwise (or before any commit) it is the end of
    the archive, and the bar jumps to full when recovery stops earlier.
    """
    replayed = max(0, (state.replay_lsn or goal.start_lsn) - goal.start_lsn)
    total = max(1, goal.end_lsn - goal.start_lsn)
    if goal.target_time and state.replay_time and state.replay_time > goal.base_stopped:
        covered = (state.replay_time - goal.base_stopped).total_seconds()
        wanted = (goal.target_time - goal.base_stopped).total_seconds()
        if covered > 0 and replayed > 0:
            total = min(total, max(replayed, int(replayed * wanted / covered)))
    return float(replayed), float(total)


def progress_detail(goal: Goal, state: RecoveryState, rate: float | None) -> str:
    parts = []
    if state.replay_time:
        shown = state.replay_time.astimezone(UTC).strftime("%H:%M:%S")
        parts.append(f"replayed up to {shown}")
        if goal.target_time:
            parts[-1] += f" (target {goal.target_time.astimezone(UTC).strftime('%H:%M:%S')})"
    if state.replay_lsn is not None:
        parts.append(f"LSN {format_lsn(state.replay_lsn)} → {format_lsn(goal.end_lsn)}")
    if rate:
        parts.append(f"{rate:.1f} segments/s")
    return "   ".join(parts)


async def follow(dsn: str, log: Path, goal: Goal, reporter: Any, is_running: Any,
                 timeout_s: float | None = None) -> RecoveryState:
    """Until the server leaves recovery (promoted), or recovery fails; reports as it goes."""
    state = RecoveryState()
    reader = LogReader(log)
    started = time.monotonic()
    last_count, last_at, rate = 0, started, None
    seen_running = False
    while True:
        _read_log(reader, state, reporter)
        await poll_sql(dsn, state)
        now = time.monotonic()
        if now - last_at >= 2.0:
            rate = (state.restored_segments - last_count) / (now - last_at)
            last_count, last_at = state.restored_segments, now
        done, total = estimate(goal, state)
        if state.in_recovery is False:
            reporter.progress(total, total, "bytes of WAL", progress_detail(goal, state, rate))
            return state
        reporter.progress(done, total, "bytes of WAL", progress_detail(goal, state, rate))
        running = await asyncio.to_thread(is_running)
        seen_running = seen_running or running
        # pg_ctl start returns before the server has written its pid file: only a server
        # seen running, or one that never came up within the grace period, has stopped
        if not running and (seen_running or now - started > START_GRACE_S):
            raise RecoveryFailed(f"{_failure_text(state) or 'the server stopped during recovery'}"
                                 f"; see its log, {log}")
        if timeout_s is not None and now - started > timeout_s:
            raise RecoveryFailed(f"recovery did not finish within {timeout_s:.0f}s")
        await _until_the_log_says_more(reader, state, reporter)


def _read_log(reader: LogReader, state: RecoveryState, reporter: Any) -> bool:
    """Take the log's new lines; whether one says recovery ended or failed."""
    news = False
    for line in reader.new_lines():
        read_log_line(state, line)
        if line.strip():
            reporter.output(line, "log")
        news = news or bool(_NEW_TIMELINE.search(line)) or any(
            said in line for said in (_PROMOTED, _NOT_REACHED, "FATAL:", "PANIC:"))
    return news


async def _until_the_log_says_more(reader: LogReader, state: RecoveryState,
                                   reporter: Any) -> None:
    """POLL_S, or less once the log says recovery ended (a new timeline) or failed: the
    promotion is then seen at once, not up to a poll later."""
    deadline = time.monotonic() + POLL_S
    while time.monotonic() < deadline:
        await asyncio.sleep(LOG_CHECK_S)
        if _read_log(reader, state, reporter):
            return


def _failure_text(state: RecoveryState) -> str:
    if state.failure == _NOT_REACHED:
        return ("recovery ended before the target was reached: the archive does not hold "
                "WAL up to it (PostgreSQL stopped rather than promote at the wrong point)")
    if state.fatal_lines:
        return f"the server failed during recovery: {state.fatal_lines[-1]}"
    return ""
