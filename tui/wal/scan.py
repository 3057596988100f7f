"""Scan a source's WAL archive for destructive transactions (tui.wal.events), streaming.

Any source behind the Source protocol will do: its recovery picture lists the segments
per timeline, and its wal_fetcher gives one segment's plain bytes (decrypted and
decompressed). Segments are fetched ahead, FETCHERS at a time, into a private scratch
directory holding a few batches at most (the archive never lands on disk whole), and
pg_waldump of the segments' own major reads each batch of BATCH segments, its text
parsed as it prints it: this process reads the text and keeps the collector's state, and
digester processes (tui.wal.digester) run the regular expressions over its blocks.

A record can start in one segment and end in the next. So each batch but the last also
holds the segment after it, and of what pg_waldump prints there only records that start
before that segment are kept: the next batch, starting at that segment, prints the rest
(pg_waldump skips the tail of a record it did not see begin).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui import environment
from tui.errors import DrdeckError
from tui.wal.events import WALDUMP_RMGRS, DestructiveEvent, ParseStats
from tui.wal.names import Segment, format_lsn, parse_lsn

BATCH = 8  # segments per pg_waldump: its start costs little next to 8 segments of text
FETCHERS = 4  # segments fetched at once: a fetch waits on the store more than on a core
# Blocks of text are digested (tui.wal.events.digest_block: the regular expressions, most
# of the parsing) by DIGESTERS other processes (tui.wal.digester) while this one reads
# pg_waldump's text and keeps the state. A scan of fewer than PARALLEL_FROM segments is
# not worth starting them for.
DIGESTERS = 2
PARALLEL_FROM = 2 * BATCH


class ScanFailed(DrdeckError):
    pass


@dataclass
class ScanResult:
    events: list[DestructiveEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    segments: int = 0
    bytes: int = 0
    stats: ParseStats = field(default_factory=ParseStats)


def segments_by_timeline(picture: Any) -> list[tuple[int, list[str]]]:
    """Each timeline's archived segments, in order (their names sort as their numbers)."""
    names: dict[int, list[str]] = {}
    for (timeline, _), name in picture.archive.names.items():
        names.setdefault(timeline, []).append(name)
    return [(timeline, sorted(names[timeline])) for timeline in sorted(names)]


def scan(fetch: Callable[[str], bytes | None], timelines: list[tuple[int, list[str]]], *,
         min_rows: int, progress: Callable[[int, int], None] = lambda done, total: None,
         ) -> ScanResult:
    """Every destructive event in the segments, oldest first; `progress(done, total)` in
    segments as they are read."""
    result = ScanResult()
    total = sum(len(names) for _, names in timelines)
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="drdeck-wal-events-"))
        os.chmod(scratch, 0o700)  # WAL holds the rows: private to this account
        pool = None
        if total >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
            from tui.wal.digester import DigestPool

            pool = stack.enter_context(DigestPool(DIGESTERS))
        for timeline, names in timelines:
            _scan_timeline(fetch, timeline, names, Path(scratch), min_rows, result,
                           lambda: progress(result.segments, total), pool)
    return result


def _scan_timeline(fetch: Callable[[str], bytes | None], timeline: int, names: list[str],
                   scratch: Path, min_rows: int, result: ScanResult,
                   advanced: Callable[[], None], pool: Any) -> None:
    from tui.pitr.window import wal_major, waldump_for
    from tui.wal.events import destructive_events

    batches = [names[i:i + BATCH] for i in range(0, len(names), BATCH)]
    with ThreadPoolExecutor(FETCHERS, thread_name_prefix="drdeck-scan-fetch") as fetchers:
        fetched: dict[str, Future[int]] = {}

        def ahead(upto: int) -> None:  # the next batch's segments, while this one is read
            for name in names[:upto]:
                if name not in fetched:
                    fetched[name] = fetchers.submit(_fetch_to, fetch, scratch, name)

        ahead(2 * BATCH + 1)
        size = fetched[names[0]].result()
        with open(scratch / names[0], "rb") as handle:
            head = handle.read(2)
        major = wal_major(head)
        if major is None:
            raise ScanFailed(f"{names[0]} is not a WAL segment (no known page magic)")
        waldump = waldump_for(head, names[0])
        def texts() -> Iterator[str]:  # every batch's text, in order, for one parser
            for index, batch in enumerate(batches):
                follower = batches[index + 1][0] if index + 1 < len(batches) else None
                ahead((index + 2) * BATCH + 1)
                for name in [*batch, *([follower] if follower else [])]:
                    if fetched[name].result() != size:
                        raise ScanFailed(f"{name} is {fetched[name].result():,} bytes, not "
                                         f"a {size:,}-byte segment like {names[0]}")
                yield from _dump(waldump, scratch, timeline, batch, follower, size,
                                 result.problems)
                for name in batch:  # read: only what is ahead stays on disk
                    (scratch / name).unlink()
                result.segments += len(batch)
                result.bytes += len(batch) * size
                advanced()

        result.events.extend(destructive_events(
            texts(), major=major, timeline=timeline, min_rows=min_rows, stats=result.stats,
            digests=pool.digests(major) if pool is not None else None))


def _fetch_to(fetch: Callable[[str], bytes | None], scratch: Path, name: str) -> int:
    """The segment, fetched into the scratch directory; its size."""
    data = fetch(name)
    if data is None:
        raise ScanFailed(f"{name} is listed in the archive but cannot be fetched")
    fd = os.open(scratch / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return len(data)


def _dump(waldump: str, scratch: Path, timeline: int, batch: list[str],
          follower: str | None, size: int, problems: list[str]) -> Iterator[str]:
    """pg_waldump's text over the batch (and its follower), a MiB at a time, as it prints
    it: of the follower's records, only those that started before it. Its complaint when
    it stopped before the end of the batch is a problem."""
    start = Segment.parse(batch[0], size).start_lsn
    boundary = Segment.parse(follower, size).start_lsn if follower else None
    end = Segment.parse(follower or batch[-1], size).end_lsn
    # only the resource managers events are made of: a third less text to print and read
    argv = [waldump, f"--path={scratch}", f"--timeline={timeline}",
            f"--start={format_lsn(start)}", f"--end={format_lsn(end)}",
            *(f"--rmgr={rmgr}" for rmgr in WALDUMP_RMGRS)]
    crossed = False
    # TZ=UTC: commit times are printed in pg_waldump's zone, which is then UTC
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
            text=True, errors="replace", env={**environment.base(), "TZ": "UTC"}) as process:
        assert process.stdout is not None
        try:
            pending = ""
            while not crossed:
                data = process.stdout.read(1 << 20)
                if not data:
                    break
                text = pending + data
                cut = text.rfind("\n") + 1
                pending, text = text[cut:], text[:cut]
                if boundary is not None and not _starts_before(_last_line(text), boundary):
                    # records are in WAL order: from the first in the follower on, none
                    # is this batch's (the follower's own batch prints them)
                    kept = []
                    for line in text.splitlines(keepends=True):
                        if not _starts_before(line, boundary):
                            crossed = True
                            break
                        kept.append(line)
                    text = "".join(kept)
                yield text
            if pending and not crossed:
                yield pending
        finally:
            if process.poll() is None:  # the reader gave up, or has all it needs
                process.kill()
        code = process.wait()
        errors.seek(0)
        said = (errors.read().decode(errors="replace").strip().splitlines()
                or ["no reason given"])[-1]
    # the end of the archive is where the last record stops: said there, no problem
    if code not in (0, -9) and not crossed and follower is not None \
            and not _after(said, boundary or 0):
        problems.append(f"pg_waldump stopped in {batch[0]} .. {batch[-1]}: {said}")


def _last_line(text: str) -> str:
    return text[text.rfind("\n", 0, len(text) - 1) + 1:]


def _starts_before(line: str, boundary: int) -> bool:
    at = line.find(", lsn: ")
    if at < 0:
        return True  # not a record line: the parser skips it
    end = line.find(",", at + 7)
    try:
        return parse_lsn(line[at + 7:end]) < boundary
    except ValueError:
        return True


def _after(said: str, boundary: int) -> bool:
    """Whether pg_waldump's error is about a point at or after `boundary`."""
    for word in said.replace(",", " ").replace(":", " ").split():
        if "/" in word:
            with contextlib.suppress(ValueError):
                return parse_lsn(word) >= boundary
    return False


def eta_line(done: int, total: int, started: float) -> str:
    elapsed = time.monotonic() - started
    if not done or done >= total:
        return f"{done} of {total} segments read"
    left = elapsed / done * (total - done)
    return f"{done} of {total} segments read, about {left:.0f} s left"


