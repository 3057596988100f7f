"""Repositories with made-up snapshots: valid layout and manifests, tiny dumps."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from tui.catalog.layout import dump_key, manifest_key, stamp_of, verification_key
from tui.catalog.manifest import Manifest, Verification


def fake_snapshot(store, cluster: str, database: str, taken_at: datetime, *,
                  encrypted: bool = True, tables: dict[str, int] | None = None,
                  verified: tuple[str, bool] | None = None, manifest: bool = True) -> str:
    """Write one snapshot (its dump is a few bytes) and return its stamp."""
    stamp = stamp_of(taken_at)
    payload = f"dump of {database} at {stamp}".encode()
    key = dump_key(cluster, database, stamp, encrypted)
    store.write_bytes(key, payload)
    if not manifest:
        return stamp
    digest = hashlib.sha256(payload).hexdigest()
    store.write_bytes(manifest_key(cluster, database, stamp), Manifest(
        cluster=cluster, database=database, stamp=stamp, object=key,
        started_at=taken_at.isoformat(),
        finished_at=(taken_at + timedelta(seconds=192)).isoformat(),
        server_version="15.18", pg_dump_version="15.18", encrypted=encrypted,
        recipients=("9C1F0A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F",) if encrypted else (),
        plaintext_size=len(payload), stored_size=len(payload), sha256_stored=digest,
        sha256_plaintext=digest,
        tables=tables if tables is not None else {"public.orders": 1_204_332,
                                                  "public.customers": 88_410},
    ).to_json())
    if verified is not None:
        how, ok = verified
        at = taken_at + timedelta(minutes=20)
        store.write_bytes(verification_key(cluster, database, stamp, stamp_of(at)), Verification(
            at=at.isoformat(), how=how, ok=ok,
            detail="restored and every table's row count matches" if ok else
            "row counts differ", by="dba@backup-host", duration_s=1200.0).to_json())
    return stamp


def fake_base_backup(store, cluster: str, stopped: datetime, *, timeline: int = 1,
                     start_segment: int = 2, segments: int = 6, gap_at: int | None = None,
                     segment_size: int = 1 << 20) -> str:
    """A base backup manifest and object, and WAL segments after it (their bytes are filler)."""
    from tui.pitr.basebackup import BaseManifest, base_manifest_key, base_object_key
    from tui.wal.archive import wal_key
    from tui.wal.names import Segment, format_lsn

    stamp = stamp_of(stopped - timedelta(minutes=3))
    payload = b"base backup tar"
    key = base_object_key(cluster, stamp, False)
    store.write_bytes(key, payload)
    first = Segment(timeline, start_segment, segment_size)
    digest = hashlib.sha256(payload).hexdigest()
    store.write_bytes(base_manifest_key(cluster, stamp), BaseManifest(
        cluster=cluster, stamp=stamp, object=key,
        started_at=(stopped - timedelta(minutes=3)).isoformat(), stopped_at=stopped.isoformat(),
        start_lsn=format_lsn(first.start_lsn + 0x28), stop_lsn=format_lsn(first.start_lsn + 0x138),
        timeline=timeline, system_identifier="7312345678901234567", server_version="15.18",
        wal_segment_size=segment_size, encrypted=False, recipients=(),
        plaintext_size=len(payload), stored_size=len(payload), sha256_stored=digest,
        sha256_plaintext=digest).to_json())
    segment = first
    for index in range(segments):
        if index != gap_at:
            store.write_bytes(wal_key(cluster, segment.name, False), b"not really WAL")
        segment = segment.next()
    return stamp
