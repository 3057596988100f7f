"""Restore actions: the pre-flight, the roles a new server lacks, pg_restore, publishing.

    restore.preflight   the snapshot is whole, the target is safe, what the target lacks
    restore.roles       create the roles the dump names and the target lacks (confirmed)
    pg.restore          into a staging database, with the database's own properties
    pg.publish          the staging database takes the target's name, once checked
"""

from __future__ import annotations

import time
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, StepFailed
from tui.engine.actions.snapshot import CLUSTER, DATABASE, SNAPSHOT, _target
from tui.engine.context import StepContext
from tui.engine.volumes import record
from tui.postgres.dsn import describe
from tui.units import format_bytes

TARGET_DSN = Arg("text", help="server to restore into (default: the cluster's)", default="")
TARGET_DB = Arg("text", required=True, help="the new database's name")
REPLACE = Arg("bool", help="drop and recreate target_db if it exists", default=False)
NO_OWNER = Arg("bool", help="restore without owners and privileges (roles missing on the "
               "target)", default=False)

_WAYS_ON = ("pass --yes (headless) or confirm in the console to create them from the "
            "snapshot's globals, or set no_owner = true (-p no_owner=true) to restore "
            "without owners and privileges")
_WAYS_ON_WITHOUT_GLOBALS = ("the snapshot's globals cannot create them: create them on the "
                            "target, or set no_owner = true (-p no_owner=true) to restore "
                            "without owners and privileges")
# the globals states (Snapshot.globals_state) that can create roles
CREATABLE = ("complete", "no password hashes")


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
        "no_owner": NO_OWNER,
        "incident_time": Arg("text", help="when the incident began: the achieved RPO is this "
                             "minus the snapshot's time", default=""),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"check snapshot {args.get('snapshot') or 'latest'} and that "
                f"{args.get('target_db')} is a safe target")

    def volumes(self, config: Any, args: dict[str, Any]) -> dict[str, int]:
        from tui.snapshots.targets import resolve

        target = resolve(config, args.get("cluster", ""), args.get("database", ""))
        snapshot = target.find_snapshot(args.get("snapshot") or "latest")
        assert snapshot.manifest is not None
        manifest = snapshot.manifest
        return {"snapshot": int(manifest.stored_size), "dump": int(manifest.plaintext_size)}

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.catalog.inventory import now_utc
        from tui.durations import format_duration
        from tui.postgres.restore import refuse_unsafe_target
        from tui.snapshots.dump_compression import require_pg_restore_for

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        manifest = snapshot.manifest
        assert manifest is not None
        # before anything is downloaded: pg_restore would refuse it after, naming no fix
        require_pg_restore_for(manifest, f"snapshot {snapshot.stamp}")
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
        await _report_what_the_target_lacks(ctx, snapshot, server, bool(args.get("no_owner")))
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


async def _report_what_the_target_lacks(ctx: StepContext, snapshot: Any, server: str,
                                        no_owner: bool) -> None:
    """The roles and tablespaces the dump names that the target does not have, by name."""
    from tui.postgres.roles import existing_roles, existing_tablespaces, missing

    manifest = snapshot.manifest
    globals_state = snapshot.globals_state
    if globals_state == "complete":
        ctx.output("globals: the snapshot carries its roles and the database's properties")
    elif globals_state == "no password hashes":
        ctx.output("globals: the snapshot carries its roles WITHOUT their password hashes "
                   "(the backup role could not read them)")
    elif globals_state == "none":
        ctx.output("globals: none (taken before drdeck stored them): roles cannot be created "
                   "from this snapshot")
    elif globals_state:
        ctx.output(f"globals: {globals_state}: roles cannot be created from this snapshot")
    lacking_spaces = missing(manifest.tablespaces, await existing_tablespaces(server))
    if lacking_spaces:
        ctx.output(f"WARNING: the target has no tablespace {', '.join(lacking_spaces)}: the "
                   "objects in it are restored into the default tablespace")
    if manifest.roles is None:
        ctx.output("roles: the snapshot does not list the roles its dump names (taken before "
                   "drdeck recorded them); they are checked against the dump after the fetch")
        return
    lacking = missing(manifest.roles, await existing_roles(server))
    present = len(manifest.roles) - len(lacking)
    if present and not no_owner:
        ctx.output(f"roles: {present} the dump names are on the target already and are kept "
                   "as they are there (their attributes and passwords are the target's)")
    if no_owner:
        ctx.output(f"roles: not needed (no_owner = true: objects are owned by the restoring "
                   f"user, without the snapshot's privileges); {len(lacking)} of "
                   f"{len(manifest.roles)} are not on the target")
        return
    if not lacking:
        ctx.output(f"roles: all {len(manifest.roles)} that the dump names are on the target")
        ctx.check("the roles the dump names are on the target", True,
                  f"{len(manifest.roles)} roles")
        return
    ctx.output(f"roles the dump names that the target lacks: {', '.join(lacking)}")
    creatable = globals_state in CREATABLE
    ctx.check("the roles the dump names are on the target, or in its globals", creatable,
              ", ".join(lacking) + ("" if creatable else
                                    ": the snapshot has no globals to create them from"))
    if creatable:
        ctx.output("the next step creates them from the snapshot's globals, once you confirm")
    else:
        raise StepFailed(f"the target lacks roles {', '.join(lacking)}, and snapshot "
                         f"{snapshot.stamp} carries no globals to create them from: create "
                         "them on the target, or set no_owner = true (-p no_owner=true) to "
                         "restore without owners and privileges")


class RestoreRoles(Action):
    produces_output = True
    name = "restore.roles"
    summary = "create the roles the dump names that the target lacks, from the snapshot's globals"
    args = {
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": SNAPSHOT,
        "target_dsn": TARGET_DSN,
        "powerful_roles": Arg("bool", help="without a person (--yes), also create roles with "
                              "powers over the server (superuser, replication, membership "
                              "in a superuser or in the roles that reach the server's files)",
                              default=False),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"create the roles snapshot {args.get('snapshot') or 'latest'} needs and the "
                "target lacks (you confirm the list first; existing roles are never changed)")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.postgres.globals_file import parse_globals
        from tui.postgres.roles import create_roles, missing, plan_roles, read_target
        from tui.snapshots.globals import fetch_globals

        target = _target(ctx, args)
        snapshot = await target.snapshot(args.get("snapshot", "latest"))
        manifest = snapshot.manifest
        assert manifest is not None
        server = args.get("target_dsn") or target.server_dsn()
        if manifest.roles is None:
            ctx.output("the snapshot does not list its roles: they are checked against the "
                       "dump after the fetch")
            return ActionResult(output="")
        on_target = await read_target(server)
        lacking = missing(manifest.roles, on_target.roles)
        if not lacking:
            ctx.output(f"nothing to create: all {len(manifest.roles)} roles the dump names are "
                       f"on {describe(server)}")
            return ActionResult(output="")
        if snapshot.globals_state not in CREATABLE:
            raise StepFailed(f"the target lacks roles {', '.join(lacking)} and the snapshot's "
                             f"globals cannot create them ({snapshot.globals_state}): create "
                             "them yourself, or set no_owner = true (-p no_owner=true)")
        text = await fetch_globals(manifest, target.store, ctx.run.workdir, ctx,
                                   target.gpg_home)
        definitions = parse_globals(text, target.store.location(manifest.globals.object))
        undefined = [name for name in lacking if name not in definitions.roles]
        if undefined:
            raise StepFailed(f"the snapshot's globals do not define {', '.join(undefined)}: "
                             "create them yourself, or set no_owner = true")
        plan = plan_roles(definitions, lacking, on_target)
        question = (f"Create on {describe(server)}, from the snapshot's globals:\n"
                    + "\n".join(plan.describe())
                    + "\nRoles that exist there are not changed.")
        answer = await ctx.confirm(question, f"create roles {', '.join(plan.names)}")
        if not answer.ok:
            who = "you did not confirm" if answer.by_person else "no one confirmed"
            raise StepFailed(f"refused before writing anything ({who}): the target lacks roles "
                             f"{', '.join(lacking)}; {_WAYS_ON}")
        if plan.powers and not answer.by_person and not args.get("powerful_roles"):
            raise StepFailed(
                "refused before writing anything: without a person, drdeck does not create "
                f"roles with powers over the server ({'; '.join(plan.powers)}). Confirm them "
                "in the console, or pass -p powerful_roles=true if the snapshot is yours")
        created = await create_roles(server, plan)
        how = "confirmed by the operator" if answer.by_person else answer.note
        ctx.output(f"created roles {', '.join(created.roles)} ({how}); they stay on the "
                   "target whatever becomes of the restore")
        for membership in created.memberships:
            ctx.output(f"granted membership: {membership}")
        for left_out in plan.left_out:
            ctx.output(f"membership not granted: {left_out}")
        for power in plan.powers:
            ctx.output(f"WARNING: {power}")
        for name in created.without_password:
            ctx.output(f"WARNING: {name} can log in but has no password (the snapshot holds no "
                       f"hash for it): set one with ALTER ROLE {name} PASSWORD ...")
        ctx.check("missing roles created from the snapshot's globals", True,
                  ", ".join(created.roles))
        return ActionResult(output=",".join(created.roles))


class PgRestore(Action):
    produces_output = True
    name = "pg.restore"
    summary = "pg_restore -j N into a staging database, with the database's own properties"
    args = {
        "dump": Arg("text", required=True, help="the dump file (from snapshot.fetch)"),
        "target_dsn": TARGET_DSN,
        "target_db": TARGET_DB,
        "cluster": CLUSTER,
        "database": DATABASE,
        "snapshot": Arg("text", help="the snapshot the dump is of (its globals)",
                        default=""),
        "jobs": Arg("int", help="parallel jobs (default 2)", default=2),
        "replace": REPLACE,
        "no_owner": NO_OWNER,
        "keep_staging": Arg("bool", help="keep the staging database if the run fails, to "
                            "inspect it", default=False),
    }

    def describe(self, args: dict[str, Any]) -> str:
        replace = ", to replace it" if args.get("replace") else ""
        return (f"pg_restore --jobs={args.get('jobs', 2)} into a staging database for "
                f"{args.get('target_db')}{replace} from {args.get('dump')}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from pathlib import Path

        from tui.postgres.restore import (
            create_database,
            database_dsn,
            refuse_unsafe_target,
            restore_dump,
        )
        from tui.postgres.staging import create_statement, staging_name

        target = _target(ctx, args)
        server = args.get("target_dsn") or target.server_dsn()
        name = args["target_db"]
        replace, no_owner = bool(args.get("replace")), bool(args.get("no_owner"))
        dump = Path(args["dump"])
        # checked again here: the guardrail holds even for a runbook without a pre-flight
        await refuse_unsafe_target(target.server_dsn(), target.database, server, name, replace)
        definitions = await _globals_of(ctx, target, args.get("snapshot") or "")
        lacking_spaces = await _refuse_what_the_dump_needs(ctx, dump, server, no_owner,
                                                           has_globals=definitions is not None)
        staging = staging_name(ctx.run.run_id)
        # a retry starts afresh: the staging name is this run's own
        await create_database(server, staging, replace=True, statement=create_statement(
            definitions.create_database if definitions else "", staging,
            missing_tablespaces=frozenset(lacking_spaces)))
        ctx.on_run_failed(staging, *_undo_staging(server, staging,
                                                  bool(args.get("keep_staging"))))
        ctx.output(f"created the staging database {staging} on {describe(server)}; it takes "
                   f"the name {name} once its checks pass")
        began = time.monotonic()
        items = await restore_dump(dump, database_dsn(server, staging),
                                   jobs=int(args.get("jobs", 2)), reporter=ctx,
                                   env=ctx.libpq_env(), no_owner=no_owner,
                                   no_tablespaces=bool(lacking_spaces))
        ctx.output(f"restored {items} archive items into {staging}")
        record(ctx, "dump", dump.stat().st_size, time.monotonic() - began,
               f"{items} archive items restored by pg_restore")
        if definitions is not None:
            await _apply_properties(ctx, server, staging, definitions, no_owner)
        # the staging database's DSN, for the checks and the publish step (its password,
        # if any, is masked like every DSN password the run knows)
        return ActionResult(output=database_dsn(server, staging))


async def _refuse_what_the_dump_needs(ctx: StepContext, dump: Any, server: str,
                                      no_owner: bool, *, has_globals: bool) -> list[str]:
    """Read the dump's own SQL for the roles and tablespaces it names; refuse missing roles.

    Returns the tablespaces it names that the target lacks (restored without them).
    """
    import asyncio

    from tui.postgres.dumpnames import names_in, worth_reading
    from tui.postgres.restore import RestoreFailed, schema_sql
    from tui.postgres.roles import existing_roles, existing_tablespaces, missing
    from tui.postgres.sqltext import SqlSyntaxError, statements

    text = await schema_sql(dump, ctx.libpq_env())
    try:
        # a large schema takes seconds to read: not on the loop that answers the operator
        named = await asyncio.to_thread(
            lambda: names_in(statements(text, keep=worth_reading)))
    except SqlSyntaxError as exc:
        raise RestoreFailed(f"cannot read the dump's schema: {exc}") from None
    lacking_spaces = missing(named.tablespaces, await existing_tablespaces(server))
    if lacking_spaces:
        ctx.output(f"restoring without tablespaces: the target has no "
                   f"{', '.join(lacking_spaces)}")
    if not no_owner:
        lacking = missing(named.roles, await existing_roles(server))
        if lacking:
            ways = _WAYS_ON if has_globals else _WAYS_ON_WITHOUT_GLOBALS
            raise RestoreFailed(f"the dump names roles the target lacks: {', '.join(lacking)}; "
                                f"nothing was written; {ways}")
        ctx.output(f"every role the dump names is on the target ({len(named.roles)})")
    return lacking_spaces


async def _globals_of(ctx: StepContext, target: Any, stamp: str) -> Any:
    """The snapshot's parsed globals, or None when it has none (or no snapshot is named)."""
    from tui.postgres.globals_file import GlobalsInvalid, parse_globals
    from tui.snapshots.globals import fetch_globals

    if not stamp:
        return None
    snapshot = await target.snapshot(stamp)
    manifest = snapshot.manifest
    if manifest is None or manifest.globals is None or \
            snapshot.globals_state in ("missing", "damaged"):
        ctx.output(f"the snapshot's globals: {snapshot.globals_state}: the database is created "
                   "with the server's defaults (encoding, locale), without its own settings "
                   "and privileges")
        return None
    text = await fetch_globals(manifest, target.store, ctx.run.workdir, ctx, target.gpg_home)
    try:
        return parse_globals(text, target.store.location(manifest.globals.object))
    except GlobalsInvalid as exc:
        # the data can still be restored: nothing from the file is applied
        ctx.output(f"WARNING: the snapshot's globals are not used: {exc}", "stderr")
        return None


async def _apply_properties(ctx: StepContext, server: str, staging: str, definitions: Any,
                            no_owner: bool) -> None:
    import psycopg

    from tui.postgres.restore import RestoreFailed
    from tui.postgres.roles import plain_strings, read_target
    from tui.postgres.staging import property_statements

    on_target = await read_target(server)
    run, left_out = property_statements(definitions.properties, staging, no_owner=no_owner,
                                        roles=set(on_target.roles),
                                        superusers=set(on_target.superusers))
    try:
        async with await psycopg.AsyncConnection.connect(server, autocommit=True,
                                                         connect_timeout=10) as conn:
            await plain_strings(conn)
            for statement in run:
                await conn.execute(statement.encode())
    except psycopg.Error as exc:
        raise RestoreFailed(f"giving {staging} the database's properties failed: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    ctx.output(f"the database's own properties applied ({len(run)}: owner, settings, "
               "privileges, comment)")
    for line in left_out:
        ctx.output(f"not applied: {line}")


def _undo_staging(server: str, staging: str, keep: bool) -> tuple[Any, str]:
    from tui.postgres.restore import drop_database

    kept = (f"the staging database {staging} is kept on {describe(server)}: the run did not "
            f"publish it. Inspect it, or drop it: DROP DATABASE {staging};")

    async def undo() -> str:
        if keep:
            return f"{kept} (keep_staging = true)"
        await drop_database(server, staging)
        return (f"dropped the staging database {staging}: the run did not publish it "
                "(keep_staging = true keeps it for inspection)")

    return undo, kept


class PgPublish(Action):
    produces_output = True
    name = "pg.publish"
    summary = "give the checked staging database the target's name (with replace: swap it in)"
    args = {
        "staging_dsn": Arg("text", required=True, help="the staging database (from "
                           "pg.restore)"),
        "compared": Arg("text", required=True, help="the output of snapshot.compare on it: "
                        "the number of tables whose rows differ (0, or nothing is published)"),
        "target_dsn": TARGET_DSN,
        "target_db": TARGET_DB,
        "cluster": CLUSTER,
        "database": DATABASE,
        "replace": REPLACE,
    }

    def describe(self, args: dict[str, Any]) -> str:
        how = "swap it in for" if args.get("replace") else "rename it to"
        return f"publish the restored database: {how} {args.get('target_db')}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from psycopg.conninfo import conninfo_to_dict

        from tui.postgres.restore import database_dsn, refuse_unsafe_target
        from tui.postgres.staging import publish

        target = _target(ctx, args)
        server = args.get("target_dsn") or target.server_dsn()
        name, replace = args["target_db"], bool(args.get("replace"))
        staging = str(conninfo_to_dict(args["staging_dsn"]).get("dbname") or "")
        if str(args["compared"]).strip() != "0":
            # a skipped or failed comparison has no output, or a count: never published
            raise StepFailed(f"{staging} has not passed its row-count comparison "
                             f"({args['compared']!r} tables differ): it is not published")
        # the source database is never the target, whatever happened since the pre-flight
        await refuse_unsafe_target(target.server_dsn(), target.database, server, name,
                                   replace=True)
        retired = await publish(server, staging, name, replace=replace, run_id=ctx.run.run_id)
        ctx.settle(staging)  # it is the target now: a later failure must not drop it
        ctx.output(f"published: {staging} is now {name} on {describe(server)}"
                   + (" (the old one was swapped out and dropped)" if replace and not retired
                      else ""))
        if retired:
            ctx.output(f"WARNING: the old {name} could not be dropped: it is kept as {retired}, "
                       f"closed to connections (ALTER DATABASE {retired} WITH ALLOW_CONNECTIONS "
                       f"true opens it; DROP DATABASE {retired} removes it)")
        ctx.check(f"{name} is the restored, checked database", True, describe(server))
        return ActionResult(output=database_dsn(server, name))
