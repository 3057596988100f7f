"""pgBackRest as drdeck sees it: backups, the WAL archive, the recoverable window.

Many teams already run pgBackRest; drdeck is their console, not their
replacement. Everything here is read through pgBackRest's own commands, as the
OS user that owns its repository (``postgres`` when we are root, so its lock
and log files never become root's):

- ``pgbackrest --config=C --stanza=S info --output=json``: the backups and the
  archive range (pgBackRest's stable machine contract);
- ``pgbackrest ... repo-ls --output=json --recurse archive/S/<archive id>``:
  every archived segment, so a gap in the archive ends a window there;
- ``pgbackrest ... repo-get archive/S/<archive id>/<dir>/<file>``: the last
  segments (repo-get decrypts but does not decompress: drdeck decompresses gz
  and bz2 itself, lz4 and zst with the ``lz4``/``zstd`` programs), read with
  ``pg_waldump`` for the real time of the last archived commit.

The recoverable window of a backup runs from the moment it was certainly
consistent to the last commit in the contiguous WAL that follows it. pgBackRest
records stop times in whole seconds, taken just after the backup stopped, so
that moment is the recorded stop time plus one second. When the last segment
cannot be decompressed here (no ``lz4`` program, say), the window's end is the
time the repository stored that segment: an upper bound, marked as such.

`inventory()` returns a plain dict for `drdeck inventory` (times are ISO 8601
in UTC, sizes in bytes; LSNs as PostgreSQL writes them)::

    {
      "kind": "pgbackrest",
      "stanza": "main", "config": "/etc/pgbackrest/pgbackrest.conf",
      "status": "ok",                      # pgBackRest's stanza status message
      "cipher": "none",
      "databases": [{"id": 1, "version": "15", "system_id": 7712...}],
      "backups": [                         # oldest first
        {"label": "20261127-175918F", "type": "full",   # full | diff | incr
         "prior": null,                    # the backup a diff/incr depends on
         "start": "...", "stop": "...",    # as pgBackRest recorded them (whole seconds)
         "consistent_by": "...",           # stop + 1 s: the earliest reachable point
         "start_lsn": "0/800028", "stop_lsn": "0/800100",
         "start_wal": "000000010000000000000008", "stop_wal": "...",
         "timeline": 1, "database_id": 1, "repo": 1,
         "size": 23000711, "delta": 23000711,   # database bytes (delta: this backup's own)
         "repo_size": 3043589, "repo_delta": 3043589}   # bytes stored in the repository
      ],
      "archives": [{"id": "15-1", "database_id": 1, "repo": 1,
                    "min": "000000010000000000000006", "max": "00000001000000000000000B"}],
      "wal_segment_size": 1048576,
      "windows": [                         # one per contiguous run of WAL
        {"start": "...", "end": "...",
         "end_is": "last archived commit",  # or "archive time of the last segment
                                            #     (an upper bound)" or "backup end"
         "end_lsn": "0/C00000", "last_segment": "...", "timeline": 1,
         "backups": ["20261127-175918F", ...]}
      ],
      "window": {"start": "...", "end": "..."},   # earliest .. latest reachable; null: none
      "gaps": ["WAL gap on timeline 1: ... missing (archive resumes at ...)"],
      "problems": ["..."]                  # e.g. a backup whose own WAL is not all there
    }
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tui import environment
from tui.errors import DrdeckError
from tui.postgres.cluster import ServerAccount, run_as, server_account
from tui.sources.base import Source, SourceError, shown_time
from tui.wal.names import HISTORY, SEGMENT, Segment, format_lsn, parse_history, parse_lsn

PROGRAM = "pgbackrest"
TYPES = ("full", "diff", "incr")
# pgBackRest's stop stamp is whole seconds, taken after the backup stopped
CONSISTENCY_MARGIN = timedelta(seconds=1)
_LOOK_BACK = 8  # segments searched backwards for the last commit
_SEGMENT_SIZES = [1 << n for n in range(20, 31)]  # 1 MiB .. 1 GiB, what initdb allows
_ARCHIVED = re.compile(r"([0-9A-F]{24})-[0-9a-f]{40}(\.\w+)?")
_HISTORY_FILE = re.compile(r"([0-9A-F]{8}\.history)(\.\w+)?")
_END_COMMIT = "last archived commit"
_END_STORED = "archive time of the last segment (an upper bound)"
_END_BACKUP = "backup end"


def child_environment(environ: Any = None) -> dict[str, str]:
    """What pgbackrest finds in its environment: the base set and its PGBACKREST_* options."""
    return environment.for_program(environ, prefixes=("PGBACKREST_",))


class PgbackrestError(SourceError):
    """pgBackRest is missing, refused, or said something drdeck cannot read."""


# --- running pgbackrest ---------------------------------------------------------------


@dataclass(frozen=True)
class Pgbackrest:
    """One stanza of one pgBackRest configuration, and the OS user its commands run as.

    ``os_user`` None: ``postgres`` when we are root, ourselves otherwise. A
    named user is honoured only when we are root (we cannot switch otherwise).
    """

    stanza: str
    config: str | None = None
    os_user: str | None = None

    def __post_init__(self) -> None:
        if not self.stanza or not re.fullmatch(r"[\w.-]+", self.stanza):
            raise PgbackrestError(f"{self.stanza!r} is not a pgBackRest stanza name")

    @property
    def account(self) -> ServerAccount | None:
        if os.geteuid() != 0:
            return None
        if not self.os_user:
            return server_account()
        try:
            entry = pwd.getpwnam(self.os_user)
        except KeyError:
            raise PgbackrestError(f"there is no OS user {self.os_user!r} to run "
                                  "pgbackrest as") from None
        return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid,
                             tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)))

    def argv(self, command: str, *options: str) -> list[str]:
        """`pgbackrest [--config=C] --stanza=S <command> <options and arguments>`."""
        argv = [program()]
        if self.config:
            argv.append(f"--config={self.config}")
        argv.append(f"--stanza={self.stanza}")
        return [*argv, command, *options]

    def as_account(self, argv: list[str]) -> list[str]:
        """`argv` prefixed to run as the repository's owner, for a streamed child process."""
        account = self.account
        if account is None:
            return argv
        runuser = shutil.which("runuser", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if runuser is None:
            raise PgbackrestError("runuser (util-linux) is needed to run pgbackrest as "
                                  f"{account.name} and is not installed")
        return [runuser, "-u", account.name, "--", *argv]

    def run(self, command: str, *options: str, timeout: float = 300,
            what: str = "") -> bytes:
        """Run a command to completion; its stdout, or a PgbackrestError quoting its ERROR."""
        argv = self.argv(command, *options)
        try:
            result = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                    cwd="/", timeout=timeout, check=False,
                                    env=child_environment(), **run_as(self.account))
        except subprocess.TimeoutExpired:
            raise PgbackrestError(f"{' '.join(argv)} did not finish within {timeout:.0f}s"
                                  ) from None
        if result.returncode != 0:
            said = (result.stderr + result.stdout).decode(errors="replace")
            raise PgbackrestError(
                f"{what or 'pgbackrest ' + command} failed (exit {result.returncode}): "
                f"{error_line(said)}\n  ran: {' '.join(argv)}"
                + (f" (as {self.account.name})" if self.account else ""))
        return result.stdout


def program() -> str:
    found = shutil.which(PROGRAM)
    if found is None:
        raise PgbackrestError("pgbackrest is not installed (not found on PATH): install it "
                              "with 'apt-get install pgbackrest'")
    return found


def error_line(output: str) -> str:
    """pgBackRest's own words: its last ERROR line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line]
    if errors:
        return "ERROR:" + errors[-1].split("ERROR:", 1)[1]
    return lines[-1] if lines else "no output"


# --- what info says ---------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str  # full | diff | incr
    prior: str | None
    start: datetime  # as pgBackRest recorded it (whole seconds)
    stop: datetime
    start_lsn: str
    stop_lsn: str
    start_wal: str
    stop_wal: str
    size: int | None  # database bytes restored by this set
    delta: int | None
    repo_size: int | None
    repo_delta: int | None
    database_id: int
    repo: int

    @property
    def timeline(self) -> int:
        return int(self.start_wal[:8], 16)

    @property
    def stopped(self) -> datetime:
        """When the backup was certainly consistent: the earliest point it can reach."""
        return self.stop + CONSISTENCY_MARGIN

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "type": self.type, "prior": self.prior,
            "start": _iso(self.start), "stop": _iso(self.stop),
            "consistent_by": _iso(self.stopped),
            "start_lsn": self.start_lsn, "stop_lsn": self.stop_lsn,
            "start_wal": self.start_wal, "stop_wal": self.stop_wal,
            "timeline": self.timeline, "database_id": self.database_id, "repo": self.repo,
            "size": self.size, "delta": self.delta,
            "repo_size": self.repo_size, "repo_delta": self.repo_delta,
        }


@dataclass(frozen=True)
class ArchiveRange:
    id: str  # "15-1": PostgreSQL version and database id
    database_id: int
    repo: int
    min: str | None
    max: str | None


@dataclass(frozen=True)
class StanzaInfo:
    stanza: str
    status_code: int
    status: str
    cipher: str
    databases: list[dict[str, Any]]
    backups: list[BackupSet]  # oldest first
    archives: list[ArchiveRange]
    problems: list[str] = field(default_factory=list)  # per repository, or per backup


# pgBackRest's stanza status codes (command/info/info.c): 0 ok, 2 no valid backups and
# 4 "different across repos" still describe what is there; the others mean it cannot be read
_STATUS_OK, _STATUS_NO_BACKUP, _STATUS_MIXED = 0, 2, 4
_STATUS_HELP = {
    1: "the stanza does not exist in the repository: check --stanza and the repository "
       "path in the configuration, or create it with 'pgbackrest --stanza={s} stanza-create'",
    3: "the stanza's backup.info or archive.info is missing from the repository",
    5: "the repositories hold different databases (system id or version) for this stanza",
}


def read_info(pgbackrest: Pgbackrest) -> StanzaInfo:
    raw = pgbackrest.run("info", "--output=json", what="pgbackrest info")
    return parse_info(raw, pgbackrest.stanza)


def parse_info(raw: bytes | str, stanza: str) -> StanzaInfo:
    """`info --output=json` -> StanzaInfo; anything unexpected is a clear PgbackrestError."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise PgbackrestError(f"pgbackrest info did not print JSON ({exc}): "
                              f"{_excerpt(raw)}") from None
    try:
        entry = next((s for s in data if s.get("name") == stanza), None)
        if entry is None:
            raise PgbackrestError(f"pgbackrest info says nothing about stanza {stanza!r}")
        code = int(entry["status"]["code"])
        message = str(entry["status"].get("message", ""))
        repos = [f"repo{r.get('key')}: {r.get('status', {}).get('message')}"
                 for r in entry.get("repo", [])
                 if r.get("status", {}).get("code", 0) not in (_STATUS_OK, _STATUS_NO_BACKUP)]
        if code in _STATUS_HELP:
            raise PgbackrestError(f"pgBackRest stanza {stanza!r}: {message}: "
                                  + _STATUS_HELP[code].format(s=stanza))
        if code not in (_STATUS_OK, _STATUS_NO_BACKUP, _STATUS_MIXED):
            raise PgbackrestError(f"pgBackRest stanza {stanza!r} cannot be read: {message} "
                                  f"({'; '.join(repos) or 'no detail'})")
        backups = [_backup(b) for b in entry.get("backup", [])]
        problems = repos + [
            f"backup {b['label']} has page checksum errors (pgBackRest's backup-error flag)"
            for b in entry.get("backup", []) if b.get("error")]
        archives = [
            ArchiveRange(str(a["id"]), int(a["database"]["id"]),
                         int(a["database"].get("repo-key", 1)), a.get("min"), a.get("max"))
            for a in entry.get("archive", [])
        ]
        databases = [{"id": int(d["id"]), "version": str(d["version"]),
                      "system_id": d.get("system-id"), "repo": d.get("repo-key", 1)}
                     for d in entry.get("db", [])]
        return StanzaInfo(stanza, code, message, str(entry.get("cipher", "none")),
                          databases, sorted(backups, key=lambda b: b.stop), archives,
                          problems)
    except PgbackrestError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PgbackrestError(f"pgbackrest info printed JSON drdeck cannot read "
                              f"({type(exc).__name__}: {exc}); pgBackRest 2.x is expected"
                              ) from None


def _backup(entry: dict[str, Any]) -> BackupSet:
    kind = str(entry["type"])
    if kind not in TYPES:
        raise ValueError(f"backup {entry.get('label')} has unknown type {kind!r}")
    info = entry.get("info", {})
    repository = info.get("repository", {})
    for lsn in (entry["lsn"]["start"], entry["lsn"]["stop"]):
        parse_lsn(lsn)
    for wal in (entry["archive"]["start"], entry["archive"]["stop"]):
        if not SEGMENT.fullmatch(wal or ""):
            raise ValueError(f"backup {entry.get('label')}: {wal!r} is not a WAL segment name")
    return BackupSet(
        label=str(entry["label"]), type=kind, prior=entry.get("prior"),
        start=datetime.fromtimestamp(int(entry["timestamp"]["start"]), UTC),
        stop=datetime.fromtimestamp(int(entry["timestamp"]["stop"]), UTC),
        start_lsn=entry["lsn"]["start"], stop_lsn=entry["lsn"]["stop"],
        start_wal=entry["archive"]["start"], stop_wal=entry["archive"]["stop"],
        size=info.get("size"), delta=info.get("delta"),
        repo_size=repository.get("size"), repo_delta=repository.get("delta"),
        database_id=int(entry["database"]["id"]),
        repo=int(entry["database"].get("repo-key", 1)),
    )


def _excerpt(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return repr(text[:200]) if text else "(nothing)"


# --- the archive and the window ---------------------------------------------------------


@dataclass
class StanzaPicture:
    """What pgBackRest holds, in the shape drdeck's PITR planning reads (tui.pitr)."""

    info: StanzaInfo
    recovery: Any  # tui.pitr.window.RecoveryPicture, with BackupSets as its bases
    segment_size: int | None
    end_is: dict[str, str] = field(default_factory=dict)  # last segment -> how the end was read

    @property
    def backups(self) -> list[BackupSet]:
        return self.info.backups


def read_stanza(pgbackrest: Pgbackrest, read_commit_times: bool = True) -> StanzaPicture:
    """info, then the archive listing and the last commit of each contiguous run."""
    from tui.pitr.window import RecoveryPicture

    info = read_info(pgbackrest)
    if not info.backups:
        recovery = RecoveryPicture([], _new_archive(), [], [],
                                   [*info.problems, "no backup in the stanza (pgBackRest: "
                                    f"{info.status or 'no valid backups'})"])
        return StanzaPicture(info, recovery, None)
    reader = _ArchiveReader(pgbackrest, info)
    windows, gaps, problems, end_is = [], {}, list(info.problems), {}
    archived = _new_archive()  # every repository's segments: what a WAL scan reads
    for (repo, archive_id), backups in reader.groups().items():
        listing = reader.listing(repo, archive_id)
        if listing is None:
            problems.append(f"repo{repo}: no archive {archive_id} for backups "
                            f"{', '.join(b.label for b in backups)}")
            continue
        for timeline, numbers in listing.archive.segments.items():
            archived.segments[timeline] |= numbers
        archived.names.update(listing.archive.names)
        archived.histories.update(listing.archive.histories)
        found, trouble = _windows(reader, repo, archive_id, listing, backups,
                                  read_commit_times)
        problems += trouble
        for window, gap, how in found:
            windows.append(window)
            end_is[window.last_segment] = how
            if gap is not None:
                gaps[(repo, gap.timeline, gap.missing_from)] = gap
    windows.sort(key=lambda w: w.start)
    recovery = RecoveryPicture([(b, b.label, "") for b in info.backups], archived,
                               windows, list(gaps.values()), problems)
    return StanzaPicture(info, recovery, reader.segment_size, end_is)


def _new_archive() -> Any:
    from tui.pitr.window import Archive

    return Archive()


@dataclass
class _Listing:
    """One archive id's segments and histories, as tui.pitr.window.Archive, plus repo paths."""

    archive: Any  # tui.pitr.window.Archive
    paths: dict[tuple[int, int], str]  # (timeline, number) -> path in the repository
    times: dict[tuple[int, int], int]  # (timeline, number) -> when the repository stored it
    names: dict[tuple[int, int], str]


class _ArchiveReader:
    def __init__(self, pgbackrest: Pgbackrest, info: StanzaInfo):
        self.pgbackrest = pgbackrest
        self.info = info
        self.segment_size: int | None = None
        self._raw: dict[tuple[int, str], list[tuple[str, dict[str, Any]]]] = {}
        self._fetched: dict[tuple[int, str], bytes | None] = {}

    def groups(self) -> dict[tuple[int, str], list[BackupSet]]:
        ids = {(a.repo, a.database_id): a.id for a in self.info.archives}
        groups: dict[tuple[int, str], list[BackupSet]] = {}
        for backup in self.info.backups:
            archive_id = ids.get((backup.repo, backup.database_id))
            if archive_id is None:
                version = next((d["version"] for d in self.info.databases
                                if d["id"] == backup.database_id), "?")
                archive_id = f"{version}-{backup.database_id}"
            groups.setdefault((backup.repo, archive_id), []).append(backup)
        return groups

    def _files(self, repo: int, archive_id: str) -> list[tuple[str, dict[str, Any]]]:
        key = (repo, archive_id)
        if key not in self._raw:
            raw = self.pgbackrest.run(
                "repo-ls", f"--repo={repo}", "--output=json", "--recurse",
                f"archive/{self.pgbackrest.stanza}/{archive_id}",
                what="pgbackrest repo-ls (listing the WAL archive)")
            try:
                entries = json.loads(raw)
                self._raw[key] = [(path, meta) for path, meta in entries.items()
                                  if meta.get("type") == "file"]
            except (ValueError, AttributeError) as exc:
                raise PgbackrestError(f"pgbackrest repo-ls printed something drdeck cannot "
                                      f"read ({exc}): {_excerpt(raw)}") from None
        return self._raw[key]

    def listing(self, repo: int, archive_id: str) -> _Listing | None:
        from tui.pitr.window import Archive

        files = self._files(repo, archive_id)
        segments = [(path, meta, m[1]) for path, meta in files
                    if (m := _ARCHIVED.fullmatch(path.rsplit("/", 1)[-1]))]
        if not segments:
            return None
        if self.segment_size is None:
            newest = max(segments, key=lambda s: s[2])
            self.segment_size = self._size_of(repo, archive_id, newest[0])
        size = self.segment_size
        archive = Archive()
        listing = _Listing(archive, {}, {}, archive.names)
        for path, meta, name in segments:
            segment = Segment.parse(name, size)
            key = (segment.timeline, segment.number)
            archive.segments[segment.timeline].add(segment.number)
            archive.names[key] = name
            listing.paths[key] = path
            listing.times[key] = int(meta.get("time", 0))
        for path, _meta in files:
            match = _HISTORY_FILE.fullmatch(path.rsplit("/", 1)[-1])
            if match and HISTORY.fullmatch(match[1]):
                raw = self.fetch(repo, archive_id, path)
                timeline = int(match[1][:8], 16)
                archive.histories[timeline] = (
                    parse_history(raw.decode(errors="replace")) if raw else [])
        return listing

    def fetch(self, repo: int, archive_id: str, path: str) -> bytes | None:
        """A file of the archive, decrypted by pgBackRest and decompressed here; None: cannot."""
        key = (repo, f"{archive_id}/{path}")
        if key not in self._fetched:
            raw = self.pgbackrest.run(
                "repo-get", f"--repo={repo}",
                f"archive/{self.pgbackrest.stanza}/{archive_id}/{path}",
                what="pgbackrest repo-get (reading the WAL archive)")
            self._fetched[key] = decompress(raw, path)
        return self._fetched[key]

    def _size_of(self, repo: int, archive_id: str, path: str) -> int:
        """wal_segment_size: the length of a segment, else worked out from the backups' LSNs."""
        raw = self.fetch(repo, archive_id, path)
        if raw is not None and len(raw) in _SEGMENT_SIZES:
            return len(raw)
        return segment_size_from_lsns(self.info.backups)


def segment_size_from_lsns(backups: list[BackupSet]) -> int:
    """The segment size consistent with every backup's (LSN, segment name) pair.

    Used when no segment can be decompressed here; 16 MiB (the default) when
    the pairs cannot tell (every LSN in the first segment of its log).
    """
    candidates = set(_SEGMENT_SIZES)
    for backup in backups:
        for lsn, name in ((backup.start_lsn, backup.start_wal), (backup.stop_lsn, backup.stop_wal)):
            low = parse_lsn(lsn) & 0xFFFFFFFF
            number = int(name[16:], 16)
            candidates &= {s for s in _SEGMENT_SIZES if low // s == number or
                           (low % s == 0 and low // s == number + 1)}
    if len(candidates) == 1:
        return candidates.pop()
    return 16 << 20 if (16 << 20) in candidates or not candidates else min(candidates)


def decompress(raw: bytes, path: str) -> bytes | None:
    """By pgBackRest's file extension; None when this machine has no way to."""
    extension = path.rsplit(".", 1)[-1] if re.search(r"\.(gz|bz2|lz4|zst)$", path) else ""
    if extension == "":
        return raw
    if extension == "gz":
        return gzip.decompress(raw)
    if extension == "bz2":
        return bz2.decompress(raw)
    tool = {"lz4": "lz4", "zst": "zstd"}[extension]
    if shutil.which(tool) is None:
        return None
    result = subprocess.run([tool, "-d", "-c", "-q"], input=raw, capture_output=True,
                            check=False)
    return result.stdout if result.returncode == 0 else None


def _windows(reader: _ArchiveReader, repo: int, archive_id: str, listing: _Listing,
             backups: list[BackupSet], read_commit_times: bool
             ) -> tuple[list[tuple[Any, Any, str]], list[str]]:
    """[(Window, the gap that ends it, how its end was read)] and the problems seen.

    Each backup opens a window at the moment it was consistent; backups whose
    WAL runs to the same last segment share one.
    """
    from types import SimpleNamespace

    from tui.pitr.window import Window, contiguous_run

    size = reader.segment_size
    assert size is not None
    found: list[tuple[Any, Any, str]] = []
    problems: list[str] = []
    for backup in backups:
        first = Segment.parse(backup.start_wal, size)
        last_needed = Segment.parse(backup.stop_wal, size)
        run_end, timeline, gap = contiguous_run(
            listing.archive, SimpleNamespace(timeline=backup.timeline, first_segment=first))
        if run_end is None or run_end.number < last_needed.number:
            problems.append(f"backup {backup.label} is not restorable: the WAL from its start "
                            f"({backup.start_wal}) to its end ({backup.stop_wal}) is not all "
                            "archived")
            continue
        if found and found[-1][0].last_segment == run_end.name:
            previous, previous_gap, how = found[-1]
            found[-1] = (Window(previous.base, (*previous.bases, backup), previous.start,
                                previous.end, previous.end_lsn, previous.timeline,
                                previous.last_segment, previous.ended_by), previous_gap, how)
            continue
        end, how = None, _END_BACKUP
        if read_commit_times:
            end, how = _last_commit(reader, repo, archive_id, listing, run_end)
        if end is None or end < backup.stopped:
            end, how = backup.stopped, _END_BACKUP
        found.append((Window(backup, (backup,), backup.stopped, end, run_end.end_lsn,
                             timeline, run_end.name, gap), gap, how))
    return found, problems


def _last_commit(reader: _ArchiveReader, repo: int, archive_id: str, listing: _Listing,
                 last: Segment) -> tuple[datetime | None, str]:
    """The newest commit time in the last segments of a run (pg_waldump), or an upper bound."""
    from tui.pitr.window import commit_times

    segment = last
    for _ in range(_LOOK_BACK):
        key = (segment.timeline, segment.number)
        path = listing.paths.get(key)
        if path is None:
            return None, _END_BACKUP
        raw = reader.fetch(repo, archive_id, path)
        if raw is None:  # cannot decompress here: the time it was stored bounds it
            stored = listing.times.get((last.timeline, last.number))
            return (datetime.fromtimestamp(stored, UTC) if stored else None), _END_STORED
        times = commit_times(raw, listing.names[key])
        if times:
            return max(times), _END_COMMIT
        if segment.number == 0:
            break
        segment = Segment(segment.timeline, segment.number - 1, segment.size)
    return None, _END_BACKUP


# --- the inventory ----------------------------------------------------------------------


def inventory(stanza: str, config: str | None = None, os_user: str | None = None,
              read_commit_times: bool = True) -> dict[str, Any]:
    """The plain dict described in this module's docstring."""
    seen = read_stanza(Pgbackrest(stanza, config, os_user), read_commit_times)
    return picture_dict(seen, config)


def picture_dict(seen: StanzaPicture, config: str | None = None) -> dict[str, Any]:
    recovery = seen.recovery
    windows = list(recovery.windows)
    return {
        "kind": "pgbackrest",
        "stanza": seen.info.stanza,
        "config": config,
        "status": seen.info.status,
        "cipher": seen.info.cipher,
        "databases": seen.info.databases,
        "backups": [b.as_dict() for b in seen.backups],
        "archives": [{"id": a.id, "database_id": a.database_id, "repo": a.repo,
                      "min": a.min, "max": a.max} for a in seen.info.archives],
        "wal_segment_size": seen.segment_size,
        "windows": [{
            "start": _iso(w.start), "end": _iso(w.end),
            "end_is": seen.end_is.get(w.last_segment, _END_BACKUP),
            "end_lsn": format_lsn(w.end_lsn), "last_segment": w.last_segment,
            "timeline": w.timeline, "backups": [b.label for b in w.bases],
        } for w in windows],
        "window": ({"start": _iso(recovery.earliest), "end": _iso(recovery.latest)}
                   if windows else None),
        "gaps": [g.describe() for g in recovery.gaps],
        "problems": list(recovery.problems),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


class PgbackrestSource(Source):
    """A pgBackRest stanza that backs a cluster up: read through pgbackrest, never
    written (`[clusters.NAME] pgbackrest = { stanza = ..., config = ..., os_user = ... }`)."""

    kind = "pgbackrest"
    title = "pgBackRest"
    # config: pgbackrest.conf (default: pgBackRest's own); os_user: run pgbackrest as this
    # user (default: postgres when root)
    settings = {"stanza": True, "config": False, "os_user": False}
    example = '{ stanza = "...", config = "/etc/pgbackrest.conf" }'
    restore_runbook = "pitr-pgbackrest"

    def __init__(self, stanza: str, config: str | None = None,
                 os_user: str | None = None) -> None:
        self.stanza, self.config, self.os_user = stanza, config, os_user

    @classmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> PgbackrestSource:
        return cls(settings["stanza"], settings.get("config"), settings.get("os_user"))

    @classmethod
    def action_classes(cls) -> tuple[type, ...]:
        from tui.sources.pgbackrest_actions import PgbackrestPreflight, PgbackrestRestore

        return (PgbackrestPreflight, PgbackrestRestore)

    def describe(self) -> str:
        return f"stanza {self.stanza}"

    def restore_given(self, cluster: str) -> dict[str, str]:
        return {"stanza": self.stanza, "pgbackrest_config": self.config or ""}

    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        return inventory(self.stanza, self.config, self.os_user, read_commit_times)

    def program(self) -> Pgbackrest:
        return Pgbackrest(self.stanza, self.config, self.os_user)

    def recovery_picture(self) -> Any:
        return read_stanza(self.program()).recovery

    def base_bytes(self, backup: Any, picture: Any) -> int | None:
        return backup.repo_size  # the whole set as stored, with what it references

    def wal_fetcher(self) -> Any:
        from tui.sources.pgbackrest_wal import StanzaWal

        return StanzaWal(self.program()).fetch

    def report(self, read_commit_times: bool = True) -> dict[str, Any]:
        try:
            return self.read(read_commit_times)
        except DrdeckError as exc:  # the shape `drdeck inventory --json` has always had
            return {"kind": self.kind, "stanza": self.stanza, "error": str(exc)}

    def backup_line(self, backup: dict[str, Any]) -> str:
        stopped = shown_time(backup["stop"]) if backup.get("stop") else "-"
        return f"{backup.get('type', '?'):<5} {backup.get('label')}  stopped {stopped}"

    def policy_lines(self) -> list[str]:
        return [f"- pgBackRest stanza `{self.stanza}` also backs this cluster up; drdeck "
                "reads it and restores from it, and never writes to it."]


# --- restoring --------------------------------------------------------------------------

# `restore file /new/base/1/1259 (40KB, 12.34%) checksum ...`; newer versions may put
# a bundle reference before the size, and zero-length files say "zeroed"
_RESTORED_FILE = re.compile(r"restore (?:zeroed )?file (.+?) \((?:[^()]*?, )?"
                            r"(\d+(?:\.\d+)?[KMGTP]?B), (\d+(?:\.\d+)?)%\)")


def parse_restore_line(line: str) -> tuple[str, float] | None:
    """(file, percent of the restore done) from a `restore file` DETAIL line."""
    match = _RESTORED_FILE.search(line)
    if match is None:
        return None
    return match[1], float(match[3])


def restore_options(target: Any, data_dir: str, backup: BackupSet,
                    tablespaces: dict[str, str] | None = None) -> list[str]:
    """`pgbackrest restore` options for a tui.pitr.target.Target, into a new data directory.

    Never --delta: drdeck restores only into an empty directory. The backup set
    is named (--set) so pgBackRest restores the one drdeck planned from.
    """
    kind = {"latest": "default"}.get(target.kind, target.kind)
    options = [f"--repo={backup.repo}", f"--set={backup.label}", f"--type={kind}"]
    if target.kind in ("time", "lsn", "xid", "name"):
        options.append(f"--target={target.value}")
    if target.kind != "latest":
        options.append("--target-action=promote")
    if target.kind in ("time", "lsn", "xid") and not target.inclusive:
        options.append("--target-exclusive")
    options.append(f"--pg1-path={data_dir}")
    # each tablespace by name where drdeck placed it (tui.pitr.tablespaces): never left
    # to go back to the source's own directory
    options += [f"--tablespace-map={name}={place}"
                for name, place in (tablespaces or {}).items()]
    options.append("--log-level-console=detail")
    return options


@dataclass(frozen=True)
class SetTablespace:
    """A tablespace of a backup set, as `pgbackrest info --set` lists it."""

    oid: int
    name: str
    location: str  # its directory on the source server


def backup_tablespaces(pgbackrest: Pgbackrest, backup: BackupSet) -> list[SetTablespace]:
    """The tablespaces a backup set holds (pgBackRest restores them to their original
    paths unless told otherwise, which would write next to the source)."""
    raw = pgbackrest.run("info", "--output=json", f"--set={backup.label}",
                         f"--repo={backup.repo}", what="pgbackrest info --set")
    try:
        entry = next(s for s in json.loads(raw) if s.get("name") == pgbackrest.stanza)
        found = next(b for b in entry.get("backup", []) if b.get("label") == backup.label)
        return [SetTablespace(int(t["oid"]), str(t["name"]), str(t["destination"]))
                for t in (found.get("tablespace") or [])]
    except (ValueError, StopIteration, AttributeError, TypeError, KeyError):
        raise PgbackrestError(f"pgbackrest info --set={backup.label} printed something drdeck "
                              f"cannot read: {_excerpt(raw)}") from None
