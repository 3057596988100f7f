"""Is the server's WAL archiving working? pg_stat_archiver, judged, with the server's reason.

A failing archive_command does not stop the server: it keeps every WAL segment
in pg_wal until the command works, until the disk is full. And nothing new
reaches the archive, so no new point in time is recoverable. Both base-backup's
pre-flight and `drdeck status` ask this module.

Failing means the newest failure is newer than the newest success
(last_failed_time > last_archived_time, or failures and never a success), or
failed_count grew between two reads a moment apart (the command fails now, even
if an earlier segment went through).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.errors import DrdeckError

FIX = "fix archive_command; WAL is piling up in pg_wal until it works"

_QUERY = """
select current_setting('archive_mode'), pg_is_in_recovery(), pg_backend_pid(),
       archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time
  from pg_stat_archiver
"""


class ArchiverUnknown(DrdeckError):
    """The server could not be asked (cannot connect, no permission)."""


@dataclass(frozen=True)
class ArchiverStats:
    archive_mode: str  # off | on | always
    in_recovery: bool
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    log: Path | None = None  # the server's log, found while connected (server_log.find_log)
    log_problem: str = "not looked for"  # why `log` is None

    @property
    def archives(self) -> bool:
        """Whether this server runs an archiver (a standby only with archive_mode = always)."""
        return self.archive_mode == "always" or (self.archive_mode == "on"
                                                 and not self.in_recovery)

    @property
    def failing(self) -> bool:
        if not self.failed_count or self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time

    def describe(self) -> str:
        """pg_stat_archiver's fields, as a sentence."""
        failed = (f"last failed {self.last_failed_wal} at {_when(self.last_failed_time)} "
                  f"({self.failed_count} failures)" if self.last_failed_wal else "no failure")
        archived = (f"last archived {self.last_archived_wal} at "
                    f"{_when(self.last_archived_time)}" if self.last_archived_wal
                    else "nothing archived yet")
        return f"pg_stat_archiver: {failed}, {archived} ({self.archived_count} archived)"


@dataclass(frozen=True)
class ArchiverCheck:
    """Two reads of pg_stat_archiver a moment apart, judged."""

    first: ArchiverStats
    second: ArchiverStats

    @property
    def stats(self) -> ArchiverStats:
        return self.second

    @property
    def failing(self) -> bool:
        return self.second.failing or self.second.failed_count > self.first.failed_count

    def explain(self) -> str:
        """Why archiving is failing, in the server's own words when its log can be read,
        and what to do."""
        head = f"WAL archiving is failing: {FIX}."
        from tui.postgres.server_log import LogUnreadable, archive_failure

        log = self.second.log
        try:
            if log is None:
                raise LogUnreadable(self.second.log_problem)
            lines = archive_failure(log)
        except LogUnreadable as exc:
            return (f"{head} The server's log could not be read ({exc}); "
                    f"{self.second.describe()}")
        if not lines:
            return (f"{head} The server's log ({_shown(log)}) has no archive failure line; "
                    f"{self.second.describe()}")
        quoted = "\n".join(f"  {line}" for line in lines)
        return f"{head} The server's log ({_shown(log)}) says:\n{quoted}"


async def read_stats(dsn: str) -> ArchiverStats:
    """One read of pg_stat_archiver, and where the server logs; ArchiverUnknown when the
    server cannot be asked."""
    import psycopg

    from tui.postgres.query import CONNECT_TIMEOUT_S, error_reason
    from tui.postgres.server_log import LogUnreadable, find_log

    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                     connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise ArchiverUnknown(f"cannot connect: {error_reason(exc)}") from None
    async with conn:
        try:
            row = await (await conn.execute(_QUERY)).fetchone()
        except psycopg.Error as exc:
            raise ArchiverUnknown(f"cannot read pg_stat_archiver: {error_reason(exc)}") \
                from None
        # while our backend lives: through it, /proc leads to the postmaster
        try:
            log, problem = find_log(row[2]), ""
        except LogUnreadable as exc:
            log, problem = None, str(exc)
    return _stats(row[:2] + row[3:], log, problem)


async def check_archiver(dsn: str, pause_s: float = 1.0) -> ArchiverCheck:
    """Read twice, `pause_s` apart: a failure under way shows as a growing count."""
    import asyncio

    first = await read_stats(dsn)
    if not first.archives:
        return ArchiverCheck(first, first)
    await asyncio.sleep(pause_s)
    return ArchiverCheck(first, await read_stats(dsn))


def _stats(row: Any, log: Path | None, problem: str) -> ArchiverStats:
    mode, recovery, archived, archived_wal, archived_at, failed, failed_wal, failed_at = row
    return ArchiverStats(str(mode), bool(recovery), int(archived or 0), archived_wal,
                         archived_at, int(failed or 0), failed_wal, failed_at, log, problem)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _shown(log: Any) -> str:
    # /proc/<pid>/fd/2 is how we read it; the operator wants the file's own name
    import os

    try:
        return os.readlink(log) if str(log).startswith("/proc/") else str(log)
    except OSError:
        return str(log)
