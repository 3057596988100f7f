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
