"""Barman Cloud PITR actions: check a target against the object store; restore to it, live.

drdeck reads the store itself (tui.sources.barman_cloud), lays the backup's
tarballs down as the server's account (tui.sources.barman_cloud_restore), and
then recovers exactly as pitr.restore does: recovery settings written, the server
started as the `postgres` OS user, its WAL fed from the store by drdeck,
recovery followed live, the result checked and the achieved RPO recorded.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.actions.pitr import TABLESPACE_MAP, TARGET_ARGS, replay, target_of, when
from tui.engine.context import StepContext
from tui.engine.volumes import record
from tui.errors import InvalidInput
from tui.units import format_bytes

PLACE_ARGS = {
    "data_dir": Arg("text", required=True, help="the new data directory"),
    "port": Arg("int", required=True, help="the restored server's port"),
    "tablespace_map": TABLESPACE_MAP,
}


@dataclass(frozen=True)
class _Checked:
    plan: Any  # tui.pitr.target.Plan, its base a tui.sources.barman_cloud.BarmanBackup
    source: Any  # tui.sources.barman_cloud.BarmanCloudSource
    picture: Any  # tui.sources.barman_cloud.ObjectStorePicture
    cluster: Any  # tui.config.ClusterConfig
    data_dir: Path
    places: dict[int, Path]  # where each tablespace goes, by oid


def _source(config: Any, args: dict[str, Any]):
    from tui.sources.barman_cloud import BarmanCloudSource

    cluster = config.cluster(args.get("cluster") or None)
    source = BarmanCloudSource.configured(config, cluster)
    if source is None:
        raise InvalidInput(f"cluster {cluster.name!r} has no Barman Cloud store: add "
                           f"barman_cloud = {BarmanCloudSource.example} to "
                           f"[clusters.{cluster.name}] in {config.path or 'drdeck.toml'}")
    return cluster, source


class BarmanCloudPreflight(Action):
    name = "barman_cloud.preflight"
    summary = "check the target against the Barman Cloud store before anything is written"
    produces_output = True
    window_of = "barman_cloud"
    args = {**TARGET_ARGS, **PLACE_ARGS}

    def describe(self, args: dict[str, Any]) -> str:
        return (f"read the Barman Cloud store of cluster {args.get('cluster') or '(default)'}, "
                f"then check {args.get('target') or 'latest'} against its recoverable window")

    def volumes(self, config: Any, args: dict[str, Any]) -> dict[str, int]:
        return _source(config, args)[1].restore_volumes(target_of(args))

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        checked = await preflight(ctx, args)
        return ActionResult(output=checked.plan.base.backup_id)


async def preflight(ctx: StepContext, args: dict[str, Any], report: bool = True) -> _Checked:
    """Every check before anything is written; `report` names each as a check."""
    from tui.pitr.restore import RestoreRefused, check_data_dir, check_port
    from tui.pitr.tablespaces import check_tablespaces
    from tui.pitr.target import TargetRefused, plan_recovery
    from tui.sources.barman_cloud_restore import why_not_restorable

    def check(name: str, detail: str) -> None:
        if report:
            ctx.check(name, True, detail)

    cluster, source = _source(ctx.config, args)
    target = target_of(args)
    seen = await asyncio.to_thread(source.picture)
    recovery = seen.recovery
    timelines = sorted(recovery.archive.segments)
    check("Barman Cloud store readable",
          f"{source.describe()}: {len(seen.backups)} backups, WAL of timeline"
          f"{'s' if len(timelines) > 1 else ''} {', '.join(map(str, timelines)) or 'none'}")
    if report:
        for backup in seen.backups:
            problem = seen.problem_of(backup)
            ctx.output(f"backup {backup.backup_id} ({backup.status}): {when(backup.begin_time)}"
                       f" .. {when(backup.end_time)}, {format_bytes(backup.stored_size)} stored"
                       + (f"; not usable: {problem}" if problem else ""))
    for gap in recovery.gaps:
        ctx.output(f"WARNING: {gap.describe()}")
    for problem in recovery.problems:
        ctx.output(f"WARNING: {problem}")
    for window in recovery.windows:
        how = seen.end_is.get(window.last_segment, "")
        if how and how != "last archived commit":
            ctx.output(f"WARNING: the window ending {when(window.end)} ends at the {how}: "
                       "the last commit could not be read here")
    ctx.output(f"recoverable: {recovery.describe_windows()}")
    plan = plan_recovery(target, recovery)
    if recovery.missing_histories and target.kind == "latest" and \
            str(args.get("timeline") or "latest") == "latest":
        # PostgreSQL would stop at the end of the last timeline it can follow, and call
        # that the latest point: everything after the promotion would be silently missing
        raise TargetRefused("the latest point cannot be found: the store lacks the history "
                            f"of timeline {recovery.missing_histories[0]}. Give a target "
                            "before the promotion")
    backup = plan.base
    why = why_not_restorable(backup)
    if why:
        raise RestoreRefused(why)
    check("target inside the recoverable window",
          f"{target.describe()} in {when(plan.window.start)} .. {when(plan.window.end)}")
    check("WAL continuous from the backup", f"{backup.begin_wal} .. {plan.window.last_segment}")
    if report:
        ctx.output(f"backup {backup.backup_id}: consistent by {when(backup.stopped)}, "
                   f"{format_bytes(backup.stored_size)} stored "
                   f"({backup.compression or 'uncompressed'}), timeline {backup.timeline}")
    data_dir = Path(str(args["data_dir"])).expanduser().absolute()
    check_data_dir(data_dir)
    check("data directory empty", str(data_dir))
    places = check_tablespaces(check, backup.tablespaces, data_dir,
                               str(args.get("tablespace_map") or ""))
    check_port(int(args["port"]))
    check("port free", str(args["port"]))
    return _Checked(plan, source, seen, cluster, data_dir, places)


class BarmanCloudRestore(Action):
    name = "barman_cloud.restore"
    summary = ("Barman Cloud backup -> new data directory -> recovery to the target, "
               "followed live")
    produces_output = True
    default_timeout = None
    args = {
        **TARGET_ARGS,
        **PLACE_ARGS,
        "database": Arg("text", help="the database the resulting DSN names (default postgres)",
                        default="postgres"),
        "user": Arg("text", help="the role the resulting DSN names (default postgres)",
                    default="postgres"),
        "prefetch": Arg("int", help="WAL segments to fetch ahead (default 16)", default=16),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return (f"restore the Barman Cloud backup into {args.get('data_dir')} on port "
                f"{args.get('port')}, recover to {args.get('target') or 'latest'}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.pitr.restore import (
            SPOOL,
            Placement,
            configure,
            new_socket_dir,
            prepare_data_dir,
        )
        from tui.postgres.cluster import server_account
        from tui.wal.feeder import WalFeeder, restore_command

        # checked again, silently: time has passed since the pre-flight step
        checked = await preflight(ctx, args, report=False)
        plan, source, data_dir = checked.plan, checked.source, checked.data_dir
        backup, target = plan.base, plan.target
        prepare_data_dir(data_dir)
        ctx.output(f"unpacking backup {backup.backup_id} into {data_dir}")
        began = time.monotonic()
        await source.unpack_base_backup(backup, data_dir, ctx, checked.places)
        record(ctx, "base", source.base_bytes(backup, checked.picture) or 0,
               time.monotonic() - began, f"backup {backup.backup_id}")
        placement = Placement(data_dir, int(args["port"]), new_socket_dir(data_dir))
        server = placement.cluster
        account = server_account()
        # the WAL fetched from the store as the pre-flight listed it (a name not listed yet
        # is looked for again), not from a drdeck repository: so no store of that
        feeder = WalFeeder(None, checked.cluster.name, data_dir / SPOOL,
                           gpg_home=None, encrypted_first=False,
                           depth=int(args.get("prefetch", 16)),
                           owner=(account.uid, account.gid) if account else None,
                           reporter=ctx, fetch=source.wal_fetcher())
        feeder.prepare()
        configure(server, target, command=restore_command(feeder.spool),
                  timeline=str(args.get("timeline") or ""))
        ctx.output(f"starting PostgreSQL on port {placement.port} to recover to "
                   f"{target.describe()} (WAL fed by drdeck from {source.describe()})")
        dsn = server.dsn(str(args.get("database") or "postgres"),
                         str(args.get("user") or "postgres"))
        await replay(ctx, server, plan, feeder, dsn, lambda: _hand_over(server, source))
        ctx.output(f"recovered and promoted: connect with {dsn}")
        return ActionResult(output=dsn)


def _hand_over(server: Any, source: Any) -> str:
    """A failed recovery's data directory is left as it is, and the message says how to
    finish it with Barman's own program (which needs the store's credentials)."""
    from tui.pitr.restore import start_by_hand

    command = ["barman-cloud-wal-restore",
               *(["--endpoint-url", source.endpoint_url] if source.endpoint_url else []),
               source.destination, source.server_name, "%f", "%p"]
    return (f"The data directory {server.data_dir} is left as it is. To finish the recovery "
            f"by hand, set restore_command = '{shlex.join(command)}' in its "
            "postgresql.auto.conf (the server's OS user then needs barman-cloud and the "
            f"store's credentials), remove {server.data_dir / 'drdeck.spool'} if it is "
            f"there, and start it with: {start_by_hand(server)}")
