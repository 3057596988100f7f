"""`neon.restore_branch`: rewind a Neon branch to a point in time through the Neon API.

Restore in place: the branch keeps its id, its computes and its connection
string; its state before the restore is kept as a new branch
(`preserve_under_name`). The action posts the restore, follows every
operation Neon starts until all are finished, then fetches the connection URI
and returns it as the step's output (the runner masks its password; the lines
printed here show it masked already).

With `check_only = true` it touches nothing: it proves the key works, the
project, branches, database and role exist, and the target lies in the
project's history window and after the source branch was created, so a
doomed restore is refused before anyone is asked to confirm it. It says that
Neon's plan can still refuse a target inside that window.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.context import StepContext
from tui.errors import PermanentFailure

#: how far a target may lie ahead of this machine's clock (clocks drift)
_CLOCK_SKEW = timedelta(seconds=5)


def parse_target(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time with a zone, as UTC; a naive time is refused."""
    cleaned = text.strip()
    if not cleaned:
        raise PermanentFailure("timestamp is empty: give the point in time to restore to, "
                               "like 2026-11-27T14:29:59Z")
    try:
        value = datetime.fromisoformat(cleaned if "T" in cleaned
                                       else cleaned.replace(" ", "T", 1))
    except ValueError:
        raise PermanentFailure(f"{text!r} is not a timestamp; write it like "
                               "2026-11-27T14:29:59Z or 2026-11-27 14:29:59+02:00") from None
    if value.tzinfo is None:
        raise PermanentFailure(f"{text!r} has no time zone, and drdeck does not guess one: "
                               f"write it like {value.isoformat()}Z or with an offset "
                               "(+02:00)")
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """UTC with a Z, as Neon's examples write it: 2024-02-26T12:00:00Z."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _branch_label(branch: dict[str, Any], branch_id: str) -> str:
    name = branch.get("name")
    return f"{branch_id} ({name})" if name and name != branch_id else branch_id


class NeonRestoreBranch(Action):
    name = "neon.restore_branch"
    summary = "Neon API: restore a branch to a point in time, then its connection URI"
    produces_output = True
    default_timeout = 30 * 60
    args = {
        "project_id": Arg("text", required=True, help="the Neon project id"),
        "branch_id": Arg("text", required=True,
                         help="the branch to restore (br-...), e.g. production's"),
        "source_branch_id": Arg("text", default="",
                                help="restore from this branch's history (default: the "
                                "branch's own past)"),
        "timestamp": Arg("text", required=True,
                         help="the point in time, RFC 3339 with a time zone"),
        "preserve_under_name": Arg("text", default="",
                                   help="name of the branch that keeps the current state "
                                   "(default: <branch>_before_restore_<UTC stamp>)"),
        "database": Arg("text", required=True, help="database for the connection URI"),
        "role": Arg("text", required=True, help="role for the connection URI"),
        "poll_interval": Arg("duration", default=2.0,
                             help="how often to ask Neon about its operations"),
        "check_only": Arg("bool", default=False,
                          help="only check key, project, branches, database, role and target; "
                          "restore nothing"),
    }

    def describe(self, args: dict[str, Any]) -> str:
        project, branch = args.get("project_id", ""), args.get("branch_id", "")
        source = args.get("source_branch_id") or branch
        target = str(args.get("timestamp", ""))
        with contextlib.suppress(PermanentFailure):  # else shown as given; run() says why
            target = rfc3339(parse_target(target))
        if args.get("check_only"):
            return (f"check Neon project {project}: branch {branch}, source {source}, "
                    f"database {args.get('database')}, role {args.get('role')}, target {target} "
                    "in the history window (restores nothing)")
        keep = args.get("preserve_under_name") or "<branch name>_before_restore_<UTC stamp>"
        return (f"POST /projects/{project}/branches/{branch}/restore source_branch_id={source} "
                f"source_timestamp={target} preserve_under_name={keep}; follow its operations; "
                f"GET connection_uri database={args.get('database')} role={args.get('role')}")

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        from tui.sources.neon import PLAN_HISTORY_CAP, NeonClient, restore_window

        client = NeonClient.from_env(ctx.environ, on_retry=ctx.output,
                                     poll_interval=float(args.get("poll_interval", 2.0)))
        check_only = bool(args.get("check_only"))
        project_id = _required(args, "project_id")
        branch_id = _required(args, "branch_id")
        source_id = (args.get("source_branch_id") or "").strip() or branch_id
        database, role = _required(args, "database"), _required(args, "role")
        target = parse_target(str(args.get("timestamp", "")))
        now = datetime.now(UTC)
        if target > now + _CLOCK_SKEW:
            raise PermanentFailure(f"the target {rfc3339(target)} is in the future (it is "
                                   f"{rfc3339(now.replace(microsecond=0))} now)")

        project = await client.get_project(project_id)
        if check_only:
            ctx.output(f"project {project_id} ({project.get('name') or 'unnamed'}), "
                       f"{project.get('region_id') or 'unknown region'}: the API key is accepted")
        branch = await client.get_branch(project_id, branch_id)
        label = _branch_label(branch, branch_id)
        source = branch if source_id == branch_id else await client.get_branch(project_id,
                                                                               source_id)
        source_label = ("its own history" if source_id == branch_id
                        else f"branch {_branch_label(source, source_id)}")
        window = restore_window(project, source, now)
        window.refuse_if_outside(target)
        if check_only:
            if window.earliest is not None:
                ctx.check("the target lies in the project's history window", True,
                          f"{rfc3339(target)}; reachable from {window.earliest_shown}")
            ctx.output(PLAN_HISTORY_CAP)
            ctx.output(f"branch {label}: {branch.get('current_state') or 'state unknown'}; "
                       f"restore from {source_label} at {rfc3339(target)}")
            await client.get_database(project_id, branch_id, database)
            await client.get_role(project_id, branch_id, role)
            ctx.check(f"branch {branch_id} and database {database} (role {role}) exist", True,
                      f"{label}, restoring from {source_label}")
            return ActionResult(output=str(branch.get("name") or branch_id))

        keep = (args.get("preserve_under_name") or "").strip() or (
            f"{branch.get('name') or branch_id}_before_restore_{now:%Y%m%dT%H%M%SZ}")
        ctx.output(f"restoring branch {label} from {source_label} to {rfc3339(target)}; its "
                   f"current state is kept as branch {keep!r}")
        answer = await client.restore_branch(
            project_id, branch_id, source_id, source_timestamp=rfc3339(target),
            preserve_under_name=keep)
        operations = [op for op in answer.get("operations") or []
                      if isinstance(op, dict) and op.get("id")]
        await _follow(ctx, client, project_id, operations, float(args.get("poll_interval", 2.0)),
                      keep)

        from tui.redact import mask_credentials

        uri = await client.connection_uri(project_id, branch_id, database, role)
        ctx.output(f"branch {label} is restored; connect with {mask_credentials(uri)}")
        return ActionResult(output=uri, extra={"preserved_as": keep})


def _required(args: dict[str, Any], name: str) -> str:
    value = str(args.get(name) or "").strip()
    if not value:
        raise PermanentFailure(f"{name} is empty")
    return value


async def _follow(ctx: StepContext, client: Any, project_id: str,
                  operations: list[dict[str, Any]], interval: float, kept_as: str) -> None:
    """Poll every operation until all are done; fail on the first that failed."""
    from tui.sources.neon import OPERATION_DONE, OPERATION_FAILED

    if not operations:
        ctx.output("Neon started no operations to wait for")
        return
    state = {op["id"]: dict(op) for op in operations}
    order = [op["id"] for op in operations]

    def name(op_id: str) -> str:
        return f"{state[op_id].get('action') or 'operation'} {op_id}"

    def report() -> None:
        done = sum(state[i].get("status") in OPERATION_DONE for i in order)
        detail = ", ".join(f"{state[i].get('action') or 'operation'} "
                           f"{state[i].get('status') or '?'}" for i in order)
        ctx.progress(done, len(order), "operations", detail=detail)

    ctx.output(f"Neon started {len(order)} operation(s): "
               + ", ".join(f"{name(i)} ({state[i].get('status') or '?'})" for i in order))
    report()
    while True:
        for op_id in order:
            status = state[op_id].get("status")
            if status in OPERATION_FAILED:
                error = state[op_id].get("error")
                raise PermanentFailure(
                    f"Neon operation {name(op_id)} {status}"
                    + (f": {error}" if error else "")
                    + f". The branch's state before the restore is kept as branch {kept_as!r}; "
                    "look at the project's operations in the Neon console before trying again")
        pending = [i for i in order if state[i].get("status") not in OPERATION_DONE]
        if not pending:
            return
        await asyncio.sleep(interval)
        changed = False
        for op_id in pending:
            fresh = await client.get_operation(project_id, op_id)
            before = state[op_id].get("status")
            state[op_id].update({k: v for k, v in fresh.items() if v is not None})
            if state[op_id].get("status") != before:
                changed = True
                ctx.output(f"operation {name(op_id)}: {before or '?'} -> "
                           f"{state[op_id].get('status') or '?'}")
        if changed:
            report()
