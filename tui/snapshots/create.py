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
import hashlib
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tui.catalog.layout import dump_key, manifest_key, stamp_of
from tui.catalog.manifest import Manifest
from tui.crypto import encrypt_argv, resolve_recipients
from tui.errors import DrdeckError
from tui.postgres.binaries import pg_bin
from tui.postgres.dsn import for_child_process
from tui.postgres.rowcounts import count_rows
from tui.snapshots.pipes import CHUNK, Reporter, Throttled, collect_stderr, reap, spawn
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


@dataclass(frozen=True)
class _Stored:
    plaintext_size: int
    stored_size: int
    sha256_plaintext: str
    sha256_stored: str


async def _dump_and_store(plan: SnapshotPlan, store: Any, key: str, exported: str,
                          fingerprints: list[str], reporter: Reporter,
                          env: dict[str, str]) -> _Stored:
    target = for_child_process(plan.dsn, env)
    dump = encrypt = None
    writer = await asyncio.to_thread(store.open_writer, key)
    try:
        dump = await spawn([pg_bin("pg_dump"), "--format=custom", f"--snapshot={exported}",
                            f"--dbname={target.dsn}"], env=target.env)
        if plan.encrypt:
            encrypt = await spawn(encrypt_argv(fingerprints, plan.gpg_home),
                                  stdin=asyncio.subprocess.PIPE)
        plain, stored = hashlib.sha256(), hashlib.sha256()
        sizes = {"plain": 0, "stored": 0}
        progress = Throttled(reporter, None, "bytes")

        async def upload(source: asyncio.StreamReader, digest: Any, counter: str) -> None:
            buffer = bytearray()
            while chunk := await source.read(CHUNK):
                digest.update(chunk)
                sizes[counter] += len(chunk)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await asyncio.to_thread(writer.write, bytes(buffer))
                    buffer.clear()
                    progress(sizes["stored"], f"{format_bytes(sizes['plain'])} dumped")
            if buffer:
                await asyncio.to_thread(writer.write, bytes(buffer))

        async def into_gpg() -> None:
            assert dump.stdout is not None and encrypt is not None and encrypt.stdin is not None
            while chunk := await dump.stdout.read(CHUNK):
                plain.update(chunk)
                sizes["plain"] += len(chunk)
                encrypt.stdin.write(chunk)
                await encrypt.stdin.drain()
            encrypt.stdin.close()

        def warn(line: str) -> None:
            reporter.output(line, "stderr")

        jobs = [collect_stderr(dump, warn)]
        if encrypt is not None:
            jobs += [into_gpg(), upload(encrypt.stdout, stored, "stored"),
                     collect_stderr(encrypt, warn)]
        else:
            jobs.append(upload(dump.stdout, plain, "plain"))
        outcome = await asyncio.gather(*jobs)
        dump_code = await dump.wait()
        if dump_code != 0:
            raise SnapshotFailed(f"pg_dump failed (exit {dump_code}): "
                                 + (outcome[0][-1] if outcome[0] else "no message"))
        if encrypt is not None:
            code = await encrypt.wait()
            if code != 0:
                raise SnapshotFailed(f"gpg failed to encrypt (exit {code}): "
                                     + (outcome[-1][-1] if outcome[-1] else "no message"))
        else:
            stored, sizes["stored"] = plain, sizes["plain"]
        progress(sizes["stored"], f"{format_bytes(sizes['plain'])} dumped", final=True)
        await asyncio.to_thread(writer.commit)
        return _Stored(sizes["plain"], sizes["stored"], plain.hexdigest(), stored.hexdigest())
    except BaseException:
        await reap(dump, encrypt)
        await asyncio.to_thread(writer.abort)
        raise


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
