"""Prefetch WAL into a spool directory, so recovery never waits on one round trip per segment.

restore_command runs once per segment, one after the other. Without help,
replay from S3 is bound by a download per 16 MiB. A prefetcher started on the
first fetch downloads (and decrypts) the next segments in parallel into the
spool; each later fetch finds its segment there and only renames it. One
prefetcher per spool (a lock file), bounded to `depth` segments ahead; it
stops at the end of the archive, or when recovery stops asking.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tui.wal.archive import fetch, write_atomically
from tui.wal.names import Segment, is_segment
from tui.wal.spool_lock import hold, is_held

LOCK = ".prefetch.lock"
LAST = ".last-requested"  # the newest segment recovery asked for: nothing before it is needed
IDLE_EXIT_S = 120.0  # recovery stopped asking: the prefetcher leaves
WORKERS = 4


def take_from_spool(spool: Path, name: str, dest: Path) -> bool:
    source = spool / name
    try:
        os.replace(source, dest)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # across file systems rename says EXDEV before it looks for the file
        if not source.exists():
            return False
        # the spool is on another file system than pg_wal: copy, then let go of it
        write_atomically(dest, source.read_bytes())
        source.unlink(missing_ok=True)
    note_request(spool, name)  # after taking it: the prefetcher's clean-up must not race us
    return True


def note_request(spool: Path, name: str) -> None:
    """Remember what recovery asked for last, so the prefetcher never fetches behind it."""
    if not is_segment(name) or not spool.is_dir():
        return
    with contextlib.suppress(OSError):
        write_atomically(spool / LAST, name.encode())


def _last_requested(spool: Path, size: int, timeline: int) -> Segment | None:
    try:
        name = (spool / LAST).read_text().strip()
        segment = Segment.parse(name, size)
    except (OSError, ValueError):
        return None
    return segment if segment.timeline == timeline else None


def start_prefetcher(command: list[str], options: list[str], spool: Path, after: str,
                     size: int, depth: int) -> None:
    """Spawn a detached prefetcher unless one already holds the spool's lock."""
    spool.mkdir(parents=True, exist_ok=True)
    if is_held(spool / LOCK):
        return
    subprocess.Popen(
        [*command, "wal", "prefetch", *options, "--spool", str(spool), "--after", after,
         "--segment-size", str(size), "--depth", str(depth)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def run_prefetcher(store: Any, cluster: str, spool: Path, after: str, size: int, depth: int,
                   gpg_home: str | None, encrypted_first: bool) -> None:
    """Keep up to `depth` segments after the one recovery last took, until the archive ends."""
    handle = hold(spool / LOCK)  # held for the process's life
    if handle is None:
        return  # another prefetcher got there first
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    current = Segment.parse(after, size)
    wanted = current.next()
    idle_since = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        while time.monotonic() - idle_since < IDLE_EXIT_S:
            last = _last_requested(spool, size, current.timeline)
            if last is not None and last.number >= wanted.number:
                wanted = last.next()  # recovery got ahead of us by itself: skip what it has
            for stale in _spooled(spool):
                if last is not None and is_segment(stale) and \
                        Segment.parse(stale, size).number <= last.number:
                    (spool / stale).unlink(missing_ok=True)
            ahead = _spooled(spool)
            if len(ahead) >= depth:
                time.sleep(0.02)
                if len(_spooled(spool)) < len(ahead):
                    idle_since = time.monotonic()  # recovery is consuming
                continue
            batch = []
            while len(ahead) + len(batch) < depth:
                batch.append(wanted)
                wanted = wanted.next()
            found = list(pool.map(lambda seg: _one(store, cluster, spool, seg, gpg_home,
                                                   encrypted_first), batch))
            if not all(found):
                return  # the end of the archive (or a gap): recovery ends there too
            idle_since = time.monotonic()


def _spooled(spool: Path) -> list[str]:
    return [p for p in os.listdir(spool) if not p.startswith(".")]


def _one(store: Any, cluster: str, spool: Path, segment: Segment, gpg_home: str | None,
         encrypted_first: bool) -> bool:
    target = spool / segment.name
    if target.exists():
        return True
    try:
        return fetch(store, cluster, segment.name, target, gpg_home, encrypted_first)
    except Exception as exc:  # the foreground fetch will meet it again and report it
        print(f"prefetch of {segment.name} failed: {exc}", file=sys.stderr)
        return False
