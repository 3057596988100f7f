"""Is the server's WAL archiving working? pg_stat_archiver, judged, with the server's reason.

A failing archive_command does not stop the server: it keeps every WAL segment
in pg_wal until the command works, until the disk is full. And nothing new
reaches the archive, so no new point in time is recoverable. Both base-backup's
pre-flight and `drdeck status` ask this module.

Failing means the newest failure is newer than the newest success
(last_failed_time > last_archived_time, or failures and never a success), or
failed_count grew between two reads a moment apart (the command fails now, even
if an earlier segment went through).

The lag: how many finished segments wait to be archived, counted between the newest
one archived (last_archived_wal) and the one the server writes into now, and since
when the oldest of them waits. A slow or hung archive_command never fails: the lag is
the only sign of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.durations import format_duration
from tui.errors import DrdeckError
from tui.wal.names import Segment, is_segment, parse_lsn

FIX = "fix archive_command; WAL is piling up in pg_wal until it works"

# pg_walfile_name() names the segment *before* an LSN on a segment boundary (right after
# pg_switch_wal, the one just finished): the timeline is taken from it, the segment
# from the LSN itself. A standby has no current WAL position of its own.
_QUERY = """
select current_setting('archive_mode'), pg_is_in_recovery(), pg_backend_pid(),
       archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time,
       case when not pg_is_in_recovery() then pg_walfile_name(pg_current_wal_lsn()) end,
       case when not pg_is_in_recovery() then pg_current_wal_lsn()::text end,
       (select setting::bigint from pg_settings where name = 'wal_segment_size'),
       clock_timestamp(),
       has_function_privilege('pg_catalog.pg_ls_archive_statusdir()', 'execute')
  from pg_stat_archiver
"""
# A segment's .ready file is made the moment it is finished and stays until it is
# archived: the oldest one's time is when the oldest waiting segment started waiting.
# (superuser or pg_monitor; last_archived_time would only bound it from above: an idle
# archiver's last success may be hours older than the segment it has just been given.)
_OLDEST_READY = """
select min(modification) from pg_ls_archive_statusdir()
 where name ~ '^[0-9A-F]{24}[.]ready$'
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
    # the lag's facts: the segment the server writes into now (None on a standby), its
    # wal_segment_size, the server's clock when read, when the oldest waiting segment
    # was marked ready (None when nothing waits or the role may not list archive_status)
    current_wal: str | None = None
    wal_segment_size: int | None = None
    read_at: datetime | None = None
    waiting_since: datetime | None = None
    may_list_ready: bool = False

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
        """pg_stat_archiver's fields and the lag, as a sentence."""
        return f"pg_stat_archiver: {self.describe_counts()}; {self.describe_waiting()}"

    def describe_counts(self) -> str:
        """'no failure, last archived ... at ... (5 archived)'."""
        failed = (f"last failed {self.last_failed_wal} at {_when(self.last_failed_time)} "
                  f"({self.failed_count} failures)" if self.last_failed_wal else "no failure")
        archived = (f"last archived {self.last_archived_wal} at "
                    f"{_when(self.last_archived_time)}" if self.last_archived_wal
                    else "nothing archived yet")
        return f"{failed}, {archived} ({self.archived_count} archived)"

    @property
    def waiting_segments(self) -> int | None:
        """Finished segments not archived yet; None when that cannot be known
        (why_waiting_unknown says why)."""
        return self._waiting()[0]

    @property
    def why_waiting_unknown(self) -> str:
        return self._waiting()[1]

    @property
    def waited_s(self) -> float | None:
        """How long the oldest waiting segment has waited, by the server's clock."""
        if not self.waiting_segments or self.waiting_since is None or self.read_at is None:
            return None
        return max(0.0, (self.read_at - self.waiting_since).total_seconds())

    def describe_waiting(self) -> str:
        """'3 segments waiting to be archived, the oldest for 2m05s', or why unknown."""
        count = self.waiting_segments
        if count is None:
            return f"segments waiting to be archived: unknown ({self.why_waiting_unknown})"
        if count == 0:
            return "no segment waiting to be archived"
        text = f"{count} segment{'s' if count != 1 else ''} waiting to be archived"
        if self.waited_s is not None:
            return f"{text}, the oldest for {format_duration(self.waited_s)}"
        if not self.may_list_ready:
            return f"{text} (for how long needs pg_monitor, to list pg_wal/archive_status)"
        return text

    def _waiting(self) -> tuple[int | None, str]:
        if not self.archives:
            return None, f"archive_mode is {self.archive_mode}"
        if self.current_wal is None or not self.wal_segment_size:
            return None, "a standby has no WAL position of its own to count to"
        last = self.last_archived_wal
        if last is None:
            return None, "nothing archived yet to count from"
        if not is_segment(last):
            # a timeline history file jumps the queue of segments; a backup history
            # file is named by its backup's first segment, archived long before it
            # may be: what was archived before either cannot be told from its name
            return None, f"the newest file archived, {last}, is no WAL segment"
        done = Segment.parse(last, self.wal_segment_size)
        current = Segment.parse(self.current_wal, self.wal_segment_size)
        if done.timeline != current.timeline:
            # the old timeline's tail and the new one's start overlap in numbers
            return None, (f"the newest segment archived is on timeline {done.timeline}, "
                          f"the server writes timeline {current.timeline}")
        return max(0, current.number - done.number - 1), ""


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
        # labelled: on one line (drdeck status) it follows the server's last word
        return (f"{head} The server's log ({_shown(log)}) says:\n{quoted}\n"
                f"Archiver lag: {self.second.describe_waiting()}.")


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
        stats = _stats(row, log, problem)
        if stats.may_list_ready and stats.waiting_segments:
            try:
                oldest = await (await conn.execute(_OLDEST_READY)).fetchone()
            except psycopg.Error:
                return stats  # the count stands without its age
            stats = replace(stats, waiting_since=oldest[0])
    return stats


async def check_archiver(dsn: str, pause_s: float = 1.0) -> ArchiverCheck:
    """Read twice, `pause_s` apart: a failure under way shows as a growing count."""
    import asyncio

    first = await read_stats(dsn)
    if not first.archives:
        return ArchiverCheck(first, first)
    await asyncio.sleep(pause_s)
    return ArchiverCheck(first, await read_stats(dsn))


def _stats(row: Any, log: Path | None, problem: str) -> ArchiverStats:
    (mode, recovery, _pid, archived, archived_wal, archived_at, failed, failed_wal, failed_at,
     walfile, lsn, segment_size, read_at, may_list) = row
    current = None
    if walfile is not None and lsn is not None and segment_size:
        current = Segment.of_lsn(int(walfile[:8], 16), parse_lsn(lsn), int(segment_size)).name
    return ArchiverStats(str(mode), bool(recovery), int(archived or 0), archived_wal,
                         archived_at, int(failed or 0), failed_wal, failed_at, log, problem,
                         current_wal=current, wal_segment_size=segment_size, read_at=read_at,
                         may_list_ready=bool(may_list))


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _shown(log: Any) -> str:
    # /proc/<pid>/fd/2 is how we read it; the operator wants the file's own name
    import os

    try:
        return os.readlink(log) if str(log).startswith("/proc/") else str(log)
    except OSError:
        return str(log)
