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

The spool belongs to the server's account, and so does the data directory around
it, while the feeder may run as root: so it is held by one descriptor, taken
when it is made, every file in it is made, handed over and renamed through that
descriptor without following a link, and only the name of a WAL file is ever
served (a segment, a timeline history, a backup history file). Whatever the
server's account puts there, it reaches no file it could not reach itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.errors import DrdeckError
from tui.wal.archive import fetch_bytes
from tui.wal.names import Segment, is_restorable, is_segment
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


class SpoolRefused(DrdeckError):
    pass


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class WalFeeder:
    def __init__(self, store: Any, cluster: str, spool: Path, *, gpg_home: str | None,
                 encrypted_first: bool, depth: int = 16, owner: tuple[int, int] | None = None,
                 reporter: Any = None, fetch: Callable[[str], bytes | None] | None = None):
        """Feeds from drdeck's own archive of `cluster` in `store`; or, given `fetch`
        (a WAL file's name to its plain bytes, None when the archive lacks it), from
        another engine's archive (tui.sources)."""
        self.store, self.cluster, self.spool = store, cluster, spool
        self.gpg_home, self.encrypted_first = gpg_home, encrypted_first
        self.fetch = fetch or (lambda name: fetch_bytes(store, cluster, name, gpg_home,
                                                        encrypted_first))
        self.depth, self.owner, self.reporter = depth, owner, reporter
        self.served = 0
        self._ahead: Segment | None = None
        self._end_of_archive = False
        self._tasks: dict[str, asyncio.Task[int | None]] = {}
        self._dir: int | None = None  # the spool, by descriptor
        self._dir_lock = threading.Lock()  # a fetch thread may outlive close()
        self._refused: set[str] = set()

    def prepare(self) -> None:
        """Make the spool (it must not exist: nothing else makes it) and hold it open."""
        try:
            os.mkdir(self.spool, 0o700)
        except FileExistsError:
            raise SpoolRefused(f"cannot feed WAL through {self.spool}: it already exists, and "
                               "drdeck makes it new for each restore; remove it") from None
        try:
            self._dir = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC)
        except NotADirectoryError:
            raise SpoolRefused(f"cannot feed WAL through {self.spool}: something else took its "
                               "place as soon as it was made (a symbolic link?); look at who "
                               "could write there") from None
        self._give(self._dir)

    async def run(self) -> None:
        """Serve until cancelled (when recovery is over); a failure is told, never fatal."""
        while True:
            try:
                for entry in os.listdir(self._spool()):
                    if entry.startswith(WANT):
                        name = entry[len(WANT):]
                        if is_restorable(name):
                            await self._serve(name)
                        else:
                            self._refuse(name)
                        _unlink(self._spool(), entry)
                self._prefetch()
            except OSError as exc:  # the server races us for the spool's files
                self._tell(f"WAL feeder: {exc}")
            await asyncio.sleep(POLL_S)

    def _refuse(self, name: str) -> None:
        if name not in self._refused:
            self._refused.add(name)
            self._tell(f"WAL feeder: ignored a request for {name!r} in {self.spool}: not the "
                       "name of a WAL segment, timeline history or backup history file (the "
                       "server never asks for one; who else can write there?)")

    async def _serve(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is None or (task.done() and _size(self._spool(), name) is None):
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

        The file is written under a hidden name, handed to the server account, and
        only then renamed into view: the server never sees a file it cannot read.
        Runs in a thread, with a descriptor of the spool of its own.
        """
        with self._dir_lock:
            if self._dir is None:
                return None, "the feeder has stopped"
            spool = os.dup(self._dir)
        hidden = f".fetching.{name}"
        try:
            size = _size(spool, name)
            if size is not None:
                return size, None
            data = self.fetch(name)
            if data is None:
                return None, None
            self._create(spool, hidden, data)
            os.replace(hidden, name, src_dir_fd=spool, dst_dir_fd=spool)
            return len(data), None
        except Exception as exc:  # told to the operator; the server will ask again
            _unlink(spool, hidden)
            return None, str(exc)
        finally:
            os.close(spool)

    def _publish_marker(self, name: str) -> None:
        hidden, spool = f".marking.{name}", self._spool()
        self._create(spool, hidden, b"")
        os.replace(hidden, f"{name}{MISSING}", src_dir_fd=spool, dst_dir_fd=spool)

    def _create(self, spool: int, name: str, data: bytes) -> None:
        """A new file in the spool holding `data`, the server account's: never through a
        name the server's account put there first (that one is removed)."""
        _unlink(spool, name)
        descriptor = os.open(name, _CREATE, 0o600, dir_fd=spool)
        try:
            with open(descriptor, "wb", closefd=False) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(descriptor)
            self._give(descriptor)
        finally:
            os.close(descriptor)

    def _spool(self) -> int:
        if self._dir is None:
            raise SpoolRefused(f"the WAL feeder for {self.spool} was not prepared")
        return self._dir

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
        ready = len([e for e in os.listdir(self._spool()) if not e.startswith(".")])
        segment = self._ahead
        while ready + len([t for t in self._tasks.values() if not t.done()]) < self.depth:
            segment = segment.next()
            if segment.name in self._tasks or _size(self._spool(), segment.name) is not None:
                continue
            self._tasks[segment.name] = self._start(segment.name)
            ready += 1

    def _give(self, descriptor: int) -> None:
        if self.owner is not None:
            os.fchown(descriptor, *self.owner)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        with self._dir_lock:
            if self._dir is not None:
                os.close(self._dir)
                self._dir = None


def _size(spool: int, name: str) -> int | None:
    """The size of the spool's regular file `name`, if it has one; anything else under
    that name (a link, a directory) is removed, as far as it can be."""
    try:
        info = os.stat(name, dir_fd=spool, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    _unlink(spool, name)
    return None


def _unlink(spool: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(name, dir_fd=spool)  # a link itself, never what it names
