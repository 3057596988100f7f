"""The recoverable window: from when to when can this cluster be restored?

A point is reachable when a base backup ended before it and every WAL segment
from that backup's start up to the point is archived. So each complete base
backup opens a window at its stop time, and the window runs to the last
commit in the contiguous WAL that follows it: a missing segment (a gap) ends
it there. The end is the real commit time read from the WAL with pg_waldump,
not a file's modification time.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui import environment
from tui.catalog.signatures import UNSIGNED, Signing
from tui.errors import DrdeckError
from tui.pitr.basebackup import BaseManifest, read_base_backups
from tui.postgres.binaries import pg_bin
from tui.wal.archive import archived_name, fetch, wal_prefix
from tui.wal.names import (
    HISTORY,
    SEGMENT,
    Segment,
    TimelineSwitch,
    history_name,
    parse_history,
)

_COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
_LOOK_BACK = 8  # segments searched backwards for the last commit


@dataclass(frozen=True)
class Gap:
    timeline: int
    missing_from: str  # first missing segment name
    missing_to: str  # last missing segment name
    resumes_at: str  # the next archived segment

    def describe(self) -> str:
        span = self.missing_from if self.missing_from == self.missing_to else \
            f"{self.missing_from} .. {self.missing_to}"
        return f"WAL gap on timeline {self.timeline}: {span} missing (archive resumes at " \
               f"{self.resumes_at})"


@dataclass(frozen=True)
class Window:
    base: BaseManifest  # the oldest base backup that opens it
    bases: tuple[BaseManifest, ...]  # every base backup inside it, oldest first
    start: datetime  # the base backup's stop time: the earliest reachable point
    end: datetime | None  # the last commit in the contiguous WAL (None: none found)
    end_lsn: int  # end of the last contiguous segment
    timeline: int  # the timeline the window ends on
    last_segment: str
    ended_by: Gap | None = None

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment <= self.end)


@dataclass
class Archive:
    """What the WAL archive holds: segment numbers per timeline, and timeline histories."""

    segments: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    histories: dict[int, list[TimelineSwitch]] = field(default_factory=dict)
    names: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def timelines(self) -> list[int]:
        return sorted(set(self.segments) | set(self.histories))


@dataclass
class RecoveryPicture:
    base_backups: list[tuple[BaseManifest | None, str, str]]  # (manifest, stamp, problem)
    archive: Archive
    windows: list[Window]
    gaps: list[Gap]
    problems: list[str]
    missing_histories: list[int] = field(default_factory=list)  # timelines without .history

    @property
    def earliest(self) -> datetime | None:
        return self.windows[0].start if self.windows else None

    @property
    def latest(self) -> datetime | None:
        ends = [w.end for w in self.windows if w.end is not None]
        return max(ends) if ends else None

    def window_for(self, moment: datetime) -> Window | None:
        for window in self.windows:
            if window.contains(moment):
                return window
        return None

    def describe_windows(self) -> str:
        if not self.windows:
            return "nothing is recoverable (no complete base backup with its WAL)"
        return "; ".join(f"{_when(w.start)} to {_when(w.end) if w.end else 'unknown'}"
                         for w in self.windows)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def read_archive(store: Any, cluster: str, segment_size: int,
                 gpg_home: str | None = None) -> Archive:
    archive = Archive()
    prefix = wal_prefix(cluster)
    for obj in store.list(prefix):
        name = archived_name(obj.key[len(prefix):])
        if SEGMENT.fullmatch(name):
            segment = Segment.parse(name, segment_size)
            archive.segments[segment.timeline].add(segment.number)
            archive.names[(segment.timeline, segment.number)] = name
        elif HISTORY.fullmatch(name):
            archive.histories[int(name[:8], 16)] = []
    for timeline in list(archive.histories):
        raw = _read_plain(store, cluster, f"{timeline:08X}.history", gpg_home)
        archive.histories[timeline] = parse_history(raw.decode(errors="replace")) if raw else []
    return archive


def _read_plain(store: Any, cluster: str, name: str, gpg_home: str | None) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="drdeck-wal-") as tmp:
        dest = Path(tmp) / name
        if not fetch(store, cluster, name, dest, gpg_home):
            return None
        return dest.read_bytes()


def picture(store: Any, cluster: str, gpg_home: str | None = None,
            read_commit_times: bool = True, signing: Signing = UNSIGNED,
            encrypted_only: bool = False) -> RecoveryPicture:
    """Base backups, the archive, the windows and the gaps, read from the repository
    (`signing`, `encrypted_only`: which base backups count, see read_base_backups)."""
    backups = read_base_backups(store, cluster, signing, encrypted_only)
    complete = sorted((m for m, _, problem in backups if m is not None and not problem),
                      key=lambda m: m.stopped)
    problems: list[str] = []
    if not complete:
        return RecoveryPicture(backups, Archive(), [], [], ["no complete base backup"])
    archive = read_archive(store, cluster, complete[0].wal_segment_size, gpg_home)
    missing = missing_histories(archive, min(base.timeline for base in complete))
    problems += [describe_missing_history(timeline, cluster) for timeline in missing]
    windows: list[Window] = []
    gaps: dict[tuple[int, int], Gap] = {}
    for base in complete:
        run_end, timeline, gap = contiguous_run(archive, base)
        if run_end is None or run_end.number < base.last_segment.number:
            problems.append(f"base backup {base.stamp} is not restorable: the WAL from its "
                            f"start ({base.first_segment.name}) to its end "
                            f"({base.last_segment.name}) is not all archived")
            continue
        if gap is not None:
            gaps[(gap.timeline, Segment.parse(gap.missing_from, base.wal_segment_size).number)] \
                = gap
        if windows and windows[-1].last_segment == run_end.name:
            previous = windows[-1]
            windows[-1] = Window(previous.base, (*previous.bases, base), previous.start,
                                 previous.end, previous.end_lsn, previous.timeline,
                                 previous.last_segment, previous.ended_by)
            continue
        try:
            end = _last_commit(store, cluster, archive, run_end, gpg_home) \
                if read_commit_times else None
        except WalUnreadable as exc:
            problems.append(f"{exc}; until then the window ends at base backup "
                            f"{base.stamp}'s end")
            end = None
        if end is not None and end < base.stopped:
            end = base.stopped  # no commit since the backup: its own end is reachable
        windows.append(Window(base, (base,), base.stopped, end or base.stopped,
                              run_end.end_lsn, timeline, run_end.name, gap))
    return RecoveryPicture(backups, archive, windows, list(gaps.values()), problems, missing)


def missing_histories(archive: Archive, oldest: int) -> list[int]:
    """Timelines after `oldest` with WAL archived but not their .history file: recovery
    cannot follow them (it learns where a timeline branched from that file only)."""
    return sorted(t for t in archive.segments if t > oldest and t not in archive.histories)


def describe_missing_history(timeline: int, cluster: str) -> str:
    name = history_name(timeline)
    return (f"WAL of timeline {timeline} is archived but not {name}, so recovery cannot "
            f"follow timeline {timeline}: archive it from the server that was promoted "
            f"(drdeck wal push --cluster {cluster} DATA_DIR/pg_wal/{name})")


def contiguous_run(archive: Archive, base: BaseManifest
                    ) -> tuple[Segment | None, int, Gap | None]:
    """The last segment reachable without a gap from the base's first segment.

    It follows timeline switches: when a later timeline branched off the one
    being followed inside the run, the run continues on it (recovery to the
    latest timeline does the same).
    """
    timeline = base.timeline
    current = base.first_segment
    if current.number not in archive.segments.get(timeline, set()):
        return None, timeline, None
    while True:
        child = _child_branching_in(archive, timeline, current)
        if child is not None and current.number in archive.segments.get(child, set()):
            timeline, current = child, current.on_timeline(child)
        following = current.next()
        if following.number not in archive.segments.get(timeline, set()):
            # after a promotion the old timeline's last segment is archived only as
            # .partial: the new timeline's copy of that segment carries on from it
            child = _child_branching_in(archive, timeline, following)
            if child is None or following.number not in archive.segments.get(child, set()):
                break
            timeline, following = child, following.on_timeline(child)
        current = following
    later = sorted(n for n in archive.segments.get(timeline, set()) if n > current.number)
    gap = None
    if later:
        size = current.size
        gap = Gap(timeline, current.next().name, Segment(timeline, later[0] - 1, size).name,
                  Segment(timeline, later[0], size).name)
    return current, timeline, gap


def _child_branching_in(archive: Archive, parent: int, segment: Segment) -> int | None:
    """The newest timeline that branched off `parent` inside `segment`, if any."""
    children = [
        timeline for timeline, switches in archive.histories.items()
        if switches and switches[-1].parent == parent
        and segment.start_lsn <= switches[-1].switch_lsn < segment.end_lsn
    ]
    return max(children) if children else None


def _last_commit(store: Any, cluster: str, archive: Archive, last: Segment,
                 gpg_home: str | None) -> datetime | None:
    """The newest commit time in the last segments of a run (read with pg_waldump)."""
    segment = last
    for _ in range(_LOOK_BACK):
        name = archive.names.get((segment.timeline, segment.number)) or segment.name
        raw = _read_plain(store, cluster, name, gpg_home)
        if raw is None:
            return None
        found = commit_times(raw, name)
        if found:
            return max(found)
        if segment.number == 0:
            return None
        segment = Segment(segment.timeline, segment.number - 1, segment.size)
        if segment.number not in archive.segments.get(segment.timeline, set()):
            return None
    return None


# the first page header's xlp_magic says which major wrote a segment (XLOG_PAGE_MAGIC);
# pg_waldump reads its own major's WAL only
WAL_MAGIC_MAJORS = {0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18}


class WalUnreadable(DrdeckError):
    """WAL of a major the pg_waldump at hand cannot read."""


def wal_major(segment_bytes: bytes) -> int | None:
    """The PostgreSQL major that wrote a WAL segment, from its first page's magic."""
    if len(segment_bytes) < 2:
        return None
    return WAL_MAGIC_MAJORS.get(int.from_bytes(segment_bytes[:2], "little"))


def waldump_for(segment_bytes: bytes, name: str) -> str:
    """The pg_waldump that reads this segment: pg_bin()'s when it is of the segment's
    major, else that major's Debian one; WalUnreadable saying which to install or set."""
    from tui.postgres.binaries import DEBIAN_PG_ROOT, server_major_version

    waldump = pg_bin("pg_waldump")
    major = wal_major(segment_bytes)
    have = server_major_version()
    if major is None or major == have:
        return waldump
    debian = DEBIAN_PG_ROOT / str(major) / "bin" / "pg_waldump"
    if os.access(debian, os.X_OK):
        return str(debian)
    raise WalUnreadable(
        f"WAL segment {name} was written by PostgreSQL {major}, and the pg_waldump here "
        f"({waldump}) is PostgreSQL {have}'s, which reads only its own: the time of the "
        f"last commit cannot be read. Set DRDECK_PG_BIN to PostgreSQL {major}'s programs")


def commit_times(segment_bytes: bytes, name: str) -> list[datetime]:
    """Commit timestamps of the records that start in one WAL segment."""
    waldump = waldump_for(segment_bytes, name)
    with tempfile.TemporaryDirectory(prefix="drdeck-waldump-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(segment_bytes)
        result = subprocess.run(
            [waldump, "--rmgr=Transaction", str(path)],
            # it parses WAL from the repository: the base set, none of drdeck's secrets
            capture_output=True, text=True, check=False,
            env={**environment.base(), "TZ": "UTC"})
    # the last record usually continues into the next segment: pg_waldump then ends
    # with an error after printing everything it could read, which is all we need
    times = []
    for match in _COMMIT.finditer(result.stdout):
        times.append(datetime.fromisoformat(match[1]).replace(tzinfo=UTC))
    return times
