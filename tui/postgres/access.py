"""Letting the postgres OS user reach what it must run: archive_command executes drdeck.

When drdeck runs as root, its interpreter often lives under /root (mode 0700),
which the server account cannot enter. Only the traverse bit (o+x) is added,
only where it is missing, and the caller can give it back.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from tui.postgres.cluster import server_account

Opened = list[tuple[Path, int]]  # (directory, its mode before)


def let_server_account_run_drdeck() -> Opened:
    """Open the directories above our interpreter and our code; what was changed."""
    opened: Opened = []
    if server_account() is None:
        return opened
    for start in (Path(os.path.realpath(sys.executable)),
                  Path(__file__).resolve().parent.parent.parent):
        for directory in start.parents:
            mode = stat.S_IMODE(directory.stat().st_mode)
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)
                opened.append((directory, mode))
    return opened


def give_back(opened: Opened) -> None:
    for directory, mode in reversed(opened):
        with contextlib.suppress(OSError):
            directory.chmod(mode)
    opened.clear()


def give_to_server(path: Path) -> None:
    """Make the server account own `path` and everything below it."""
    account = server_account()
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid)
        for name in dirs + files:
            os.chown(Path(root) / name, account.uid, account.gid, follow_symlinks=False)
