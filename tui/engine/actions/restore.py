"""Restore actions: the pre-flight that refuses unsafe targets, and pg_restore itself."""

from __future__ import annotations

from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.actions.snapshot import CLUSTER, DATABASE, SNAPSHOT, _target
from tui.engine.context import StepContext
from tui.postgres.dsn import describe
from tui.units import format_bytes

TARGET_DSN = Arg("text", help="server to restore into (default: the cluster's)", default="")
TARGET_DB = Arg("text", required=True, help="the new database's name")
REPLACE = Arg("bool", help="drop and recreate target_db if it exists", default=False)


class RestorePreflight(Action):
    produces_output = True
    name = "restore.preflight"
    summary = "check the snapshot and the target before anything is downloaded or written"
    args = {
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": SNAPSHOT,
        "target_dsn": TARGET_DSN,
        "target_db": TARGET_DB,
        "replace": REPLACE,
        "incident_time": Arg("text", help="when the incident began: the achieved RPO is this "
                             "minus the snapshot's time", default=""),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"check snapshot {args.get('snapshot') or 'latest'} and that "
                f"{args.get('target_db')} is a safe target")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.catalog.inventory import now_utc
        from tui.durations import format_duration
        from tui.postgres.restore import refuse_unsafe_target

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        manifest = snapshot.manifest
        assert manifest is not None
        age = format_duration(snapshot.age_s(now_utc()))
        ctx.output(f"snapshot {snapshot.stamp} of {manifest.database}: {age} old, "
                   f"{format_bytes(manifest.stored_size)} stored, "
                   f"{'encrypted' if manifest.encrypted else 'NOT ENCRYPTED'}")
        verified = snapshot.last_verification
        ctx.output("last verified: " + (f"{verified.at} ({verified.how}, "
                                         f"{'passed' if verified.ok else 'FAILED'})"
                                         if verified else "never"))
        server = args.get("target_dsn") or target.server_dsn()
        await refuse_unsafe_target(target.server_dsn(), target.database, server,
                                   args["target_db"], bool(args.get("replace")))
        ctx.output(f"restore target: {args['target_db']} on {describe(server)}")
        incident = str(args.get("incident_time") or "").strip()
        if incident:
            from tui.runbook.params import parse_timestamp

            moment = parse_timestamp(incident)
            lost = (moment - snapshot.taken_at).total_seconds()
            ctx.measure("achieved_rpo", max(0.0, lost), "s",
                        f"incident {moment.isoformat()} minus snapshot {snapshot.stamp}")
            if lost < 0:
                ctx.output("WARNING: this snapshot was taken after the incident began: "
                           "it may hold what the incident did")
        ctx.check("snapshot is complete and readable", True, snapshot.stamp)
        ctx.check("target is not the source database", True, args["target_db"])
        return ActionResult(output=snapshot.stamp)


class PgRestore(Action):
    produces_output = True
    name = "pg.restore"
    summary = "pg_restore -j N into a new database, with progress"
    args = {
        "dump": Arg("text", required=True, help="the dump file (from snapshot.fetch)"),
        "target_dsn": TARGET_DSN,
        "target_db": TARGET_DB,
        "cluster": CLUSTER,
        "database": DATABASE,
        "jobs": Arg("int", help="parallel jobs (default 2)", default=2),
        "replace": REPLACE,
        "no_owner": Arg("bool", help="skip ownership and privileges (roles missing on the "
                        "target)", default=False),
    }

    def describe(self, args: dict[str, Any]) -> str:
        replace = " (replacing it)" if args.get("replace") else ""
        return (f"pg_restore --jobs={args.get('jobs', 2)} into {args.get('target_db')}"
                f"{replace} from {args.get('dump')}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from pathlib import Path

        from tui.postgres.restore import (
            create_database,
            database_dsn,
            refuse_unsafe_target,
            restore_dump,
        )

        target = _target(ctx, args)
        server = args.get("target_dsn") or target.server_dsn()
        name = args["target_db"]
        replace = bool(args.get("replace"))
        # checked again here: the guardrail holds even for a runbook without a pre-flight
        await refuse_unsafe_target(target.server_dsn(), target.database, server, name, replace)
        await create_database(server, name, replace=replace)
        ctx.output(f"{'recreated' if replace else 'created'} database {name} on "
                   f"{describe(server)}")
        items = await restore_dump(Path(args["dump"]), database_dsn(server, name),
                                   jobs=int(args.get("jobs", 2)), reporter=ctx,
                                   env=ctx.child_env(), no_owner=bool(args.get("no_owner")))
        ctx.output(f"restored {items} archive items into {name}")
        # the new database's DSN, for later steps (its password, if any, is masked like
        # every DSN password the run knows)
        return ActionResult(output=database_dsn(server, name))
