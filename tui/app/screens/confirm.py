"""Modal questions: confirm a step (typed when it matters), a yes/no, a skip reason."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.engine.operator import Answer, ConfirmRequest

from .._shared import DeckInput


class ConfirmStep(ModalScreen[Answer]):
    """Shows what will run and against what; with a typed value, confirm waits for it."""

    BINDINGS = [
        Binding("escape", "cancel", "stop the run"),
        # not a priority binding: in the typed field, enter must come after the keys typed
        # before it (the field submits in order); a priority binding would read the value
        # before the field has taken the last letters
        Binding("enter", "confirm", "confirm"),
    ]

    def __init__(self, request: ConfirmRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(classes="dialog", id="confirm-dialog"):
            yield Label(f"Confirm: {request.title}", classes="dialog-title")
            # scrolls when long (25 roles in an 80x24 terminal), so the buttons stay in view;
            # plain text: it names things from a repository (role names), never markup
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(request.text))
                if request.command:
                    yield Static(Text(f"$ {request.command}"), classes="command")
            if request.expected_input is not None:
                hint = Text("Type ")
                hint.append(request.expected_input, style="bold reverse")
                hint.append(" to confirm:")
                yield Static(hint, classes="typed-hint")
                yield DeckInput(id="typed", placeholder=request.expected_input)
                yield Static("", id="typed-feedback", classes="typed-mismatch")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop the run (esc)", id="cancel")
                yield Button("Confirm (enter)", id="confirm", variant="error",
                             disabled=request.expected_input is not None)

    def on_mount(self) -> None:
        if self.request.expected_input is not None:
            self.query_one("#typed", Input).focus()
        else:  # enter confirms; the first button (stop the run) must not take it
            self.query_one("#confirm", Button).focus()

    @property
    def _matches(self) -> bool:
        expected = self.request.expected_input
        return expected is None or self.query_one("#typed", Input).value == expected

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = not self._matches
        feedback = "" if self._matches or not event.value else "does not match yet"
        self.query_one("#typed-feedback", Static).update(feedback)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "typed":
            event.stop()
            self.action_confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        if self._matches:
            self.dismiss(Answer(True))
        else:
            self.query_one("#typed-feedback", Static).update(
                f"type {self.request.expected_input} exactly to confirm")

    def action_cancel(self) -> None:
        # esc is a reflex: what earlier steps fetched and checked must not go with it unasked
        def answer(stop: bool | None) -> None:
            if stop:
                self.dismiss(Answer(False, note="the operator did not confirm; "
                                                "the run stops here"))

        self.app.push_screen(AskYesNo(
            "Stop the run here?",
            f"“{self.request.title}” does not run, and the run is recorded as aborted. "
            "What the steps before it did stays as it is.",
            yes="Stop the run", no="Back to the question"), answer)


class AskYesNo(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "answer(False)", "no"),
        Binding("y", "answer(True)", "yes"),
    ]

    def __init__(self, question: str, detail: str = "", yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            if self.detail:
                yield Static(self.detail)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.no} (n)", id="no")
                yield Button(f"{self.yes} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class SkipReason(ModalScreen[str | None]):
    """Skipping a failed step is recorded with a reason; an empty one is not accepted."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, step_title: str):
        super().__init__()
        self.step_title = step_title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Skip: {self.step_title}", classes="dialog-title")
            yield Static("Why is it safe to go on without it? The reason is recorded.")
            yield DeckInput(id="reason", placeholder="e.g. verified by hand on the replica")
            yield Static("", id="reason-feedback", classes="typed-mismatch")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Skip (enter)", id="skip", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "skip":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#reason-feedback", Static).update("a reason is required")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
