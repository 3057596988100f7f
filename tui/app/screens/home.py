"""Home: the runbooks this machine knows, filterable, with the selected one described."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Markdown

from tui.durations import format_duration
from tui.runbook.discovery import Found
from tui.runbook.model import Runbook

from .._shared import DeckInput
from ..widgets.breadcrumb import Breadcrumb


def runbook_markdown(runbook: Runbook) -> str:
    """The briefing text: description, targets, contacts and the steps."""
    parts = [f"## {runbook.title}", runbook.description.strip()]
    targets = []
    if runbook.rto:
        targets.append(f"RTO target **{format_duration(runbook.rto)}**")
    if runbook.rpo:
        targets.append(f"RPO target **{format_duration(runbook.rpo)}**")
    if targets:
        parts.append(" · ".join(targets))
    if runbook.contacts:
        parts.append("**Contacts**\n\n" + "\n".join(f"- {c}" for c in runbook.contacts))
    steps = []
    for index, step in enumerate(runbook.steps, 1):
        notes = []
        if step.action == "manual":
            notes.append("you")
        if step.confirm or step.confirm_input:
            notes.append("asks to confirm" + (f" when {step.confirm_when}"
                                              if step.confirm_when else ""))
        if step.when:
            notes.append(f"only when {step.when}")
        suffix = f" _({', '.join(notes)})_" if notes else ""
        steps.append(f"{index}. {step.title}{suffix}")
    parts.append("**Steps**\n\n" + "\n".join(steps))
    return "\n\n".join(p for p in parts if p)


def problems_markdown(found: Found) -> str:
    problems = found.problems.problems if found.problems else []
    lines = "\n".join(f"- `{p.line}:{p.col}` {p.message}" for p in problems)
    return (f"## {found.path.name} does not validate\n\n`{shown_path(found.path)}`\n\n{lines}"
            f"\n\nFix it, then check it with `drdeck validate {shown_path(found.path)}`.")


def shown_path(path: Path) -> str:
    """Relative to where drdeck was started when it lies below it: shorter to read."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "open", priority=False),
        Binding("slash", "filter", "filter"),
        Binding("i", "inventory", "inventory"),
        Binding("m", "toggle_mode", "mode"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self, found: list[Found]) -> None:
        super().__init__()
        self.found = found
        self._shown: list[Found] = []

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        with Vertical(classes="panel", id="home-list"):
            yield DeckInput(id="filter", placeholder="filter runbooks (esc: clear)")
            yield DataTable(id="home-table", cursor_type="row", zebra_stripes=True)
        preview = Markdown(id="home-preview", classes="panel")
        preview.border_title = "Runbook"
        yield preview
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#home-list").border_title = "Runbooks"
        self.query_one("#home-list").border_subtitle = "/ filter · enter open"
        table = self.query_one(DataTable)
        table.add_columns("Runbook", "Name", "Scenario", "Target RTO", "Target RPO", "Steps",
                          "Last run")
        self._fill("")
        table.focus()
        self.sync_mode()

    def sync_mode(self) -> None:
        self.query_one(Breadcrumb).mode = self.app.mode

    def _fill(self, needle: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        needle = needle.casefold()
        self._shown = []
        for found in self.found:
            runbook = found.runbook
            haystack = (f"{found.path.stem} {runbook.title} {runbook.scenario}"
                        if runbook else found.path.stem).casefold()
            if needle and needle not in haystack:
                continue
            self._shown.append(found)
            if runbook is None:
                table.add_row(f"✗ {found.path.name} (invalid)", found.path.stem, "-", "-",
                              "-", "-", "-")
                continue
            table.add_row(
                runbook.title, runbook.name, runbook.scenario,
                format_duration(runbook.rto) if runbook.rto else "-",
                format_duration(runbook.rpo) if runbook.rpo else "-",
                str(len(runbook.steps)), "-",
            )
        self._preview(0)

    def _preview(self, row: int) -> None:
        preview = self.query_one("#home-preview", Markdown)
        if not self._shown:
            preview.update("No runbook matches. Esc clears the filter.")
            return
        found = self._shown[min(row, len(self._shown) - 1)]
        preview.update(runbook_markdown(found.runbook) if found.runbook
                       else problems_markdown(found))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(event.cursor_row)

    def action_open(self) -> None:
        self._open(self.query_one(DataTable).cursor_row)

    def _open(self, row: int) -> None:
        if not self._shown:
            return
        found = self._shown[row]
        if found.runbook is None:
            self.notify(f"{found.path.name} does not validate: fix it first "
                        f"(drdeck validate {found.path})", severity="error")
            return
        self.app.open_briefing(found.runbook)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("visible")
        self.query_one(DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(DataTable).focus()

    def action_inventory(self) -> None:
        self.app.open_inventory()

    def action_toggle_mode(self) -> None:
        self.app.mode = "incident" if self.app.mode == "drill" else "drill"
        self.sync_mode()
        if self.app.mode == "incident":
            self.notify("INCIDENT mode: runs are recorded as a real incident", severity="warning")

    help_notes = ("Mode: DRILL (blue) for practice, INCIDENT (red) for the real thing; "
                  "it is recorded with every run.")
