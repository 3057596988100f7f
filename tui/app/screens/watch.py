"""Watch: a run another process executes, on this machine or another, followed through the
journal (tui.journal.follow), read only: the steps, checks, output, RTO clock and
forecast. No key here acts on the run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..widgets.breadcrumb import Breadcrumb
from ..widgets.clock import rto_clock
from ..widgets.focus import CurrentStep
from ..widgets.output import OutputPanel
from ..widgets.steps import ChecksPanel, StepList

POLL_S = 0.5  # an event reaches the screen within a poll and a draw


class JournalRead(Message):
    def __init__(self, detail: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.detail, self.error = detail, error


class WatchScreen(Screen[None]):
    BINDINGS = [Binding("escape", "back", "back")]

    help_notes = ("A run another process is executing, followed through the journal it "
                  "records into (this machine's, or the shared PostgreSQL journal). Read "
                  "only: nothing here can confirm, retry or stop it.")

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.state: Any = None
        self._tails: Any = None
        self._reading = False

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        yield Static("", id="watch-status")
        with Horizontal():
            with Vertical(id="left"):
                steps = StepList(id="steps", classes="panel")
                steps.border_title = "Steps"
                yield steps
                checks = ChecksPanel(id="checks", classes="panel")
                checks.border_title = "Checks"
                yield checks
            with Vertical(id="right"):
                yield CurrentStep(id="current", classes="panel")
                yield OutputPanel(id="output-panel", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        from tui.journal.follow import Silence, Tails

        self._tails = Tails()
        self._silence = Silence()
        crumb = self.query_one(Breadcrumb)
        crumb.mode, crumb.parts = self.app.mode, ("watch", self.run_id)
        self.query_one("#watch-status", Static).update(
            Text(f"watching run {self.run_id} through the journal: read only", style="dim"))
        self._read()
        self.set_interval(POLL_S, self._read)
        self.set_interval(0.25, self._draw_clock)

    def _read(self) -> None:
        if not self._reading:  # one read at a time: a slow journal is not asked twice
            self._reading = True
            self._read_journal()

    @work(thread=True, group="watch")
    def _read_journal(self) -> None:
        from tui.journal.store import open_journal

        try:
            # opened for each read: a journal connection belongs to the thread that opened
            # it, and each read runs on a thread of its own
            journal = open_journal(self.app.config)
            try:
                detail = journal.run(self.run_id)
            finally:
                journal.close()
        except Exception as exc:  # shown on screen; the watcher keeps trying
            self.post_message(JournalRead(error=str(exc)))
            return
        self.post_message(JournalRead(detail))

    def on_journal_read(self, message: JournalRead) -> None:
        from tui.journal.follow import state_of

        self._reading = False
        if message.error:
            self.query_one("#watch-status", Static).update(
                Text(f"✗ cannot read the journal: {message.error}", style="bold red"))
            return
        detail = message.detail
        now = self.app.clock()
        self.state = state_of(detail, now, datetime.now(UTC))
        self.run_id = detail.run.id  # a prefix given: the whole id from now on
        crumb = self.query_one(Breadcrumb)
        crumb.parts = ("watch", detail.run.runbook, detail.run.id)
        crumb.mode = detail.run.mode  # the run's, not this console's: an incident says so
        status = Text(f"watching {detail.run.runbook} run {detail.run.id} by "
                      f"{detail.run.operator}: read only", style="dim")
        if self.state.forecast is not None:
            status.append(f" · {self.state.forecast.short()}", style="dim")
        if self.state.finished is not None:
            status.append(f" · {detail.run.status.upper()}", style="bold")
        silent = self._silence.words(detail.run.id, detail.run.status,
                                     detail.run.heartbeat_at, detail.run.host, detail.run.pid,
                                     datetime.now(UTC), now)
        if silent:  # killed with no chance to say so: it would look as if it ran on
            status.append(f"\n⚠ {silent}", style="bold yellow")
        self.query_one("#watch-status", Static).update(status)
        self.query_one(StepList).show(self.state, now)
        self.query_one(ChecksPanel).show(self.state)
        self.query_one(CurrentStep).show(self.state, {}, now)
        lines = self._tails.new_lines(detail)
        if lines:
            self.query_one(OutputPanel).write_lines(lines)
        self._draw_clock()

    def _draw_clock(self) -> None:
        if self.state is None:
            return
        now = self.app.clock()
        stopped = any(m.name == "service-restored" for m in self.state.milestones)
        self.query_one(Breadcrumb).right = rto_clock(
            self.state.rto_elapsed(now), self.state.rto_target_s, stopped,
            self.state.projected_s(now))
        if self.state.finished is None:
            self.query_one(StepList).show(self.state, now)

    def action_back(self) -> None:
        self.app.pop_screen()
