"""One background worker per spool (the WAL prefetcher, the pusher): a lock file its
worker holds for as long as it runs."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import IO


def is_held(lock: Path) -> bool:
    """Whether a worker holds `lock` (taking it for an instant to find out)."""
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def hold(lock: Path, attempts: int = 1, pause: float = 0.01) -> IO[str] | None:
    """`lock` open and locked, held until the file is closed (the worker's life); None
    when another worker holds it after `attempts` tries `pause` apart."""
    handle = open(lock, "a+")  # noqa: SIM115 - the caller holds it
    for attempt in range(attempts):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(pause)
    handle.close()
    return None
