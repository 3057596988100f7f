"""The headless front end: an Operator that answers from flags, and two printers.

`HumanPrinter` writes what a person reading a CI log wants: a line per step
start and end, checks, and a summary with the RTO against its target.
`JsonPrinter` writes the `--json` contract: one JSON object per event per line.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, TextIO

from tui.durations import format_clock, format_duration
from tui.engine import events as ev
from tui.engine.operator import (
    Answer,
    ConfirmRequest,
    FailureDecision,
    FailureRequest,
    ManualRequest,
)
from tui.redact import escape_controls, json_text
from tui.rto import rto_verdict
from tui.units import format_progress, format_rate

PROGRESS_EVERY_S = 2.0
GLYPHS = {"succeeded": "✓", "failed": "✗", "skipped": "↷", "running": "●", "pending": "○"}


class HeadlessOperator:
    """No person is here: `--yes` acknowledges on their behalf, otherwise we refuse clearly."""

    interactive = False

    def __init__(self, yes: bool = False):
        self.yes = yes

    async def confirm(self, request: ConfirmRequest) -> Answer:
        if self.yes:
            return Answer(True, by_person=False, note="acknowledged by --yes, without a person")
        return Answer(False, by_person=False, note=(
            f"step {request.step!r} asks for confirmation ({request.text.strip()}); "
            "run it in a terminal, or pass --yes to confirm without a person"
        ))

    async def manual(self, request: ManualRequest) -> Answer:
        if self.yes:
            return Answer(True, by_person=False, note="acknowledged by --yes, without a person")
        return Answer(False, by_person=False, note=(
            f"step {request.step!r} is a manual step and needs a person; run it in a "
            "terminal, or pass --yes to record it as acknowledged without one"
        ))

    async def on_failure(self, request: FailureRequest) -> FailureDecision:
        return FailureDecision("abort", "no person to ask")


class _Style:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class HumanPrinter:
    def __init__(self, stream: TextIO, colour: bool | None = None):
        self.out = stream
        self.style = _Style(_use_colour(stream) if colour is None else colour)
        self._titles: dict[str, str] = {}
        self._rto_target: float | None = None
        self._dry_run = False
        self._restored = False
        self._progress_at: dict[str, float] = {}
        self._forecast: Any = None  # tui.journal.forecast.Forecast, when the run has one
        self._finished: set[str] = set()
        self._started_ts = 0.0

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            # the flood of output lines: copied only when one holds a control character
            plain = isinstance(event, ev.Output) and escape_controls(event.line) is event.line
            handler(event if plain else _printable(event))

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")

    def _on_run_started(self, e: ev.RunStarted) -> None:
        s = self.style
        self._titles = {step.id: step.title for step in e.steps}
        self._rto_target = e.rto_target_s
        self._dry_run = e.dry_run
        mode = s(e.mode.upper(), "1;31" if e.mode == "incident" else "1;34")
        target = f" · RTO target {format_duration(e.rto_target_s)}" if e.rto_target_s else ""
        plan = " · DRY RUN: nothing will be run" if e.dry_run else ""
        self._write(f"{s('drdeck', '1')} {e.runbook} · {e.title}")
        self._write(f"run {e.run_id} · {mode} · {len(e.steps)} steps{target}{plan}")
        self._started_ts = e.ts
        if e.forecast is not None:
            from tui.journal.forecast import from_json

            self._forecast = from_json(e.forecast)
            self._write(s(self._forecast.line(), "2"))
        if e.params:
            shown = "  ".join(f"{k}={v}" for k, v in e.params.items())
            self._write(s(f"params: {shown}", "2"))
        self.out.flush()

    def _on_step_planned(self, e: ev.StepPlanned) -> None:
        timeout = f"  timeout {format_duration(e.timeout_s)}" if e.timeout_s else ""
        self._write(f"\n○ {e.step}  {e.title}  [{e.action}]{timeout}")
        for line in e.command.splitlines() or [""]:
            self._write(f"    $ {line}")
        for note in e.notes:
            self._write(self.style(f"    · {note}", "2"))

    def _on_step_started(self, e: ev.StepStarted) -> None:
        attempt = f"  (attempt {e.attempt}/{e.max_attempts})" if e.attempt > 1 else ""
        self._write(f"\n{self.style('▶', '1;36')} {e.step}  {e.title}{attempt}")
        if e.command:
            first, *rest = e.command.splitlines()
            self._write(self.style(f"    $ {first}" + (" …" if rest else ""), "2"))
        self.out.flush()

    def _on_output(self, e: ev.Output) -> None:
        self._write(f"    │ {e.line}")

    def _on_progress(self, e: ev.Progress) -> None:
        # a log is read later: a line every few seconds tells the story, and the last one
        finished = e.total is not None and e.done >= e.total
        now = time.monotonic()
        if not finished and now - self._progress_at.get(e.step, 0.0) < PROGRESS_EVERY_S:
            return
        self._progress_at[e.step] = now
        if e.total:
            eta = f"  ETA {format_clock(e.eta_s)}" if e.eta_s is not None else ""
            self._write(f"    … {format_progress(e.done, e.total, e.unit)} "
                        f"({100 * e.done / e.total:.0f}%){eta}")
        else:
            rate = f" ({format_rate(e.rate, e.unit)})" if e.rate else ""
            self._write(f"    … {format_progress(e.done, None, e.unit)}{rate}")

    def _on_check(self, e: ev.CheckResult) -> None:
        mark = self.style("✓", "32") if e.ok else self.style("✗", "1;31")
        self._write(f"  {mark} check {e.name}: {e.detail}")

    def _on_measure(self, e: ev.Measure) -> None:
        shown = format_duration(e.value) if e.unit == "s" else f"{e.value:g} {e.unit}"
        detail = f" ({e.detail})" if e.detail else ""
        self._write(self.style(f"  ◆ {e.name.replace('_', ' ')}: {shown}{detail}", "1;35"))

    def _on_attempt_failed(self, e: ev.AttemptFailed) -> None:
        self._write(self.style(
            f"  ! attempt {e.attempt} failed: {e.error}; retrying in "
            f"{format_duration(e.retry_in_s)}", "33"))

    def _on_operator_answer(self, e: ev.OperatorAnswer) -> None:
        if not e.by_person and e.answer == "yes":
            self._write(self.style(f"  · {e.request}: {e.note}", "33"))

    def _on_step_finished(self, e: ev.StepFinished) -> None:
        s = self.style
        if e.replayed:
            self._write(s(f"↺ {e.step}  {e.status} before the run was resumed", "2"))
            return
        colour = {"succeeded": "32", "failed": "1;31", "skipped": "33"}[e.status]
        took = format_duration(e.duration_s)
        line = f"{s(GLYPHS[e.status], colour)} {e.step}  {e.status}  {took}"
        line += self._against_forecast(e)
        if e.error:
            line += f"\n  {s('error:', '1;31')} {e.error}"
        if e.reason:
            line += f"\n  reason: {e.reason}"
        self._write(line)
        self.out.flush()

    def _against_forecast(self, e: ev.StepFinished) -> str:
        """' (forecast 15m) · projected 16m20s of 4h': this step against its forecast,
        and where the run should now end."""
        forecast = self._forecast
        if forecast is None or self._dry_run:
            return ""
        from tui.journal.forecast import projected_total

        self._finished.add(e.step)
        mine = next((s for s in forecast.steps if s.id == e.step), None)
        said = (f" (forecast {format_duration(mine.forecast_s)})"
                if mine is not None and mine.forecast_s is not None else "")
        if not forecast.known or len(self._finished) == len(forecast.steps):
            return said
        total = projected_total(forecast, e.ts - self._started_ts, self._finished)
        of = f" of {format_duration(forecast.rto_target_s)}" if forecast.rto_target_s else ""
        return said + self.style(f" · projected {format_duration(total)}{of}", "2")

    def _on_milestone(self, e: ev.Milestone) -> None:
        self._restored = self._restored or e.name == "service-restored"
        self._write(self.style(f"  ◆ milestone {e.name} at {format_clock(e.elapsed_s)}", "1;35"))

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        s = self.style
        if self._dry_run:
            self._write(f"\n{s('dry run', '1')}: nothing was run.")
            self.out.flush()
            return
        colour = {"succeeded": "1;32", "failed": "1;31", "aborted": "1;33"}[e.status]
        counts = f"{e.succeeded} succeeded, {e.failed} failed, {e.skipped} skipped"
        if e.not_run:
            counts += f", {e.not_run} not run"
        self._write("\n" + "─" * 60)
        self._write(f"{s(e.status.upper(), colour)} in {format_duration(e.duration_s)} · {counts}")
        if e.rto_target_s or self._restored:
            self._write(f"RTO {rto_verdict(e.rto_s, e.rto_target_s)}")
        if e.error and e.status == "aborted":
            self._write(f"reason: {e.error}")
        self.out.flush()


def _printable(value: Any) -> Any:
    """An event with every text in it passed through escape_controls: a title, a
    parameter, a command's output line, an error quoting a manifest."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, list):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _printable(getattr(value, f.name))
                   for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value


class JsonPrinter:
    """JSON lines. Output lines are flushed at most every 100 ms; every other event at once."""

    def __init__(self, stream: TextIO):
        self.out = stream
        self._last_flush = 0.0

    def __call__(self, event: ev.Event) -> None:
        self.out.write(json_text(event.to_json(), default=str) + "\n")
        now = time.monotonic()
        if not isinstance(event, ev.Output) or now - self._last_flush > 0.1:
            self.out.flush()
            self._last_flush = now
