"""Snapshot actions: create, fetch, verify, compare. The work is in tui.snapshots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, StepFailed
from tui.engine.context import StepContext
from tui.engine.volumes import record
from tui.snapshots.targets import Target, resolve
from tui.units import format_bytes

CLUSTER = Arg("text", help="a cluster from drdeck.toml (default: the only one)", default="")
DATABASE = Arg("text", help="a database of the cluster (default: its first)", default="")
SNAPSHOT = Arg("text", help="a snapshot id, or latest", default="latest")


def _target(ctx: StepContext, args: dict[str, Any]) -> Target:
    return resolve(ctx.config, args.get("cluster", ""), args.get("database", ""))


class SnapshotCreate(Action):
    produces_output = True
    name = "snapshot.create"
    summary = "pg_dump -> gpg -> repository, then the manifest"
    args = {
        "cluster": CLUSTER,
        "database": DATABASE,
        "encrypt": Arg("bool", help="false stores the snapshot unencrypted (shown as a "
                       "warning everywhere)"),
    }

    def describe(self, args: dict[str, Any]) -> str:
        encrypt = "" if args.get("encrypt", True) is not False else " UNENCRYPTED"
        return (f"pg_dump -Fc {args.get('database') or '(first database)'} | gpg --encrypt | "
                f"upload{encrypt}  [cluster {args.get('cluster') or '(default)'}]")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.snapshots.create import SnapshotPlan, create_snapshot

        target = _target(ctx, args)
        encrypt = args.get("encrypt")
        if encrypt is None:
            if not target.cluster.gpg_recipients:
                raise StepFailed(
                    f"cluster {target.cluster.name!r} has no gpg_recipients to encrypt for: add "
                    "them to drdeck.toml, or set encrypt = false (-p encrypt=false) to store an "
                    "unencrypted snapshot")
            encrypt = True
        elif encrypt and not target.cluster.gpg_recipients:
            raise StepFailed(
                f"cluster {target.cluster.name!r} has no gpg_recipients to encrypt for: add "
                "them to drdeck.toml, or set encrypt = false (-p encrypt=false) to store an "
                "unencrypted snapshot")
        repository = target.config.repository_for(target.cluster)
        plan = SnapshotPlan(target.cluster.name, target.database, target.database_dsn(),
                            encrypt, target.cluster.gpg_recipients, target.gpg_home,
                            target.signing, repository.compression,
                            repository.compression_level)
        manifest = await create_snapshot(plan, target.store, ctx, ctx.libpq_env())
        return ActionResult(output=manifest.stamp)


class SnapshotFetch(Action):
    produces_output = True
    name = "snapshot.fetch"
    summary = "download -> sha256 -> gpg --decrypt, into the run's work directory"
    args = {
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": SNAPSHOT,
        "path": Arg("text", help="where to write the dump (default: the work directory)",
                    default=""),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"fetch snapshot {args.get('snapshot') or 'latest'} of "
                f"{args.get('database') or '(first database)'} and decrypt it")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.snapshots.fetch import fetch_snapshot

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        manifest = snapshot.manifest
        assert manifest is not None
        ctx.output(f"snapshot {manifest.stamp} of {manifest.database}: taken "
                   f"{manifest.started_at}, {format_bytes(manifest.plaintext_size)}, "
                   f"{len(manifest.tables)} tables")
        # named after the snapshot's key (its database and stamp as drdeck found them), not
        # after what the manifest says
        dest = Path(args.get("path") or ctx.run.workdir / f"{snapshot.database}-"
                    f"{snapshot.stamp}.dump")
        # a path the runbook chose is moved by the runbook, not by DRDECK_STATE_DIR
        move = ({"move": "give the fetch step's path a directory on a disk with room"}
                if args.get("path") else {})
        began = time.monotonic()
        await fetch_snapshot(manifest, target.store, dest, ctx, target.gpg_home, **move)
        record(ctx, "snapshot", manifest.stored_size, time.monotonic() - began,
               f"snapshot {snapshot.stamp}, fetched and decrypted")
        return ActionResult(output=str(dest))


class SnapshotVerify(Action):
    produces_output = True
    name = "snapshot.verify"
    summary = "checksum, gpg integrity, pg_restore --list; full: a test restore and row counts"
    args = {
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": SNAPSHOT,
        "full": Arg("bool", help="also restore into a scratch database and compare rows",
                    default=False),
        "target_dsn": Arg("text", help="server for the scratch database (default: the "
                          "cluster's)", default=""),
        "jobs": Arg("int", help="pg_restore jobs for a full verification", default=2),
    }

    def describe(self, args: dict[str, Any]) -> str:
        how = "full (test restore)" if args.get("full") else "list"
        return f"verify snapshot {args.get('snapshot') or 'latest'} ({how})"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.snapshots.verify import VerifyPlan, verify_snapshot

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        assert snapshot.manifest is not None
        full = bool(args.get("full"))
        plan = VerifyPlan("full" if full else "list", ctx.run.workdir, target.gpg_home,
                          (args.get("target_dsn") or target.server_dsn()) if full else None,
                          int(args.get("jobs", 2)), target.signing)
        record = await verify_snapshot(snapshot.manifest, target.store, plan, ctx,
                                       ctx.libpq_env())
        ctx.check(f"snapshot {snapshot.stamp} verifies ({plan.how})", record.ok, record.detail)
        return ActionResult(output=snapshot.stamp)


class SnapshotCompare(Action):
    produces_output = True
    name = "snapshot.compare"
    summary = "row counts of a restored database against the snapshot's manifest"
    args = {
        "dsn": Arg("text", required=True, help="the restored database"),
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": SNAPSHOT,
    }

    def describe(self, args: dict[str, Any]) -> str:
        return f"count rows in every table and compare with snapshot {args.get('snapshot')}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.snapshots.compare import compare_counts

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        manifest = snapshot.manifest
        assert manifest is not None
        differences = await compare_counts(args["dsn"], manifest)
        for difference in differences:
            ctx.check(f"rows of {difference.table}", False, difference.describe())
        if not differences:
            ctx.check("every table's row count matches the snapshot", True,
                      f"{len(manifest.tables)} tables, {manifest.total_rows:,} rows, "
                      f"{manifest.large_objects} large objects")
        return ActionResult(output=str(len(differences)))
