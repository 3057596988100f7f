"""Home: the runbooks this machine knows, filterable, with the selected one described."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Label, Markdown, Static

from tui.durations import format_duration
from tui.errors import DrdeckError
from tui.journal.due import due
from tui.journal.store import RunDetail, RunRow
from tui.runbook.conditions import in_words
from tui.runbook.discovery import Found
from tui.runbook.model import Param, Runbook

from .._shared import DeckFooter, DeckInput, DeckTable
from ..widgets.breadcrumb import Breadcrumb
from .history import result_glyph, utc_stamp

TITLE_MIN = 28  # shorter titles stop telling runbooks apart: the table drops Name, then Scenario
COLUMNS = ("Runbook", "Name", "Scenario", "Targets", "Last run", "Next drill")
DROPPED_FIRST = ("Name", "Scenario")  # the title says what a runbook does; these can go
# what the table's own frame costs beside its cells: the panel's border and padding, and
# a vertical scrollbar when the runbooks outgrow the window
TABLE_FRAME = 6


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
            notes.append("asks to confirm" + (
                f" when {in_words(step.confirm_when, runbook.params)}"
                if step.confirm_when else ""))
        if step.when:
            notes.append(f"only when {in_words(step.when, runbook.params)}")
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


def shown_title(title: str, width: int) -> str:
    """The title in `width` cells; a longer one ends in "…"."""
    return title if len(title) <= width else title[:width - 1] + "…"


def fit_columns(widths: dict[str, int], room: int) -> tuple[list[str], int]:
    """The columns that fit `room` cells, and the width the titles get.

    Every cell has one cell of padding each side. Titles take the room the other columns
    leave, down to TITLE_MIN; below it Name goes, then Scenario: Last run and Next drill
    always stay."""
    columns = list(COLUMNS)
    title = widths["Runbook"]
    for dropped in (None, *DROPPED_FIRST):
        if dropped is not None:
            columns.remove(dropped)
        others = sum(widths[c] + 2 for c in columns if c != "Runbook")
        title = min(widths["Runbook"], room - others - 2)
        if title >= TITLE_MIN:
            break
    return columns, max(title, 8)


def targets_text(runbook: Runbook) -> str:
    parts = [f"{name} {format_duration(value)}"
             for name, value in (("RTO", runbook.rto), ("RPO", runbook.rpo)) if value]
    return " · ".join(parts) or "-"


def last_run_text(run: RunRow | None) -> Text:
    """2026-11-02 ✓ : the day of the runbook's last run and its result."""
    if run is None:
        return Text("-")
    text = Text(utc_stamp(run.started_at)[:10] + " ")
    text.append_text(result_glyph(run.status))
    return text


def next_drill_text(runbook: Runbook, succeeded: list[RunRow], now: datetime) -> Text:
    """When the next drill is due; overdue (or never drilled) in the warning colour."""
    when = due(runbook, succeeded)
    if when is None:
        return Text("-", style="dim")
    if when.due_at is None:
        return Text("never drilled", style="bold yellow")
    if when.overdue_by(now) is not None:
        return Text(when.describe(now), style="bold yellow")
    return Text(when.describe(now))


def journal_exists(config: Any) -> bool:
    """False only when it is certain no run was ever recorded: then there is nothing to read
    (and a screen that only looks creates no journal file)."""
    from tui.journal.location import JournalUrlInvalid, journal_location

    try:
        location = journal_location(config)
    except JournalUrlInvalid:
        return True  # reading it says why, on screen
    return location.exists() if isinstance(location, Path) else True


class JournalRead(Message):
    """What Home shows from the journal: last runs, successful runs, interrupted runs."""

    def __init__(self, last: dict[str, RunRow], succeeded: list[RunRow],
                 interrupted: list[RunRow], error: str | None = None) -> None:
        super().__init__()
        self.last, self.succeeded, self.interrupted, self.error = \
            last, succeeded, interrupted, error


class ResumeReady(Message):
    def __init__(self, detail: RunDetail, runbook: Runbook, params: dict[str, Any]) -> None:
        super().__init__()
        self.detail, self.runbook, self.params = detail, runbook, params


class ResumeAsks(Message):
    """The runbook takes secrets: they are never recorded, so the operator gives them again."""

    def __init__(self, run: RunRow, secrets: list[Param]) -> None:
        super().__init__()
        self.run, self.secrets = run, secrets


class ResumeFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def secret_params(run: RunRow, config: Any) -> list[Param]:
    """The secret parameters of the runbook a run used (found the way a resume finds it)."""
    from tui.runbook.discovery import find_runbook
    from tui.runbook.loader import load_runbook

    path = Path(run.runbook_path) if run.runbook_path else None
    if path is None or not path.is_file():
        path = find_runbook(run.runbook, list(config.runbook_dirs))
    from tui.journal.resumable import masked_params

    runbook = load_runbook(path)
    # a connection string recorded with its password masked is asked for again too
    masked = set(masked_params(run.params, runbook))
    return [p for p in runbook.params.values() if p.is_secret or p.name in masked]


class ResumeSecrets(ModalScreen[dict[str, str] | None]):
    """Asks again for the secrets a run needs to go on; typed masked, never recorded."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, run: RunRow, secrets: list[Param]) -> None:
        super().__init__()
        self.run, self.secrets = run, secrets

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="resume-secrets"):
            yield Label(f"Resume run {self.run.id[:8]}… of {self.run.runbook}",
                        classes="dialog-title")
            yield Static("Secrets are never recorded: give them again to go on.")
            for param in self.secrets:
                with Vertical(classes="field"):
                    yield Label(param.name, classes="field-label")
                    yield DeckInput(id=f"secret-{param.name}", password=True,
                                    placeholder="hidden as you type; never shown or recorded")
                    if param.help:
                        yield Static(param.help, classes="field-help")
            yield Static("", id="secrets-feedback", classes="typed-mismatch")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Resume (enter)", id="resume", variant="warning")

    def on_mount(self) -> None:
        self.query(DeckInput).first().focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(DeckInput))
        empty = next((i for i in inputs if not i.value), None)
        if empty is not None and empty is not event.input:
            empty.focus()
            return
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "resume":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        values = {p.name: self.query_one(f"#secret-{p.name}", DeckInput).value
                  for p in self.secrets}
        missing = [name for name, value in values.items() if not value]
        if missing:
            self.query_one("#secrets-feedback", Static).update(
                f"{', '.join(missing)}: required to go on")
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "open", priority=False),
        Binding("slash", "filter", "filter"),
        Binding("i", "inventory", "inventory"),
        Binding("h", "history", "history"),
        Binding("m", "toggle_mode", "mode"),
        Binding("u", "resume", "resume"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self, found: list[Found]) -> None:
        super().__init__()
        self.found = found
        self._shown: list[Found] = []
        self._columns: list[str] = []
        self.journal_read: JournalRead | None = None

    @property
    def interrupted(self) -> list[RunRow]:
        return self.journal_read.interrupted if self.journal_read else []

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        banner = getattr(self.app, "banner", None)
        if banner:
            yield Static(banner, id="home-banner")
        yield Static("", id="home-resume")
        with Vertical(classes="panel", id="home-list"):
            yield DeckInput(id="filter", placeholder="filter runbooks (esc: clear)")
            yield DeckTable(id="home-table", cursor_type="row", zebra_stripes=True)
        preview = Markdown(id="home-preview", classes="panel")
        preview.border_title = "Runbook"
        yield preview
        yield DeckFooter()

    def on_mount(self) -> None:
        self.query_one("#home-list").border_title = "Runbooks"
        self.query_one("#home-list").border_subtitle = "/ filter · enter open"
        self._fill("")
        self.query_one(DataTable).focus()
        self.sync_mode()

    def on_screen_resume(self) -> None:
        # back from a run, the history or a resume: what the journal says may have changed
        self.read_journal()

    def read_journal(self) -> None:
        if journal_exists(self.app.config):
            self.load_journal()
        else:
            self._apply(JournalRead({}, [], []))

    @work(thread=True, exclusive=True, group="home-journal")
    def load_journal(self) -> None:
        from tui.journal.store import open_journal

        try:
            journal = open_journal(self.app.config)
            try:
                journal.mark_interrupted()  # a run whose process died is interrupted, not running
                last = journal.last_runs()
                succeeded = journal.runs(statuses=["succeeded"])
                interrupted = journal.runs(statuses=["interrupted"])
            finally:
                journal.close()
        except Exception as exc:  # said on screen; the runbooks still open
            self.post_message(JournalRead({}, [], [], f"cannot read the journal: {exc}"))
            return
        self.post_message(JournalRead(last, succeeded, interrupted))

    def on_journal_read(self, message: JournalRead) -> None:
        self._apply(message)

    def _apply(self, read: JournalRead) -> None:
        self.journal_read = read
        line = self.query_one("#home-resume", Static)
        line.set_class(bool(read.error or read.interrupted), "visible")
        if read.error:
            line.update(Text(f"✗ {read.error}", style="bold red"))
        elif read.interrupted:
            line.update(self._resume_offer(read.interrupted))
        self._fill(self.query_one("#filter", Input).value, keep_cursor=True)
        self.refresh_bindings()

    @staticmethod
    def _resume_offer(runs: list[RunRow]) -> Text:
        run = runs[0]
        count = len(runs)
        text = Text()
        text.append("⊘ ", style="bold yellow")
        text.append(f"{count} interrupted run{'s' if count != 1 else ''}"
                    + (": " if count == 1 else "; the newest: "), style="bold")
        text.append(f"{run.runbook} {run.id[:8]}… started {utc_stamp(run.started_at)} UTC "
                    f"({run.mode.upper()})")
        text.append(" — press ")
        text.append("u", style="bold reverse")
        text.append(" to resume it")
        if count > 1:
            text.append(" (h: history)", style="dim")
        return text

    def sync_mode(self) -> None:
        self.query_one(Breadcrumb).mode = self.app.mode

    def _fill(self, needle: str, keep_cursor: bool = False) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row if keep_cursor else 0
        needle = needle.casefold()
        self._shown = []
        rows: list[dict[str, Any]] = []
        read = self.journal_read
        now = self.app.utc_now()
        for found in self.found:
            runbook = found.runbook
            haystack = (f"{found.path.stem} {runbook.title} {runbook.scenario}"
                        if runbook else found.path.stem).casefold()
            if needle and needle not in haystack:
                continue
            self._shown.append(found)
            if runbook is None:
                rows.append(dict(zip(COLUMNS, (f"✗ {found.path.name} (invalid)",
                                               found.path.stem, "-", "-", "-", "-"),
                                     strict=True)))
                continue
            if read is None:  # the journal is being read
                last, next_drill = Text("…", style="dim"), Text("…", style="dim")
            elif read.error:
                last, next_drill = Text("?", style="dim"), Text("?", style="dim")
            else:
                last = last_run_text(read.last.get(runbook.name))
                next_drill = next_drill_text(runbook, read.succeeded, now)
            rows.append(dict(zip(COLUMNS, (runbook.title, runbook.name, runbook.scenario,
                                           targets_text(runbook), last, next_drill),
                                 strict=True)))
        # "…" while the journal is read: the widths its answer will need, so the columns
        # do not change when it comes
        widths = {c: max([len(c), *(Text(r[c]).cell_len if isinstance(r[c], str)
                                    else r[c].cell_len for r in rows)])
                  for c in COLUMNS}
        widths["Last run"] = max(widths["Last run"], len("2026-11-02 ✓"))
        widths["Next drill"] = max(widths["Next drill"], len("never drilled"))
        columns, title_width = fit_columns(widths, self.app.size.width - TABLE_FRAME)
        if columns != self._columns:
            table.clear(columns=True)
            table.add_columns(*columns)
            self._columns = columns
        else:
            table.clear()
        for cells in rows:
            cells["Runbook"] = shown_title(cells["Runbook"], title_width)
            table.add_row(*(cells[c] for c in columns))
        if keep_cursor and self._shown:
            table.move_cursor(row=min(row, len(self._shown) - 1))
        self._preview(table.cursor_row if keep_cursor else 0)

    def on_resize(self) -> None:
        self._fill(self.query_one("#filter", Input).value, keep_cursor=True)

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

    def action_history(self) -> None:
        self.app.open_history()

    # --- resuming an interrupted run ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume":
            return bool(self.interrupted)
        return True

    def action_resume(self) -> None:
        if not self.interrupted:
            self.notify("no interrupted run to resume", severity="warning")
            return
        self.prepare_resume(self.interrupted[0], None)

    @work(thread=True, exclusive=True, group="resume")
    def prepare_resume(self, run: RunRow, secrets: dict[str, str] | None) -> None:
        """Read the run and its runbook; ask for secrets first when it takes some."""
        from tui.journal.resumable import load_resumable

        config = self.app.config
        try:
            if secrets is None:
                needed = secret_params(run, config)
                if needed:
                    self.post_message(ResumeAsks(run, needed))
                    return
            detail, runbook, params = load_resumable(config, run.id, secrets or {})
        except DrdeckError as exc:
            self.post_message(ResumeFailed(str(exc)))
            return
        except Exception as exc:  # an unreadable runbook file, say: told, not a crash
            self.post_message(ResumeFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ResumeReady(detail, runbook, params))

    def on_resume_asks(self, message: ResumeAsks) -> None:
        def given(values: dict[str, str] | None) -> None:
            if values is not None:
                self.prepare_resume(message.run, values)

        self.app.push_screen(ResumeSecrets(message.run, message.secrets), given)

    def on_resume_failed(self, message: ResumeFailed) -> None:
        self.notify(message.error, title="the run cannot be resumed", severity="error",
                    timeout=20)

    def on_resume_ready(self, message: ResumeReady) -> None:
        self.app.resume_run(message.detail, message.runbook, message.params)

    def action_toggle_mode(self) -> None:
        self.app.mode = "incident" if self.app.mode == "drill" else "drill"
        self.sync_mode()
        if self.app.mode == "incident":
            self.notify("INCIDENT mode: runs are recorded as a real incident", severity="warning")

    help_notes = ("Mode: DRILL (blue) for practice, INCIDENT (red) for the real thing; "
                  "it is recorded with every run.\n\n"
                  "Last run: the day of each runbook's last run and its result. Next drill: "
                  "when a restore runbook is next due (monthly unless it sets a cadence); only "
                  "a successful run resets the clock. An interrupted run is offered above the "
                  "table: u resumes it from its first unfinished step, in its own mode.")
