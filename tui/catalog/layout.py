"""Where a snapshot's pieces live in a repository, and how to read a key back.

    <cluster>/snapshots/<database>/<stamp>.dump.gpg               the dump (.dump: unencrypted)
    <cluster>/snapshots/<database>/<stamp>.globals.sql.gpg        its globals (roles, the
                                                                  database's properties)
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
_STAMP = r"[0-9]{8}T[0-9]{6}Z"  # ASCII digits: \d also takes other scripts' digits
_STAMP_RE = re.compile(_STAMP)
_NAME = r"[^/]+"
_KEY = re.compile(
    rf"(?P<cluster>{_NAME})/snapshots/(?P<database>{_NAME})/(?P<stamp>{_STAMP})"
    rf"(?P<rest>\.dump\.gpg|\.dump|\.globals\.sql\.gpg|\.globals\.sql|\.json"
    rf"|\.verified/(?P<verified>{_STAMP}(?:-[0-9a-f]+)?)\.json)"
)


def stamp_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def time_of(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)


def is_stamp(text: str) -> bool:
    """A stamp drdeck could have written: the shape, and a real moment (not 20261399T...)."""
    if _STAMP_RE.fullmatch(text) is None:
        return False
    try:  # what time_of would parse, without strptime's cost on every listed key
        datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                 int(text[11:13]), int(text[13:15]))
    except ValueError:
        return False
    return True


def snapshots_prefix(cluster: str, database: str | None = None) -> str:
    base = f"{cluster}/snapshots/"
    return base if database is None else f"{base}{database}/"


def dump_key(cluster: str, database: str, stamp: str, encrypted: bool) -> str:
    suffix = ".dump.gpg" if encrypted else ".dump"
    return f"{snapshots_prefix(cluster, database)}{stamp}{suffix}"


def globals_key(cluster: str, database: str, stamp: str, encrypted: bool) -> str:
    suffix = ".globals.sql.gpg" if encrypted else ".globals.sql"
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
    part: str  # dump | globals | manifest | verification
    encrypted: bool = False
    verified_stamp: str | None = None


def parse_key(key: str) -> SnapshotKey | None:
    match = _KEY.fullmatch(key)
    if match is None or not is_stamp(match["stamp"]):
        return None  # a near miss is not a snapshot: the inventory would need its time
    rest = match["rest"]
    if rest.startswith(".dump"):
        part = "dump"
    elif rest.startswith(".globals"):
        part = "globals"
    elif rest == ".json":
        part = "manifest"
    else:
        part = "verification"
    return SnapshotKey(match["cluster"], match["database"], match["stamp"], part,
                       encrypted=rest.endswith(".gpg"), verified_stamp=match["verified"])
