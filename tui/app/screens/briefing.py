"""Briefing: what the runbook does, who to call, and a form for its parameters."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Markdown, Static

from tui.runbook.model import Runbook

from ..widgets.breadcrumb import Breadcrumb
from ..widgets.param_form import ParamField, ParamForm
from .confirm import AskYesNo
from .home import runbook_markdown

__all__ = ["BriefingScreen", "ParamField"]


class BriefingScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "start", "start run"),
        Binding("escape", "back", "back"),
    ]

    help_notes = ("Each field is checked as you type, as the run would check it: a port must "
                  "be free, a new data directory absent or empty, a recovery target inside "
                  "the window shown beside it. Nothing is started or recorded until every "
                  "field is right. In a text field ? is typed: f1 opens this help. esc goes "
                  "back, and asks first when you have changed something.")

    def __init__(self, runbook: Runbook, given: dict[str, str] | None = None) -> None:
        super().__init__()
        self.runbook = runbook
        self.given = given or {}
        self._opened_with: dict[str, str] = {}
        self._start_tried = False  # from then on the summary line follows every edit

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        with Horizontal():
            text = Markdown(runbook_markdown(self.runbook), id="briefing-text", classes="panel")
            text.border_title = "Briefing"
            yield text
            with Vertical(id="briefing-form", classes="panel"):
                yield Static("", id="forecast")
                with Horizontal(id="form-actions"):
                    yield Button("Start run (ctrl+s)", id="start", variant="success")
                    yield Static("", id="form-status")
                yield ParamForm(self.runbook, self.given)
        yield Footer()

    @property
    def form(self) -> ParamForm:
        return self.query_one(ParamForm)

    def on_mount(self) -> None:
        crumb = self.query_one(Breadcrumb)
        crumb.mode = self.app.mode
        crumb.parts = (self.runbook.name, "briefing")
        self.query_one("#briefing-form").border_title = "Parameters"
        self._opened_with = self.form.raw_values()
        if not self.form.focus_first_to_fill():
            self.query_one("#start", Button).focus()
        if self.app.journal_enabled:
            self._read_forecast(self.form.raw_values())

    @work(thread=True, exclusive=True, group="forecast")
    def _read_forecast(self, given: dict[str, str]) -> None:
        from tui.journal.forecast import forecast_for

        try:
            line = forecast_for(self.app.config, self.runbook, given).short()
        except Exception as exc:  # the journal cannot be read: said, and the form works on
            line = f"forecast: cannot read the journal ({exc})"
        self.app.call_from_thread(self._show_forecast, line)

    def _show_forecast(self, line: str) -> None:
        if self.is_mounted:  # not gone back before the journal answered
            self.query_one("#forecast", Static).update(line)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def on_param_form_checked(self, message: ParamForm.Checked) -> None:
        if self._start_tried:
            self._show_status(message.wrong)

    def _show_status(self, wrong: int) -> None:
        status = self.query_one("#form-status", Static)
        if wrong:
            status.update(f"✗ fix {wrong} field{'s' if wrong != 1 else ''} to start")
        else:
            status.update("✓ every field is right: ctrl+s starts the run")
        status.set_class(bool(wrong), "invalid")

    def action_start(self) -> None:
        # nothing is created, journal included, until every field is right
        self._start_tried = True
        values, wrong = self.form.values()
        if values is None:
            self._show_status(wrong)
            return
        self.app.start_run(self.runbook, values)

    def action_back(self, then: Callable[[], None] | None = None) -> None:
        """Back (then `then`, e.g. the palette's way somewhere else); asks first when the
        form holds changes, since going back forgets them."""
        def leave() -> None:
            self.app.pop_screen()
            if then is not None:
                then()

        if self.form.raw_values() == self._opened_with:
            leave()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                leave()

        self.app.push_screen(AskYesNo(
            "Throw away your changes to the parameters?",
            "Going back forgets what you typed in this form.",
            yes="Throw them away", no="Keep editing"), answer)
