"""The right-hand pane's top: the current step, or what the run needs from you now."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Markdown, ProgressBar, Static

from tui.durations import format_clock, format_duration
from tui.engine.operator import FailureRequest, ManualRequest
from tui.engine.state import RunState, StepView
from tui.units import format_progress, format_rate

COMMAND_LINES = 6


class CurrentStep(Vertical):
    """What runs now: instructions, the exact command, progress with ETA."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown_step: str | None = None

    def compose(self) -> ComposeResult:
        yield Markdown(id="step-description")
        yield Static(id="step-command", classes="command")
        with Horizontal(id="progress-row"):
            yield ProgressBar(id="progress-bar", show_eta=False, show_percentage=True)
        yield Static(id="progress-detail")
        yield Static(id="step-status")

    def show(self, state: RunState, descriptions: dict[str, str], now: float) -> None:
        step = state.current_step()
        if step is None:
            self.border_title = "Waiting to start" if state.finished is None else "Finished"
            return
        self.border_title = f"{state.position}/{len(state.steps)}  {step.title}"
        if step.id != self._shown_step:
            self._shown_step = step.id
            self.query_one("#step-description", Markdown).update(descriptions.get(step.id, ""))
        command = Text()
        if step.command:
            lines = step.command.splitlines()
            command.append("$ ", style="bold")
            command.append("\n".join(lines[:COMMAND_LINES]))
            if len(lines) > COMMAND_LINES:
                command.append(f"\n… {len(lines) - COMMAND_LINES} more lines", style="dim")
        self.query_one("#step-command", Static).update(command)
        self._show_progress(step)
        self.query_one("#step-status", Static).update(self._status(step, now))

    def _show_progress(self, step: StepView) -> None:
        row = self.query_one("#progress-row")
        detail = self.query_one("#progress-detail", Static)
        progress = step.progress
        if progress is None or step.done:
            row.remove_class("visible")
            detail.update("")
            return
        row.add_class("visible")
        bar = self.query_one("#progress-bar", ProgressBar)
        bar.update(total=progress.total, progress=progress.done)
        text = Text(format_progress(progress.done, progress.total, progress.unit))
        if progress.eta_s is not None:
            text.append(f"   ETA {format_clock(progress.eta_s)}", style="bold")
        if progress.rate:
            text.append(f"   {format_rate(progress.rate, progress.unit)}")
        if progress.detail:
            text.append(f"\n{progress.detail}")
        detail.update(text)

    @staticmethod
    def _status(step: StepView, now: float) -> Text:
        text = Text()
        if step.retry_in_s is not None and step.error:
            text.append(f"attempt {step.attempt} failed: {step.error}\n", style="yellow")
            text.append(f"retrying in {format_duration(step.retry_in_s)}", style="yellow")
        elif step.done and step.error:
            text.append(step.error, style="red")
        return text


class KeyButton(Button, can_focus=False):
    """A button for the mouse; the keyboard answers with the key on its label."""


class ManualPanel(Vertical):
    """A step that a person does: instructions, a clear done action, the time waited."""

    def compose(self) -> ComposeResult:
        yield Label("", classes="request-title", id="manual-title")
        yield Markdown(id="manual-instructions")
        yield Static(id="manual-waited")
        with Horizontal(classes="choices"):
            yield KeyButton("Done (enter)", id="manual-done", variant="success")
            yield KeyButton("Abort run (a)", id="manual-abort", variant="error")

    def show_request(self, request: ManualRequest) -> None:
        self.border_title = "Waiting for you"
        self.query_one("#manual-title", Label).update(f"◐ {request.title}")
        self.query_one("#manual-instructions", Markdown).update(request.instructions)

    def show_waited(self, seconds: float) -> None:
        self.query_one("#manual-waited", Static).update(
            Text(f"waiting on you for {format_clock(seconds)}", style="dim"))


class FailurePanel(Vertical):
    """A failed step: the error, this attempt's output, and retry / edit / skip / abort."""

    def compose(self) -> ComposeResult:
        yield Label("", classes="failure-title", id="failure-title")
        yield Static(id="failure-error")
        yield Static(id="failure-tail", classes="tail")
        yield Static(id="failure-skip-note", classes="tail")
        with Horizontal(classes="choices"):
            yield KeyButton("Retry (r)", id="failure-retry", variant="primary")
            yield KeyButton("Edit & retry (e)", id="failure-edit", variant="primary")
            yield KeyButton("Skip… (s)", id="failure-skip", variant="warning")
            yield KeyButton("Abort run (a)", id="failure-abort", variant="error")

    def show_request(self, request: FailureRequest) -> None:
        self.border_title = "Step failed: what now?"
        attempts = f" after {request.attempts} attempts" if request.attempts > 1 else ""
        self.query_one("#failure-title", Label).update(f"✗ {request.title} failed{attempts}")
        self.query_one("#failure-error", Static).update(Text(request.error, style="bold"))
        tail = Text()
        if request.last_lines:
            attempt = f" of attempt {request.attempts}" if request.attempts > 1 else ""
            tail.append(f"last output{attempt}:\n", style="dim italic")
            tail.append("\n".join(request.last_lines[-8:]))
        self.query_one("#failure-tail", Static).update(tail)
        # a step whose output a later step needs is not offered skip, and the panel says why
        self.query_one("#failure-skip", Button).display = request.skip_refused is None
        self.query_one("#failure-edit", Button).display = bool(request.editable)
        note = Text(f"Skip is not offered: {request.skip_refused}", style="italic") \
            if request.skip_refused else Text()
        self.query_one("#failure-skip-note", Static).update(note)
