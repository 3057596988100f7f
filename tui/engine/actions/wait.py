"""`wait`: poll a query or a command until the step's `expect` holds, within its timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.context import StepContext
from tui.engine.expect import Observed, evaluate
from tui.postgres.query import QueryFailed, run_query


class Wait(Action):
    name = "wait"
    summary = "Poll until a condition holds"
    args = {
        "dsn": Arg("text", help="connection string, for a query"),
        "query": Arg("sql", help="the query to poll"),
        "command": Arg("command", help="or a command to poll"),
        "interval": Arg("duration", help="time between polls (default 2s)", default=2.0),
    }
    default_timeout = 600.0
    needs_expect = True

    def describe(self, args: dict[str, Any]) -> str:
        what = args.get("query") or args.get("command")
        return f"every {args['interval']:g}s: {what.display}" if what else ""

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        expect = ctx.step.expect
        assert expect is not None  # the loader requires it
        polls = 0
        while True:
            polls += 1
            observed = await self._observe(ctx, args)
            ok, detail = evaluate(expect, observed)
            ctx.output(f"poll {polls}: {detail}")
            if ok:
                return ActionResult(observed=observed)
            await asyncio.sleep(args["interval"])

    async def _observe(self, ctx: StepContext, args: dict[str, Any]) -> Observed:
        if args.get("query") is not None:
            try:
                result = await run_query(args["dsn"], args["query"])
            except QueryFailed as exc:  # not ready yet is a normal answer while waiting
                return Observed(text=f"error: {exc}")
            return Observed(value=result.first, rows=len(result.rows))
        result = await ctx.run_process(args["command"], capture_stdout=True, quiet=True)
        return Observed(text=result.stdout or "", exit_code=result.exit_code)
