"""`manual`: a person does something outside drdeck and says when it is done."""

from __future__ import annotations

from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, StepFailed
from tui.engine.context import StepContext


class Manual(Action):
    name = "manual"
    summary = "A person does this and acknowledges it"
    args = {"instructions": Arg("text", required=True, help="what the person must do")}

    def describe(self, args: dict[str, Any]) -> str:
        return "(you) " + args["instructions"].strip().splitlines()[0][:100]

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        answer = await ctx.ask_manual(args["instructions"])
        if not answer.ok:
            raise StepFailed(answer.note or "the manual step was not done")
        return ActionResult()
