"""`retention.prune`: grandfather-father-son over a cluster's snapshots.

Without `delete = true` it only lists what it keeps (and why) and what it would
delete; a runbook puts the deleting step behind a confirmation. Incomplete
snapshots (an upload may be under way) are never touched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.actions.snapshot import CLUSTER
from tui.engine.context import StepContext


class RetentionPrune(Action):
    produces_output = True
    name = "retention.prune"
    summary = "keep daily/weekly/monthly snapshots, delete the rest"
    args = {
        "cluster": CLUSTER,
        "database": Arg("text", help="one database (default: all of the cluster's)",
                        default=""),
        "delete": Arg("bool", help="really delete (default: only list)", default=False),
    }

    def describe(self, args: dict[str, Any]) -> str:
        verb = "delete" if args.get("delete") else "list (delete nothing)"
        return f"retention of cluster {args.get('cluster') or '(default)'}: {verb}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.catalog.inventory import now_utc, read_cluster
        from tui.catalog.layout import manifest_key
        from tui.catalog.retention import Policy, plan, summarise
        from tui.catalog.signatures import signature_key, signing_for
        from tui.storage import open_store

        config = ctx.config
        cluster = config.cluster(args.get("cluster") or None)
        store = open_store(config.repository_for(cluster))
        # signatures count here too: forged "newer" snapshots must not push real ones out
        inventory = await asyncio.to_thread(read_cluster, store, cluster.name, cluster.rpo,
                                            signing_for(config, cluster))
        if inventory.error:
            raise OSError(inventory.error)
        retention = cluster.retention
        policy = Policy(retention.daily, retention.weekly, retention.monthly,
                        retention.monthly_storage_class)
        databases = [args["database"]] if args.get("database") else sorted(
            {s.database for s in inventory.snapshots})
        deleting = bool(args.get("delete"))
        deleted = moved = 0
        for database in databases:
            decisions = plan(inventory.complete(database), policy,
                             taken_at=lambda s: s.taken_at,
                             storage_class=lambda s: getattr(s.dump, "storage_class", None),
                             now=now_utc())
            ctx.output(f"── {cluster.name}/{database}")
            for line in summarise(decisions).splitlines():
                ctx.output(line)
            for decision in decisions:
                snap = decision.snapshot
                if decision.keep:
                    why = ", ".join(decision.reasons)
                    move = f"  → {decision.move_to}" if decision.move_to else ""
                    ctx.output(f"keep    {snap.stamp}  {why}{move}")
                    if deleting and decision.move_to:
                        for stored in (snap.dump, snap.globals_object):
                            if stored is not None:
                                await asyncio.to_thread(store.set_storage_class, stored.key,
                                                        decision.move_to)
                        moved += 1
                    continue
                ctx.output(f"{'delete ' if deleting else 'would delete'}  {snap.stamp}")
                if deleting:
                    # the manifest goes first: a snapshot half-deleted by a crash then
                    # shows as incomplete, never as a good snapshot missing its dump
                    manifest = manifest_key(cluster.name, database, snap.stamp)
                    keys = [manifest, signature_key(manifest), snap.dump.key]
                    if snap.globals_object is not None:
                        keys.append(snap.globals_object.key)
                    for key in keys:
                        await asyncio.to_thread(store.delete, key)
                    await asyncio.to_thread(_delete_verifications, store, cluster.name,
                                            database, snap.stamp)
                    deleted += 1
        incomplete = [s for s in inventory.snapshots if not s.complete]
        for snap in incomplete:
            ctx.output(f"left alone (incomplete): {snap.database}/{snap.stamp}: {snap.problem}")
        if deleting:
            ctx.output(f"deleted {deleted} snapshots, moved {moved} to colder storage")
        return ActionResult(output=str(deleted))


def _delete_verifications(store: Any, cluster: str, database: str, stamp: str) -> None:
    from tui.catalog.layout import snapshots_prefix

    prefix = f"{snapshots_prefix(cluster, database)}{stamp}.verified/"
    for obj in list(store.list(prefix)):
        store.delete(obj.key)


class BaseRetentionPrune(Action):
    produces_output = True
    name = "retention.prune_base"
    summary = "keep the newest full base backups (and their chains), delete the rest and " \
              "the WAL only they needed"
    args = {
        "cluster": CLUSTER,
        "delete": Arg("bool", help="really delete (default: only list)", default=False),
    }

    def describe(self, args: dict[str, Any]) -> str:
        verb = "delete" if args.get("delete") else "list (delete nothing)"
        return f"base backup retention of cluster {args.get('cluster') or '(default)'}: {verb}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.catalog.inventory import now_utc
        from tui.catalog.signatures import signing_for
        from tui.durations import format_duration
        from tui.pitr.basebackup import read_base_backups
        from tui.pitr.retention import describe, plan_base, summary, wal_to_delete
        from tui.storage import open_store
        from tui.wal.archive import archived_name, wal_prefix

        config = ctx.config
        cluster = config.cluster(args.get("cluster") or None)
        store = open_store(config.repository_for(cluster))
        # signatures count here too: forged "newer" backups must not push real ones out
        backups = await asyncio.to_thread(read_base_backups, store, cluster.name,
                                          signing_for(config, cluster),
                                          bool(cluster.gpg_recipients))
        policy = cluster.base_retention
        plan = plan_base(backups, policy.full, policy.window, now_utc())
        stored = await asyncio.to_thread(lambda: list(store.list(wal_prefix(cluster.name))))
        by_name: dict[str, list[Any]] = {}
        for obj in stored:
            by_name.setdefault(archived_name(obj.key[len(wal_prefix(cluster.name)):]),
                               []).append(obj)
        wal = wal_to_delete(sorted(by_name), plan.wal_needed_from)
        wal_objects = [obj for name in wal for obj in by_name[name]]
        ctx.output(f"── {cluster.name}: base backups (full = {policy.full}"
                   + (f", window = {format_duration(policy.window)}" if policy.window else "")
                   + ")")
        for line in summary(plan, wal, sum(o.size for o in wal_objects)).splitlines():
            ctx.output(line)
        deleting = bool(args.get("delete"))
        for decision in plan.decisions:
            ctx.output(describe(decision, deleting))
        if not deleting:
            return ActionResult(output=str(len(plan.deleted)))
        # newest first: an incremental goes before its parent, so a crash in between
        # leaves a chain that says which link is missing, never a hidden hole
        for decision in plan.deleted:
            await asyncio.to_thread(_delete_base_backup, store, cluster.name, decision.stamp)
        # the WAL last: had a backup that needs it survived a crash, it is still there
        await asyncio.to_thread(_delete_all, store, [o.key for o in wal_objects])
        ctx.output(f"deleted {len(plan.deleted)} base backups and {len(wal)} WAL files")
        return ActionResult(output=str(len(plan.deleted)))


def _delete_base_backup(store: Any, cluster: str, stamp: str) -> None:
    from tui.pitr.basebackup import base_manifest_key, base_prefix

    # the manifest first: a backup half-deleted by a crash then shows as incomplete
    manifest = base_manifest_key(cluster, stamp)
    keys = [obj.key for obj in store.list(f"{base_prefix(cluster)}{stamp}/")]
    _delete_all(store, [k for k in keys if k.startswith(manifest)])
    _delete_all(store, [k for k in keys if not k.startswith(manifest)])


def _delete_all(store: Any, keys: list[str]) -> None:
    """One request per key, eight at a time: a month of WAL is tens of thousands."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(store.delete, keys))
