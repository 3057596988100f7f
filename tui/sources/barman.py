"""Barman as drdeck sees it: one Barman server's backups, its WAL, the recoverable window.

A Barman server (``barman backup``, ``barman cron``, ``barman restore``) keeps its
backups and WAL on the Barman host. drdeck asks the ``barman`` program about them
and never writes anything (it runs no command that does)::

    barman [-c CONFIG] -f json list-backups SERVER       the backups and their status
    barman [-c CONFIG] -f json show-backup SERVER ID     one backup's WAL, LSNs and times
    barman [-c CONFIG] -f json show-server SERVER        wals_directory, the segment size

Barman runs as its ``barman_user`` (as root, it switches to that user itself), so
drdeck does not choose an account for it.

Everything barman prints is untrusted: it is the program's word about files anyone
with the barman account may have changed. Each value is checked for its type, its
range and its agreement with the others; a backup that fails is reported as that one
bad backup while the others are listed.

The window is read from the server's WAL directory itself, as ``barman restore``
will use it: ``<wals_directory>/<timeline+log>/<segment>`` and
``<wals_directory>/<timeline>.history``. Barman keeps a compressed file under its
plain name, so its compression is told by its first bytes (as Barman does). A
backup's window opens once it is certainly consistent and runs to the last commit
(pg_waldump) in the contiguous WAL that follows it; a missing segment is a gap and
ends the window. WAL still in ``incoming`` or ``streaming`` (not yet filed by
``barman cron``) is not counted: a restore would not have it either.

`inventory()` returns the dict of `drdeck inventory --json` (docs/inventory-json.md):
the keys of a barman_cloud block, with ``server``, ``config`` and ``wals_directory``
in place of the store's, and each backup's ``backup_type`` and ``method``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui import environment
from tui.pitr.window import (
    Archive,
    Gap,
    RecoveryPicture,
    Window,
    commit_times,
    contiguous_run,
    missing_histories,
)
from tui.sources.barman_cloud import (
    DEFAULT_SEGMENT_SIZE,
    DONE,
    END_BACKUP,
    END_COMMIT,
    LOOK_BACK,
    SEGMENT_SIZES,
    STATUSES,
    BarmanBackup,
    UnreadableBackup,
    decompress,
)
from tui.sources.base import Source, SourceError
from tui.wal.names import HISTORY, SEGMENT, Segment, format_lsn, history_name, parse_history

KIND = "barman"
PROGRAM = "barman"
TIMEOUT_S = 120  # show-server asks PostgreSQL too: a dead primary must not hang the report
MAX_OUTPUT_BYTES = 16 << 20  # list-backups of thousands of backups is a few MiB
MAX_HISTORY_BYTES = 1 << 20
READERS = 4  # show-backup runs at once
END_STORED = "time the last segment was filed (an upper bound)"
_SERVER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_RESERVED = ("all", "barman")  # barman refuses these as server names
_BACKUP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HASH_DIR = re.compile(r"[0-9A-F]{16}")  # barman.xlog.hash_dir: timeline and log
_BACKUP_HISTORY = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_SYSTEM_ID = re.compile(r"[0-9]{1,20}")
# barman.compression: each format's magic (pigz and pygzip write gzip, pybzip2 bzip2)
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"(\xb5/\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4"),
          (b"\xff\x06\x00\x00sNaPpY", "snappy"))


class BarmanError(SourceError):
    """barman is missing or failed, or what it printed cannot be read."""


class BackupInvalid(BarmanError):
    """One backup barman describes in a way drdeck cannot trust; the message says why."""


# --- running barman ---------------------------------------------------------------------


def check_server(server: Any) -> str:
    if not isinstance(server, str) or not _SERVER.fullmatch(server) or server in _RESERVED:
        raise BarmanError(f"barman server {_shown(server)} is not a Barman server name "
                          "(letters, digits, '.', '_' and '-'; not 'all' or 'barman')")
    return server


def check_path(path: Any, what: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
        raise BarmanError(f"barman {what} {_shown(path)} is not an absolute path")
    return path


@dataclass(frozen=True)
class Barman:
    """One server of one Barman configuration, and the program that reads it."""

    server: str
    config: str | None = None  # barman.conf; None: Barman's own lookup
    program: str | None = None  # the barman program; None: found on PATH

    def __post_init__(self) -> None:
        check_server(self.server)
        for path, what in ((self.config, "config"), (self.program, "program")):
            if path is not None:
                check_path(path, what)

    def argv(self, command: str, *arguments: str) -> list[str]:
        argv = [self._program()]
        if self.config:
            argv += ["-c", self.config]
        return [*argv, "-f", "json", command, self.server, *arguments]

    def _program(self) -> str:
        if self.program is None:
            found = shutil.which(PROGRAM)
            if found is None:
                raise BarmanError("barman is not installed (not found on PATH): install it "
                                  "(apt-get install barman, or pip install barman), or give "
                                  "its path as program = \"/path/to/barman\"")
            return found
        if not (os.path.isfile(self.program) and os.access(self.program, os.X_OK)):
            raise BarmanError(f"barman is not installed at {self.program} (program = "
                              f"{self.program!r} is not an executable file)")
        return self.program

    def json(self, command: str, *arguments: str) -> Any:
        """What `barman -f json COMMAND SERVER ARGUMENTS` says of this server."""
        argv = self.argv(command, *arguments)
        ran = " ".join(argv)
        try:
            result = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                    cwd="/", timeout=TIMEOUT_S, check=False,
                                    env=environment.base())
        except subprocess.TimeoutExpired:
            raise BarmanError(f"{ran} did not finish within {TIMEOUT_S}s") from None
        except OSError as exc:
            raise BarmanError(f"{ran} could not be run: {exc.strerror}") from None
        if len(result.stdout) > MAX_OUTPUT_BYTES:
            raise BarmanError(f"{ran} printed more than {MAX_OUTPUT_BYTES:,} bytes: not read")
        parsed = _parsed_json(result.stdout)
        if result.returncode != 0:
            raise BarmanError(f"barman {command} failed (exit {result.returncode}): "
                              f"{_error_of(parsed, result)}\n  ran: {ran}")
        if not isinstance(parsed, dict) or self.server not in parsed:
            raise BarmanError(f"{ran} printed no JSON about server {self.server}: "
                              f"{_shown(result.stdout[:200].decode(errors='replace'))}")
        return parsed[self.server]


def _parsed_json(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _error_of(parsed: Any, result: subprocess.CompletedProcess[bytes]) -> str:
    """Barman's own words: its JSON _ERROR list, else its last line of output."""
    errors = parsed.get("_ERROR") if isinstance(parsed, dict) else None
    if isinstance(errors, list) and errors:
        return _said("; ".join(str(e) for e in errors))
    said = (result.stderr + result.stdout).decode(errors="replace")
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return _said(lines[-1]) if lines else "no output"


# --- what barman says of the backups ----------------------------------------------------


@dataclass(frozen=True)
class ServerBackup(BarmanBackup):
    """One backup as `barman show-backup` describes it, checked."""

    backup_type: str | None = None  # full, incremental, rsync, snapshot
    method: str | None = None  # backup_method: postgres, rsync, local-rsync, snapshot

    def as_dict(self, problem: str | None = None) -> dict[str, Any]:
        return {**super().as_dict(problem), "backup_type": self.backup_type,
                "method": self.method}


def listed_backups(listing: Any) -> tuple[list[str], list[UnreadableBackup]]:
    """The ids `list-backups` gives, and each entry that names none (with why)."""
    if not isinstance(listing, list):
        raise BarmanError(f"barman list-backups gave {type(listing).__name__}, not a list of "
                          "backups")
    ids: list[str] = []
    bad: list[UnreadableBackup] = []
    for number, entry in enumerate(listing, start=1):
        backup_id = entry.get("backup_id") if isinstance(entry, dict) else None
        if isinstance(backup_id, str) and _BACKUP_ID.fullmatch(backup_id):
            if backup_id not in ids:
                ids.append(backup_id)
        else:
            bad.append(UnreadableBackup(_shown(backup_id), f"entry {number} of list-backups "
                                        "has no Barman backup id"))
    return ids, bad


def parse_show_backup(shown: Any, backup_id: str) -> ServerBackup:
    """A checked ServerBackup (its segment size not yet known: DEFAULT_SEGMENT_SIZE);
    BackupInvalid names the first value that is wrong."""
    if not isinstance(shown, dict):
        raise BackupInvalid(f"show-backup gave {type(shown).__name__}, not an object")
    if shown.get("backup_id") != backup_id:
        raise BackupInvalid(f"show-backup describes backup {_shown(shown.get('backup_id'))}, "
                            "not this one")
    status = shown.get("status")
    if status not in STATUSES:
        raise BackupInvalid(f"status {_shown(status)} is not one of {', '.join(STATUSES)}")
    base = shown.get("base_backup_information")
    if base is None:
        base = {}  # barman gives it only once the copy is done
    if not isinstance(base, dict):
        raise BackupInvalid("base_backup_information is not an object")
    return ServerBackup(
        backup_id=backup_id,
        name=_text(shown, "backup_name"),
        status=status,
        error=_said(shown["error"]) if isinstance(shown.get("error"), str) else None,
        begin_time=_time(base, "begin_time"),
        end_time=_time(base, "end_time"),
        begin_wal=_matching(base, "begin_wal", SEGMENT, "a WAL segment name"),
        end_wal=_matching(base, "end_wal", SEGMENT, "a WAL segment name"),
        begin_lsn=_lsn(base, "begin_lsn"),
        end_lsn=_lsn(base, "end_lsn"),
        timeline=_int(base, "timeline", 1, 0xFFFFFFFF) or 0,
        wal_segment_size=DEFAULT_SEGMENT_SIZE,
        systemid=_matching(shown, "system_id", _SYSTEM_ID, "a system identifier"),
        version=_int(shown, "postgresql_version", 90000, 9_999_999),
        size=_int(shown, "cluster_size_bytes", 0, 1 << 62),
        compression=_text(base, "compression"),
        encryption=_text(base, "encryption"),
        snapshot=bool(shown.get("snapshots_info")),
        stored_size=_int(base, "backup_size_bytes", 0, 1 << 62) or 0,
        backup_type=_text(shown, "backup_type"),
        method=_text(base, "backup_method"),
    )


def check_complete(backup: ServerBackup) -> None:
    """A DONE backup must say where it starts and ends, and say it consistently with
    its WAL segment size."""
    for name, value in (("begin_time", backup.begin_time), ("end_time", backup.end_time),
                        ("begin_wal", backup.begin_wal), ("end_wal", backup.end_wal),
                        ("begin_lsn", backup.begin_lsn), ("end_lsn", backup.end_lsn)):
        if value is None:
            raise BackupInvalid(f"status is DONE but {name} is missing")
    assert backup.begin_time and backup.end_time and backup.begin_wal and backup.end_wal
    assert backup.begin_lsn is not None and backup.end_lsn is not None
    if backup.timeline == 0:
        raise BackupInvalid("status is DONE but timeline is missing")
    if backup.end_time < backup.begin_time or backup.end_lsn < backup.begin_lsn:
        raise BackupInvalid(f"it ends ({_iso(backup.end_time)}, {format_lsn(backup.end_lsn)}) "
                            f"before it begins ({_iso(backup.begin_time)}, "
                            f"{format_lsn(backup.begin_lsn)})")
    if int(backup.begin_wal[:8], 16) != backup.timeline:
        raise BackupInvalid(f"begin_wal {backup.begin_wal} is not on timeline "
                            f"{backup.timeline}")
    for name, wal, lsn in (("begin", backup.begin_wal, backup.begin_lsn),
                           ("end", backup.end_wal, backup.end_lsn)):
        if not segment_holds(wal, lsn, backup.wal_segment_size):
            raise BackupInvalid(f"{name}_wal {wal} does not hold {name}_lsn {format_lsn(lsn)} "
                                f"with {backup.wal_segment_size:,}-byte segments")


def segment_holds(name: str, lsn: int, size: int) -> bool:
    """Whether segment `name` holds `lsn`. Barman names the previous segment for an end
    LSN exactly at a boundary (0/800000 in ...07), so that one counts too."""
    number = Segment.parse(name, size).number
    return number in (lsn // size, max(lsn - 1, 0) // size)


def segment_size_from_lsns(backups: list[ServerBackup]) -> int | None:
    """The one segment size every backup's (segment, LSN) pairs agree with, if one."""
    candidates = set(SEGMENT_SIZES)
    for backup in backups:
        for wal, lsn in ((backup.begin_wal, backup.begin_lsn), (backup.end_wal, backup.end_lsn)):
            if wal is not None and lsn is not None:
                candidates = {s for s in candidates if segment_holds(wal, lsn, s)}
    return candidates.pop() if len(candidates) == 1 else None


# --- the WAL directory ------------------------------------------------------------------


@dataclass
class WalDirectory:
    """The server's WAL directory as tui.pitr.window sees an archive, and each file."""

    path: Path
    archive: Archive = field(default_factory=Archive)
    files: dict[tuple[int, int], Path] = field(default_factory=dict)  # (timeline, number)
    problems: list[str] = field(default_factory=list)


def read_wal_directory(path: Path, segment_size: int) -> WalDirectory:
    """Its segments per timeline and its timeline histories (read and parsed)."""
    wal = WalDirectory(path)
    per_log = (1 << 32) // segment_size
    for entry in _entries(path):
        if _HASH_DIR.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            for segment in _entries(Path(entry.path)):
                name = segment.name
                if SEGMENT.fullmatch(name) and name[:16] == entry.name \
                        and int(name[16:], 16) < per_log and int(name[:8], 16) \
                        and segment.is_file(follow_symlinks=False):
                    found = Segment.parse(name, segment_size)
                    key = (found.timeline, found.number)
                    wal.archive.segments[found.timeline].add(found.number)
                    wal.archive.names[key] = name
                    wal.files[key] = Path(segment.path)
        elif HISTORY.fullmatch(entry.name) and int(entry.name[:8], 16) > 1:
            _read_history(wal, Path(entry.path))
    return wal


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as found:
            return list(found)
    except FileNotFoundError:
        raise BarmanError(f"barman's WAL directory {path} does not exist") from None
    except PermissionError:
        raise BarmanError(f"drdeck may not read barman's WAL directory {path}: run drdeck as "
                          "barman's user (barman_user), or give this user read access "
                          "to it") from None
    except OSError as exc:
        raise BarmanError(f"barman's WAL directory {path} cannot be read: "
                          f"{exc.strerror}") from None


def _read_history(wal: WalDirectory, path: Path) -> None:
    try:
        plain = read_wal_file(path, MAX_HISTORY_BYTES, exact=False)
        switches = parse_history(plain.decode("utf-8"))
    except SourceError as exc:  # barman_cloud's decompress raises its own kind
        wal.problems.append(f"timeline history {path.name} cannot be read: {exc}")
        return
    except (ValueError, UnicodeDecodeError):
        wal.problems.append(f"{path} is not a timeline history file: recovery cannot "
                            "follow that timeline")
        return
    wal.archive.histories[int(path.name[:8], 16)] = switches


def read_wal_file(path: Path, size: int, *, exact: bool = True) -> bytes:
    """A WAL file's plain bytes, however barman compressed it: no more than `size` of
    them (with `exact`, exactly that many: a segment)."""
    raw = _read_capped(path, size + (1 << 20))  # compressed, never much larger than plain
    compression = compression_of(raw)
    plain = decompress(raw, compression, size, str(path))
    if compression is None and exact and not _is_wal(plain):
        raise BarmanError(f"{path} is neither a WAL segment nor compressed in a way drdeck "
                          "knows (encrypted, or barman's custom_compression?)")
    if exact and len(plain) != size:
        raise BarmanError(f"{path} holds {len(plain):,} bytes, not a {size:,}-byte WAL "
                          "segment")
    return plain


@dataclass(frozen=True)
class WalFiles:
    """The WAL directory's files by name, as Source.wal_fetcher gives them: a segment (or
    a backup history file) in the directory of its first 16 characters, a timeline
    history at the top; barman files each under its own name, compressed or not."""

    path: Path
    segment_size: int

    def fetch(self, name: str) -> bytes | None:
        if SEGMENT.fullmatch(name):
            where, limit, exact = self.path / name[:16] / name, self.segment_size, True
        elif _BACKUP_HISTORY.fullmatch(name):
            where, limit, exact = self.path / name[:16] / name, MAX_HISTORY_BYTES, False
        elif HISTORY.fullmatch(name):
            where, limit, exact = self.path / name, MAX_HISTORY_BYTES, False
        else:
            return None
        try:
            found = os.lstat(where)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BarmanError(f"{where} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(found.st_mode):  # what barman files is a file, never a link
            raise BarmanError(f"{where} is not a regular file: not read")
        return read_wal_file(where, limit, exact=exact)


def compression_of(raw: bytes) -> str | None:
    """Barman's compression of a file, by its first bytes (barman.compression does too)."""
    return next((name for magic, name in _MAGIC if raw.startswith(magic)), None)


def _is_wal(plain: bytes) -> bool:
    # a page header's magic: 0xD0xx-0xD1xx little-endian for PostgreSQL 9.x to 18
    return len(plain) >= 2 and plain[1] in (0xD0, 0xD1)


def _read_capped(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise BarmanError(f"{path} cannot be read: {exc.strerror}") from None
    if len(raw) > limit:
        raise BarmanError(f"{path} is larger than {limit:,} bytes: not read")
    return raw


# --- the picture ------------------------------------------------------------------------


@dataclass
class ServerPicture:
    """What one Barman server holds, and what it can recover."""

    server: str
    config: str | None
    backups: list[ServerBackup]  # readable ones, oldest first
    unreadable: list[UnreadableBackup]
    recovery: RecoveryPicture  # base_backups: (backup, id, problem); None for the unreadable
    wals_directory: str | None = None
    wal_segment_size: int | None = None
    end_is: dict[str, str] = field(default_factory=dict)  # window's last segment -> how

    def problem_of(self, backup: ServerBackup) -> str | None:
        return next((problem or None for found, _, problem in self.recovery.base_backups
                     if found is backup), None)


def read_server(barman: Barman, read_commit_times: bool = True) -> ServerPicture:
    """Backups, WAL, windows and gaps of one Barman server.

    Raises BarmanError when barman cannot be run or cannot list the server's backups;
    anything wrong after that is reported in the picture instead.
    """
    ids, unreadable = listed_backups(barman.json("list-backups"))
    backups, more = _show_backups(barman, ids)
    unreadable += more
    picture = ServerPicture(barman.server, barman.config, backups, unreadable,
                            RecoveryPicture([], Archive(), [], [], []))
    picture.recovery.problems += [f"backup {u.backup_id}: {u.problem}" for u in unreadable]
    wals, size = None, None
    try:
        wals, size = _wal_settings(barman.json("show-server"))
    except BarmanError as exc:
        picture.recovery.problems.append(f"the WAL cannot be read, so there is no window: "
                                         f"{exc}")
    if size is None:  # PostgreSQL did not answer show-server: a primary that is down, say
        size = segment_size_from_lsns([b for b in backups if b.status == DONE]) \
            or DEFAULT_SEGMENT_SIZE
    picture.wal_segment_size = size
    picture.backups = [replace(b, wal_segment_size=size) for b in backups]
    usable = _judge_backups(picture)
    if wals is None:
        return picture
    picture.wals_directory = str(wals)
    if not usable:
        picture.recovery.problems.append("no backup to restore from (none is DONE)")
        return picture
    try:
        wal = read_wal_directory(wals, size)
    except BarmanError as exc:
        picture.recovery.problems.append(f"there is no window: {exc}")
        return picture
    picture.recovery.archive = wal.archive
    picture.recovery.problems += wal.problems
    _add_windows(picture, wal, usable, read_commit_times)
    return picture


def _show_backups(barman: Barman, ids: list[str]
                  ) -> tuple[list[ServerBackup], list[UnreadableBackup]]:
    """show-backup for each id (a few at a time), oldest first; the ones that fail,
    with why."""
    def show(backup_id: str) -> ServerBackup | UnreadableBackup:
        try:
            return parse_show_backup(barman.json("show-backup", backup_id), backup_id)
        except BarmanError as exc:
            return UnreadableBackup(backup_id, str(exc))

    with ThreadPoolExecutor(READERS) as pool:
        shown = list(pool.map(show, ids))
    readable = [b for b in shown if isinstance(b, ServerBackup)]
    readable.sort(key=lambda b: (b.end_time or b.begin_time or datetime.min.replace(tzinfo=UTC),
                                 b.backup_id))
    return readable, [b for b in shown if isinstance(b, UnreadableBackup)]


def _wal_settings(server: Any) -> tuple[Path, int | None]:
    """The WAL directory show-server names, and PostgreSQL's WAL segment size (None when
    barman could not ask PostgreSQL)."""
    if not isinstance(server, dict):
        raise BarmanError("barman show-server gave no object")
    wals = server.get("wals_directory")
    if not isinstance(wals, str) or not os.path.isabs(wals) or "\0" in wals:
        raise BarmanError(f"barman show-server gave wals_directory {_shown(wals)}, not an "
                          "absolute path")
    size = server.get("xlog_segment_size")
    if size is not None and (type(size) is not int or size not in SEGMENT_SIZES):
        raise BarmanError(f"barman show-server gave xlog_segment_size {_shown(size)}, not a "
                          "WAL segment size (a power of two from 1 MiB to 1 GiB)")
    return Path(wals), size


def _judge_backups(picture: ServerPicture) -> list[ServerBackup]:
    """Record why each backup cannot be restored from; the ones that can."""
    usable, recovery = [], picture.recovery
    done = [b for b in picture.backups if b.status == DONE]
    for backup in picture.backups:
        problem = _unusable(backup, done[-1] if done else None)
        recovery.base_backups.append((backup, backup.backup_id, problem or ""))
        if problem is None:
            usable.append(backup)
        elif backup.status in (DONE, "FAILED"):  # a backup still running is no problem
            recovery.problems.append(f"backup {backup.backup_id} cannot be restored: {problem}")
    recovery.base_backups += [(None, u.backup_id, u.problem) for u in picture.unreadable]
    return usable


def _unusable(backup: ServerBackup, newest: ServerBackup | None) -> str | None:
    if backup.status != DONE:
        return f"status {backup.status}" + (f": {backup.error}" if backup.error else "")
    try:
        check_complete(backup)
    except BackupInvalid as exc:
        return str(exc)
    assert newest is not None
    if backup.systemid and newest.systemid and backup.systemid != newest.systemid:
        return (f"it is of another database system ({backup.systemid}) than the newest "
                f"backup ({newest.systemid})")
    return None


def _add_windows(picture: ServerPicture, wal: WalDirectory, usable: list[ServerBackup],
                 read_commit_times: bool) -> None:
    """One window per contiguous run of WAL after a backup; backups whose runs end at
    the same segment share it."""
    recovery = picture.recovery
    recovery.missing_histories = missing_histories(wal.archive, min(b.timeline for b in usable))
    recovery.problems += [
        f"WAL of timeline {t} is filed but not {history_name(t)}, so recovery cannot "
        f"follow timeline {t}" for t in recovery.missing_histories]
    gaps: dict[tuple[int, str], Gap] = {}
    for backup in usable:
        run_end, timeline, gap = contiguous_run(wal.archive, backup)
        if run_end is None or run_end.number < backup.last_segment.number:
            recovery.problems.append(
                f"backup {backup.backup_id} is not restorable: the WAL from its start "
                f"({backup.begin_wal}) to its end ({backup.end_wal}) is not all in "
                f"{wal.path}")
            continue
        if gap is not None:
            gaps[(gap.timeline, gap.missing_from)] = gap
        windows = recovery.windows
        if windows and windows[-1].last_segment == run_end.name:
            previous = windows[-1]
            windows[-1] = replace(previous, bases=(*previous.bases, backup))
            continue
        end, how = (_last_commit(picture, wal, run_end) if read_commit_times
                    else (None, END_BACKUP))
        if end is None or end < backup.stopped:
            end, how = backup.stopped, END_BACKUP
        windows.append(Window(backup, (backup,), backup.stopped, end, run_end.end_lsn,
                              timeline, run_end.name, gap))
        picture.end_is[run_end.name] = how
    recovery.gaps = list(gaps.values())


def _last_commit(picture: ServerPicture, wal: WalDirectory, last: Segment
                 ) -> tuple[datetime | None, str]:
    """The newest commit time in a run's last segments (pg_waldump), or, when they cannot
    be read here, the time the last one was filed: an upper bound."""
    segment = last
    for _ in range(LOOK_BACK):
        key = (segment.timeline, segment.number)
        if key not in wal.files:
            break
        try:
            plain = read_wal_file(wal.files[key], last.size)
        except SourceError as exc:  # barman_cloud's decompress raises its own kind
            picture.recovery.problems.append(f"the end of the window is not the last commit: "
                                             f"{exc}")
            return _filed_at(wal.files[(last.timeline, last.number)]), END_STORED
        times = commit_times(plain, wal.archive.names[key])
        if times:
            return max(times), END_COMMIT
        if segment.number == 0:
            break
        segment = Segment(segment.timeline, segment.number - 1, segment.size)
    return None, END_BACKUP


def _filed_at(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


# --- the inventory ----------------------------------------------------------------------


def inventory(server: str, config: str | None = None, program: str | None = None,
              read_commit_times: bool = True) -> dict[str, Any]:
    """The plain dict described in this module's docstring."""
    return picture_dict(read_server(Barman(server, config, program), read_commit_times))


def picture_dict(picture: ServerPicture) -> dict[str, Any]:
    recovery = picture.recovery
    return {
        "kind": KIND,
        "server": picture.server,
        "config": picture.config,
        "wals_directory": picture.wals_directory,
        "backups": [b.as_dict(picture.problem_of(b)) for b in picture.backups]
        + [u.as_dict() for u in picture.unreadable],
        "wal_segment_size": picture.wal_segment_size,
        "timelines": _timelines(recovery.archive),
        "windows": [{
            "start": _iso(w.start), "end": _iso(w.end),
            "end_is": picture.end_is.get(w.last_segment, END_BACKUP),
            "end_lsn": format_lsn(w.end_lsn), "last_segment": w.last_segment,
            "timeline": w.timeline, "backups": [b.backup_id for b in w.bases],
        } for w in recovery.windows],
        "window": ({"start": _iso(recovery.earliest), "end": _iso(recovery.latest)}
                   if recovery.windows else None),
        "gaps": [g.describe() for g in recovery.gaps],
        "problems": list(recovery.problems),
    }


class BarmanSource(Source):
    """A Barman server that backs a cluster up (`barman backup`, `barman restore`): read
    through the barman program, never written.

        [clusters.NAME]
        barman = { server = "pg", config = "/etc/barman.conf" }
    """

    kind = KIND
    title = "Barman"
    # config: barman.conf (default: Barman's own lookup, ~/.barman.conf, /etc/barman.conf,
    # /etc/barman/barman.conf); program: the barman program (default: found on PATH)
    settings = {"server": True, "config": False, "program": False}
    example = '{ server = "pg", config = "/etc/barman.conf" }'

    def __init__(self, server: str, config: str | None = None,
                 program: str | None = None) -> None:
        self.server, self.config, self.program = server, config, program
        self._picture: ServerPicture | None = None  # the last read, for wal_fetcher

    @classmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> BarmanSource:
        return cls(settings["server"], settings.get("config"), settings.get("program"))

    @classmethod
    def check_settings(cls, settings: dict[str, str]) -> list[tuple[str, str]]:
        checks = [("server", check_server)]
        checks += [(key, lambda value, key=key: check_path(value, key))
                   for key in ("config", "program") if key in settings]
        problems = []
        for key, check in checks:
            try:
                check(settings[key])
            except BarmanError as exc:
                problems.append((key, str(exc)))
        return problems

    def describe(self) -> str:
        return f"server {self.server}" + (f" ({self.config})" if self.config else "")

    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        return inventory(self.server, self.config, self.program, read_commit_times)

    def picture(self, read_commit_times: bool = True) -> ServerPicture:
        """The backups, the WAL and the windows, for a recovery (tui.pitr)."""
        self._picture = read_server(Barman(self.server, self.config, self.program),
                                    read_commit_times)
        return self._picture

    def recovery_picture(self) -> RecoveryPicture:
        return self.picture().recovery

    def wal_fetcher(self) -> Callable[[str], bytes | None]:
        seen = self._picture or self.picture(read_commit_times=False)
        if not seen.wals_directory or not seen.wal_segment_size:
            raise BarmanError(f"Barman {self.describe()} does not say where its WAL is, or "
                              "how large its segments are")
        return WalFiles(Path(seen.wals_directory), seen.wal_segment_size).fetch

    def backup_line(self, backup: dict[str, Any]) -> str:
        if backup.get("status") is None:  # unreadable: its problem is the line
            return f"{backup.get('id')}  UNREADABLE: {backup.get('problem')}"
        line = f"{backup.get('id')}  {backup.get('status')}  ended {backup.get('end_time')}"
        if backup.get("backup_type"):
            line += f"  {backup['backup_type']}"
        if backup.get("name"):
            line += f"  ({backup['name']})"
        return line + (f"  NOT USABLE: {backup['problem']}" if backup.get("problem") else "")


# --- checked values ---------------------------------------------------------------------


def _text(values: dict[str, Any], name: str, limit: int = 200) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise BackupInvalid(f"{name} is not a short line of text: {_shown(value)}")
    return value


def _int(values: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BackupInvalid(f"{name} {_shown(value)} is not a whole number from {low:,} "
                            f"to {high:,}")
    return value


def _matching(values: dict[str, Any], name: str, pattern: re.Pattern[str],
              what: str) -> str | None:
    value = values.get(name)
    if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        raise BackupInvalid(f"{name} {_shown(value)} is not {what}")
    return value


def _lsn(values: dict[str, Any], name: str) -> int | None:
    value = _matching(values, name, _LSN, "an LSN (like 0/700028)")
    if value is None:
        return None
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _time(values: dict[str, Any], name: str) -> datetime | None:
    value = values.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        # barman shows a time without an offset in the Barman host's local time
        return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise BackupInvalid(f"{name} {_shown(value)} is not a time (barman shows "
                            "2026-12-02 21:48:46.657507+00:00)") from None


def _timelines(archive: Archive) -> list[dict[str, Any]]:
    found = []
    for timeline in sorted(archive.segments):
        numbers = archive.segments[timeline]
        if numbers:
            found.append({"timeline": timeline, "segments": len(numbers),
                          "first": archive.names[(timeline, min(numbers))],
                          "last": archive.names[(timeline, max(numbers))]})
    return found


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _said(value: str, limit: int = 300) -> str:
    """barman's own message, however long or odd: cut short and printable."""
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return printable if len(printable) <= limit else printable[:limit - 3] + "..."


def _shown(value: Any) -> str:
    """An untrusted value, quoted and cut short for a message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
