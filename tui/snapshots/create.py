"""Take a snapshot: pg_dump -Fc -> gpg -> repository, in one streaming pass, manifest last.

    pg_dump --snapshot=S ──▶ us (sha256, size) ──▶ gpg --encrypt ──▶ us (sha256) ──▶ store
    row counts, read in the same exported snapshot S, go into the manifest

Memory stays bounded whatever the database's size: every hop is a pipe or a
fixed-size buffer, and the store uploads parts as they fill. A failure
anywhere stops every process, aborts the upload, and writes no manifest, so
nothing half-written is ever listed as a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import dump_key, manifest_key, stamp_of
from tui.catalog.manifest import Manifest
from tui.crypto import resolve_recipients
from tui.errors import DrdeckError
from tui.postgres.binaries import pg_bin
from tui.postgres.dsn import for_child_process
from tui.postgres.rowcounts import count_rows
from tui.snapshots.pipes import Reporter
from tui.snapshots.stream import Stored, StreamFailed, store_output
from tui.units import format_bytes


class SnapshotFailed(DrdeckError):
    pass


@dataclass(frozen=True)
class SnapshotPlan:
    cluster: str
    database: str
    dsn: str  # the server's DSN, pointing at `database`
    encrypt: bool
    recipients: tuple[str, ...]  # as configured (fingerprints, key ids or emails)
    gpg_home: str | None


async def create_snapshot(plan: SnapshotPlan, store: Any, reporter: Reporter,
                          env: dict[str, str]) -> Manifest:
    import psycopg

    fingerprints: list[str] = []
    if plan.encrypt:
        recipients = await asyncio.to_thread(resolve_recipients, list(plan.recipients),
                                             plan.gpg_home)
        fingerprints = [r.fingerprint for r in recipients]
        for recipient in recipients:
            reporter.output(f"encrypting for {recipient.fingerprint} {recipient.uid}")
    else:
        reporter.output("WARNING: this snapshot is NOT encrypted (encrypt = false)")

    started = datetime.now(UTC)
    stamp = stamp_of(started)
    key = dump_key(plan.cluster, plan.database, stamp, plan.encrypt)
    try:
        conn = await psycopg.AsyncConnection.connect(plan.dsn, connect_timeout=10)
    except psycopg.Error as exc:
        raise SnapshotFailed(f"cannot connect to {plan.database}: {_first_line(exc)}") from None
    try:
        # One exported snapshot: pg_dump and the row counts see the same data.
        await conn.execute("set transaction isolation level repeatable read, read only")
        server_version = (await (await conn.execute("show server_version")).fetchone())[0]
        exported = (await (await conn.execute("select pg_export_snapshot()")).fetchone())[0]
        reporter.output(f"dumping {plan.database} (PostgreSQL {server_version}) to "
                        f"{store.location(key)}")
        counting = asyncio.ensure_future(count_rows(conn))
        try:
            result = await _dump_and_store(plan, store, key, exported, fingerprints, reporter,
                                           env)
            tables, large_objects = await counting
        except BaseException:
            counting.cancel()
            raise
    except psycopg.Error as exc:
        raise SnapshotFailed(f"reading {plan.database} failed: {_first_line(exc)}") from None
    finally:
        await conn.close()

    manifest = Manifest(
        cluster=plan.cluster, database=plan.database, stamp=stamp, object=key,
        started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
        server_version=server_version, pg_dump_version=_pg_dump_version(),
        encrypted=plan.encrypt, recipients=tuple(fingerprints),
        plaintext_size=result.plaintext_size, stored_size=result.stored_size,
        sha256_stored=result.sha256_stored, sha256_plaintext=result.sha256_plaintext,
        tables=tables, large_objects=large_objects,
    )
    try:
        await asyncio.to_thread(store.write_bytes, manifest_key(plan.cluster, plan.database,
                                                                stamp), manifest.to_json())
    except BaseException:
        # a dump without its manifest would only ever be "incomplete": remove it
        await asyncio.to_thread(_delete_quietly, store, key)
        raise
    reporter.output(f"snapshot {stamp}: {len(tables)} tables, {manifest.total_rows:,} rows, "
                    f"{format_bytes(result.stored_size)} stored")
    return manifest


async def _dump_and_store(plan: SnapshotPlan, store: Any, key: str, exported: str,
                          fingerprints: list[str], reporter: Reporter,
                          env: dict[str, str]) -> Stored:
    target = for_child_process(plan.dsn, env)
    try:
        return await store_output(
            [pg_bin("pg_dump"), "--format=custom", f"--snapshot={exported}",
             f"--dbname={target.dsn}"], target.env, store, key,
            fingerprints=fingerprints if plan.encrypt else (), gpg_home=plan.gpg_home,
            reporter=reporter, what="dumped")
    except StreamFailed as exc:
        raise SnapshotFailed(str(exc)) from None


def _pg_dump_version() -> str:
    result = subprocess.run([pg_bin("pg_dump"), "--version"], capture_output=True, text=True,
                            check=False)
    match = re.search(r"\)\s+(\d+(?:\.\d+)*)", result.stdout)
    return match[1] if result.returncode == 0 and match else "unknown"


def _delete_quietly(store: Any, key: str) -> None:
    # if even this fails, the inventory shows the dump as incomplete: nothing is lost
    with contextlib.suppress(Exception):
        store.delete(key)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
