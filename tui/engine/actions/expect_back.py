"""`pitr.check_back`: after a restore to just before a destructive event, check that what
the event destroyed is back in the restored server (tui.pitr.expect_back)."""

from __future__ import annotations

import asyncio
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, StepFailed
from tui.engine.context import StepContext


class CheckBack(Action):
    name = "pitr.check_back"
    summary = "check that what a destructive event took is back in the restored server"
    args = {
        "dsn": Arg("text", required=True, help="the restored server"),
        "expect": Arg("text", required=True,
                      help='what must be back: database "NAME"; table "DB"."SCHEMA".'
                           '"TABLE"; rows >= N'),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return f"look in the restored server for {args.get('expect')}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        import psycopg

        from tui.pitr.expect_back import Expectation, check_back

        expected = Expectation.parse(str(args["expect"]))
        if not expected.database and not expected.tables:
            raise StepFailed("nothing to look for: expect_back names no database or table")
        try:
            checks = await asyncio.to_thread(check_back, str(args["dsn"]), expected)
        except psycopg.Error as exc:
            raise StepFailed(f"cannot look in the restored server: {exc}") from None
        for name, ok, detail in checks:
            ctx.check(name, ok, detail)
        return ActionResult()
