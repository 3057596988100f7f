"""Where a snapshot's pieces live in a repository, and how to read a key back.

    <cluster>/snapshots/<database>/<stamp>.dump.gpg               the dump (.dump: unencrypted)
    <cluster>/snapshots/<database>/<stamp>.json                   its manifest, written last
    <cluster>/snapshots/<database>/<stamp>.verified/<stamp>.json  one record per verification

A stamp is the UTC time the snapshot was started: YYYYMMDDTHHMMSSZ.

A dump without a manifest is an incomplete snapshot and is never listed as good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP = r"\d{8}T\d{6}Z"
_NAME = r"[^/]+"
_KEY = re.compile(
    rf"(?P<cluster>{_NAME})/snapshots/(?P<database>{_NAME})/(?P<stamp>{_STAMP})"
    rf"(?P<rest>\.dump\.gpg|\.dump|\.json|\.verified/(?P<verified>{_STAMP}(?:-[0-9a-f]+)?)\.json)"
)


def stamp_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def time_of(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)


def is_stamp(text: str) -> bool:
    return re.fullmatch(_STAMP, text) is not None


def snapshots_prefix(cluster: str, database: str | None = None) -> str:
    base = f"{cluster}/snapshots/"
    return base if database is None else f"{base}{database}/"


def dump_key(cluster: str, database: str, stamp: str, encrypted: bool) -> str:
    suffix = ".dump.gpg" if encrypted else ".dump"
    return f"{snapshots_prefix(cluster, database)}{stamp}{suffix}"


def manifest_key(cluster: str, database: str, stamp: str) -> str:
    return f"{snapshots_prefix(cluster, database)}{stamp}.json"


def verification_key(cluster: str, database: str, stamp: str, verified_stamp: str) -> str:
    """One record per verification; a random suffix keeps two in the same second apart."""
    import secrets

    unique = f"{verified_stamp}-{secrets.token_hex(3)}"
    return f"{snapshots_prefix(cluster, database)}{stamp}.verified/{unique}.json"


@dataclass(frozen=True)
class SnapshotKey:
    cluster: str
    database: str
    stamp: str
    part: str  # dump | manifest | verification
    encrypted: bool = False
    verified_stamp: str | None = None


def parse_key(key: str) -> SnapshotKey | None:
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    rest = match["rest"]
    if rest.startswith(".dump"):
        part = "dump"
    elif rest == ".json":
        part = "manifest"
    else:
        part = "verification"
    return SnapshotKey(match["cluster"], match["database"], match["stamp"], part,
                       encrypted=rest == ".dump.gpg", verified_stamp=match["verified"])
