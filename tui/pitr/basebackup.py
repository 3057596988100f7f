"""Base backups: the server's tar streams -> gpg -> repository, manifest last.

    <cluster>/base/<stamp>/base.tar.zst.gpg   the data directory: zstd, then gpg
    <cluster>/base/<stamp>/<oid>.tar.zst.gpg  each other tablespace, the same way
    <cluster>/base/<stamp>/backup_manifest.gpg  PostgreSQL's own manifest (17 and later)
    <cluster>/base/<stamp>/manifest.json      start/stop LSN and time, timeline, system
                                              id, the tablespaces and their objects, ...

On PostgreSQL 17 and later a backup may be incremental on an earlier one (its `parent`):
the server sends only the blocks changed since, and a restore combines the chain with
pg_combinebackup (tui.pitr.incremental).

The backup is read off the replication protocol (tui.postgres.backup_protocol), one
archive per tablespace, each streamed into its own object as it arrives. The server
compresses every tar itself (zstd): a tenth of the bytes cross the network. Without
compression (the repository's `compression = "none"`, or a backup taken before drdeck
compressed them) the objects are *.tar[.gpg]; the manifest's `compression` says which.

The archive holds the WAL from its start to its stop LSN (as `pg_basebackup -X fetch`
takes it), so it is consistent on its own; the WAL archive carries it from there to
any later point. So the archive must work before a base backup is worth taking:
`check_archiving` refuses while the server's archive_command fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import is_stamp, stamp_of
from tui.catalog.manifest import MAX_RECORD_BYTES
from tui.catalog.signatures import UNSIGNED, Signing, read_signed, write_signed
from tui.compression import compressed
from tui.errors import DrdeckError
from tui.postgres.backup_protocol import MANIFEST_NAME, BackupProtocolError, BaseBackupStream
from tui.snapshots.pipes import Reporter
from tui.snapshots.stream import Stored, StreamFailed, store_chunks
from tui.units import format_bytes
from tui.wal.names import Segment, parse_lsn

FORMAT_VERSION = 1
COMPRESSED_TAR = {"none": "", "zstd": ".zst"}  # a manifest's compression -> the tar's suffix


class BaseBackupFailed(DrdeckError):
    pass


def base_prefix(cluster: str) -> str:
    return f"{cluster}/base/"


def base_object_key(cluster: str, stamp: str, encrypted: bool,
                    compression: str = "none", tablespace_oid: int | None = None) -> str:
    """The data directory's tar, or with `tablespace_oid` that tablespace's."""
    name = "base" if tablespace_oid is None else str(tablespace_oid)
    return (f"{base_prefix(cluster)}{stamp}/{name}.tar{COMPRESSED_TAR[compression]}"
            f"{'.gpg' if encrypted else ''}")


def base_manifest_key(cluster: str, stamp: str) -> str:
    return f"{base_prefix(cluster)}{stamp}/manifest.json"


def server_manifest_key(cluster: str, stamp: str, encrypted: bool,
                        compression: str = "none") -> str:
    """PostgreSQL's backup_manifest, compressed by drdeck as the backup's tars are."""
    return (f"{base_prefix(cluster)}{stamp}/backup_manifest{COMPRESSED_TAR[compression]}"
            f"{'.gpg' if encrypted else ''}")


@dataclass(frozen=True)
class ServerManifest:
    """PostgreSQL's backup_manifest of a base backup, as stored: what an incremental
    backup on this one is taken against, and what pg_combinebackup reads."""

    object: str
    plaintext_size: int
    stored_size: int
    sha256_stored: str
    sha256_plaintext: str

    @classmethod
    def from_dict(cls, data: Any) -> ServerManifest:
        return _stored_entry(cls, data, "server_manifest", "server_manifest's")


def _stored_entry(cls: Any, data: Any, what: str, whose: str) -> Any:
    """`cls(**data)` for a manifest entry naming a stored object: exactly its fields,
    the object's key and digests text, its sizes whole numbers (ValueError, saying
    which, otherwise)."""
    if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
        raise ValueError(f"{what} must have exactly the fields "
                         + ", ".join(cls.__dataclass_fields__))
    entry = cls(**data)
    for name in ("object", "sha256_stored", "sha256_plaintext"):
        if not isinstance(getattr(entry, name), str):
            raise ValueError(f"{whose} {name} must be text")
    for name in ("plaintext_size", "stored_size"):
        if type(getattr(entry, name)) is not int or getattr(entry, name) < 0:
            raise ValueError(f"{whose} {name} must be a whole number")
    return entry


@dataclass(frozen=True)
class TablespaceBackup:
    """A tablespace other than the data directory's own, and its object."""

    oid: int
    name: str
    location: str  # its directory on the source server, never restored into
    object: str
    plaintext_size: int
    stored_size: int
    sha256_stored: str
    sha256_plaintext: str

    @classmethod
    def from_dict(cls, data: Any) -> TablespaceBackup:
        entry = _stored_entry(cls, data, "a tablespace", "a tablespace's")
        if type(entry.oid) is not int or not 0 < entry.oid < 1 << 32:
            raise ValueError("a tablespace's oid must be a whole number")
        for name in ("name", "location"):
            if not isinstance(getattr(entry, name), str):
                raise ValueError(f"a tablespace's {name} must be text")
        # both reach the operator's terminal and the name a tablespace_map: PostgreSQL's
        # own limits (NAMEDATALEN, an absolute path), nothing a terminal would act on
        if not 0 < len(entry.name.encode()) < 64 or not entry.name.isprintable():
            raise ValueError("a tablespace's name must be 1 to 63 printable bytes")
        if not entry.location.startswith("/") or not entry.location.isprintable() \
                or len(entry.location) > 4096:
            raise ValueError("a tablespace's location must be a printable absolute path")
        return entry


@dataclass(frozen=True)
class BaseManifest:
    cluster: str
    stamp: str
    object: str
    started_at: str
    stopped_at: str
    start_lsn: str
    stop_lsn: str
    timeline: int
    system_identifier: str
    server_version: str
    wal_segment_size: int
    encrypted: bool
    recipients: tuple[str, ...]
    plaintext_size: int
    stored_size: int
    sha256_stored: str
    sha256_plaintext: str
    format: int = FORMAT_VERSION
    kind: str = "base"
    compression: str = "none"  # of the tar, before gpg; manifests before it had none
    tablespaces: tuple[TablespaceBackup, ...] = ()  # besides the data directory's own
    server_manifest: ServerManifest | None = None  # PostgreSQL 17 and later
    parent: str | None = None  # the stamp of the backup this one is incremental on

    @property
    def total_stored_size(self) -> int:
        return self.stored_size + sum(t.stored_size for t in self.tablespaces) + (
            self.server_manifest.stored_size if self.server_manifest else 0)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        data["tablespaces"] = [asdict(t) for t in self.tablespaces]
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> BaseManifest:
        """Every field checked for its type and range, as the snapshot manifest is: the
        repository is written by others, and a base backup's numbers divide and index."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("kind") != "base" or type(data.get("format")) is not int or \
                    data["format"] != FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r} of kind {data.get('kind')!r}"
                                 f", not format {FORMAT_VERSION} of kind 'base'")
            recipients = data.get("recipients", [])
            if not isinstance(recipients, list) or \
                    not all(isinstance(r, str) for r in recipients):
                raise ValueError("recipients must be a list of key fingerprints")
            data["recipients"] = tuple(recipients)
            tablespaces = data.get("tablespaces", [])
            if not isinstance(tablespaces, list):
                raise ValueError("tablespaces must be a list")
            data["tablespaces"] = tuple(TablespaceBackup.from_dict(t) for t in tablespaces)
            if len({t.oid for t in data["tablespaces"]}) != len(tablespaces):
                raise ValueError("a tablespace is listed twice")
            if data.get("server_manifest") is not None:
                data["server_manifest"] = ServerManifest.from_dict(data["server_manifest"])
            parent = data.get("parent")
            if parent is not None and (not isinstance(parent, str) or not is_stamp(parent)
                                       or parent >= str(data.get("stamp"))):
                raise ValueError("parent must be the stamp of an earlier base backup")
            if parent is not None and data.get("server_manifest") is None:
                raise ValueError("an incremental backup must carry its server_manifest")
            unknown = sorted(set(data) - set(cls.__dataclass_fields__))
            if unknown:  # named with repr: a key is untrusted text bound for a terminal
                raise ValueError(f"unknown fields {', '.join(map(repr, unknown))}")
            manifest = cls(**data)
            _check_base(manifest)
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise BaseBackupFailed(f"{where}: not a valid base backup manifest ({exc})") from None
        return manifest

    @property
    def stopped(self) -> datetime:
        return datetime.fromisoformat(self.stopped_at)

    @property
    def first_segment(self) -> Segment:
        return Segment.of_lsn(self.timeline, parse_lsn(self.start_lsn), self.wal_segment_size)

    @property
    def last_segment(self) -> Segment:
        """The segment holding the stop LSN: recovery needs WAL up to it to be consistent."""
        return Segment.of_lsn(self.timeline, parse_lsn(self.stop_lsn) - 1, self.wal_segment_size)


_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
MAX_TIMELINE = 0xFFFFFFFF  # eight hex digits in a segment's name
# PostgreSQL's wal_segment_size: a power of two from 1 MiB to 1 GiB
WAL_SEGMENT_SIZES = tuple(1 << shift for shift in range(20, 31))


def _check_base(m: BaseManifest) -> None:
    for name in ("cluster", "stamp", "object", "started_at", "stopped_at", "start_lsn",
                 "stop_lsn", "system_identifier", "server_version", "sha256_stored",
                 "sha256_plaintext"):
        if not isinstance(getattr(m, name), str):
            raise ValueError(f"{name} must be text")
    if not isinstance(m.encrypted, bool):
        raise ValueError("encrypted must be true or false")
    if not isinstance(m.compression, str) or m.compression not in COMPRESSED_TAR:
        raise ValueError(f"compression must be one of: {', '.join(COMPRESSED_TAR)}")
    for name in ("plaintext_size", "stored_size"):
        value = getattr(m, name)
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a whole number")
    if type(m.timeline) is not int or not 1 <= m.timeline <= MAX_TIMELINE:
        raise ValueError(f"timeline must be a whole number from 1 to {MAX_TIMELINE}")
    if type(m.wal_segment_size) is not int or m.wal_segment_size not in WAL_SEGMENT_SIZES:
        raise ValueError("wal_segment_size must be a power of two from 1 MiB to 1 GiB")
    for name in ("start_lsn", "stop_lsn"):
        if not _LSN.fullmatch(getattr(m, name)):
            raise ValueError(f"{name} is not an LSN")
    if parse_lsn(m.stop_lsn) < parse_lsn(m.start_lsn):
        raise ValueError("stop_lsn is before start_lsn")
    for name in ("started_at", "stopped_at"):
        # a time without a zone cannot be compared with a recovery target
        if datetime.fromisoformat(getattr(m, name)).tzinfo is None:
            raise ValueError(f"{name} has no time zone")


@dataclass(frozen=True)
class BasePlan:
    cluster: str
    dsn: str  # the server (any database)
    fingerprints: tuple[str, ...]  # empty: unencrypted
    gpg_home: str | None
    signing: Signing = UNSIGNED  # how the manifest is signed
    compression: str = "none"  # "zstd": the server compresses the tar
    compression_level: int = 3
    incremental: bool = False  # on the newest usable backup (PostgreSQL 17 and later)
    # incremental backups in a row: every link is one more download and one more thing
    # that must be whole for a restore, so past it a full backup starts a new chain
    max_chain: int = 6
    encrypted_only: bool = False  # the cluster encrypts: an unencrypted parent is no parent


async def create_base_backup(plan: BasePlan, store: Any, reporter: Reporter) -> BaseManifest:
    from tui.pitr.incremental import choose_parent, read_server_manifest, refuse_incremental

    identity = await _identity(plan.dsn)
    if plan.incremental:
        refusal = refuse_incremental(identity)
        if refusal:
            raise BaseBackupFailed(refusal)
    if plan.signing.required:  # before the backup: a host that cannot sign fails now
        signer = await asyncio.to_thread(plan.signing.signer)
        reporter.output(f"the manifest will be signed by {signer}")
    parent = parent_manifest = None
    if plan.incremental:
        backups = await asyncio.to_thread(read_base_backups, store, plan.cluster,
                                          plan.signing, plan.encrypted_only)
        parent = choose_parent(backups, identity)
        links = len(base_chain(backups, parent)) - 1 if parent is not None else 0
        if parent is None:
            reporter.output("WARNING: no earlier base backup of this server with a "
                            "backup_manifest to build on: taking a full backup, which "
                            "the next incremental one builds on")
        elif links >= plan.max_chain:
            reporter.output(f"the chain of base backup {parent.stamp} holds {links} "
                            f"incremental backups already (max_chain = {plan.max_chain}): "
                            "taking a full backup, which the next incremental ones build on")
            parent = None
        else:
            parent_manifest = await read_server_manifest(parent, store, plan.gpg_home,
                                                         reporter)
    started = datetime.now(UTC)
    stamp = stamp_of(started)
    encrypted = bool(plan.fingerprints)
    stream = BaseBackupStream(plan.dsn, f"drdeck {stamp}", plan.compression,
                              plan.compression_level,
                              manifest=int(identity["server_version_num"]) >= 170000,
                              parent_manifest=parent_manifest)
    written: list[str] = []  # deleted again if the backup fails: nothing half-made stays
    stored: dict[int | str | None, Stored] = {}
    try:
        try:
            await stream.open()
        finally:
            if parent_manifest is not None:  # uploaded: the server holds it now
                parent_manifest.close()
        if parent is not None:
            reporter.output(f"incremental on base backup {parent.stamp}: only the blocks "
                            "changed since it are sent")
        extra = len(stream.tablespaces)
        covers = "the data directory" + (
            f" and {extra} tablespace{'s' if extra > 1 else ''}" if extra else "")
        reporter.output(f"base backup of {identity['system_identifier']} (PostgreSQL "
                        f"{identity['server_version']}) from {stream.start_lsn} on timeline "
                        f"{stream.timeline}, {covers}, to "
                        f"{store.location(base_prefix(plan.cluster) + stamp)}/")
        listed = {t.oid for t in stream.tablespaces}
        async for archive, body in stream.archives():
            if archive.name == MANIFEST_NAME and MANIFEST_NAME not in stored:
                key = server_manifest_key(plan.cluster, stamp, encrypted, plan.compression)
                written.append(key)
                if plan.compression == "zstd":
                    body = compressed(body, plan.compression_level)
                stored[MANIFEST_NAME] = await store_chunks(
                    body, store, key, fingerprints=plan.fingerprints, gpg_home=plan.gpg_home,
                    reporter=reporter, what="of the server's backup_manifest")
                continue
            oid = archive.tablespace_oid
            key = base_object_key(plan.cluster, stamp, encrypted, plan.compression, oid)
            expected = key.rsplit("/", 1)[-1].removesuffix(".gpg")
            if archive.name != expected or (oid is not None and oid not in listed) \
                    or oid in stored:
                raise BaseBackupFailed(f"the server sent an archive named {archive.name!r}, "
                                       f"where {expected!r} was expected")
            what = "read from the server" if oid is None else \
                f"of tablespace {identity['tablespaces'].get(oid, oid)} read from the server"
            written.append(key)
            stored[oid] = await store_chunks(body, store, key, fingerprints=plan.fingerprints,
                                             gpg_home=plan.gpg_home, reporter=reporter,
                                             what=what)
        missing = sorted(listed - set(stored)) + ([] if None in stored else ["base"]) + (
            [MANIFEST_NAME] if stream.manifest and MANIFEST_NAME not in stored else [])
        if missing:
            raise BaseBackupFailed(f"the server ended the backup without the archive of "
                                   f"{', '.join(map(str, missing))}")
    except BaseException as failure:
        stream.close()
        for key in written:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.delete, key)
        if isinstance(failure, (BackupProtocolError, StreamFailed)):
            raise BaseBackupFailed(str(failure)) from None
        raise
    stream.close()
    stopped = datetime.now(UTC)
    base = stored[None]
    tablespaces = tuple(
        TablespaceBackup(oid=t.oid, name=identity["tablespaces"].get(t.oid, str(t.oid)),
                         location=t.location,
                         object=base_object_key(plan.cluster, stamp, encrypted,
                                                plan.compression, t.oid),
                         plaintext_size=stored[t.oid].plaintext_size,
                         stored_size=stored[t.oid].stored_size,
                         sha256_stored=stored[t.oid].sha256_stored,
                         sha256_plaintext=stored[t.oid].sha256_plaintext)
        for t in stream.tablespaces)
    manifest = BaseManifest(
        cluster=plan.cluster, stamp=stamp,
        object=base_object_key(plan.cluster, stamp, encrypted, plan.compression),
        started_at=started.isoformat(), stopped_at=stopped.isoformat(),
        start_lsn=stream.start_lsn, stop_lsn=stream.stop_lsn, timeline=stream.timeline,
        system_identifier=identity["system_identifier"],
        server_version=identity["server_version"],
        wal_segment_size=int(identity["wal_segment_size"]), encrypted=encrypted,
        recipients=plan.fingerprints, plaintext_size=base.plaintext_size,
        stored_size=base.stored_size, sha256_stored=base.sha256_stored,
        sha256_plaintext=base.sha256_plaintext, compression=plan.compression,
        tablespaces=tablespaces,
        server_manifest=ServerManifest(
            server_manifest_key(plan.cluster, stamp, encrypted, plan.compression),
            stored[MANIFEST_NAME].plaintext_size, stored[MANIFEST_NAME].stored_size,
            stored[MANIFEST_NAME].sha256_stored, stored[MANIFEST_NAME].sha256_plaintext,
        ) if MANIFEST_NAME in stored else None,
        parent=parent.stamp if parent is not None else None,
    )
    try:  # what is written must read back: a manifest restores refuse is no backup
        BaseManifest.from_json(manifest.to_json(), "the new base backup's manifest")
    except BaseBackupFailed as exc:
        for key in written:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.delete, key)
        raise BaseBackupFailed(f"{exc}: nothing was kept. A tablespace name with a control "
                               "character, or an in-place tablespace (a relative location), "
                               "cannot be recorded; rename or move it") from None
    await asyncio.to_thread(write_signed, store, base_manifest_key(plan.cluster, stamp),
                            manifest.to_json(), plan.signing)
    reporter.output(f"base backup {stamp}: WAL {manifest.start_lsn} .. {manifest.stop_lsn} on "
                    f"timeline {manifest.timeline}, "
                    f"{format_bytes(manifest.total_stored_size)} stored")
    return manifest


async def check_archiving(dsn: str, reporter: Any) -> str:
    """Refuse (BaseBackupFailed) while the server's archiver fails, quoting the server's
    log; else a line saying how it stands. A server that does not archive is only warned
    about: the backup is consistent, and the wait for its WAL says what is missing."""
    from tui.postgres.archiver import ArchiverUnknown, check_archiver

    try:
        archiver = await check_archiver(dsn)
    except ArchiverUnknown as exc:
        raise BaseBackupFailed(str(exc)) from None
    stats = archiver.stats
    if not stats.archives:
        where = " on a standby" if stats.in_recovery else ""
        reporter.output(f"WARNING: archive_mode is {stats.archive_mode}{where}: this server "
                        "archives no WAL, so only an archive fed from elsewhere can carry "
                        "this backup forward")
        return f"archive_mode = {stats.archive_mode}{where}: not checked"
    if archiver.failing:
        raise BaseBackupFailed(await asyncio.to_thread(archiver.explain))
    return stats.describe().removeprefix("pg_stat_archiver: ")


async def _identity(dsn: str) -> dict[str, Any]:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            row = await (await conn.execute(
                "select system_identifier::text, current_setting('server_version'), "
                "(select setting from pg_settings where name = 'wal_segment_size'), "
                "current_setting('server_version_num'), "
                "coalesce(current_setting('summarize_wal', true), '') "
                "from pg_control_system()")).fetchone()
            names = await (await conn.execute(
                "select oid, spcname from pg_tablespace")).fetchall()
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        raise BaseBackupFailed(f"cannot connect: {text[0] if text else exc}") from None
    return {"system_identifier": row[0], "server_version": row[1],
            "wal_segment_size": row[2], "server_version_num": row[3], "summarize_wal": row[4],
            "tablespaces": {int(oid): name for oid, name in names}}


def _forged(manifest: BaseManifest, cluster: str, stamp: str) -> str:
    """Why a manifest cannot be the one at this key ("" when it can): its object is
    fetched and unpacked, so it must be the one beside it, not one a writer chose."""
    expected = {"cluster": cluster, "stamp": stamp,
                "object": base_object_key(cluster, stamp, manifest.encrypted,
                                          manifest.compression)}
    for field_name, value in expected.items():
        if getattr(manifest, field_name) != value:
            return (f"refused as forged: its {field_name} {getattr(manifest, field_name)!r} "
                    f"is not the {value!r} its key says")
    if manifest.server_manifest is not None:
        value = server_manifest_key(cluster, stamp, manifest.encrypted, manifest.compression)
        if manifest.server_manifest.object != value:
            return (f"refused as forged: its server manifest "
                    f"{manifest.server_manifest.object!r} is not the {value!r} its key says")
    for tablespace in manifest.tablespaces:
        value = base_object_key(cluster, stamp, manifest.encrypted, manifest.compression,
                                tablespace.oid)
        if tablespace.object != value:
            return (f"refused as forged: the object of its tablespace {tablespace.oid} "
                    f"{tablespace.object!r} is not the {value!r} its key says")
    return ""


def _missing_object(manifest: BaseManifest, entry: dict[str, Any]) -> str:
    """Why the objects beside a manifest are not the ones it describes ("" when they are)."""
    parts = [("the backup", manifest.object, manifest.stored_size)] + [
        (f"tablespace {t.name}'s backup", t.object, t.stored_size) for t in manifest.tablespaces]
    if manifest.server_manifest is not None:
        parts.append(("its backup_manifest", manifest.server_manifest.object,
                      manifest.server_manifest.stored_size))
    for what, key, size in parts:
        stored = entry.get(key.rsplit("/", 1)[-1])
        if stored is None:
            return f"the manifest exists but {what} is missing"
        if stored.size != size:
            return f"{what} is {stored.size:,} bytes, the manifest says {size:,}"
    return ""


def read_base_backups(store: Any, cluster: str, signing: Signing = UNSIGNED,
                      encrypted_only: bool = False,
                      ) -> list[tuple[BaseManifest | None, str, str]]:
    """Every base backup as (manifest or None, stamp, problem), newest first.

    With `signing` required, a manifest without a trusted signature is refused; with
    `encrypted_only` (the cluster has gpg_recipients), so is an unencrypted backup: drdeck
    wrote none, so a repository writer did."""
    found: dict[str, dict[str, Any]] = {}
    for obj in store.list(base_prefix(cluster)):
        rest = obj.key[len(base_prefix(cluster)):]
        stamp, _, name = rest.partition("/")
        if not is_stamp(stamp):
            continue
        entry = found.setdefault(stamp, {})
        entry[name] = obj
    result = []
    for stamp in sorted(found, reverse=True):
        entry = found[stamp]
        if "manifest.json" not in entry:
            result.append((None, stamp, "no manifest: an incomplete or interrupted upload"))
            continue
        key = base_manifest_key(cluster, stamp)
        try:
            manifest = BaseManifest.from_json(read_signed(store, key, signing, MAX_RECORD_BYTES),
                                              store.location(key))
        except DrdeckError as exc:
            result.append((None, stamp, str(exc)))
            continue
        forged = _forged(manifest, cluster, stamp)
        if forged:
            result.append((None, stamp, forged))
            continue
        if encrypted_only and not manifest.encrypted:
            result.append((manifest, stamp, "stored unencrypted, but this cluster encrypts its "
                                            "backups (gpg_recipients): not used, as anyone "
                                            "who can write the repository could have put it "
                                            "there"))
        else:
            result.append((manifest, stamp, _missing_object(manifest, entry)))
    return _check_chains(result)


def _check_chains(backups: list[tuple[BaseManifest | None, str, str]]
                  ) -> list[tuple[BaseManifest | None, str, str]]:
    """An incremental backup is only as good as its parent, and its parent's: oldest
    first, each one whose parent is not a usable backup of the same server gets a
    problem saying which link is missing."""
    usable: dict[str, BaseManifest] = {}
    checked = []
    for manifest, stamp, problem in reversed(backups):
        if manifest is not None and not problem and manifest.parent is not None:
            parent = usable.get(manifest.parent)
            if parent is None:
                why = next((p for _, s, p in backups if s == manifest.parent), "")
                problem = (f"incremental on base backup {manifest.parent}, which is "
                           + (f"not usable ({why})" if why else "missing")
                           + ": it cannot be restored")
            elif parent.system_identifier != manifest.system_identifier:
                problem = (f"incremental on base backup {manifest.parent}, which is of "
                           f"another server (system {parent.system_identifier}): refused")
        if manifest is not None and not problem:
            usable[stamp] = manifest
        checked.append((manifest, stamp, problem))
    return list(reversed(checked))


def base_chain(backups: list[tuple[BaseManifest | None, str, str]],
               manifest: BaseManifest) -> list[BaseManifest]:
    """The full backup `manifest` builds on, then each incremental up to it: oldest
    first. `backups` is read_base_backups's list, in which the chain is usable."""
    by_stamp = {stamp: m for m, stamp, problem in backups if m is not None and not problem}
    chain = [manifest]
    while chain[-1].parent is not None:
        parent = by_stamp.get(chain[-1].parent)
        if parent is None:
            raise BaseBackupFailed(f"base backup {chain[-1].stamp} is incremental on "
                                   f"{chain[-1].parent}, which is not usable")
        chain.append(parent)
    return list(reversed(chain))
