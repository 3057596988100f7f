"""The inventory: every snapshot of a cluster, whether it is whole, verified, and how old.

Built from the repository alone (keys and manifests), so it answers "what can
we restore?" from any machine that can read the bucket, including the one you
are on during an incident.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import parse_key, snapshots_prefix, time_of
from tui.catalog.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_RECORD_BYTES,
    Manifest,
    ManifestInvalid,
    Verification,
)
from tui.catalog.signatures import UNSIGNED, SignatureRefused, Signing, read_signed
from tui.errors import DrdeckError, InvalidInput
from tui.storage.base import EndpointUnreachable

# manifests are small: read several at once (an S3 round trip each), unless the store
# says otherwise (`parallel_reads`: LocalStore reads one at a time)
_READERS = 8


class SnapshotNotFound(InvalidInput):
    pass


@dataclass
class Snapshot:
    cluster: str
    database: str
    stamp: str
    dump: Any = None  # StoredObject of the dump, if present
    globals_object: Any = None  # StoredObject of its globals, if present
    manifest: Manifest | None = None
    verifications: list[Verification] = field(default_factory=list)
    # verification records not counted: unsigned where signatures are required, or
    # written for another snapshot (a "verified" record copied beside this one)
    refused_verifications: int = 0
    problem: str | None = None
    retention: str | None = None  # why retention keeps it (daily, weekly, ...), or "delete"

    @property
    def ident(self) -> str:
        """cluster/database/stamp: what a verification record names."""
        return f"{self.cluster}/{self.database}/{self.stamp}"

    @property
    def taken_at(self) -> datetime:
        return self.manifest.taken_at if self.manifest else time_of(self.stamp)

    @property
    def complete(self) -> bool:
        return self.problem is None and self.manifest is not None and self.dump is not None

    @property
    def encrypted(self) -> bool | None:
        if self.manifest is not None:
            return self.manifest.encrypted
        return None if self.dump is None else self.dump.key.endswith(".gpg")

    @property
    def globals_state(self) -> str | None:
        """What the snapshot carries to recreate its database elsewhere, in a word or two.

        complete | no password hashes | no roles (pg_dumpall could not read them: only the
        database's own properties) | none (taken before globals) | missing | damaged;
        None when there is no manifest to say.
        """
        if self.manifest is None:
            return None
        record = self.manifest.globals
        if record is None:
            return "none"
        if self.globals_object is None:
            return "missing"
        if self.globals_object.size != record.stored_size:
            return "damaged"
        if any(what.startswith("roles") for what in record.missing):
            return "no roles"
        return "complete" if record.role_passwords else "no password hashes"

    @property
    def last_verification(self) -> Verification | None:
        return max(self.verifications, key=lambda v: v.at) if self.verifications else None

    def age_s(self, now: datetime) -> float:
        return (now - self.taken_at).total_seconds()


@dataclass
class ClusterInventory:
    name: str
    repository: str
    rpo_s: float | None
    snapshots: list[Snapshot] = field(default_factory=list)  # newest first
    incomplete_uploads: list[Any] = field(default_factory=list)
    error: str | None = None  # the repository could not be read
    unreachable: bool = False  # ...because it did not answer at all
    pitr: Any = None  # the point-in-time picture (tui.pitr.window), when there is one
    # what each of the cluster's other engines reports (tui.sources.SourceReport)
    sources: list[Any] = field(default_factory=list)
    engines_only: bool = False  # no drdeck repository: its engines back it up alone

    def complete(self, database: str | None = None) -> list[Snapshot]:
        return [s for s in self.snapshots
                if s.complete and (database is None or s.database == database)]

    def latest(self, database: str | None = None) -> Snapshot | None:
        snapshots = self.complete(database)
        return snapshots[0] if snapshots else None

    def rpo_state(self, now: datetime) -> tuple[str, float | None]:
        """(ok | breached | no target | no snapshot | unreadable, age of the newest)."""
        if self.error:
            return "unreadable", None
        latest = self.latest()
        if latest is None:
            return "no snapshot", None
        age = latest.age_s(now)
        if self.rpo_s is None:
            return "no target", age
        return ("ok" if age <= self.rpo_s else "breached"), age

    def recoverable_state(self, now: datetime) -> tuple[str, float | None, str]:
        """(ok | breached | no target | no window, age of the newest point the cluster's
        engines can recover to, the engine's title) for a cluster they alone back up."""
        ends = [(report.window_end, report.source.title) for report in self.sources
                if report.window_end is not None]
        if not ends:
            return "no window", None, ""
        latest, title = max(ends, key=lambda end: end[0])
        age = max(0.0, (now - latest).total_seconds())
        if self.rpo_s is None:
            return "no target", age, title
        return ("ok" if age <= self.rpo_s else "breached"), age, title

    def find(self, database: str, ref: str = "latest") -> Snapshot:
        """A complete snapshot by id, or the newest one; a clear error otherwise."""
        candidates = self.complete(database)
        if ref in ("", "latest"):
            if not candidates:
                newest = next((s for s in self.snapshots if s.database == database), None)
                why = (f"; the newest, {newest.stamp}, is not usable: {newest.problem}"
                       if newest else "")
                raise SnapshotNotFound(f"no complete snapshot of {database} in cluster "
                                       f"{self.name} ({self.repository}){why}")
            return candidates[0]
        for snapshot in self.snapshots:
            if snapshot.database == database and snapshot.stamp == ref:
                if not snapshot.complete:
                    raise SnapshotNotFound(f"snapshot {ref} of {database} is not usable: "
                                           f"{snapshot.problem or 'incomplete'}")
                return snapshot
        shown = ", ".join(s.stamp for s in candidates[:5]) or "none"
        raise SnapshotNotFound(f"no snapshot {ref!r} of {database} in cluster {self.name}; "
                               f"newest: {shown}")


def read_cluster(store: Any, cluster: str, rpo_s: float | None = None,
                 signing: Signing = UNSIGNED) -> ClusterInventory:
    """Every snapshot of `cluster` in `store`, newest first; with `signing` required, a
    manifest or verification record without a trusted signature does not count."""
    inventory = ClusterInventory(cluster, store.description, rpo_s)
    try:
        objects = list(store.list(snapshots_prefix(cluster)))
        inventory.incomplete_uploads = list(store.incomplete_uploads(snapshots_prefix(cluster)))
    except DrdeckError as exc:
        inventory.error = str(exc)
        inventory.unreachable = isinstance(exc, EndpointUnreachable)
        return inventory
    found: dict[tuple[str, str], Snapshot] = {}
    manifest_keys: dict[tuple[str, str], str] = {}
    verification_keys: dict[tuple[str, str], list[str]] = defaultdict(list)
    for obj in objects:
        parsed = parse_key(obj.key)
        if parsed is None or parsed.cluster != cluster:
            continue
        ident = (parsed.database, parsed.stamp)
        snapshot = found.setdefault(ident, Snapshot(cluster, parsed.database, parsed.stamp))
        if parsed.part == "dump":
            snapshot.dump = obj
        elif parsed.part == "globals":
            snapshot.globals_object = obj
        elif parsed.part == "manifest":
            manifest_keys[ident] = obj.key
        else:
            verification_keys[ident].append(obj.key)

    def read_manifest(ident: tuple[str, str]) -> tuple[tuple[str, str], Any]:
        key = manifest_keys[ident]
        try:
            return ident, Manifest.from_json(
                read_signed(store, key, signing, MAX_MANIFEST_BYTES), store.location(key))
        except (ManifestInvalid, DrdeckError) as exc:
            return ident, exc

    def read_verification(key: str) -> Verification | None:
        try:
            return Verification.from_json(read_signed(store, key, signing, MAX_RECORD_BYTES))
        except DrdeckError:
            return None

    all_verification_keys = [key for keys in verification_keys.values() for key in keys]
    readers = getattr(store, "parallel_reads", _READERS)
    if readers > 1:
        with ThreadPoolExecutor(readers) as pool:
            manifests = dict(pool.map(read_manifest, list(manifest_keys)))
            verifications = list(pool.map(read_verification, all_verification_keys))
    else:  # a local disk: a pool would cost more than the reads it overlaps
        manifests = dict(map(read_manifest, manifest_keys))
        verifications = list(map(read_verification, all_verification_keys))
    read = dict(zip(all_verification_keys, verifications, strict=True))

    for ident, snapshot in found.items():
        manifest = manifests.get(ident)
        if isinstance(manifest, SignatureRefused):
            snapshot.problem = f"refused as forged: {manifest.why}"
        elif isinstance(manifest, Exception):
            snapshot.problem = f"manifest unreadable: {manifest}"
        elif manifest is not None:
            snapshot.manifest = manifest
            snapshot.problem = _forged(manifest, cluster, *ident)
        records = [read[key] for key in verification_keys.get(ident, [])]
        snapshot.verifications = [record for record in records if record is not None and
                                  _verifies(record, snapshot, signing)]
        snapshot.refused_verifications = len(records) - len(snapshot.verifications)
        if snapshot.problem:
            continue
        if snapshot.manifest is None:
            snapshot.problem = ("no manifest: an incomplete or interrupted upload"
                                if snapshot.dump else "no dump and no manifest")
        else:
            snapshot.problem = _dump_problem(snapshot)
    inventory.snapshots = sorted(found.values(), key=lambda s: (s.stamp, s.database),
                                 reverse=True)
    return inventory


def _dump_problem(snapshot: Snapshot) -> str | None:
    assert snapshot.manifest is not None
    if snapshot.dump is None:
        return "the manifest exists but the dump is missing"
    if snapshot.dump.size != snapshot.manifest.stored_size:
        return (f"the dump is {snapshot.dump.size:,} bytes, the manifest says "
                f"{snapshot.manifest.stored_size:,}")
    return None


def _verifies(record: Verification, snapshot: Snapshot, signing: Signing) -> bool:
    """Whether a verification record is about this snapshot, this very dump.

    A record names what it verified; one that names another snapshot (or whose dump
    has since been replaced) says nothing about this one. Records from before they
    named it count only where signatures are not required."""
    if not record.snapshot:
        return not signing.required
    manifest = snapshot.manifest
    return record.snapshot == snapshot.ident and (
        manifest is None or record.sha256_stored == manifest.sha256_stored)


def _forged(manifest: Manifest, cluster: str, database: str, stamp: str) -> str | None:
    """Why a manifest cannot be the one its key says it is, if it cannot.

    Its fields name local files and the objects that are fetched, decrypted and
    applied to a server: each must be what the key it was read from says, not
    what a repository writer chose.
    """
    from tui.catalog.layout import dump_key, globals_key

    expected = {"cluster": cluster, "database": database, "stamp": stamp,
                "object": dump_key(cluster, database, stamp, manifest.encrypted)}
    for field_name, value in expected.items():
        if getattr(manifest, field_name) != value:
            return (f"refused as forged: its {field_name} {getattr(manifest, field_name)!r} is "
                    f"not the {value!r} its key says")
    if manifest.globals is not None and manifest.globals.object != globals_key(
            cluster, database, stamp, manifest.encrypted):
        return (f"refused as forged: its globals object {manifest.globals.object!r} is not "
                "the one beside it")
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)


def read_snapshot(store: Any, cluster: str, database: str, stamp: str,
                  signing: Signing = UNSIGNED) -> Snapshot:
    """One snapshot by id, checked like the inventory checks it; SnapshotNotFound if unusable."""
    from tui.catalog.layout import manifest_key, snapshots_prefix

    snapshot = Snapshot(cluster, database, stamp)
    key = manifest_key(cluster, database, stamp)
    try:
        snapshot.manifest = Manifest.from_json(
            read_signed(store, key, signing, MAX_MANIFEST_BYTES), store.location(key))
    except SignatureRefused as exc:
        snapshot.problem = f"refused as forged: {exc.why}"
    except ManifestInvalid as exc:
        snapshot.problem = f"manifest unreadable: {exc}"
    except DrdeckError as exc:
        if type(exc).__name__ != "ObjectNotFound":
            raise
        dumps = [o for o in store.list(f"{snapshots_prefix(cluster, database)}{stamp}.")
                 if parse_key(o.key) and parse_key(o.key).part == "dump"]
        if not dumps:
            raise SnapshotNotFound(f"no snapshot {stamp!r} of {database} in cluster "
                                   f"{cluster}") from None
        snapshot.dump = dumps[0]
        snapshot.problem = "no manifest: an incomplete or interrupted upload"
    if snapshot.manifest is not None:
        # nothing the manifest names is looked at before it is known to be this snapshot's
        snapshot.problem = _forged(snapshot.manifest, cluster, database, stamp)
        if snapshot.problem is None:
            snapshot.dump = store.stat(snapshot.manifest.object)
            if snapshot.manifest.globals is not None:
                snapshot.globals_object = store.stat(snapshot.manifest.globals.object)
            snapshot.problem = _dump_problem(snapshot)
    if not snapshot.complete:
        raise SnapshotNotFound(f"snapshot {stamp} of {database} is not usable: "
                               f"{snapshot.problem}")
    return snapshot
