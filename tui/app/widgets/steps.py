"""The step list and the checks panel of the run screen, drawn from a RunState."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.durations import format_clock
from tui.engine.state import RunState, StepView
from tui.journal.forecast import StepForecast

# Colour backs each glyph; the glyph alone must tell the status.
GLYPHS = {
    "pending": ("○", "dim"),
    "running": ("●", "bold cyan"),
    "waiting": ("◐", "bold yellow"),
    "succeeded": ("✓", "bold green"),
    "failed": ("✗", "bold red"),
    "skipped": ("↷", "yellow"),
}


def short_clock(seconds: float | None) -> str:
    """M:SS under an hour, H:MM:SS beyond."""
    if seconds is None:
        return ""
    if seconds >= 3600:
        return format_clock(seconds)
    whole = int(max(0.0, seconds))
    return f"{whole // 60}:{whole % 60:02d}"


class StepList(Static):
    def show(self, state: RunState, now: float) -> None:
        self.update(step_table(state, now))


def step_table(state: RunState, now: float) -> Table:
    """A line per step: its glyph, its title, and its time (against its limit, and against
    its forecast where earlier runs give one)."""
    table = Table.grid(expand=True, padding=(0, 1))
    table.add_column(width=1)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    expected = {f.id: f for f in state.forecast.steps} if state.forecast else {}
    for step in state.steps.values():
        glyph, style = GLYPHS.get(step.status, ("?", ""))
        title = Text(step.title, style="bold" if step.id == state.current else "")
        if step.action == "manual":
            title.append("  (you)", style="dim")
        if step.attempt > 1:
            title.append(f"  try {step.attempt}/{max(step.max_attempts, step.attempt)}",
                         style="yellow")
        table.add_row(Text(glyph, style=style), title,
                      step_time(step, now, expected.get(step.id)))
    return table


def step_time(step: StepView, now: float, expected: StepForecast | None = None) -> Text:
    elapsed = step.elapsed(now)
    text = Text(short_clock(elapsed), style="bold" if step.status == "running" else "dim")
    if step.status in ("running", "waiting") and step.timeout_s:
        share = (elapsed or 0) / step.timeout_s
        text.append(f"/{short_clock(step.timeout_s)}",
                    style="red" if share > 0.9 else "yellow" if share > 0.75 else "dim")
    if expected is not None and expected.forecast_s is not None and step.status != "skipped":
        # against what it took before: yellow once past the slowest earlier run
        slow = elapsed is not None and expected.high_s is not None and elapsed > expected.high_s
        text.append(f" ~{short_clock(expected.forecast_s)}", style="yellow" if slow else "dim")
    return text


class ChecksPanel(Static):
    def show(self, state: RunState) -> None:
        checks = state.all_checks
        if not checks:
            self.update(Text("no checks yet", style="dim"))
            return
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=1)
        table.add_column(ratio=1)
        for check in checks:
            glyph = Text("✓", style="bold green") if check.ok else Text("✗", style="bold red")
            line = Text(check.name)
            if not check.ok:
                line.append(f"\n{check.detail}", style="red")
            table.add_row(glyph, line)
        self.update(table)
