"""The manifest: what a snapshot holds and how to prove it is intact.

Written as the last piece of a snapshot, so its presence means the dump is
complete. Verification results are separate records beside it, never written
into the manifest: the history of a snapshot is appended to, not rewritten.

Format 2 adds the snapshot's globals (roles, memberships, the database's own
properties: tui/snapshots/globals.py) as a second stored object, and the names
of the roles and tablespaces the dump refers to, so a restore onto a new
server can say what is missing before it downloads anything. Format 1
manifests still read: they have no globals, and `roles` is None (unknown).

Format 3 adds `compression`, what pg_dump compressed the dump with
(tui/snapshots/dump_compression.py), since a zstd dump needs pg_restore 16 or
later. Manifests of formats 1 and 2 read as "gzip", which every snapshot before
it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tui.errors import DrdeckError

FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
# what pg_dump compressed a dump with: its default, none, or zstd at a level it takes
DUMP_COMPRESSION = re.compile(r"gzip|none|zstd:([1-9]|1[0-9]|2[0-2])")

# A repository is written by others: a manifest is read only up to these sizes, so a huge
# object at a manifest's key costs a refusal, not the memory of the machine. A snapshot's
# lists a row count per table (about 50 bytes each: half a million tables fit).
MAX_MANIFEST_BYTES = 32 << 20
MAX_RECORD_BYTES = 1 << 20  # a base backup's manifest, a verification record
MAX_VERIFICATION_S = 366 * 86400.0  # a verification's duration; NaN and Infinity fail too


class ManifestInvalid(DrdeckError):
    pass


def read_capped(store: Any, key: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    """A small object's bytes; ManifestInvalid once it proves larger than `limit` (what
    is past the limit is never downloaded)."""
    parts: list[bytes] = []
    size = 0
    chunks = store.iter_chunks(key, chunk_size=min(limit + 1, 1 << 20))
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ManifestInvalid(f"{store.location(key)}: larger than {limit:,} bytes, "
                                      "so not a manifest drdeck wrote: not read")
            parts.append(chunk)
    finally:
        getattr(chunks, "close", lambda: None)()
    return b"".join(parts)


@dataclass(frozen=True)
class GlobalsRecord:
    """The globals object of a snapshot, and what it could not hold."""

    object: str  # its key in the repository
    plaintext_size: int
    stored_size: int
    sha256_stored: str
    sha256_plaintext: str
    role_passwords: bool  # False: read without pg_authid, the roles have no password hashes
    missing: tuple[str, ...] = ()  # what could not be read, in words

    @classmethod
    def from_data(cls, data: Any) -> GlobalsRecord:
        if not isinstance(data, dict):
            raise ValueError("globals must be an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown globals fields {', '.join(map(repr, unknown))}")
        missing = data.get("missing", [])
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            raise ValueError("globals.missing must be a list of texts")
        record = cls(**{**data, "missing": tuple(missing)})
        for name in ("object", "sha256_stored", "sha256_plaintext"):
            if not isinstance(getattr(record, name), str):
                raise ValueError(f"globals.{name} must be text")
        for name in ("plaintext_size", "stored_size"):
            value = getattr(record, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"globals.{name} must be a whole number")
        if not isinstance(record.role_passwords, bool):
            raise ValueError("globals.role_passwords must be true or false")
        return record


@dataclass(frozen=True)
class Manifest:
    cluster: str
    database: str
    stamp: str
    object: str  # the dump's key in the repository
    started_at: str  # ISO 8601, UTC
    finished_at: str
    server_version: str
    pg_dump_version: str
    encrypted: bool
    recipients: tuple[str, ...]  # fingerprints
    plaintext_size: int
    stored_size: int
    sha256_stored: str
    sha256_plaintext: str
    tables: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows at dump time
    large_objects: int = 0
    globals: GlobalsRecord | None = None  # None: a format 1 snapshot, or none could be read
    roles: tuple[str, ...] | None = None  # roles the dump names; None: not recorded
    tablespaces: tuple[str, ...] = ()  # tablespaces the dump names
    compression: str = "gzip"  # pg_dump's: "gzip" (its default), "zstd:<level>" or "none"
    format: int = FORMAT_VERSION
    kind: str = "snapshot"

    def to_json(self) -> bytes:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        if self.globals is not None:
            data["globals"]["missing"] = list(self.globals.missing)
        data["roles"] = None if self.roles is None else list(self.roles)
        data["tablespaces"] = list(self.tablespaces)
        if self.format < 3:  # as that format was written, so that it reads back the same
            del data["compression"]
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting
            raise ManifestInvalid(f"{where}: not a valid manifest ({exc})") from None
        if not isinstance(data, dict):
            raise ManifestInvalid(f"{where}: not a valid manifest (not a JSON object)")
        version = data.get("format")
        if type(version) is not int or version not in READABLE_FORMATS or \
                data.get("kind") != "snapshot":
            raise ManifestInvalid(
                f"{where}: manifest format {data.get('format')!r} is not one this drdeck reads "
                f"({', '.join(map(str, READABLE_FORMATS))}); upgrade drdeck")
        try:
            data["recipients"] = _texts(data.get("recipients", []),
                                        "recipients must be a list of key fingerprints")
            if data.get("format") == 1 and set(data) & {"globals", "roles", "tablespaces"}:
                raise ValueError("globals, roles and tablespaces came with format 2")
            if data.get("format") in (1, 2) and "compression" in data:
                raise ValueError("compression came with format 3")
            if data.get("globals") is not None:
                data["globals"] = GlobalsRecord.from_data(data["globals"])
            if data.get("roles") is not None:
                data["roles"] = _texts(data["roles"], "roles must be a list of role names")
            data["tablespaces"] = _texts(data.get("tablespaces", []),
                                         "tablespaces must be a list of names")
            unknown = sorted(set(data) - set(cls.__dataclass_fields__))
            if unknown:  # named with repr: a key is untrusted text bound for a terminal
                raise ValueError(f"unknown fields {', '.join(map(repr, unknown))}")
            manifest = cls(**data)
            _check_types(manifest)
        except (TypeError, ValueError) as exc:
            raise ManifestInvalid(f"{where}: not a valid manifest ({exc})") from None
        return manifest

    @property
    def taken_at(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def dump_seconds(self) -> float:
        return (datetime.fromisoformat(self.finished_at) - self.taken_at).total_seconds()

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())


def _texts(value: Any, message: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(message)
    return tuple(value)


def _check_types(m: Manifest) -> None:
    for name in ("cluster", "database", "stamp", "object", "sha256_stored", "sha256_plaintext",
                 "server_version", "pg_dump_version", "started_at", "finished_at"):
        if not isinstance(getattr(m, name), str):
            raise ValueError(f"{name} must be text")
    if not isinstance(m.encrypted, bool):
        raise ValueError("encrypted must be true or false")
    if not isinstance(m.compression, str) or not DUMP_COMPRESSION.fullmatch(m.compression):
        raise ValueError("compression must be gzip, none or zstd:LEVEL (1 to 22)")
    for name in ("plaintext_size", "stored_size", "large_objects"):
        value = getattr(m, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number")
    if not isinstance(m.tables, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in m.tables.items()
    ):
        raise ValueError("tables must map table names to row counts")
    for name in ("started_at", "finished_at"):
        # a time without a zone cannot be compared with now: ages and retention need one
        if datetime.fromisoformat(getattr(m, name)).tzinfo is None:
            raise ValueError(f"{name} has no time zone")


@dataclass(frozen=True)
class Verification:
    """One verification of one snapshot: when, how, by whom, and what it found."""

    at: str  # ISO 8601, UTC
    how: str  # checksum | list | full
    ok: bool
    detail: str
    by: str
    duration_s: float
    # what was verified: cluster/database/stamp and the stored dump's sha256, so a record
    # copied beside another snapshot, or kept after its dump was replaced, is not counted
    snapshot: str = ""
    sha256_stored: str = ""

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Verification | None:
        """A readable record, or None: a damaged record never hides the snapshot."""
        try:
            data: dict[str, Any] = json.loads(raw)
            record = cls(**data)
            # the inventory sorts by `at`, prints it, and shows `ok` as a mark
            texts = (record.at, record.how, record.detail, record.by, record.snapshot,
                     record.sha256_stored)
            if not all(isinstance(text, str) for text in texts) or \
                    not isinstance(record.ok, bool) or \
                    not isinstance(record.duration_s, int | float) or \
                    isinstance(record.duration_s, bool) or \
                    not 0 <= record.duration_s <= MAX_VERIFICATION_S or \
                    datetime.fromisoformat(record.at).tzinfo is None:
                return None
            return record
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            return None

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)
