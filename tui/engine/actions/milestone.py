"""`milestone`: mark a moment of the run; `service-restored` stops the RTO clock."""

from __future__ import annotations

from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg
from tui.engine.context import StepContext


class MilestoneAction(Action):
    name = "milestone"
    summary = "Mark a moment (service-restored stops the RTO clock)"
    args = {"name": Arg("text", required=True, help="e.g. service-restored")}

    def describe(self, args: dict[str, Any]) -> str:
        return f"milestone {args['name']}"

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        ctx.milestone(args["name"])
        return ActionResult()
