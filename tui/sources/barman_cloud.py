"""Barman Cloud as drdeck sees it: backups, the WAL archive, the recoverable window.

CloudNativePG and Barman users keep their backups in an object store written by
``barman-cloud-backup`` and ``barman-cloud-wal-archive``. drdeck reads that store's
own records with boto3 (through tui.storage.s3.S3Store) and never writes to it::

    <destination>/<server_name>/base/<backup id>/backup.info      key=value lines
    <destination>/<server_name>/base/<backup id>/data.tar[.gz|.bz2|.snappy|.lz4]
    <destination>/<server_name>/wals/<timeline+log>/<segment>[.gz|.bz2|.xz|.snappy|.zst|.lz4]
    <destination>/<server_name>/wals/<timeline>.history[...]

Everything in the store is untrusted: each object is read up to a size it cannot
honestly exceed, every value of a backup.info is checked for its type, its range
and its agreement with the others, and a backup.info that fails is reported as that
one bad backup while the others are listed.

A backup's window opens once it is certainly consistent (see CONSISTENCY_MARGIN)
and runs to the last commit in the contiguous WAL that follows it, read with
pg_waldump from the last WAL objects (decompressed here: gzip, bzip2 and xz with
Python's own modules, zstd and lz4 with the ``zstd``/``lz4`` programs as drdeck's
pgBackRest support does; snappy has no decompressor here, and says so). A missing
segment is a gap, and ends the window. Server-side encryption (``-e AES256`` or
``aws:kms``) is the store's business: reads are decrypted by S3 itself.

`inventory()` returns the plain dict of `drdeck inventory` (times ISO 8601 in UTC,
sizes in bytes, LSNs as PostgreSQL writes them)::

    {"kind": "barman_cloud", "destination": "s3://bucket/path", "server_name": "pg",
     "endpoint": "http://127.0.0.1:9000",
     "backups": [                                   # oldest first, the unreadable last
       {"id": "20261202T183941", "name": "nightly", "status": "DONE",
        "begin_time": "...", "end_time": "...", "consistent_by": "...",
        "begin_wal": "00000001000000000000000B", "end_wal": "...",
        "begin_lsn": "0/B00028", "end_lsn": "0/B00100", "timeline": 1,
        "systemid": "7714...", "version": 150018, "size": 30609612,
        "stored_size": 3940575, "compression": "gzip", "snapshot": false,
        "problem": null}                            # or why it cannot be restored
     ],
     "wal_segment_size": 1048576,
     "timelines": [{"timeline": 1, "segments": 9, "first": "...", "last": "..."}],
     "windows": [{"start": ..., "end": ..., "end_is": "last archived commit", "end_lsn": ...,
                  "last_segment": ..., "timeline": 1, "backups": ["20261202T183941"]}],
     "window": {"start": ..., "end": ...} | None,
     "gaps": ["WAL gap on timeline 1: ..."],
     "problems": ["..."]}
"""

from __future__ import annotations

import ast
import bz2
import lzma
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tui.pitr.window import (
    Archive,
    Gap,
    RecoveryPicture,
    Window,
    commit_times,
    contiguous_run,
    missing_histories,
)
from tui.sources.base import Source, SourceError, shown_time
from tui.storage.base import StorageError, StoredObject
from tui.wal.names import (
    BACKUP,
    HISTORY,
    PARTIAL,
    SEGMENT,
    Segment,
    format_lsn,
    history_name,
    parse_history,
    parse_lsn,
)

KIND = "barman_cloud"
# Barman records end_time as now() in the statement that stops the backup, a moment
# before PostgreSQL writes the end-of-backup record: a target in between would be
# silently recovered past. A second covers that moment.
CONSISTENCY_MARGIN = timedelta(seconds=1)
LOOK_BACK = 8  # segments searched backwards for the last commit
MAX_BACKUP_INFO_BYTES = 1 << 20  # real ones are 1-2 kB; backup_label and copy_stats grow little
MAX_HISTORY_BYTES = 1 << 20
SEGMENT_SIZES = frozenset(1 << n for n in range(20, 31))  # 1 MiB .. 1 GiB, what initdb allows
DEFAULT_SEGMENT_SIZE = 16 << 20  # what Barman assumes when backup.info does not say
STATUSES = ("EMPTY", "STARTED", "WAITING_FOR_WALS", "DONE", "SYNCING", "FAILED")
DONE = "DONE"
# barman/cloud.py ALLOWED_COMPRESSIONS: what barman-cloud-wal-archive may append
WAL_COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".snappy": "snappy",
                    ".zst": "zstd", ".lz4": "lz4"}
# barman/cloud.py CloudBackupCatalog.get_backup_files: the data tarballs' extensions
DATA_COMPRESSIONS = {"": None, ".gz": "gzip", ".bz2": "bzip2", ".snappy": "snappy",
                     ".lz4": "lz4"}
_DATA_OBJECT = re.compile(r"(?:data|[0-9]+)(?:_[0-9]+)?\.tar(\.gz|\.bz2|\.snappy|\.lz4)?")
_WAL_DIR = re.compile(r"[0-9A-F]{16}")  # barman.xlog.hash_dir: timeline and log
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_SERVER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_BACKUP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_SYSTEM_ID = re.compile(r"[0-9]{1,20}")
# decompressed by the program of the same name, as drdeck's pgBackRest support does
_BY_PROGRAM = ("zstd", "lz4")
END_COMMIT = "last archived commit"
END_STORED = "time the last segment was stored (an upper bound)"
END_BACKUP = "backup end"


class BarmanCloudError(SourceError):
    """The object store cannot be read, or what names it cannot be right."""


class BackupInfoInvalid(BarmanCloudError):
    """One backup.info that drdeck cannot trust; the message says which value and why."""


class WalUnreadable(BarmanCloudError):
    """A WAL object that cannot be decompressed here, or is not what its name says."""


# --- where the store is -----------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """barman-cloud's destination URL: ``s3://bucket[/path]``."""

    bucket: str
    path: str  # "" for the bucket's root

    @classmethod
    def parse(cls, url: str) -> Destination:
        if not isinstance(url, str) or not url.startswith("s3://"):
            raise BarmanCloudError(
                f"barman_cloud destination {_shown(url)} is not an s3:// URL: drdeck reads "
                "Barman Cloud stores on S3 and S3-compatible services "
                "(destination = \"s3://bucket/path\")")
        bucket, _, path = url.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise BarmanCloudError(f"barman_cloud destination {_shown(url)} has no valid "
                                   "bucket name after s3://")
        return cls(bucket, path.strip("/"))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.path}".rstrip("/")


def check_server_name(server_name: str) -> str:
    if not isinstance(server_name, str) or not _SERVER_NAME.fullmatch(server_name) \
            or server_name in (".", ".."):
        raise BarmanCloudError(f"barman_cloud server_name {_shown(server_name)} is not a "
                               "Barman server name (letters, digits, '.', '_' and '-')")
    return server_name


def open_object_store(destination: str, endpoint_url: str | None = None,
                      region: str | None = None) -> Any:
    """An S3Store rooted at the destination's path; credentials from the AWS chain."""
    from tui.storage.s3 import S3Store

    where = Destination.parse(destination)
    return S3Store(where.bucket, prefix=where.path, endpoint_url=endpoint_url or None,
                   region=region or None)


# --- backup.info ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tablespace:
    """A tablespace as backup.info lists it; its data is in <oid>.tar in the store."""

    name: str
    oid: int
    location: str  # on the source: never restored to (a restore maps it elsewhere)


@dataclass(frozen=True)
class BarmanBackup:
    """One backup as its backup.info describes it, checked.

    Only a DONE backup is guaranteed its end_* values; the others may lack them.
    """

    backup_id: str
    name: str | None
    status: str
    error: str | None  # Barman's own words for a FAILED backup
    begin_time: datetime | None
    end_time: datetime | None
    begin_wal: str | None
    end_wal: str | None
    begin_lsn: int | None
    end_lsn: int | None
    timeline: int
    wal_segment_size: int
    systemid: str | None
    version: int | None  # PostgreSQL's server_version_num
    size: int | None  # the database's bytes (cluster_size, else size)
    compression: str | None
    encryption: str | None
    snapshot: bool  # a snapshot backup: its data is in disk snapshots, not tarballs
    data_objects: tuple[str, ...] = ()  # keys of its tarballs in the store
    tablespaces: tuple[Tablespace, ...] = ()
    stored_size: int = 0  # bytes of all its objects in the store

    @property
    def label(self) -> str:
        return self.backup_id

    stamp = label

    @property
    def first_segment(self) -> Segment:
        return Segment.parse(_required(self.begin_wal, "begin_wal"), self.wal_segment_size)

    @property
    def last_segment(self) -> Segment:
        return Segment.parse(_required(self.end_wal, "end_wal"), self.wal_segment_size)

    @property
    def start_lsn(self) -> str:
        return format_lsn(_required(self.begin_lsn, "begin_lsn"))

    @property
    def stop_lsn(self) -> str:
        return format_lsn(_required(self.end_lsn, "end_lsn"))

    @property
    def stopped(self) -> datetime:
        """When the backup was certainly consistent: the earliest point it can reach."""
        return _required(self.end_time, "end_time") + CONSISTENCY_MARGIN

    def as_dict(self, problem: str | None = None) -> dict[str, Any]:
        return {
            "id": self.backup_id, "name": self.name, "status": self.status,
            "error": self.error,
            "begin_time": _iso(self.begin_time), "end_time": _iso(self.end_time),
            "consistent_by": _iso(self.end_time + CONSISTENCY_MARGIN) if self.end_time
            else None,
            "begin_wal": self.begin_wal, "end_wal": self.end_wal,
            "begin_lsn": _lsn_text(self.begin_lsn), "end_lsn": _lsn_text(self.end_lsn),
            "timeline": self.timeline, "wal_segment_size": self.wal_segment_size,
            "systemid": self.systemid, "version": self.version, "size": self.size,
            "stored_size": self.stored_size, "compression": self.compression,
            "encryption": self.encryption, "snapshot": self.snapshot, "problem": problem,
        }


@dataclass(frozen=True)
class UnreadableBackup:
    backup_id: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.backup_id, "status": None, "problem": self.problem}


def read_fields(raw: bytes) -> dict[str, str | None]:
    """backup.info's ``key=value`` lines; Barman writes ``None`` for a value it lacks."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackupInfoInvalid(f"it is not UTF-8 text (byte {exc.start})") from None
    fields: dict[str, str | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not _FIELD_NAME.fullmatch(name):
            raise BackupInfoInvalid(f"line {number} is not key=value: {_shown(line)}")
        value = value.strip()
        fields[name] = None if value == "None" else value
    return fields


def parse_backup_info(raw: bytes, backup_id: str) -> BarmanBackup:
    """A checked BarmanBackup; BackupInfoInvalid names the first value that is wrong."""
    fields = read_fields(raw)
    status = _choice(fields, "status", STATUSES)
    size = _int(fields, "xlog_segment_size", 1, 1 << 30)
    if size is not None and size not in SEGMENT_SIZES:
        raise BackupInfoInvalid(f"xlog_segment_size={size} is not a WAL segment size "
                                "(a power of two from 1 MiB to 1 GiB)")
    compression = _text(fields, "compression")
    backup = BarmanBackup(
        backup_id=backup_id,
        name=_text(fields, "backup_name"),
        status=status,
        error=_said(fields.get("error")),
        begin_time=_time(fields, "begin_time"),
        end_time=_time(fields, "end_time"),
        begin_wal=_segment_name(fields, "begin_wal"),
        end_wal=_segment_name(fields, "end_wal"),
        begin_lsn=_lsn(fields, "begin_xlog"),
        end_lsn=_lsn(fields, "end_xlog"),
        timeline=_int(fields, "timeline", 1, 0xFFFFFFFF) or 0,
        wal_segment_size=size or DEFAULT_SEGMENT_SIZE,
        systemid=_matching(fields, "systemid", _SYSTEM_ID, "a system identifier"),
        version=_int(fields, "version", 90000, 9_999_999),
        size=_int(fields, "cluster_size", 0, 1 << 62) or _int(fields, "size", 0, 1 << 62),
        compression=compression.lower() if compression else None,
        encryption=_text(fields, "encryption"),
        snapshot=fields.get("snapshots_info") is not None,
        tablespaces=_tablespaces(fields),
    )
    if status == DONE:
        check_complete(backup)
    return backup


def check_complete(backup: BarmanBackup) -> None:
    """A DONE backup must say where it starts and ends, and say it consistently."""
    for name in ("begin_time", "end_time", "begin_wal", "end_wal", "begin_lsn", "end_lsn"):
        if getattr(backup, name) is None:
            raw_name = {"begin_lsn": "begin_xlog", "end_lsn": "end_xlog"}.get(name, name)
            raise BackupInfoInvalid(f"status is DONE but {raw_name} is missing")
    assert backup.begin_time and backup.end_time and backup.begin_wal and backup.end_wal
    assert backup.begin_lsn is not None and backup.end_lsn is not None
    if backup.timeline == 0:
        raise BackupInfoInvalid("status is DONE but timeline is missing")
    if backup.end_time < backup.begin_time:
        raise BackupInfoInvalid(f"end_time {_iso(backup.end_time)} is before begin_time "
                                f"{_iso(backup.begin_time)}")
    if backup.end_lsn < backup.begin_lsn:
        raise BackupInfoInvalid(f"end_xlog {format_lsn(backup.end_lsn)} is before begin_xlog "
                                f"{format_lsn(backup.begin_lsn)}")
    if int(backup.begin_wal[:8], 16) != backup.timeline:
        raise BackupInfoInvalid(f"begin_wal {backup.begin_wal} is not on timeline "
                                f"{backup.timeline}")
    for wal, lsn, names in ((backup.begin_wal, backup.begin_lsn, ("begin_wal", "begin_xlog")),
                            (backup.end_wal, backup.end_lsn, ("end_wal", "end_xlog"))):
        if not _segment_holds(wal, lsn, backup.wal_segment_size):
            raise BackupInfoInvalid(
                f"{names[0]} {wal} does not hold {names[1]} {format_lsn(lsn)} with "
                f"{backup.wal_segment_size:,}-byte segments")


def _segment_holds(name: str, lsn: int, size: int) -> bool:
    """Whether the segment `name` holds `lsn`. pg_walfile_name() names the previous
    segment for an LSN exactly at a boundary, so that one counts too."""
    timeline = int(name[:8], 16)
    number = Segment.parse(name, size).number
    return number in (Segment.of_lsn(timeline, lsn, size).number,
                      Segment.of_lsn(timeline, max(lsn - 1, 0), size).number)


def _text(fields: dict[str, str | None], name: str, limit: int = 200) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if len(value) > limit or not value.isprintable():
        raise BackupInfoInvalid(f"{name} is not a short line of text: {_shown(value)}")
    return value


def _said(value: str | None, limit: int = 300) -> str | None:
    """Barman's own message, kept however long or odd: shown cut short and printable."""
    if value is None:
        return None
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return printable if len(printable) <= limit else printable[:limit - 3] + "..."


def _choice(fields: dict[str, str | None], name: str, allowed: Iterable[str]) -> str:
    value = fields.get(name)
    if value not in allowed:
        raise BackupInfoInvalid(f"{name}={_shown(value)} is not one of {', '.join(allowed)}")
    return value


def _int(fields: dict[str, str | None], name: str, low: int, high: int) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,20}", value) or not low <= int(value) <= high:
        raise BackupInfoInvalid(f"{name}={_shown(value)} is not a whole number from "
                                f"{low:,} to {high:,}")
    return int(value)


def _matching(fields: dict[str, str | None], name: str, pattern: re.Pattern[str],
              what: str) -> str | None:
    value = fields.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise BackupInfoInvalid(f"{name}={_shown(value)} is not {what}")
    return value


def _time(fields: dict[str, str | None], name: str) -> datetime | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        if len(value) > 40:
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        # Barman reads a time without an offset as local time (infofile.load_datetime_tz)
        return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise BackupInfoInvalid(f"{name}={_shown(value)} is not a time "
                                "(Barman writes 2026-12-02 18:39:41.654478+00:00)") from None


def _segment_name(fields: dict[str, str | None], name: str) -> str | None:
    return _matching(fields, name, SEGMENT, "a WAL segment name")


def _lsn(fields: dict[str, str | None], name: str) -> int | None:
    value = _matching(fields, name, _LSN, "an LSN (like 0/B00028)")
    return parse_lsn(value) if value is not None else None


def _tablespaces(fields: dict[str, str | None]) -> tuple[Tablespace, ...]:
    """backup.info's `tablespaces`: a Python literal, [('name', oid, 'location'), ...],
    read as a literal only (never evaluated) and checked item by item."""
    raw = fields.get("tablespaces")
    if raw is None or raw == "None":
        return ()
    try:
        items = ast.literal_eval(raw) if len(raw) <= 100_000 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        items = None
    if not isinstance(items, list) or len(items) > 1000:
        raise BackupInfoInvalid(f"tablespaces={_said(raw, 80)} is not a list of tablespaces")
    found = []
    for item in items:
        if not (isinstance(item, list | tuple) and len(item) == 3
                and isinstance(item[0], str) and 0 < len(item[0]) <= 63
                and isinstance(item[1], int) and not isinstance(item[1], bool)
                and 0 < item[1] < 1 << 32 and isinstance(item[2], str)):
            raise BackupInfoInvalid(f"tablespaces: {_said(repr(item), 80)} is not a "
                                    "(name, oid, location) of a tablespace")
        found.append(Tablespace(item[0], item[1], item[2][:4096]))
    if len({t.oid for t in found}) != len(found):
        raise BackupInfoInvalid("tablespaces: an oid is listed twice")
    return tuple(found)


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise BackupInfoInvalid(f"{name} is missing")
    return value


# --- what the store holds ---------------------------------------------------------------


@dataclass
class StoreListing:
    """The objects under <server_name>/, sorted into backups and WAL."""

    backups: dict[str, list[StoredObject]] = field(default_factory=dict)  # id -> its objects
    bad_backup_dirs: dict[str, None] = field(default_factory=dict)  # names no backup id has
    wal: dict[str, StoredObject] = field(default_factory=dict)  # WAL file name -> object
    wal_compression: dict[str, str | None] = field(default_factory=dict)


def list_store(store: Any, server_name: str) -> StoreListing:
    """One listing of everything under the server's prefix."""
    listing = StoreListing()
    base, wals = f"{server_name}/base/", f"{server_name}/wals/"
    for item in store.list(f"{server_name}/"):
        if item.key.startswith(base):
            _file_backup_object(listing, item, item.key[len(base):])
        elif item.key.startswith(wals):
            _file_wal_object(listing, item, item.key[len(wals):])
    return listing


def list_wal_objects(store: Any, server_name: str, name: str, listing: StoreListing) -> None:
    """Look for one WAL file again (compressed or not), adding it to `listing` if found:
    archiving goes on while a restore reads the store."""
    wals = f"{server_name}/wals/"
    where = f"{wals}{name}" if HISTORY.fullmatch(name) else f"{wals}{name[:16]}/{name}"
    for item in store.list(where):
        _file_wal_object(listing, item, item.key[len(wals):])


def _file_backup_object(listing: StoreListing, item: StoredObject, rest: str) -> None:
    backup_id, slash, _name = rest.partition("/")
    if not slash:
        return  # an object beside the backups' directories: not Barman's
    if not _BACKUP_ID.fullmatch(backup_id):
        listing.bad_backup_dirs[backup_id] = None
        return
    listing.backups.setdefault(backup_id, []).append(item)


def _file_wal_object(listing: StoreListing, item: StoredObject, rest: str) -> None:
    directory, _, file_name = rest.rpartition("/")
    if directory and not _WAL_DIR.fullmatch(directory):
        return
    name, compression = _wal_name(file_name)
    if name is None or name in listing.wal:
        return
    is_history = HISTORY.fullmatch(name) is not None
    if is_history != (directory == ""):
        return  # barman-cloud keeps histories at the top, the rest in timeline+log dirs
    if SEGMENT.fullmatch(name) and directory != name[:16]:
        return
    listing.wal[name] = item
    listing.wal_compression[name] = compression


def _wal_name(file_name: str) -> tuple[str | None, str | None]:
    """(the WAL file's name, how barman-cloud compressed it); None: not a WAL file."""
    for suffix, compression in (("", None), *WAL_COMPRESSIONS.items()):
        if suffix and not file_name.endswith(suffix):
            continue
        name = file_name.removesuffix(suffix) if suffix else file_name
        if any(p.fullmatch(name) for p in (SEGMENT, HISTORY, PARTIAL, BACKUP)):
            return name, compression
    return None, None


def read_backups(store: Any, server_name: str, listing: StoreListing
                 ) -> tuple[list[BarmanBackup], list[UnreadableBackup]]:
    """Every backup.info under base/, checked: the readable ones (oldest first), and
    each one that is not, with why."""
    readable: list[BarmanBackup] = []
    # such a name may hold anything (terminal escapes too): it is shown quoted
    unreadable = [UnreadableBackup(_shown(name), "its directory name is not a Barman backup id")
                  for name in listing.bad_backup_dirs]
    for backup_id, objects in sorted(listing.backups.items()):
        try:
            readable.append(_read_backup(store, server_name, backup_id, objects))
        except (BarmanCloudError, StorageError) as exc:
            unreadable.append(UnreadableBackup(backup_id, str(exc)))
        except ValueError as exc:  # a check above missed it: still this one backup's fault
            unreadable.append(UnreadableBackup(backup_id, f"its backup.info cannot be used: "
                                               f"{exc}"))
    readable.sort(key=lambda b: (b.end_time or b.begin_time or datetime.min.replace(tzinfo=UTC),
                                 b.backup_id))
    return readable, unreadable


def _read_backup(store: Any, server_name: str, backup_id: str,
                 objects: list[StoredObject]) -> BarmanBackup:
    info_key = f"{server_name}/base/{backup_id}/backup.info"
    info = next((o for o in objects if o.key == info_key), None)
    if info is None:
        raise BackupInfoInvalid("it has no backup.info (an upload in progress, or what is "
                                "left of a deleted backup)")
    raw = read_capped(store, info, MAX_BACKUP_INFO_BYTES, "a backup.info")
    try:
        backup = parse_backup_info(raw, backup_id)
    except BackupInfoInvalid as exc:
        raise BackupInfoInvalid(f"{store.url(info.key)} cannot be used: {exc}") from None
    tarballs = sorted(o.key for o in objects if _DATA_OBJECT.fullmatch(_base_name(o.key)))
    # barman-cloud-backup leaves compression=None in backup.info: the tarball's name says
    compression = backup.compression or next(
        (DATA_COMPRESSIONS.get(_base_name(key).partition(".tar")[2]) for key in tarballs
         if _base_name(key).startswith("data.tar")), None)
    return replace(backup, data_objects=tuple(tarballs),
                   stored_size=sum(o.size for o in objects), compression=compression)


def _base_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def read_capped(store: Any, item: StoredObject, limit: int, what: str) -> bytes:
    """A small object's bytes, never more than `limit` of them downloaded."""
    if item.size > limit:
        raise BarmanCloudError(f"{store.url(item.key)} has {item.size:,} bytes, more than "
                               f"{what} can have ({limit:,}): not read")
    parts: list[bytes] = []
    received = 0
    chunks = store.iter_chunks(item.key, chunk_size=min(limit + 1, 1 << 20))
    try:
        for chunk in chunks:
            received += len(chunk)
            if received > limit:  # it grew since it was listed
                raise BarmanCloudError(f"{store.url(item.key)} is larger than {what} can be "
                                       f"({limit:,} bytes): not read")
            parts.append(chunk)
    finally:
        getattr(chunks, "close", lambda: None)()
    return b"".join(parts)


# --- the WAL archive --------------------------------------------------------------------


@dataclass
class WalArchive:
    """The archive as tui.pitr.window sees one, and where each segment is in the store."""

    archive: Archive
    objects: dict[tuple[int, int], StoredObject]  # (timeline, number) -> its object
    compression: dict[tuple[int, int], str | None]
    problems: list[str]


def read_wal_archive(store: Any, listing: StoreListing, segment_size: int) -> WalArchive:
    """Segments per timeline, and the timeline histories (read and parsed)."""
    archive = Archive()
    wal = WalArchive(archive, {}, {}, [])
    per_log = (1 << 32) // segment_size
    for name, item in listing.wal.items():
        if SEGMENT.fullmatch(name) and int(name[16:], 16) < per_log and int(name[:8], 16):
            segment = Segment.parse(name, segment_size)
            key = (segment.timeline, segment.number)
            archive.segments[segment.timeline].add(segment.number)
            archive.names[key] = name
            wal.objects[key] = item
            wal.compression[key] = listing.wal_compression[name]
        elif HISTORY.fullmatch(name) and int(name[:8], 16) > 1:
            _read_history(store, listing, name, item, wal)
    return wal


def _read_history(store: Any, listing: StoreListing, name: str, item: StoredObject,
                  wal: WalArchive) -> None:
    try:
        raw = read_capped(store, item, MAX_HISTORY_BYTES, "a timeline history file")
        plain = decompress(raw, listing.wal_compression[name], MAX_HISTORY_BYTES,
                           store.url(item.key))
        switches = parse_history(plain.decode("utf-8"))
    except (BarmanCloudError, StorageError) as exc:
        wal.problems.append(f"timeline history {name} cannot be read: {exc}")
        return
    except (ValueError, UnicodeDecodeError):
        wal.problems.append(f"timeline history {store.url(item.key)} is not a timeline "
                            "history file: recovery cannot follow that timeline")
        return
    wal.archive.histories[int(name[:8], 16)] = switches


def read_segment(store: Any, wal: WalArchive, key: tuple[int, int], segment_size: int
                 ) -> bytes:
    """One segment's plain bytes; WalUnreadable when they cannot be had here."""
    item = wal.objects[key]
    # a compressed segment can be slightly larger than a plain one, never much
    raw = read_capped(store, item, segment_size + (1 << 20), "a WAL segment")
    plain = decompress(raw, wal.compression[key], segment_size, store.url(item.key))
    if len(plain) != segment_size:
        raise WalUnreadable(f"{store.url(item.key)} holds {len(plain):,} bytes, not a "
                            f"{segment_size:,}-byte WAL segment")
    return plain


def decompress(raw: bytes, compression: str | None, limit: int, where: str = "") -> bytes:
    """`raw` as barman-cloud compressed it, decompressed to at most `limit` bytes."""
    where = where or "a WAL object"
    if compression is None:
        if len(raw) > limit:
            raise WalUnreadable(f"{where} is larger than {limit:,} bytes")
        return raw
    if compression == "snappy":
        raise WalUnreadable(f"{where} is snappy-compressed, and drdeck has no snappy "
                            "decompressor (archive with --gzip, --bzip2, --xz, --zstd or "
                            "--lz4 for drdeck to read it)")
    if compression in _BY_PROGRAM:
        return _decompress_with_program(raw, compression, limit, where)
    decompressor: Any = {
        "gzip": lambda: zlib.decompressobj(wbits=31),
        "bzip2": bz2.BZ2Decompressor,
        "xz": lzma.LZMADecompressor,
    }[compression]()
    try:
        plain = decompressor.decompress(raw, limit + 1)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise WalUnreadable(f"{where} is not valid {compression} data ({exc})") from None
    if len(plain) > limit:
        raise WalUnreadable(f"{where} decompresses to more than {limit:,} bytes")
    if not decompressor.eof:
        raise WalUnreadable(f"{where} ends before its {compression} stream does (truncated)")
    return plain


def _decompress_with_program(raw: bytes, compression: str, limit: int, where: str) -> bytes:
    program = shutil.which(compression)
    if program is None:
        raise WalUnreadable(f"{where} is {compression}-compressed, and the {compression} "
                            f"program that decompresses it is not installed "
                            f"(apt-get install {compression})")
    with tempfile.NamedTemporaryFile(prefix="drdeck-barman-") as packed:
        packed.write(raw)
        packed.flush()
        with subprocess.Popen([program, "-d", "-c", "-q", packed.name],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as child:
            assert child.stdout is not None
            plain = child.stdout.read(limit + 1)  # no more than that is ever held
            if len(plain) > limit:
                child.kill()
            returncode = child.wait()
    if len(plain) > limit:
        raise WalUnreadable(f"{where} decompresses to more than {limit:,} bytes")
    if returncode != 0:
        raise WalUnreadable(f"{where} is not valid {compression} data "
                            f"({compression} exit {returncode})")
    return plain


# --- the picture ------------------------------------------------------------------------


@dataclass
class ObjectStorePicture:
    """What one Barman Cloud server's store holds, and what it can recover."""

    destination: str
    server_name: str
    endpoint: str
    backups: list[BarmanBackup]  # readable ones, oldest first
    unreadable: list[UnreadableBackup]
    wal_segment_size: int | None
    recovery: RecoveryPicture  # base_backups: (backup, id, problem); None for the unreadable
    end_is: dict[str, str] = field(default_factory=dict)  # window's last segment -> how
    listing: StoreListing | None = None  # the objects as listed, for a restore to fetch

    def problem_of(self, backup: BarmanBackup) -> str | None:
        return next((problem or None for found, _, problem in self.recovery.base_backups
                     if found is backup), None)


def read_object_store(destination: str, server_name: str, endpoint_url: str | None = None,
                      region: str | None = None, *, read_commit_times: bool = True
                      ) -> ObjectStorePicture:
    """Backups, the archive, the windows and the gaps of one server in a Barman Cloud
    store (the cluster's `barman_cloud = {destination, server_name, endpoint_url}`).

    Raises BarmanCloudError for a destination or server name that cannot be right, and
    StorageError when the store cannot be listed; anything wrong inside the store is
    reported in the picture instead.
    """
    check_server_name(server_name)
    where = Destination.parse(destination)
    store = open_object_store(where.url, endpoint_url, region)
    listing = list_store(store, server_name)
    backups, unreadable = read_backups(store, server_name, listing)
    problems = {b.backup_id: problem for b in backups if (problem := _unusable(b, backups))}
    base_backups: list[tuple[BarmanBackup | None, str, str]] = [
        (b, b.backup_id, problems.get(b.backup_id, "")) for b in backups]
    base_backups += [(None, u.backup_id, u.problem) for u in unreadable]
    usable = [b for b in backups if b.backup_id not in problems]
    said = [f"backup {u.backup_id}: {u.problem}" for u in unreadable]
    # a backup still running is no problem; a failed one, or a DONE one that cannot be
    # restored, is worth a warning
    said += [f"backup {b.backup_id} cannot be restored: {problems[b.backup_id]}"
             for b in backups if b.backup_id in problems and b.status in (DONE, "FAILED")]
    picture = ObjectStorePicture(where.url, server_name, store.endpoint, backups, unreadable,
                                 None, RecoveryPicture(base_backups, Archive(), [], [], said),
                                 listing=listing)
    if not usable:
        picture.recovery.problems.append("no backup to restore from (none is DONE with its "
                                         "data in the store)")
        return picture
    size = usable[-1].wal_segment_size
    wal = read_wal_archive(store, listing, size)
    picture.wal_segment_size = size
    picture.recovery.archive = wal.archive
    picture.recovery.problems += wal.problems
    _add_windows(picture, store, wal, usable, read_commit_times)
    return picture


def _unusable(backup: BarmanBackup, backups: list[BarmanBackup]) -> str | None:
    """Why a readable backup cannot be restored from; None when it can."""
    if backup.status != DONE:
        return f"status {backup.status}" + (f": {backup.error}" if backup.error else "")
    if not backup.data_objects and not backup.snapshot:
        return "its data (data.tar) is not in the store"
    newest = [b for b in backups if b.status == DONE][-1]
    if backup.systemid and newest.systemid and backup.systemid != newest.systemid:
        return (f"it is of another database system ({backup.systemid}) than the newest "
                f"backup ({newest.systemid})")
    if backup.wal_segment_size != newest.wal_segment_size:
        return (f"its WAL segments are {backup.wal_segment_size:,} bytes, the newest "
                f"backup's {newest.wal_segment_size:,}")
    return None


def _add_windows(picture: ObjectStorePicture, store: Any, wal: WalArchive,
                 usable: list[BarmanBackup], read_commit_times: bool) -> None:
    """One window per contiguous run of WAL after a backup; backups whose runs end at
    the same segment share it."""
    recovery = picture.recovery
    missing = missing_histories(wal.archive, min(b.timeline for b in usable))
    recovery.missing_histories = missing
    recovery.problems += [
        f"WAL of timeline {t} is archived but not {history_name(t)}, so recovery cannot "
        f"follow timeline {t}" for t in missing]
    gaps: dict[tuple[int, str], Gap] = {}
    for backup in usable:
        run_end, timeline, gap = contiguous_run(wal.archive, backup)
        if run_end is None or run_end.number < backup.last_segment.number:
            recovery.problems.append(
                f"backup {backup.backup_id} is not restorable: the WAL from its start "
                f"({backup.begin_wal}) to its end ({backup.end_wal}) is not all archived")
            continue
        if gap is not None:
            gaps[(gap.timeline, gap.missing_from)] = gap
        windows = recovery.windows
        if windows and windows[-1].last_segment == run_end.name:
            previous = windows[-1]
            windows[-1] = Window(previous.base, (*previous.bases, backup), previous.start,
                                 previous.end, previous.end_lsn, previous.timeline,
                                 previous.last_segment, previous.ended_by)
            continue
        end, how = None, END_BACKUP
        if read_commit_times:
            end, how = _last_commit(picture, store, wal, run_end)
        if end is None or end < backup.stopped:
            end, how = backup.stopped, END_BACKUP
        windows.append(Window(backup, (backup,), backup.stopped, end, run_end.end_lsn,
                              timeline, run_end.name, gap))
        picture.end_is[run_end.name] = how
    recovery.gaps = list(gaps.values())


def _last_commit(picture: ObjectStorePicture, store: Any, wal: WalArchive, last: Segment
                 ) -> tuple[datetime | None, str]:
    """The newest commit time in a run's last segments (pg_waldump), or, when they
    cannot be read here, the time the last one was stored: an upper bound."""
    segment = last
    for _ in range(LOOK_BACK):
        key = (segment.timeline, segment.number)
        if key not in wal.objects:
            break
        try:
            plain = read_segment(store, wal, key, last.size)
        except (BarmanCloudError, StorageError) as exc:
            picture.recovery.problems.append(f"the end of the window is not the last commit: "
                                             f"{exc}")
            return wal.objects[(last.timeline, last.number)].modified, END_STORED
        times = commit_times(plain, wal.archive.names[key])
        if times:
            return max(times), END_COMMIT
        if segment.number == 0:
            break
        segment = Segment(segment.timeline, segment.number - 1, segment.size)
    return None, END_BACKUP


# --- the inventory ----------------------------------------------------------------------


def inventory(destination: str, server_name: str, endpoint_url: str | None = None,
              region: str | None = None, read_commit_times: bool = True) -> dict[str, Any]:
    """The plain dict described in this module's docstring."""
    return picture_dict(read_object_store(destination, server_name, endpoint_url, region,
                                          read_commit_times=read_commit_times))


def picture_dict(picture: ObjectStorePicture) -> dict[str, Any]:
    recovery = picture.recovery
    return {
        "kind": KIND,
        "destination": picture.destination,
        "server_name": picture.server_name,
        "endpoint": picture.endpoint,
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


class BarmanCloudSource(Source):
    """A Barman Cloud object store that backs a cluster up (CloudNativePG's, or one
    written by barman-cloud-backup): read, never written.

        [clusters.NAME]
        barman_cloud = { destination = "s3://bucket/path", server_name = "pg" }
    """

    kind = KIND
    title = "Barman Cloud"
    # endpoint_url: an S3-compatible service (MinIO, R2, a test server); region: the
    # bucket's, when the AWS chain does not say. Credentials: the AWS chain, as elsewhere.
    settings = {"destination": True, "server_name": True, "endpoint_url": False,
                "region": False}
    example = '{ destination = "s3://bucket/path", server_name = "pg" }'
    restore_runbook = "pitr-barman"

    def __init__(self, destination: str, server_name: str, endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        self.destination, self.server_name = destination, server_name
        self.endpoint_url, self.region = endpoint_url, region
        self._picture: ObjectStorePicture | None = None  # the last read, for wal_fetcher

    @classmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> BarmanCloudSource:
        return cls(settings["destination"], settings["server_name"],
                   settings.get("endpoint_url"), settings.get("region"))

    @classmethod
    def check_settings(cls, settings: dict[str, str]) -> list[tuple[str, str]]:
        problems = []
        for key, check in (("destination", Destination.parse),
                           ("server_name", check_server_name)):
            try:
                check(settings[key])
            except BarmanCloudError as exc:
                problems.append((key, str(exc)))
        return problems

    @classmethod
    def action_classes(cls) -> tuple[type, ...]:
        from tui.sources.barman_cloud_actions import BarmanCloudPreflight, BarmanCloudRestore

        return (BarmanCloudPreflight, BarmanCloudRestore)

    def describe(self) -> str:
        return f"server {self.server_name} in {self.destination}"

    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        return inventory(self.destination, self.server_name, self.endpoint_url, self.region,
                         read_commit_times)

    def picture(self, read_commit_times: bool = True) -> ObjectStorePicture:
        """The backups, the archive and the windows, for a recovery (tui.pitr)."""
        self._picture = read_object_store(self.destination, self.server_name,
                                          self.endpoint_url, self.region,
                                          read_commit_times=read_commit_times)
        return self._picture

    def recovery_picture(self) -> RecoveryPicture:
        return self.picture().recovery

    def base_bytes(self, backup: Any, picture: Any) -> int | None:
        return backup.stored_size or None

    def store(self) -> Any:
        return open_object_store(self.destination, self.endpoint_url, self.region)

    def wal_fetcher(self) -> Callable[[str], bytes | None]:
        from tui.sources.barman_cloud_restore import StoreWal

        seen = self._picture or self.picture(read_commit_times=False)
        size = seen.wal_segment_size or next(
            (b.wal_segment_size for b in reversed(seen.backups)), None)
        if size is None or seen.listing is None:
            raise BarmanCloudError(f"{self.describe()} holds no backup that says how large "
                                   "its WAL segments are")
        return StoreWal(self.store(), self.server_name, seen.listing, size).fetch

    async def unpack_base_backup(self, backup: Any, data_dir: Path, reporter: Any,
                                 places: dict[int, Path] | None = None) -> None:
        from tui.sources.barman_cloud_restore import unpack_backup

        await unpack_backup(backup, self.store(), data_dir, reporter, places)

    def backup_line(self, backup: dict[str, Any]) -> str:
        if backup.get("status") is None:  # unreadable: its problem is the line
            return f"{backup.get('id')}  UNREADABLE: {backup.get('problem')}"
        ended = shown_time(backup["end_time"]) if backup.get("end_time") else "-"
        line = f"{backup.get('id')}  {backup.get('status')}  ended {ended}"
        if backup.get("name"):
            line += f"  ({backup['name']})"
        return line + (f"  NOT USABLE: {backup['problem']}" if backup.get("problem") else "")


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


def _lsn_text(lsn: int | None) -> str | None:
    return format_lsn(lsn) if lsn is not None else None


def _shown(value: Any) -> str:
    """An untrusted value, quoted and cut short for a message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
