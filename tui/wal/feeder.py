"""Feed WAL to a recovering server from the restore itself, through a spool directory.

During a guided PITR, drdeck (the operator's process, which holds the
repository credentials and the decryption key) fetches and decrypts segments;
the server's restore_command, running as the postgres OS user, only moves
files out of the spool. So neither the keys nor the cloud credentials ever
need to be readable by the postgres account, and no Python starts per segment.

    restore_command:  %f in the spool?  ── yes ─▶ mv it to %p
                                          └─ no ──▶ leave .want.%f, wait for %f or %f.missing
    feeder:           serves .want files, and keeps `depth` segments ready ahead

If the feeder stops answering, restore_command gives up with exit 126, which
PostgreSQL treats as fatal: recovery stops rather than ending early at a
point nobody chose. It gives up at once when the spool is removed (drdeck does
when recovery fails): PostgreSQL's startup process outlives a killed postmaster
while restore_command runs, and holds the shared memory a new start needs.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from tui.wal.archive import fetch
from tui.wal.names import Segment, is_segment
from tui.wal.restore_line import quoted

WANT = ".want."
MISSING = ".missing"
POLL_S = 0.02


def restore_command(spool: Path, wait_s: int = 600) -> str:
    """The shell line PostgreSQL runs for each file it needs."""
    s = quoted(str(spool))
    ticks = wait_s * 20
    return (
        f'f={s}/"%f"; '
        f'if [ ! -f "$f" ]; then '
        f'touch {s}/"{WANT}%f"; i=0; '
        f'while [ ! -f "$f" ] && [ ! -f "$f{MISSING}" ] && [ -d {s} ] && [ $i -lt {ticks} ]; '
        f'do sleep 0.05; i=$((i+1)); done; '
        f'fi; '
        # a move that fails is not "not in the archive" (exit 1 would end recovery early)
        f'if [ -f "$f" ]; then mv -f "$f" "%p" && exit 0; exit 126; fi; '
        f'if [ -f "$f{MISSING}" ]; then rm -f "$f{MISSING}"; exit 1; fi; '
        f'if [ ! -d {s} ]; then echo "drdeck stopped feeding WAL (the restore was stopped)" >&2; '
        f'exit 126; fi; '
        f'echo "drdeck stopped feeding WAL: %f never came (waited {wait_s}s)" >&2; '
        f'exit 126'
    )


class WalFeeder:
    def __init__(self, store: Any, cluster: str, spool: Path, *, gpg_home: str | None,
                 encrypted_first: bool, depth: int = 16, owner: tuple[int, int] | None = None,
                 reporter: Any = None):
        self.store, self.cluster, self.spool = store, cluster, spool
        self.gpg_home, self.encrypted_first = gpg_home, encrypted_first
        self.depth, self.owner, self.reporter = depth, owner, reporter
        self.served = 0
        self._ahead: Segment | None = None
        self._end_of_archive = False
        self._tasks: dict[str, asyncio.Task[bool]] = {}

    def prepare(self) -> None:
        self.spool.mkdir(mode=0o700, exist_ok=True)
        self._give(self.spool)

    async def run(self) -> None:
        """Serve until cancelled (when recovery is over); a failure is told, never fatal."""
        while True:
            try:
                for entry in os.listdir(self.spool):
                    if entry.startswith(WANT):
                        name = entry[len(WANT):]
                        await self._serve(name)
                        (self.spool / entry).unlink(missing_ok=True)
                self._prefetch()
            except OSError as exc:  # the server races us for the spool's files
                self._tell(f"WAL feeder: {exc}")
            await asyncio.sleep(POLL_S)

    async def _serve(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is None or (task.done() and not (self.spool / name).exists()):
            # not fetched yet, or fetched and already taken: recovery may ask twice
            task = self._start(name)
        size = await task
        if size is None:
            self._publish_marker(name)
            if is_segment(name):
                self._end_of_archive = True
            return
        self.served += 1
        if is_segment(name) and size:
            segment = Segment.parse(name, size)
            if self._ahead is None or self._ahead.timeline != segment.timeline or \
                    self._ahead.number <= segment.number:
                self._ahead = segment
                self._end_of_archive = False

    def _start(self, name: str) -> asyncio.Task[int | None]:
        return asyncio.ensure_future(self._fetch_and_tell(name))

    async def _fetch_and_tell(self, name: str) -> int | None:
        size, error = await asyncio.to_thread(self._fetch, name)
        if error:
            self._tell(f"fetching {name} failed: {error}")
        return size

    def _fetch(self, name: str) -> tuple[int | None, str | None]:
        """(size, None) when delivered into the spool, (None, why) when not.

        The file is fetched under a hidden name, handed to the server account, and
        only then renamed into view: the server never sees a file it cannot read.
        """
        target = self.spool / name
        if target.exists():
            return target.stat().st_size, None
        hidden = self.spool / f".fetching.{name}"
        try:
            found = fetch(self.store, self.cluster, name, hidden, self.gpg_home,
                          self.encrypted_first)
            if not found:
                return None, None
            self._give(hidden)
            size = hidden.stat().st_size
            os.replace(hidden, target)
            return size, None
        except Exception as exc:  # told to the operator; the server will ask again
            hidden.unlink(missing_ok=True)
            return None, str(exc)

    def _publish_marker(self, name: str) -> None:
        hidden = self.spool / f".marking.{name}"
        hidden.touch()
        self._give(hidden)
        os.replace(hidden, self.spool / f"{name}{MISSING}")

    def _tell(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.output(line, "stderr")

    def _prefetch(self) -> None:
        """Keep up to `depth` segments after the last one served on their way or ready."""
        if self._ahead is None or self._end_of_archive:
            return
        for name, task in list(self._tasks.items()):
            if task.done() and task.result() is None:
                self._tasks.pop(name)
                self._end_of_archive = True  # the archive ends here: stop reaching further
                return
        ready = len([e for e in os.listdir(self.spool) if not e.startswith(".")])
        segment = self._ahead
        while ready + len([t for t in self._tasks.values() if not t.done()]) < self.depth:
            segment = segment.next()
            if segment.name in self._tasks or (self.spool / segment.name).exists():
                continue
            self._tasks[segment.name] = self._start(segment.name)
            ready += 1

    def _give(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
