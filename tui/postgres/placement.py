"""Where a new server goes: a data directory of its own and a port nobody listens on.

Asked twice: by the parameter form before a run is created, and by the restore's
pre-flight just before anything is written (the answer can change in between).
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

_COUNTED = 1000  # entries counted in a non-empty directory: enough to say "it is in use"


def port_in_use(port: int) -> bool:
    """Something listens on `port` of 127.0.0.1, where the restored server will."""
    with socket.socket() as probe:
        # a port left in TIME_WAIT by a stopped server is free for a new one
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def why_not_a_new_directory(path: Path) -> str | None:
    """None when `path` is absent or an empty directory; else what is there, in words."""
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} is a file, not a directory"
    try:
        entries = sum(1 for _ in itertools.islice(path.iterdir(), _COUNTED))
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if not entries:
        return None
    count = f"{_COUNTED} or more entries" if entries >= _COUNTED else \
        f"{entries} entr{'y' if entries == 1 else 'ies'}"
    return f"{path} is not empty (it holds {count})"
