"""pgBackRest PITR actions: check a target against the stanza; restore to it, live.

pgBackRest lays the files down (`pgbackrest restore`, whose per-file DETAIL
lines become progress), then drdeck takes over exactly as in pitr.restore:
archive_mode off and the port in postgresql.auto.conf, the server started as
the `postgres` OS user, recovery followed live, the result verified and the
achieved RPO recorded. The WAL comes from pgBackRest's own restore_command
(`pgbackrest archive-get`), which its restore writes.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, Command
from tui.engine.actions.pitr import (
    TABLESPACE_MAP,
    measure_replay,
    target_of,
    verify_recovery,
    when,
)
from tui.engine.context import StepContext
from tui.engine.volumes import record
from tui.units import format_bytes

STANZA_ARGS = {
    "stanza": Arg("text", required=True, help="the pgBackRest stanza"),
    "pgbackrest_config": Arg("text", help="pgbackrest.conf (empty: pgBackRest's default, "
                             "/etc/pgbackrest/pgbackrest.conf)", default=""),
    "os_user": Arg("text", help="the OS user pgbackrest runs as (empty: postgres when "
                   "drdeck runs as root, else drdeck's own)", default=""),
}
TARGET_ARGS = {
    "target": Arg("text", help="a time with a time zone, an LSN, an xid, a restore point, "
                  "immediate or latest", default="latest"),
    "target_kind": Arg("text", help="time | lsn | xid | name | immediate | latest (default: "
                       "inferred)", default=""),
    "inclusive": Arg("bool", help="stop just after the target (default) or just before",
                     default=True),
    "data_dir": Arg("text", required=True, help="the new data directory"),
    "port": Arg("int", required=True, help="the restored server's port"),
    "tablespace_map": TABLESPACE_MAP,
}
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class _Checked:
    plan: Any  # tui.pitr.target.Plan, its base a tui.sources.pgbackrest.BackupSet
    pgbackrest: Any  # tui.sources.pgbackrest.Pgbackrest
    data_dir: Path
    tablespaces: dict[str, Path]  # where each of the backup's tablespaces goes, by name


def _pgbackrest(args: dict[str, Any]):
    from tui.sources.pgbackrest import Pgbackrest

    return Pgbackrest(str(args["stanza"]), str(args.get("pgbackrest_config") or "") or None,
                      str(args.get("os_user") or "") or None)


class PgbackrestPreflight(Action):
    name = "pgbackrest.preflight"
    summary = "check the target against the pgBackRest stanza before anything is written"
    produces_output = True
    args = {**STANZA_ARGS, **TARGET_ARGS}

    def describe(self, args: dict[str, Any]) -> str:
        return (f"pgbackrest --stanza={args.get('stanza')} info, then check "
                f"{args.get('target') or 'latest'} against the recoverable window")

    def volumes(self, config: Any, args: dict[str, Any]) -> dict[str, int]:
        from tui.sources.pgbackrest import PgbackrestSource

        program = _pgbackrest(args)
        source = PgbackrestSource(program.stanza, program.config, program.os_user)
        return source.restore_volumes(target_of(args))

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        checked = await preflight(ctx, args)
        return ActionResult(output=checked.plan.base.label)


async def preflight(ctx: StepContext, args: dict[str, Any], report: bool = True) -> _Checked:
    """Every check before anything is written; `report` names each as a check."""
    from tui.pitr.restore import check_data_dir, check_port
    from tui.pitr.tablespaces import check_tablespaces
    from tui.pitr.target import plan_recovery
    from tui.sources.pgbackrest import backup_tablespaces, read_stanza

    def check(name: str, detail: str) -> None:
        if report:
            ctx.check(name, True, detail)

    pgbackrest = _pgbackrest(args)
    target = target_of(args)
    seen = await asyncio.to_thread(read_stanza, pgbackrest)
    ranges = ", ".join(f"{a.min} .. {a.max}" for a in seen.info.archives) or "empty"
    check("pgBackRest stanza readable",
          f"stanza {pgbackrest.stanza}: {len(seen.backups)} backups, archive {ranges}")
    if report:
        for backup in seen.backups:
            ctx.output(f"backup {backup.label} ({backup.type}): {when(backup.start)} .. "
                       f"{when(backup.stop)}, {format_bytes(backup.size)}, WAL "
                       f"{backup.start_wal} .. {backup.stop_wal}")
    recovery = seen.recovery
    for gap in recovery.gaps:
        ctx.output(f"WARNING: {gap.describe()}")
    for problem in recovery.problems:
        ctx.output(f"WARNING: {problem}")
    for window in recovery.windows:
        how = seen.end_is.get(window.last_segment, "")
        if how.startswith("archive time"):
            ctx.output(f"WARNING: the window ending {when(window.end)} ends at the {how}: "
                       "the last commit could not be read here")
    if report:
        ctx.output(f"recoverable: {recovery.describe_windows()}")
    plan = plan_recovery(target, recovery)
    backup = plan.base
    check("target inside the recoverable window",
          f"{target.describe()} in {when(plan.window.start)} .. {when(plan.window.end)}")
    check("WAL continuous from the backup", f"{backup.start_wal} .. {plan.window.last_segment}")
    if report:
        ctx.output(f"backup set {backup.label} ({backup.type}): consistent by "
                   f"{when(backup.stopped)}, {format_bytes(backup.size)}, timeline "
                   f"{backup.timeline}")
    data_dir = Path(str(args["data_dir"])).expanduser().absolute()
    check_data_dir(data_dir)
    check("data directory empty", str(data_dir))
    tablespaces = await asyncio.to_thread(backup_tablespaces, pgbackrest, backup)
    # beside the new data directory, or where tablespace_map says: never the source's own
    places = check_tablespaces(check, tablespaces, data_dir,
                               str(args.get("tablespace_map") or ""))
    check_port(int(args["port"]))
    check("port free", str(args["port"]))
    return _Checked(plan, pgbackrest, data_dir,
                    {t.name: places[t.oid] for t in tablespaces})


class PgbackrestRestore(Action):
    name = "pgbackrest.restore"
    summary = "pgbackrest restore -> new data directory -> recovery to the target, followed live"
    produces_output = True
    default_timeout = None
    args = {
        **STANZA_ARGS,
        **TARGET_ARGS,
        "database": Arg("text", help="the database the resulting DSN names (default postgres)",
                        default="postgres"),
        "user": Arg("text", help="the role the resulting DSN names (default postgres)",
                    default="postgres"),
    }

    def describe(self, args: dict[str, Any]) -> str:
        from tui.pitr.target import infer_kind

        target = str(args.get("target") or "latest")
        kind = str(args.get("target_kind") or "") or infer_kind(target)
        if kind == "latest":
            how = "--type=default"
        elif kind == "immediate":
            how = "--type=immediate --target-action=promote"
        else:
            how = f"--type={kind} --target={shlex.quote(target)} --target-action=promote"
        return (f"pgbackrest --stanza={args.get('stanza')} restore {how} "
                f"--pg1-path={args.get('data_dir')}, then recover on port {args.get('port')}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.pitr.follow import Goal, follow
        from tui.pitr.restore import Placement, new_socket_dir, prepare_data_dir
        from tui.wal.names import parse_lsn

        # checked again, silently: time has passed since the pre-flight step
        checked = await preflight(ctx, args, report=False)
        backup, target = checked.plan.base, checked.plan.target
        prepare_data_dir(checked.data_dir)
        for place in checked.tablespaces.values():
            prepare_data_dir(place)
        began = time.monotonic()
        await _restore_files(ctx, checked)
        record(ctx, "base", backup.repo_size or 0, time.monotonic() - began,
               f"backup set {backup.label}")
        placement = Placement(checked.data_dir, int(args["port"]),
                              new_socket_dir(checked.data_dir))
        server = placement.cluster
        for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (server.data_dir / stale).unlink(missing_ok=True)
        # pgBackRest wrote restore_command and the target; ours are read after its lines.
        # The restored cluster must never archive its new timeline into the stanza.
        # A delay carried from a delayed standby's config would hold the restore for it.
        server.configure(archive_mode="off", port=placement.port, hot_standby="on",
                         primary_conninfo="", recovery_min_apply_delay=0)
        ctx.output(f"starting PostgreSQL on port {placement.port} to recover to "
                   f"{target.describe()} (WAL from pgbackrest archive-get)")
        dsn = server.dsn(str(args.get("database") or "postgres"),
                         str(args.get("user") or "postgres"))
        goal = Goal(parse_lsn(backup.start_lsn), checked.plan.window.end_lsn, backup.stop,
                    target.moment)
        try:
            began = time.monotonic()
            await asyncio.to_thread(server.start, wait=False)
            state = await follow(dsn, server.log_file, goal, ctx, server.is_running)
            measure_replay(ctx, goal, state, time.monotonic() - began)
        except BaseException:
            await asyncio.to_thread(server.stop, "fast")  # never leave a half-recovered server
            raise
        ctx.output(f"{state.restored_segments} WAL files restored from the archive")
        verify_recovery(ctx, backup, target, state)
        ctx.output(f"recovered and promoted: connect with {dsn}")
        return ActionResult(output=dsn)


async def _restore_files(ctx: StepContext, checked: _Checked) -> None:
    """`pgbackrest restore`, its per-file lines turned into progress; on failure, nothing
    half-restored is left in the directory."""
    from tui.sources.pgbackrest import (
        PgbackrestError,
        child_environment,
        error_line,
        parse_restore_line,
        restore_options,
    )

    backup, pgbackrest = checked.plan.base, checked.pgbackrest
    command = pgbackrest.argv("restore", *restore_options(
        checked.plan.target, str(checked.data_dir), backup,
        {name: str(place) for name, place in checked.tablespaces.items()}))
    shown = shlex.join(command)
    account = pgbackrest.account
    ctx.output(f"$ {shown}" + (f"   (as {account.name})" if account else ""))
    total = float(backup.size) if backup.size else None
    unit = "bytes" if total else "%"
    last = {"at": 0.0}
    said: list[str] = []

    def on_line(stream: str, line: str) -> None:
        restored = parse_restore_line(line)
        if restored is not None:
            path, percent = restored
            now = time.monotonic()
            if now - last["at"] >= PROGRESS_EVERY_S:  # the last one is sent at the end
                last["at"] = now
                done = total * percent / 100 if total else percent
                ctx.progress(done, total or 100.0, unit, _short(path, checked.data_dir))
            return
        said.append(line)
        del said[:-40]
        if " DETAIL: " not in line and line.strip():
            ctx.output(line, stream)

    started = time.monotonic()
    try:
        result = await ctx.run_process(Command(pgbackrest.as_account(command), shown),
                                       env=child_environment(ctx.environ),
                                       cwd="/", on_line=on_line)
    except BaseException:  # cancelled: the run_process stopped pgbackrest
        _empty(checked.data_dir, *checked.tablespaces.values())
        raise
    if result.exit_code != 0:
        _empty(checked.data_dir, *checked.tablespaces.values())
        raise PgbackrestError(
            f"pgbackrest restore failed (exit {result.exit_code}): {error_line(chr(10).join(said))}"
            f"\n  ran: {shown}\n  {checked.data_dir} was emptied again")
    ctx.progress(total or 100.0, total or 100.0, unit, "all files restored")
    ctx.output(f"restored {format_bytes(backup.size)} from backup set {backup.label} in "
               f"{time.monotonic() - started:.1f}s")


def _short(path: str, data_dir: Path) -> str:
    prefix = str(data_dir) + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _empty(*paths: Path | None) -> None:
    """A half-restored data directory must not look like a good one."""
    from tui.pitr.restore import empty_directory

    for path in paths:
        if path is not None and path.is_dir():
            empty_directory(path)
