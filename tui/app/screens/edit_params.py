"""Edit a run's parameters after a failure, then retry: the values kept, only the typo fixed."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.runbook.model import Runbook

from ..widgets.param_form import ParamForm


class EditParams(ModalScreen[dict[str, Any] | None]):
    """The run's form again, filled with the values it ran with. Parameters that name the
    run's target (its lock) are shown but cannot change: that would be another run."""

    DEFAULT_CSS = """
    /* the buttons stay in view however many fields: the fields scroll */
    #edit-dialog { width: 90; height: 90%; }
    #edit-fields { height: 1fr; margin-top: 1; }
    #edit-status { height: auto; }
    """

    BINDINGS = [
        Binding("ctrl+s", "retry", "retry with these", priority=True),
        Binding("escape", "cancel", "cancel"),
    ]

    def __init__(self, runbook: Runbook, given: dict[str, str], editable: tuple[str, ...],
                 step_title: str, uses: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.runbook, self.given = runbook, given
        self.editable, self.step_title = set(editable), step_title
        self.uses = uses

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="edit-dialog"):
            yield Label(f"Edit the parameters, then retry “{self.step_title}”",
                        classes="dialog-title")
            yield Static(Text("Earlier steps that use a changed value run again first; the "
                              "change is recorded with the run.", style="dim"))
            yield ParamForm(self.runbook, self.given, id="edit-fields", settled=True)
            yield Static("", id="edit-status")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Retry with these (ctrl+s)", id="retry", variant="primary")

    def on_mount(self) -> None:
        form = self.query_one(ParamForm)
        first = None
        for field in form.fields:
            if field.param.name not in self.editable:
                field.query_one(f"#param-{field.param.name}").disabled = True
                field.show_error("the run's target: abort and start a new run to change it")
            elif first is None or (field.param.name in self.uses
                                   and first.param.name not in self.uses):
                first = field  # the failed step's own values are the likely culprits
        if first is not None:
            # once laid out: focusing then scrolls the field into view
            self.call_after_refresh(first.focus_input)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "retry":
            self.action_retry()
        else:
            self.action_cancel()

    def action_retry(self) -> None:
        values, wrong = self.query_one(ParamForm).values()
        if values is None:
            self.query_one("#edit-status", Static).update(
                Text(f"✗ fix {wrong} field{'s' if wrong != 1 else ''} to retry", style="red"))
            return
        self.dismiss({k: v for k, v in values.items() if k in self.editable})

    def action_cancel(self) -> None:
        self.dismiss(None)
