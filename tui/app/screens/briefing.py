"""Briefing: what the runbook does, who to call, and a form for its parameters."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Markdown, Static

from tui.runbook.model import Runbook

from ..widgets.breadcrumb import Breadcrumb
from ..widgets.param_form import ParamField, ParamForm
from .home import runbook_markdown

__all__ = ["BriefingScreen", "ParamField"]


class BriefingScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "start", "start run"),
        Binding("escape", "back", "back"),
    ]

    def __init__(self, runbook: Runbook, given: dict[str, str] | None = None) -> None:
        super().__init__()
        self.runbook = runbook
        self.given = given or {}

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        with Horizontal():
            text = Markdown(runbook_markdown(self.runbook), id="briefing-text", classes="panel")
            text.border_title = "Briefing"
            yield text
            with Vertical(id="briefing-form", classes="panel"):
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
        if not self.form.focus_first_to_fill():
            self.query_one("#start", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        values, wrong = self.form.values()
        status = self.query_one("#form-status", Static)
        if values is None:
            status.update(f"✗ fix {wrong} field{'s' if wrong != 1 else ''} to start")
            status.add_class("invalid")
            return
        status.update("")
        status.remove_class("invalid")
        self.app.start_run(self.runbook, values)

    def action_back(self) -> None:
        self.app.pop_screen()
