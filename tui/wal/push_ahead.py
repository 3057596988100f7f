"""Archive WAL ahead of PostgreSQL's archiver: `drdeck wal push --spool DIR %p`.

PostgreSQL runs archive_command once per file, one file at a time, and waits for each.
With a spool, the first call starts a pusher (one per spool, a lock file) that archives
every file pg_wal/archive_status marks `.ready`, WORKERS at a time, in one long-lived
process: no interpreter start per segment, and compression, encryption and upload of
one segment overlap the next. Each call then only waits for its own file's mark.

    SPOOL/pushed/<name>   the sha256 of the bytes archived under <name>, written once
                          they are in the repository
    SPOOL/failed/<name>   why archiving <name> failed: the call that finds it says so
                          and fails, so PostgreSQL retries it (and the pusher with it)

The mark names the content, not only the name: a call trusts it only when it is the
sha256 of the file's first MARKED_BYTES as it was given them (its page headers carry
the server's system identifier, timeline and position, and its first records), so a
mark left over from another history of the same name (a restored cluster archiving
into the spool of its predecessor) is not taken for this file's. The shell checks it
with `head -c | sha256sum` in a few milliseconds, where the whole 16 MiB would take
most of a segment's budget. A call that waits longer than WAIT_S archives the file
itself.
The spool holds marks only: WAL is read from pg_wal and never copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tui.errors import DrdeckError
from tui.wal.archive import WalError, write_atomically
from tui.wal.spool_lock import hold, is_held

LOCK = ".pusher.lock"
PUSHED, FAILED = "pushed", "failed"
WORKERS = 2  # this machine's cores: compression and gpg are CPU-bound
AHEAD = 16  # files in flight or marked and not yet asked for
WAIT_S = 60.0
IDLE_S = 10.0  # a pusher with nothing ready for this long exits
POLL_S = 0.01
MARKED_BYTES = 65536  # eight WAL pages


def content_mark(data: bytes) -> str:
    return hashlib.sha256(data[:MARKED_BYTES]).hexdigest()


def check_spool(spool: Path) -> None:
    """Create the spool private to this account, or refuse one another account could
    write: its marks tell PostgreSQL a file is safe to recycle."""
    for folder in (spool, spool / PUSHED, spool / FAILED):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.lstat()
        except OSError as exc:
            raise WalError(f"cannot use spool {folder}: {exc.strerror or exc} (it must be "
                           "a directory the account running archive_command can create "
                           "or owns)") from None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() \
                or info.st_mode & 0o022:
            raise WalError(f"spool {folder} must be a directory of this account's that no "
                           "other can write: its marks say which WAL is archived")


def push_through_spool(path: Path, spool: Path, start_pusher: Callable[[], None],
                       push_here: Callable[[], str], wait_s: float = WAIT_S) -> str:
    """Archive `path` by the pusher's mark, starting it when none runs; archive it here
    when no mark comes in time. What happened, in words; WalError when the pusher
    failed on it."""
    check_spool(spool)
    name = path.name
    try:
        with open(path, "rb") as handle:
            digest = content_mark(handle.read(MARKED_BYTES))
    except OSError as exc:
        raise WalError(f"cannot read {path}: {exc.strerror}") from None
    started = False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        said = _take_mark(spool, name, digest)
        if said is not None:
            return said
        if not started:
            if not is_held(spool / LOCK):
                start_pusher()
            started = True
        time.sleep(POLL_S)
    return push_here()


def _take_mark(spool: Path, name: str, digest: str) -> str | None:
    """What the pusher left for `name`: a message when archived (the mark is removed),
    None when nothing yet. Raises WalError with the pusher's words when it failed."""
    failed = spool / FAILED / name
    with contextlib.suppress(FileNotFoundError):
        why = failed.read_text(errors="replace").strip()
        failed.unlink()
        raise WalError(why or f"{name}: the pusher could not archive it")
    pushed = spool / PUSHED / name
    try:
        marked = pushed.read_text().strip()
    except FileNotFoundError:
        return None
    pushed.unlink(missing_ok=True)
    if marked != digest:  # another file of that name was archived: not this one
        return None
    return f"{name} archived ahead"


def spawn_pusher(argv: list[str]) -> None:
    """Start `argv` (a `drdeck wal push-ahead`) detached: it outlives this call."""
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def run_pusher(wal_dir: Path, spool: Path, push: Callable[[Path], str],
               workers: int = WORKERS, idle_s: float = IDLE_S) -> None:
    """Archive every `.ready` file of `wal_dir` with `push`, `workers` at a time, marking
    each in the spool, until nothing is ready for `idle_s`. One per spool."""
    check_spool(spool)
    # a call checking for a pusher holds the lock for an instant (flock -n): only a lock
    # held for longer is another pusher's
    handle = hold(spool / LOCK, attempts=20, pause=POLL_S)  # held for the process's life
    if handle is None:
        return  # another pusher got there first
    status = wal_dir / "archive_status"
    in_flight: dict[str, Future[None]] = {}
    idle_since = time.monotonic()
    with handle, ThreadPoolExecutor(workers, thread_name_prefix="drdeck-push") as pool:
        while True:
            for name in [n for n, f in in_flight.items() if f.done()]:
                in_flight.pop(name)
                idle_since = time.monotonic()
            marked = set(os.listdir(spool / PUSHED)) | set(os.listdir(spool / FAILED))
            try:  # after the marks: a mark whose file is no longer .ready is nobody's
                ready = sorted(entry.name[:-len(".ready")] for entry in os.scandir(status)
                               if entry.name.endswith(".ready"))
            except FileNotFoundError:
                ready = []
            for stale in marked - set(ready) - set(in_flight):
                for folder in (PUSHED, FAILED):
                    (spool / folder / stale).unlink(missing_ok=True)
            marked &= set(ready)
            waiting = [n for n in ready if n not in in_flight and n not in marked]
            room = min(workers * 2 - len(in_flight), AHEAD - len(marked) - len(in_flight))
            for name in waiting[:max(room, 0)]:
                in_flight[name] = pool.submit(_push_one, wal_dir / name, spool, push)
            if not in_flight and not waiting and time.monotonic() - idle_since > idle_s:
                return
            time.sleep(POLL_S if in_flight else 0.05)


def _push_one(path: Path, spool: Path, push: Callable[[Path], str]) -> None:
    name = path.name
    try:
        with open(path, "rb") as handle:  # the mark's bytes only: push reads the file
            head = handle.read(MARKED_BYTES)
        push(path)
    except Exception as exc:  # any failure, a bug too, fails the file: never marked
        why = exc if isinstance(exc, (DrdeckError, OSError)) else \
            f"{type(exc).__name__}: {exc}"
        write_atomically(spool / FAILED / name, f"{name}: {why}".encode())
        return
    # the sha256 of what was read before the push: the push read the same file, which
    # PostgreSQL does not change while it is .ready
    write_atomically(spool / PUSHED / name, content_mark(head).encode())
