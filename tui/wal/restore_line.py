"""The restore_command lines drdeck offers for a recovery it does not drive itself, and
the archive_command line that archives ahead.

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


def archive_spooled(drdeck: list[str], config: Path | None, cluster: str,
                    spool: Path) -> str:
    """The archive_command for `drdeck wal push --spool` (tui.wal.push_ahead): the shell
    takes the pusher's mark when it names this file's content (head | sha256sum, no Python
    start), else drdeck waits for the mark, starting the pusher, or archives it itself."""
    argv = [*drdeck, *(["--config", str(config)] if config else []), "wal", "push",
            "--cluster", cluster, "--spool", str(spool)]
    push = " ".join(quoted(word) for word in argv)
    mark = f'{quoted(str(spool))}/pushed/"%f"'
    # any step that fails (no mark, another content, no sha256sum, rm) falls through to
    # drdeck, which is always right: a push of what is archived already is a no-op
    from tui.wal.push_ahead import LOCK, MARKED_BYTES, WAIT_S

    lock = f"{quoted(str(spool))}/{LOCK}"
    polls = int(WAIT_S / 0.01)
    # while a pusher runs (its lock is held: flock -n exits 1) the mark is coming: wait
    # for it here rather than start drdeck only to wait there
    return (f'flock -n {lock} true 2>/dev/null; if [ $? -eq 1 ]; then i=0; '
            f'while [ ! -e {mark} ] && [ $i -lt {polls} ]; do sleep 0.01; i=$((i+1)); done; '
            f'fi; m=$(cat {mark} 2>/dev/null) && [ "$m" = "$(head -c {MARKED_BYTES} "%p" | '
            f'sha256sum | cut -c1-64)" ] && rm {mark} && exit 0; exec {push} "%p"')


def _fetch(drdeck: list[str], config: Path | None, cluster: str, *options: str) -> str:
    argv = [*drdeck, *(["--config", str(config)] if config else []), "wal", "fetch",
            "--cluster", cluster, *options]
    return " ".join(quoted(word) for word in argv)


def quoted(word: str) -> str:
    """`word` as one shell word in a line PostgreSQL expands (restore_command)."""
    # PostgreSQL expands %f and %p in the line: a literal % must be doubled
    return shlex.quote(word).replace("%", "%%")
