"""The finish summary: result, total time, RTO against target, steps, checks, milestones."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from tui.durations import format_clock
from tui.engine.state import RunState
from tui.rto import rto_verdict

from .._shared import status_text
from ..widgets.steps import GLYPHS, short_clock


def summary_renderable(state: RunState) -> Group:
    finished = state.finished
    assert finished is not None
    head = Text()
    head.append_text(status_text(finished.status))
    head.append(f"  in {format_clock(finished.duration_s)}   ")
    head.append(f"{finished.succeeded} succeeded, {finished.failed} failed, "
                f"{finished.skipped} skipped")
    if finished.not_run:
        head.append(f", {finished.not_run} not run")
    lines = [head, Text(f"RTO {rto_verdict(finished.rto_s, finished.rto_target_s, precise=False)}")]
    if finished.error and finished.status != "succeeded":
        lines.append(Text(f"reason: {finished.error}", style="red"))

    steps = Table(title="Steps", title_justify="left", expand=True, box=None, padding=(0, 1))
    steps.add_column("", width=1)
    steps.add_column("step", ratio=1)
    steps.add_column("took", justify="right")
    steps.add_column("waited on you", justify="right")
    for step in state.steps.values():
        glyph, style = GLYPHS.get(step.status, ("?", ""))
        title = Text(step.title)
        if step.reason:
            title.append(f"\n  skipped: {step.reason}", style="yellow")
        elif step.error:
            title.append(f"\n  {step.error}", style="red")
        waited = short_clock(step.operator_wait_s) if step.operator_wait_s >= 1 else ""
        steps.add_row(Text(glyph, style=style), title, short_clock(step.duration_s), waited)
    parts = [*lines, Text(), steps]

    checks = state.all_checks
    if checks:
        table = Table(title="Checks", title_justify="left", expand=True, box=None)
        table.add_column("", width=1)
        table.add_column("check", ratio=1)
        for check in checks:
            glyph = Text("✓", style="green") if check.ok else Text("✗", style="bold red")
            table.add_row(glyph, Text(f"{check.name}: {check.detail}"))
        parts += [Text(), table]
    if state.milestones:
        marks = Text("Milestones: ", style="bold")
        marks.append(", ".join(f"{m.name} at {format_clock(m.elapsed_s)}"
                               for m in state.milestones))
        parts += [Text(), marks]
    return Group(*parts)


class RunSummary(ModalScreen[str]):
    BINDINGS = [
        Binding("escape,enter", "dismiss('log')", "back to the log"),
        Binding("e", "dismiss('edit')", "edit & run again"),
    ]

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if parameters == ("edit",):  # a run that failed or was aborted: fix and go again
            return self.state.finished is not None and self.state.finished.status != "succeeded"
        return True

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="summary"):
            yield Label(f"{self.state.title}: run {self.state.run_id}", classes="dialog-title")
            with VerticalScroll():
                yield Static(summary_renderable(self.state))
            again = "" if self.state.finished and self.state.finished.status == "succeeded" \
                else "    e: edit the parameters and run again"
            yield Static(Text(f"enter/esc: back to the log (esc again: home){again}",
                               style="dim"))
        # its own keys at the bottom: the run screen's footer behind it is drawn for
        # whichever screen was on top when it last updated
        yield Footer()
