"""Verify a snapshot: prove it can be restored, and record the answer beside it.

- `list`: the stored object's sha256 against the manifest, gpg's integrity
  check while decrypting, the decrypted dump's sha256 against the manifest,
  and `pg_restore --list` reading the whole archive's table of contents;
- `full`: all that, then a real restore into a scratch database and a row
  count of every table against the manifest; the scratch database is dropped.

The result is written as a new verification record; the manifest is never
rewritten.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.catalog.layout import stamp_of, verification_key
from tui.catalog.manifest import Manifest, Verification
from tui.catalog.signatures import UNSIGNED, Signing, write_signed
from tui.errors import DrdeckError
from tui.postgres.restore import restore_dump, toc_items
from tui.postgres.throwaway_role import scratch_database_as_throwaway_role
from tui.snapshots.compare import compare_counts
from tui.snapshots.dump_compression import require_pg_restore_for
from tui.snapshots.fetch import fetch_snapshot
from tui.snapshots.pipes import Reporter


@dataclass(frozen=True)
class VerifyPlan:
    how: str  # list | full
    workdir: Path
    gpg_home: str | None = None
    scratch_server_dsn: str | None = None  # full only
    jobs: int = 2
    signing: Signing = UNSIGNED  # how the record is signed


async def _verify_globals(manifest: Manifest, store: Any, plan: VerifyPlan,
                          reporter: Reporter) -> str:
    """The globals object: checksums, gpg's integrity check, and every statement readable."""
    from tui.postgres.globals_file import parse_globals
    from tui.snapshots.globals import fetch_globals

    assert manifest.globals is not None
    text = await fetch_globals(manifest, store, plan.workdir, reporter, plan.gpg_home)
    parsed = parse_globals(text, store.location(manifest.globals.object))
    described = (f"globals read: {len(parsed.roles)} roles, {len(parsed.memberships)} "
                 f"memberships, {len(parsed.properties)} database properties")
    reporter.output(described)
    for what in manifest.globals.missing:
        reporter.output(f"the globals do not include {what}")
    return described


def operator_name() -> str:
    """user@host: who ran it, for the record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def verify_snapshot(manifest: Manifest, store: Any, plan: VerifyPlan, reporter: Reporter,
                          env: dict[str, str]) -> Verification:
    # outside the record: a pg_restore too old to read the dump says nothing of the snapshot
    require_pg_restore_for(manifest, f"snapshot {manifest.stamp}")
    started = time.monotonic()
    at = datetime.now(UTC)
    # a fixed name in the run's private directory: nothing from the manifest makes the path
    dump = plan.workdir / "snapshot.verify.dump"
    try:
        ok, detail = await _verify(manifest, store, plan, reporter, env, dump)
    except DrdeckError as exc:
        ok, detail = False, str(exc)
    finally:
        dump.unlink(missing_ok=True)
    record = Verification(at=at.isoformat(), how=plan.how, ok=ok, detail=detail,
                          by=operator_name(), duration_s=round(time.monotonic() - started, 3),
                          snapshot=f"{manifest.cluster}/{manifest.database}/{manifest.stamp}",
                          sha256_stored=manifest.sha256_stored)
    key = verification_key(manifest.cluster, manifest.database, manifest.stamp, stamp_of(at))
    await asyncio.to_thread(write_signed, store, key, record.to_json(), plan.signing)
    reporter.output(f"recorded: {plan.how} verification {'passed' if ok else 'FAILED'}")
    return record


async def _verify(manifest: Manifest, store: Any, plan: VerifyPlan, reporter: Reporter,
                  env: dict[str, str], dump: Path) -> tuple[bool, str]:
    await fetch_snapshot(manifest, store, dump, reporter, plan.gpg_home)
    items = await toc_items(dump, env)
    reporter.output(f"pg_restore --list: {len(items)} items in the archive")
    detail = f"checksum, gpg integrity and {len(items)} archive items read"
    if manifest.globals is not None:
        detail += "; " + await _verify_globals(manifest, store, plan, reporter)
    if plan.how != "full":
        return True, detail
    if not plan.scratch_server_dsn:
        raise DrdeckError("a full verification needs a server to restore into (target_dsn)")
    scratch = f"drdeck_verify_{manifest.stamp.lower()}"
    # the dump's SQL runs as whoever restores it: never as the configured (super)user
    async with scratch_database_as_throwaway_role(plan.scratch_server_dsn, scratch,
                                                  connections=max(1, plan.jobs) + 2) as role:
        reporter.output(f"test restore into the scratch database {scratch}, as {role.name}, "
                        "a role made for it with no privileges")
        # a scratch database proves the data; owners and grants name roles that another
        # server (a CI container, a laptop) need not have
        await restore_dump(dump, role.dsn, jobs=plan.jobs, reporter=reporter, env=env,
                           no_owner=True)
        differences = await compare_counts(role.dsn, manifest)
    if differences:
        shown = "; ".join(d.describe() for d in differences[:5])
        return False, f"restored, but row counts differ from the manifest: {shown}"
    return True, (f"{detail}; restored and every table's row count matches "
                  f"({len(manifest.tables)} tables, {manifest.total_rows:,} rows)")
