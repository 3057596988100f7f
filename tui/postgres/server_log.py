"""The server's own words: find a local server's log and the archiver's failure in it.

A failing archive_command says why only in the server's log: the command's
stderr, then `archive command failed with exit code N` and `The failed
archive command was: ...`. drdeck quotes those lines, so the operator sees
the real cause ("Permission denied", "No space left") instead of a guess.

The log is found the way the server itself knows it, without SQL privileges:
through /proc, from the backend drdeck is connected to. Its parent is the
postmaster, whose working directory is the data directory; there,
`current_logfiles` names the logging collector's file (what
pg_current_logfile() reads), and without a collector the postmaster's stderr
is the file `pg_ctl -l` or the init system gave it. This needs the server on
this machine and drdeck running as root or as the server's OS user; anything
else is reported as the reason the log could not be read.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tui.redact import mask_credentials

TAIL_BYTES = 1 << 20  # the failure being reported is recent: the end of the log holds it
COMMAND_OUTPUT_LINES = 10

_FAILURE = re.compile(r"archive command (failed|was terminated|exited with unrecognized)")
# a line the server wrote itself, whatever log_line_prefix is: "LOG:  ", "DETAIL:  "...
_SERVER_LINE = re.compile(r"\b(LOG|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|STATEMENT|"
                          r"INFO|NOTICE|DEBUG[1-5]?):  ")


class LogUnreadable(Exception):
    """Why the server's log could not be read; the message is shown as it is."""


def find_log(backend_pid: int) -> Path:
    """The log file of the server whose backend is `backend_pid`, readable by us."""
    try:
        fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        comm = Path(f"/proc/{backend_pid}/comm").read_text().strip()
    except OSError:
        raise LogUnreadable("the server does not run on this machine") from None
    if comm not in ("postgres", "postmaster"):
        raise LogUnreadable("the server does not run on this machine (its backend's process "
                            "id belongs to another program here)")
    postmaster = int(fields[1])  # after the command name: state, then the parent's pid
    try:
        data_dir = Path(os.readlink(f"/proc/{postmaster}/cwd"))
    except OSError as error:
        raise LogUnreadable(f"drdeck, running as {_me()}, may not look into the server's "
                            f"process ({error.strerror}): run it as root or as the "
                            "server's OS user") from None
    collector = _collector_file(data_dir)
    if collector is not None:
        return collector
    stderr = Path(f"/proc/{postmaster}/fd/2")
    try:
        target = os.readlink(stderr)
        info = stderr.stat()
    except OSError as error:
        raise LogUnreadable(f"cannot see where the server logs ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise LogUnreadable(f"the server logs to {target}, not to a file drdeck can read "
                            "(set logging_collector = on, or start it with pg_ctl -l FILE)")
    return stderr  # through /proc: works even when the file was renamed by logrotate


def _collector_file(data_dir: Path) -> Path | None:
    try:
        text = (data_dir / "current_logfiles").read_text()
    except OSError:
        return None  # no logging collector (or not readable: stderr may still be)
    found = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    name = found.get("stderr") or next(iter(found.values()), None)
    return data_dir / name if name else None


def archive_failure(log: Path) -> list[str]:
    """The newest archive failure in `log`: the command's own output, the server's
    failure line and the command it ran; empty when the log holds none."""
    try:
        with log.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as error:
        raise LogUnreadable(f"cannot read {log}: {error.strerror}") from None
    lines = text.splitlines()
    where = next((n for n in range(len(lines) - 1, -1, -1) if _FAILURE.search(lines[n])), None)
    if where is None:
        return []
    start = where
    # what the command wrote to stderr comes just before, without the server's prefix
    while start > 0 and where - start < COMMAND_OUTPUT_LINES \
            and not _SERVER_LINE.search(lines[start - 1]):
        start -= 1
    end = where + 1
    if end < len(lines) and "The failed archive command was" in lines[end]:
        end += 1
    return [mask_credentials(line.rstrip()) for line in lines[start:end] if line.strip()]


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
