"""PITR actions: take a base backup; check a recovery target; restore to it, live.

The work is in tui.pitr: these read the arguments, the cluster's configuration
and the repository, and report what they see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.catalog.signatures import signing_for
from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.actions.snapshot import CLUSTER
from tui.engine.context import StepContext
from tui.engine.volumes import record
from tui.units import format_bytes

TARGET_ARGS = {
    "cluster": CLUSTER,
    "target": Arg("text", help="a time with a time zone, an LSN, an xid, a restore point, "
                  "immediate or latest", default="latest"),
    "target_kind": Arg("text", help="time | lsn | xid | name | immediate | latest (default: "
                       "inferred)", default=""),
    "inclusive": Arg("bool", help="stop just after the target (default) or just before",
                     default=True),
    "timeline": Arg("text", help="recovery_target_timeline (default latest)", default="latest"),
}

# where a restore puts the backup's tablespaces (tui.pitr.tablespaces)
TABLESPACE_MAP = Arg("text", help="NAME=DIRECTORY, ...: where to restore each tablespace (its "
                     "name, oid or location on the source); default beside the data "
                     "directory, in <data_dir>.tablespaces/<oid>", default="")


def _resolve(ctx: StepContext, args: dict[str, Any]):
    from tui.snapshots.targets import store_for

    cluster = ctx.config.cluster(args.get("cluster") or None)
    store = store_for(ctx.config.repository_for(cluster))
    gpg_home = str(ctx.config.gpg_home) if ctx.config.gpg_home else None
    return cluster, store, gpg_home


def _archive(ctx: StepContext, cluster: Any) -> Any:
    """drdeck's own archive of the cluster (tui.sources.archive): raises InvalidInput when
    the cluster names no repository, or one that is not configured."""
    from tui.sources.archive import ArchiveSource

    source = ArchiveSource.configured(ctx.config, cluster)
    if source is None:
        ctx.config.repository_for(cluster)  # raises, saying what to add where
    return source


def target_of(args: dict[str, Any]) -> Any:
    """The recovery target a step's arguments name (tui.pitr.target.Target)."""
    from tui.pitr.target import parse_target

    return parse_target(str(args.get("target") or "latest"), args.get("target_kind", ""),
                        bool(args.get("inclusive", True)))


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


class BaseBackupCreate(Action):
    name = "basebackup.create"
    summary = ("BASE_BACKUP (zstd on the server, every tablespace) -> gpg -> repository, "
               "manifest last")
    produces_output = True
    args = {
        "cluster": CLUSTER,
        "wait_for_wal": Arg("duration", help="how long to wait for the WAL that makes the "
                            "backup consistent to be archived (default 2m)", default=120.0),
        "incremental": Arg("bool", help="only the blocks changed since the newest backup "
                           "(PostgreSQL 17 and later, summarize_wal = on)", default=False),
        "max_chain": Arg("int", help="incremental backups in a row before a full one is "
                         "taken instead (default 6)", default=6),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"BASE_BACKUP over the replication protocol, one tar per tablespace "
                f"| gpg --encrypt | upload  "
                f"[cluster {args.get('cluster') or '(default)'}]")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.pitr.basebackup import (
            BaseBackupFailed,
            BasePlan,
            check_archiving,
            create_base_backup,
        )
        from tui.pitr.window import read_archive

        cluster, store, gpg_home = _resolve(ctx, args)
        fingerprints: tuple[str, ...] = ()
        if cluster.gpg_recipients:
            from tui.crypto import resolve_recipients

            found = await asyncio.to_thread(resolve_recipients, list(cluster.gpg_recipients),
                                            gpg_home)
            fingerprints = tuple(r.fingerprint for r in found)
        else:
            ctx.output("WARNING: this base backup is NOT encrypted (no gpg_recipients)")
        if int(args.get("max_chain", 6)) < 1:
            raise BaseBackupFailed(f"max_chain must be 1 or more, not {args['max_chain']}: "
                                   "it counts the incremental backups a chain may hold")
        repository = ctx.config.repository_for(cluster)
        plan = BasePlan(cluster.name, cluster.resolve_dsn(), fingerprints, gpg_home,
                        signing_for(ctx.config, cluster), repository.compression,
                        repository.compression_level,
                        incremental=bool(args.get("incremental", False)),
                        max_chain=int(args.get("max_chain", 6)),
                        encrypted_only=bool(cluster.gpg_recipients))
        # before anything is written: a backup the archive cannot carry forward is no
        # backup, and a failing archive_command is filling the server's disk right now
        ctx.check("WAL archiving works", True, await check_archiving(plan.dsn, ctx))
        manifest = await create_base_backup(plan, store, ctx)
        await _record_catalog_map(ctx, plan.dsn, store, cluster.name,
                                  repository.compression_level)
        # the window starts at this backup only once the archive continues from it
        wanted = manifest.last_segment
        deadline = asyncio.get_running_loop().time() + float(args.get("wait_for_wal", 120))
        while True:
            archive = await asyncio.to_thread(read_archive, store, cluster.name,
                                              manifest.wal_segment_size, gpg_home)
            if wanted.number in archive.segments.get(wanted.timeline, set()):
                break
            if asyncio.get_running_loop().time() > deadline:
                ctx.check("the WAL that makes the backup consistent is archived", False,
                          f"{wanted.name} is not in the archive: "
                          f"{await _why_not_archived(plan.dsn)}")
                return ActionResult(output=manifest.stamp)
            await asyncio.sleep(1)
        ctx.check("the WAL that makes the backup consistent is archived", True, wanted.name)
        return ActionResult(output=manifest.stamp)


class CatalogMapTake(Action):
    name = "catalog.map"
    summary = "record the live server's relations, what names WAL events from now on"
    produces_output = True
    args = {"cluster": CLUSTER}

    def describe(self, args: dict[str, Any]) -> str:
        return f"catalog map of cluster {args.get('cluster') or '(default)'} -> repository"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.catalog.relation_map import store_map, take_map

        cluster, store, _ = _resolve(ctx, args)
        catalog = await take_map(cluster.resolve_dsn())  # MapFailed says why
        key = await asyncio.to_thread(store_map, store, cluster.name, catalog,
                                      ctx.config.repository_for(cluster).compression_level)
        ctx.output(f"catalog map of {len(catalog.relations)} relations in "
                   f"{len(catalog.databases)} databases: {store.location(key)}")
        return ActionResult(output=key)


async def _record_catalog_map(ctx: StepContext, dsn: str, store: Any, cluster: str,
                              level: int) -> None:
    """The relations as they are now, beside the backup: what names the WAL after it in
    `drdeck wal events`. Not having one costs names, never the backup: a warning."""
    from tui.catalog.relation_map import MapFailed, store_map, take_map
    from tui.storage import StorageError

    try:
        catalog = await take_map(dsn)
        key = await asyncio.to_thread(store_map, store, cluster, catalog, level)
    except (MapFailed, StorageError) as exc:
        ctx.output(f"WARNING: no catalog map was recorded ({exc}): WAL events after this "
                   "backup are named by an older map, or not at all")
        return
    ctx.output(f"catalog map of {len(catalog.relations)} relations recorded: "
               f"{store.location(key)}")


async def _why_not_archived(dsn: str) -> str:
    """The archiver's own account once the wait is over (it may have started failing
    during the backup: a repository it can no longer write, say)."""
    from tui.postgres.archiver import ArchiverUnknown, check_archiver

    try:
        archiver = await check_archiver(dsn)
    except ArchiverUnknown as exc:
        return f"check archive_command ({exc})"
    if archiver.failing:
        return await asyncio.to_thread(archiver.explain)
    return f"check archive_command ({archiver.stats.describe()})"


class PitrPreflight(Action):
    name = "pitr.preflight"
    summary = "check the target against the recoverable window before anything is written"
    produces_output = True
    window_of = "pitr"
    args = {
        **TARGET_ARGS,
        "data_dir": Arg("text", required=True, help="the new data directory"),
        "port": Arg("int", required=True, help="the restored server's port"),
        "tablespace_map": TABLESPACE_MAP,
    }

    def describe(self, args: dict[str, Any]) -> str:
        return f"check {args.get('target') or 'latest'} against the recoverable window"

    def volumes(self, config: Any, args: dict[str, Any]) -> dict[str, int]:
        from tui.sources.archive import ArchiveSource

        cluster = config.cluster(args.get("cluster") or None)
        source = ArchiveSource.configured(config, cluster)
        if source is None:
            config.repository_for(cluster)  # raises, saying what to add where
        return source.restore_volumes(target_of(args))

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        plan, _, _ = await preflight(ctx, args)
        return ActionResult(output=plan.base.stamp)


async def preflight(ctx: StepContext, args: dict[str, Any], report: bool = True,
                    source: Any = None) -> tuple[Any, dict[int, Path], Any]:
    """Every check before anything is written; `report` names each as a check. `source`
    is the cluster's archive when the caller has it open already. The plan
    (tui.pitr.target.Plan), where each tablespace of its base goes (by oid), and the
    recovery picture it was planned against."""
    from tui.pitr.restore import check_data_dir, check_port, check_unpackable
    from tui.pitr.room import check_room, needed
    from tui.pitr.tablespaces import check_tablespaces
    from tui.pitr.target import TargetRefused, plan_recovery
    from tui.pitr.window import describe_missing_history
    from tui.postgres.binaries import major_of_version, require_server_programs

    cluster = ctx.config.cluster(args.get("cluster") or None)
    target = target_of(args)
    source = source or _archive(ctx, cluster)
    seen = await asyncio.to_thread(source.recovery_picture)
    def check(name: str, detail: str) -> None:
        if report:
            ctx.check(name, True, detail)

    for gap in seen.gaps:
        ctx.output(f"WARNING: {gap.describe()}")
    for problem in seen.problems:
        ctx.output(f"WARNING: {problem}")
    ctx.output(f"recoverable: {seen.describe_windows()}")
    missing = [describe_missing_history(t, cluster.name) for t in seen.missing_histories]
    try:
        plan = plan_recovery(target, seen)
    except TargetRefused as exc:
        if missing:  # the reason it cannot be reached, and what to do about it
            raise TargetRefused(f"{exc}; {'; '.join(missing)}") from None
        raise
    if missing and target.kind == "latest" and str(args.get("timeline") or "latest") == \
            "latest":
        # PostgreSQL would stop at the end of the last timeline it can follow, and call
        # that the latest point: everything after the promotion would be silently missing
        raise TargetRefused(f"the latest point cannot be found: {'; '.join(missing)}. Or "
                            "give a target before the promotion")
    base = plan.base
    check("target inside the recoverable window",
          f"{target.describe()} in {when(plan.window.start)} .. {when(plan.window.end)}")
    check("WAL continuous from the base backup",
          f"{base.first_segment.name} .. {plan.window.last_segment}")
    ctx.output(f"base backup {base.stamp}: ended {when(base.stopped)}, "
               f"{format_bytes(base.total_stored_size)}"
               f"{'' if base.compression == 'none' else ' ' + base.compression}, "
               f"timeline {base.timeline}")
    check_unpackable(base)
    major = major_of_version(base.server_version)
    if major is not None:
        check("PostgreSQL programs of the backup's major",
              require_server_programs(major, f"base backup {base.stamp}"))
    data_dir = Path(str(args["data_dir"])).expanduser().absolute()
    chain = [base]
    if base.parent is not None:
        from tui.pitr.basebackup import base_chain
        from tui.pitr.incremental import check_combinable

        chain = base_chain(seen.base_backups, base)  # from what the picture read
        check("incremental chain complete, pg_combinebackup found",
              check_combinable(chain, data_dir))
    check_data_dir(data_dir)
    check("data directory empty", str(data_dir))
    places = check_tablespaces(check, base.tablespaces, data_dir,
                               str(args.get("tablespace_map") or ""))
    wal_ahead = int(args.get("prefetch", 16)) * base.wal_segment_size
    check("room on disk", check_room(needed(chain, data_dir, places, wal_ahead)))
    check_port(int(args["port"]))
    check("port free", str(args["port"]))
    return plan, places, seen


class PitrRestore(Action):
    name = "pitr.restore"
    summary = "base backup -> new data directory -> recovery to the target, followed live"
    produces_output = True
    window_of = "pitr"
    default_timeout = None
    args = {
        **TARGET_ARGS,
        "data_dir": Arg("text", required=True, help="the new data directory"),
        "port": Arg("int", required=True, help="the restored server's port"),
        "prefetch": Arg("int", help="WAL segments to fetch ahead (default 16)", default=16),
        "tablespace_map": TABLESPACE_MAP,
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"restore into {args.get('data_dir')} on port {args.get('port')}, "
                f"recover to {args.get('target') or 'latest'}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.pitr.restore import (
            SPOOL,
            Placement,
            configure,
            new_socket_dir,
            prepare_data_dir,
        )
        from tui.postgres.cluster import server_account
        from tui.postgres.dsn import with_database
        from tui.wal.feeder import WalFeeder, restore_command

        cluster_config = ctx.config.cluster(args.get("cluster") or None)
        source = _archive(ctx, cluster_config)
        gpg_home = source.gpg_home
        # checked again, silently: time has passed since the pre-flight step
        plan, places, seen = await preflight(ctx, args, report=False, source=source)
        base, target = plan.base, plan.target
        data_dir = Path(str(args["data_dir"])).expanduser().absolute()
        prepare_data_dir(data_dir)
        ctx.output(f"unpacking base backup {base.stamp} into {data_dir}")
        began = time.monotonic()
        await source.unpack_base_backup(base, data_dir, ctx, places)
        record(ctx, "base", source.base_bytes(base, seen) or 0, time.monotonic() - began,
               f"base backup {base.stamp}")
        placement = Placement(data_dir, int(args["port"]), new_socket_dir(data_dir))
        server = placement.cluster
        account = server_account()
        feeder = WalFeeder(source.store, cluster_config.name, data_dir / SPOOL, gpg_home=gpg_home,
                           encrypted_first=bool(cluster_config.gpg_recipients),
                           depth=int(args.get("prefetch", 16)),
                           owner=(account.uid, account.gid) if account else None, reporter=ctx,
                           fetch=source.wal_fetcher())
        feeder.prepare()
        configure(server, target, command=restore_command(feeder.spool),
                  timeline=str(args.get("timeline") or ""))
        ctx.output(f"starting PostgreSQL on port {placement.port} to recover to "
                   f"{target.describe()} (WAL fed by drdeck through {feeder.spool})")
        dsn = with_database(server.dsn(user=_user(cluster_config.resolve_dsn())),
                            _database(cluster_config.resolve_dsn()))
        await replay(ctx, server, plan, feeder, dsn,
                     lambda: _hand_over(ctx, server, cluster_config, feeder.spool, gpg_home))
        ctx.output(f"recovered and promoted: connect with {dsn}")
        return ActionResult(output=dsn)


async def replay(ctx: StepContext, server: Any, plan: Any, feeder: Any, dsn: str,
                 hand_over: Callable[[], str]) -> None:
    """Start the restored server, `feeder` (tui.wal.feeder, prepared) serving its WAL;
    follow the recovery to the plan's target live, and check where it ended.

    On any failure the server is stopped and the spool removed, and `hand_over()`
    leaves the data directory ready to finish by hand; what it says ends the message.
    """
    from tui.errors import DrdeckError
    from tui.pitr.follow import Goal, RecoveryFailed, follow
    from tui.wal.names import parse_lsn

    base, target = plan.base, plan.target
    feeding = asyncio.ensure_future(feeder.run())
    try:
        began = time.monotonic()
        await asyncio.to_thread(server.start, wait=False)
        goal = Goal(parse_lsn(base.start_lsn), plan.window.end_lsn, base.stopped,
                    target.moment)
        state = await follow(dsn, server.log_file, goal, ctx, server.is_running)
        measure_replay(ctx, goal, state, time.monotonic() - began)
        if feeding.done() and feeding.exception() is not None:
            raise feeding.exception()
    except BaseException as exc:
        await asyncio.to_thread(server.stop, "fast")  # never leave a half-recovered server
        # a restore_command still waiting gives up once the spool is gone, and with it the
        # startup process of a killed server, which would hold up a start by hand
        feeding.cancel()
        _clear(feeder.spool)
        finish = hand_over()
        if isinstance(exc, DrdeckError):
            # permanent: the data directory is no longer empty, so a retry is refused
            raise RecoveryFailed(f"{exc}. {finish}") from None
        ctx.output(finish)
        raise
    finally:
        feeding.cancel()
        await feeder.close()
        _clear(feeder.spool)
    ctx.output(f"{state.restored_segments} WAL files restored from the archive")
    verify_recovery(ctx, base, target, state)


def measure_replay(ctx: StepContext, goal: Any, state: Any, seconds: float) -> None:
    """The WAL a finished recovery replayed (tui.pitr.follow's Goal and RecoveryState), and
    how long the server took from its start to its promotion."""
    if state.replay_lsn is not None:
        record(ctx, "wal", state.replay_lsn - goal.start_lsn, seconds,
               "WAL replayed from the base backup's start")


def _hand_over(ctx: StepContext, server: Any, cluster: Any, spool: Path,
               gpg_home: str | None) -> str:
    """Leave the data directory ready to finish by hand (tui.pitr.restore.hand_over) with a
    restore_command through this drdeck and configuration: `wal fetch` with its own
    prefetcher, through the same spool. Says what the server account will need."""
    from tui.commands.init import drdeck_executable
    from tui.pitr.restore import hand_over
    from tui.postgres.cluster import unreadable_for_server
    from tui.wal import restore_line

    try:
        drdeck = drdeck_executable()
        config = ctx.config.path.absolute() if ctx.config.path else None
        # the restore_command now runs drdeck as the server account, not drdeck's run
        needs = [Path(drdeck[0]), *([config] if config else []),
                 *([Path(gpg_home)] if gpg_home and cluster.gpg_recipients else [])]
        notes = []
        blocked = unreadable_for_server(needs)
        if blocked:
            notes.append("First, the server's OS user must be able to run drdeck with its "
                         "configuration and keys: " + "; ".join(blocked))
        if ctx.config.repository_for(cluster).type == "s3":
            notes.append("It needs the S3 credentials too (AWS_* in the environment pg_ctl "
                         "starts with, or a profile in its home)")
        return hand_over(server, restore_line.spooled(drdeck, config, cluster.name, spool),
                         notes)
    except Exception as exc:  # the original failure is what the operator must hear about
        return (f"The data directory {server.data_dir} is left as it is (its "
                f"restore_command could not be pointed at the archive: {exc})")


def _clear(spool: Path) -> None:
    import shutil

    shutil.rmtree(spool, ignore_errors=True)


def _user(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(dsn).get("user") or "postgres")


def _database(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return str(params.get("dbname") or params.get("user") or "postgres")


def verify_recovery(ctx: StepContext, base: Any, target: Any, state: Any) -> None:
    ctx.check("out of recovery on a new timeline", state.new_timeline is not None
              and state.new_timeline > base.timeline,
              f"timeline {state.new_timeline} (the backup was on {base.timeline})")
    last = state.stop_time if state.stopped and "after" in state.stopped else None
    last = last or state.last_transaction or state.replay_time
    if target.kind == "time" and target.moment is not None:
        ok = last is None or last <= target.moment
        ctx.check("the last replayed commit is at or before the target", ok,
                  f"last commit {when(last)}; target {target.describe()}")
        if last is not None:
            rpo = (target.moment - last).total_seconds()
            ctx.measure("achieved_rpo", max(0.0, rpo), "s",
                        f"target {target.describe()} minus the last replayed commit "
                        f"{last.astimezone(UTC).isoformat()}")
    if state.stopped:
        ctx.output(f"recovery stopped {state.stopped}")
