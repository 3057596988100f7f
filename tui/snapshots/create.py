"""Take a snapshot: pg_dump -Fc -> gpg -> repository, in one streaming pass, manifest last.

    pg_dump --snapshot=S ──▶ us (sha256, size) ──▶ gpg --encrypt ──▶ us (sha256) ──▶ store
    row counts, read in the same exported snapshot S, go into the manifest

Memory stays bounded whatever the database's size: every hop is a pipe or a
fixed-size buffer, and the store uploads parts as they fill. A failure
anywhere stops every process, aborts the upload, and writes no manifest, so
nothing half-written is ever listed as a snapshot. pg_dump compresses as the
repository says (tui/snapshots/dump_compression.py); gpg does not compress again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import dump_key, globals_key, manifest_key, stamp_of
from tui.catalog.manifest import GlobalsRecord, Manifest
from tui.catalog.signatures import UNSIGNED, Signing, write_signed
from tui.crypto import resolve_recipients
from tui.errors import DrdeckError
from tui.postgres.binaries import major_of_version, pg_bin, require_program_for
from tui.postgres.dsn import for_child_process
from tui.postgres.rowcounts import count_rows
from tui.snapshots import dump_compression
from tui.snapshots.globals import CapturedGlobals, GlobalsFailed, capture_globals
from tui.snapshots.pipes import Reporter
from tui.snapshots.stream import Stored, StreamFailed, store_bytes, store_output
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
    signing: Signing = UNSIGNED  # how the manifest is signed
    # the repository's "zstd" or "none" ("gzip": pg_dump's default), and zstd's level
    compression: str = "zstd"
    compression_level: int = 3


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
    if plan.signing.required:
        signer = await asyncio.to_thread(plan.signing.signer)
        reporter.output(f"the manifest will be signed by {signer}")

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
        version_num = (await (await conn.execute("show server_version_num")).fetchone())[0]
        # before pg_dump, which refuses a newer server with its own words, and is retried
        require_program_for("pg_dump", int(version_num) // 10000,
                            f"the server of {plan.database} (PostgreSQL {server_version})")
        exported = (await (await conn.execute("select pg_export_snapshot()")).fetchone())[0]
        reporter.output(f"dumping {plan.database} (PostgreSQL {server_version}) to "
                        f"{store.location(key)}")
        counting = asyncio.ensure_future(count_rows(conn))
        dump_version = _pg_dump_version()
        compression = dump_compression.choose(plan.compression, plan.compression_level,
                                              major_of_version(dump_version))
        reporter.output(_compression_note(plan.compression, compression, dump_version))
        header = (f"drdeck globals of database {plan.database!r}, cluster {plan.cluster!r}, "
                  f"snapshot {stamp}\nPostgreSQL {server_version}, pg_dump {dump_version}")
        reading = asyncio.ensure_future(capture_globals(plan.dsn, plan.database, exported, env,
                                                        header=header))
        try:
            result = await _dump_and_store(plan, store, key, exported, compression,
                                           fingerprints, reporter, env)
            tables, large_objects = await counting
            captured = await reading
        except BaseException:
            counting.cancel()
            reading.cancel()
            raise
    except psycopg.Error as exc:
        raise SnapshotFailed(f"reading {plan.database} failed: {_first_line(exc)}") from None
    except GlobalsFailed as exc:
        await asyncio.to_thread(_delete_quietly, store, key)
        raise SnapshotFailed(str(exc)) from None
    finally:
        await conn.close()

    try:
        globals_record = await _store_globals(plan, store, stamp, captured, fingerprints,
                                              reporter)
    except BaseException:
        await asyncio.to_thread(_delete_quietly, store, key)
        raise

    manifest = Manifest(
        cluster=plan.cluster, database=plan.database, stamp=stamp, object=key,
        started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
        server_version=server_version, pg_dump_version=dump_version,
        encrypted=plan.encrypt, recipients=tuple(fingerprints),
        plaintext_size=result.plaintext_size, stored_size=result.stored_size,
        sha256_stored=result.sha256_stored, sha256_plaintext=result.sha256_plaintext,
        tables=tables, large_objects=large_objects, globals=globals_record,
        roles=tuple(sorted(captured.named.roles)),
        tablespaces=tuple(sorted(captured.named.tablespaces)), compression=compression,
    )
    try:
        await asyncio.to_thread(write_signed, store, manifest_key(plan.cluster, plan.database,
                                                                  stamp),
                                manifest.to_json(), plan.signing)
    except BaseException:
        # a dump without its manifest would only ever be "incomplete": remove it
        await asyncio.to_thread(_delete_quietly, store, key)
        await asyncio.to_thread(_delete_quietly, store, globals_record.object)
        raise
    reporter.output(f"snapshot {stamp}: {len(tables)} tables, {manifest.total_rows:,} rows, "
                    f"{format_bytes(result.stored_size)} stored")
    return manifest


async def _dump_and_store(plan: SnapshotPlan, store: Any, key: str, exported: str,
                          compression: str, fingerprints: list[str], reporter: Reporter,
                          env: dict[str, str]) -> Stored:
    target = for_child_process(plan.dsn, env)
    try:
        return await store_output(
            [pg_bin("pg_dump"), "--format=custom", *dump_compression.pg_dump_args(compression),
             f"--snapshot={exported}", f"--dbname={target.dsn}"], target.env, store, key,
            fingerprints=fingerprints if plan.encrypt else (), gpg_home=plan.gpg_home,
            reporter=reporter, what="dumped")
    except StreamFailed as exc:
        raise SnapshotFailed(str(exc)) from None


async def _store_globals(plan: SnapshotPlan, store: Any, stamp: str, captured: CapturedGlobals,
                         fingerprints: list[str], reporter: Reporter) -> GlobalsRecord:
    key = globals_key(plan.cluster, plan.database, stamp, plan.encrypt)
    try:
        stored = await store_bytes(captured.text.encode(), store, key,
                                   fingerprints=fingerprints if plan.encrypt else (),
                                   gpg_home=plan.gpg_home)
    except StreamFailed as exc:
        raise SnapshotFailed(f"storing the globals failed: {exc}") from None
    roles = len(captured.named.roles)
    reporter.output(f"globals stored: the database's properties and the server's roles "
                    f"({roles} named by the dump), {format_bytes(stored.stored_size)}")
    for what in captured.missing:
        reporter.output(f"WARNING: the globals do not include {what}", "stderr")
    return GlobalsRecord(object=key, plaintext_size=stored.plaintext_size,
                         stored_size=stored.stored_size, sha256_stored=stored.sha256_stored,
                         sha256_plaintext=stored.sha256_plaintext,
                         role_passwords=captured.role_passwords, missing=captured.missing)


def _compression_note(wanted: str, chosen: str, dump_version: str) -> str:
    if wanted == "zstd" and chosen == dump_compression.GZIP:
        return (f"pg_dump {dump_version} compresses with its default, gzip: zstd needs pg_dump "
                f"{dump_compression.ZSTD_SINCE} or later")
    if chosen == dump_compression.NONE:
        return "pg_dump does not compress (the repository's compression = \"none\")"
    return f"pg_dump compresses with {chosen}"


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
