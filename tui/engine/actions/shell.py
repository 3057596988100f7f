"""`shell`: run a command (an argv list, or a string for /bin/sh), streaming its output."""

from __future__ import annotations

import re
from typing import Any

from tui.engine.actions.base import Action, ActionResult, Arg, StepFailed
from tui.engine.context import StepContext
from tui.engine.expect import Observed

# A script reports progress by printing `::progress DONE[/TOTAL] [UNIT] [detail]`
# on stdout; those lines become progress events instead of output.
PROGRESS_LINE = re.compile(
    r"::progress\s+(?P<done>\d+(?:\.\d+)?)(?:/(?P<total>\d+(?:\.\d+)?))?"
    r"(?:\s+(?P<unit>\S+))?(?:\s+(?P<detail>.*))?"
)


class Shell(Action):
    produces_output = True
    name = "shell"
    summary = "Run a command and stream its output"
    args = {
        "command": Arg("command", required=True, help="argv list, or a string run by /bin/sh"),
        "env": Arg("env", help="extra environment variables"),
        "cwd": Arg("text", help="working directory (default: the run's work directory)"),
    }

    def describe(self, args: dict[str, Any]) -> str:
        return args["command"].display

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        expect = ctx.step.expect
        judged_by_expect = expect is not None and expect.exit_code is not None

        def on_line(stream: str, line: str) -> None:
            if stream == "stdout" and line.startswith("::progress"):
                match = PROGRESS_LINE.fullmatch(line.strip())
                if match:
                    total = match["total"]
                    ctx.progress(float(match["done"]), float(total) if total else None,
                                 match["unit"] or "", match["detail"] or "")
                    return
            ctx.output(line, stream)

        result = await ctx.run_process(
            args["command"],
            env=args.get("env"),
            cwd=args.get("cwd"),
            capture_stdout=ctx.step.capture or expect is not None,
            on_line=on_line,
        )
        if result.exit_code != 0 and not judged_by_expect:
            raise StepFailed(f"command exited with code {result.exit_code}")
        stdout = result.stdout
        if stdout and "::progress" in stdout:
            stdout = "\n".join(ln for ln in stdout.split("\n")
                               if not PROGRESS_LINE.fullmatch(ln.strip()))
        return ActionResult(
            observed=Observed(text=stdout or "", exit_code=result.exit_code),
            output=stdout,
        )
