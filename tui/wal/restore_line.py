"""The restore_command lines drdeck offers for a recovery it does not drive itself.

A guided PITR feeds WAL through a spool it fills (tui.wal.feeder). A standby, a
recovery set up by hand, or a failed PITR finished by hand has no drdeck run
behind it, so its restore_command must fetch by itself:

- ``direct``: ``drdeck wal fetch %f %p``: one Python start and one download
  per file; simple, and fine for a standby that asks now and then;
- ``spooled``: the shell moves a segment already prefetched into the spool
  (no Python start at all), and only on a miss runs ``drdeck wal fetch
  --spool``, which fetches that file and starts the background prefetcher that
  keeps the next segments coming. Replay then runs at about the speed of ``cp``.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def direct(drdeck: list[str], config: Path | None, cluster: str) -> str:
    return _fetch(drdeck, config, cluster) + " %f %p"


def spooled(drdeck: list[str], config: Path | None, cluster: str, spool: Path,
            depth: int = 16) -> str:
    fetch = _fetch(drdeck, config, cluster, "--spool", str(spool), "--prefetch", str(depth))
    folder = quoted(str(spool))
    # no test-then-move: a move that fails for any reason (not there, taken by the
    # prefetcher's clean-up, another disk full) falls back to fetching from the archive
    return f'mv -f {folder}/"%f" "%p" 2>/dev/null && exit 0; exec {fetch} "%f" "%p"'


def _fetch(drdeck: list[str], config: Path | None, cluster: str, *options: str) -> str:
    argv = [*drdeck, *(["--config", str(config)] if config else []), "wal", "fetch",
            "--cluster", cluster, *options]
    return " ".join(quoted(word) for word in argv)


def quoted(word: str) -> str:
    """`word` as one shell word in a line PostgreSQL expands (restore_command)."""
    # PostgreSQL expands %f and %p in the line: a literal % must be doubled
    return shlex.quote(word).replace("%", "%%")
