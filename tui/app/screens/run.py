"""The run screen: the state of the restore, the time against the RTO, and what to do next.

The engine runs in a Textual worker on the app's loop. Its events land in a
buffer that a short timer drains: one batch of log lines and one redraw per
tick, however fast a step prints, so a flood never starves the keyboard.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer

from tui.durations import format_clock
from tui.engine import events as ev
from tui.engine.operator import Answer, FailureDecision
from tui.engine.runner import Runner
from tui.engine.state import RunState
from tui.runbook.model import Runbook
from tui.runbook.templating import TemplateError, render_text

from ..operator import AppOperator, OperatorRequest, OperatorRequestClosed
from ..widgets.breadcrumb import Breadcrumb
from ..widgets.clock import rto_clock
from ..widgets.focus import CurrentStep, FailurePanel, ManualPanel
from ..widgets.output import MAX_LINES, OutputPanel
from ..widgets.steps import ChecksPanel, StepList
from .confirm import AskYesNo, ConfirmStep, SkipReason
from .edit_params import EditParams
from .summary import RunSummary

FLUSH_INTERVAL_S = 1 / 30
# how long quitting waits for the run to stop: a process group gets SIGTERM, then SIGKILL
STOP_PATIENCE_S = 20.0

RUN_HELP = (
    "Glyphs: ○ pending  ● running  ◐ waiting for you  ✓ succeeded  ✗ failed  ↷ skipped.\n\n"
    "The RTO clock turns yellow at 75% of the target and red past it; it stops at the "
    "service-restored milestone.\n\n"
    "Ctrl+C and quitting ask before they stop a run; an aborted run is recorded as such."
)


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "answer", "done"),
        Binding("r", "retry", "retry"),
        Binding("e", "edit", "edit & retry"),
        Binding("s", "skip", "skip"),
        Binding("a", "abort", "abort"),
        Binding("f", "follow", "follow"),
        Binding("w", "wrap", "wrap", show=False),
        Binding("c", "copy_connection", "copy connection"),
        Binding("slash", "search", "search"),
        Binding("escape", "home", "home"),  # h is History, as on Home
    ]

    def __init__(self, runbook: Runbook, params: dict[str, Any], *, mode: str,
                 run_id: str | None = None, config: Any = None, resume: Any = None) -> None:
        super().__init__()
        self.runbook = runbook
        self.mode = mode
        self.state = RunState()
        self.runner = Runner(runbook, params, AppOperator(self), mode=mode,
                             run_id=resume.run.id if resume else run_id, config=config,
                             resume=resume)
        self.config = config
        self.resume = resume
        self.journal: Any = None
        self._recorder: Any = None  # tui.journal.recorder.Recorder, when journalled
        self._pending: list[ev.Event | str] = []
        self._request: OperatorRequest | None = None
        self._summary_shown = False
        self.result = None

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="crumb")
        with Horizontal():
            with Vertical(id="left"):
                steps = StepList(id="steps", classes="panel")
                steps.border_title = "Steps"
                yield steps
                checks = ChecksPanel(id="checks", classes="panel")
                checks.border_title = "Checks"
                yield checks
            with Vertical(id="right"):
                with ContentSwitcher(id="focus-panel", initial="current"):
                    yield CurrentStep(id="current", classes="panel")
                    yield ManualPanel(id="manual", classes="panel request")
                    yield FailurePanel(id="failure", classes="panel failure")
                yield OutputPanel(id="output-panel", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        crumb = self.query_one(Breadcrumb)
        crumb.mode = self.mode
        crumb.parts = (self.runbook.name, f"run {self.runner.run_id}")
        self.state.apply(self._preview_started(), self.app.clock())
        self._redraw()
        self.set_interval(FLUSH_INTERVAL_S, self._flush)
        self.set_interval(1.0, self._tick)
        self.query_one("#output").focus()
        if not self._start_journal():
            return
        self.runner.subscribe(self._receive)
        # start once the screen is drawn: its first layout is not then paid during a flood
        self.call_after_refresh(self.run_worker, self._drive(), name="run", group="run",
                                exclusive=True)

    def _start_journal(self) -> bool:
        """Record the run; refuse it (and say why) when another run holds its target."""
        from tui.errors import DrdeckError
        from tui.journal.recorder import Recorder
        from tui.notify import RunNotifier

        if not getattr(self.app, "journal_enabled", True):
            return True
        try:
            self.journal = self.app.open_journal()
            recorder = Recorder(self.journal, self.runner, resumed=self.resume)
            recorder.begin(self.runner.lock_key())
        except DrdeckError as exc:
            self.app.notify(str(exc), title="the run was not started", severity="error",
                            timeout=30)
            self.state.finished = None
            self.call_after_refresh(self.app.pop_screen)
            return False
        self.runner.subscribe(recorder)
        self._recorder = recorder
        self.runner.relock = recorder.relock
        self.runner.subscribe(RunNotifier(self.runner, report=self.app.notify))
        return True

    def _preview_started(self) -> ev.RunStarted:
        """The step list is drawn before the engine's first event arrives."""
        return ev.RunStarted(
            run_id=self.runner.run_id, runbook=self.runbook.name, title=self.runbook.title,
            scenario=self.runbook.scenario, mode=self.mode, params={},
            steps=[ev.StepInfo(id=s.id, title=s.title, action=s.action)
                   for s in self.runbook.steps],
            workdir="", rto_target_s=self.runbook.rto, rpo_target_s=self.runbook.rpo,
        )

    async def _drive(self) -> None:
        try:
            await self._scale_forecast()
            self.result = await self.runner.run()
        finally:
            if self._recorder is not None:
                self._recorder.stop_beating()  # whatever way the run ended
            if self.journal is not None:
                self.journal.close()
                self.journal = None

    async def _scale_forecast(self) -> None:
        """The forecast, scaled to what the run will move: read off the loop, so the
        screen stays live meanwhile; never a reason for the run not to start."""
        recorder = self._recorder
        try:
            if recorder is not None and recorder.wants_volumes():
                recorder.scale(await asyncio.to_thread(recorder.read_volumes))
        except Exception:  # the run starts with the forecast it has
            pass

    @property
    def running(self) -> bool:
        return self.state.finished is None

    # --- events in, drawing out ------------------------------------------------------

    def _receive(self, event: ev.Event) -> None:
        # An output line is kept as its text only: strings are not tracked by the
        # garbage collector, and thousands of buffered events per tick would be.
        if event.kind == "output":
            self._pending.append(event.line)
        else:
            self._pending.append(event)

    def _flush(self) -> None:
        if not self._pending:
            return
        items, self._pending = self._pending, []
        now = self.app.clock()
        stamp = self.app.wall_clock()
        prefix = f"{stamp} " if stamp else ""
        lines: list[str] = []
        structural = refresh_keys = False
        outputs = 0
        for item in items:
            if type(item) is str:
                outputs += 1
                lines.append(prefix + item)
                continue
            self.state.count_output(outputs)
            outputs = 0
            self.state.apply(item, now)
            structural = True
            if item.kind == "step_finished":
                refresh_keys = True
            marker = _log_marker(item)
            if marker:
                lines.append(prefix + marker)
        self.state.count_output(outputs)
        if len(lines) > MAX_LINES:  # the log keeps only so many: skip what it would drop
            lines = lines[-MAX_LINES:]
        if lines:
            self.query_one(OutputPanel).write_lines(lines)
        if structural:
            self._redraw()
        if refresh_keys:  # a step's output can offer a key (copy the connection string)
            self.refresh_bindings()
        if self.state.finished is not None and not self._summary_shown:
            self._summary_shown = True
            # reopening the runbook after a failure or an abort starts from these values
            self.app.remember_values(self.runbook.name, None
                                     if self.state.finished.status == "succeeded"
                                     else self.runner.raw_params())
            self.refresh_bindings()
            self.app.push_screen(RunSummary(self.state), self._after_summary)

    def _tick(self) -> None:
        now = self.app.clock()
        self._draw_clock(now)
        if self.running:
            self.query_one(StepList).show(self.state, now)
        if self._request is not None and self._request.kind == "manual":
            self.query_one(ManualPanel).show_waited(now - (self.state.waiting_since or now))

    def _redraw(self) -> None:
        now = self.app.clock()
        self._draw_clock(now)
        self.query_one(StepList).show(self.state, now)
        self.query_one(ChecksPanel).show(self.state)
        self.query_one(CurrentStep).show(self.state, self._descriptions(), now)

    def _draw_clock(self, now: float) -> None:
        stopped = any(m.name == "service-restored" for m in self.state.milestones)
        self.query_one(Breadcrumb).right = rto_clock(
            self.state.rto_elapsed(now), self.state.rto_target_s, stopped,
            self.state.projected_s(now))

    def _descriptions(self) -> dict[str, str]:
        shown = {}
        for step in self.runbook.steps:
            try:
                text = render_text(step.description, self.runner.lookup)
            except (TemplateError, KeyError):
                text = step.description
            shown[step.id] = self.runner.redact(text)
        return shown

    # --- the person -----------------------------------------------------------------

    def on_operator_request(self, message: OperatorRequest) -> None:
        self._flush()  # the state must show the wait before the question does
        self._request = message
        switcher = self.query_one(ContentSwitcher)
        if message.kind == "confirm":
            self.app.push_screen(ConfirmStep(message.request), self._resolve)
        elif message.kind == "manual":
            self.query_one(ManualPanel).show_request(message.request)
            self.query_one(ManualPanel).show_waited(0)
            switcher.current = "manual"
        elif message.kind == "failure":
            self.query_one(FailurePanel).show_request(message.request)
            switcher.current = "failure"
        self.refresh_bindings()

    def on_operator_request_closed(self, message: OperatorRequestClosed) -> None:
        self._request = None
        self.query_one(ContentSwitcher).current = "current"
        self.query_one(OutputPanel).log_widget.focus()
        self.refresh_bindings()

    def _resolve(self, answer: Any) -> None:
        request = self._request
        if request is not None and not request.answer.done():
            request.answer.set_result(answer)

    def _waiting_for(self, kind: str) -> bool:
        return self._request is not None and self._request.kind == kind

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the footer shows only the keys that mean something right now
        if action == "answer":
            return self._waiting_for("manual")
        if action == "retry":
            return self._waiting_for("failure")
        if action == "skip":
            return self._waiting_for("failure") and self._request.request.skip_refused is None
        if action == "edit":
            return self._waiting_for("failure") and bool(self._request.request.editable)
        if action == "abort":
            return self.running
        if action == "home":
            return not self.running
        if action == "copy_connection":
            return self.runner.connection_string() is not None
        return True

    def action_answer(self) -> None:
        """Enter: the manual step is done (buttons and inputs take enter themselves)."""
        if self._waiting_for("manual"):
            self._resolve(Answer(True))

    def action_retry(self) -> None:
        if self._waiting_for("failure"):
            self._resolve(FailureDecision("retry"))

    def action_edit(self) -> None:
        """The form again with the run's values: fix the one that is wrong, then retry."""
        if not self._waiting_for("failure") or not self._request.request.editable:
            return
        request = self._request.request

        def edited(values: dict[str, Any] | None) -> None:
            if values is not None:
                self._resolve(FailureDecision("edit", params=values))

        self.app.push_screen(EditParams(self.runbook, self.runner.raw_params(),
                                        request.editable, request.title, request.uses), edited)

    def action_skip(self) -> None:
        if not self._waiting_for("failure") or self._request.request.skip_refused:
            return
        title = self._request.request.title

        def skip(reason: str | None) -> None:
            if reason:
                self._resolve(FailureDecision("skip", reason))

        self.app.push_screen(SkipReason(title), skip)

    def action_abort(self) -> None:
        if not self.running:
            return
        current = self.state.current_step()
        detail = (f"“{current.title}” is stopped, " if current else "") + \
            "and the run is recorded as aborted. Nothing that exists is deleted."

        def abort(yes: bool | None) -> None:
            if not yes:
                return
            if self._waiting_for("failure"):
                self._resolve(FailureDecision("abort", "aborted by the operator"))
            else:
                self.runner.abort("aborted by the operator")

        self.app.push_screen(AskYesNo("Abort this run?", detail, yes="Abort the run",
                                      no="Keep going"), abort)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "manual-done": self.action_answer,
            "manual-abort": self.action_abort,
            "failure-retry": self.action_retry,
            "failure-edit": self.action_edit,
            "failure-skip": self.action_skip,
            "failure-abort": self.action_abort,
        }
        handler = actions.get(event.button.id or "")
        if handler is not None:
            event.stop()
            handler()

    def action_follow(self) -> None:
        self.query_one(OutputPanel).toggle_follow()

    def action_wrap(self) -> None:
        self.query_one(OutputPanel).toggle_wrap()

    def action_copy_connection(self) -> None:
        """The restored server's connection string, to paste where the application needs it
        (to the terminal's clipboard: OSC 52, which works over SSH too)."""
        found = self.runner.connection_string()
        if found is None:
            return
        dsn, step = found
        self.app.copy_to_clipboard(dsn)
        self.app.notify(self.runner.redact(dsn),
                        title=f"connection string copied (from “{step}”)")

    def action_search(self) -> None:
        self.query_one(OutputPanel).open_search()

    def action_home(self) -> None:
        if not self.running:
            self.app.go_home()

    def on_screen_resume(self) -> None:
        panel = self.query_one(OutputPanel)
        if panel.following:
            panel.log_widget.scroll_end(animate=False)

    def _after_summary(self, choice: str | None) -> None:
        if choice == "home":
            self.app.go_home()
        elif choice == "edit":
            self.app.go_home()
            self.app.open_briefing(self.runbook, self.runner.raw_params())

    # --- stopping -------------------------------------------------------------------

    async def stop_run(self, reason: str) -> None:
        """Abort the run and wait until the engine has recorded it.

        Bounded: a step that will not stop must not hold the person at a frozen screen.
        The journal then shows the run as interrupted, and `drdeck resume` goes on."""
        if not self.running:
            return
        self.app.notify("stopping the run…", timeout=STOP_PATIENCE_S)
        self.runner.abort(reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_PATIENCE_S):
                for worker in list(self.workers):
                    with contextlib.suppress(Exception):
                        await worker.wait()
        await asyncio.sleep(0)
        if self.is_mounted:
            self._flush()

    @property
    def help_notes(self) -> str:
        return RUN_HELP


def _log_marker(event: ev.Event) -> str | None:
    """A line in the output log that marks where steps begin and end."""
    kind = event.kind
    if kind == "step_started":
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        return f"── ▶ {event.title}{attempt}"
    if kind == "step_finished":
        glyph = {"succeeded": "✓", "failed": "✗", "skipped": "↷"}.get(event.status, "·")
        text = f"── {glyph} {event.step} {event.status} in {format_clock(event.duration_s)}"
        if event.error:
            text += f": {event.error}"
        if event.reason:
            text += f" (reason: {event.reason})"
        return text
    if kind == "check":
        return f"   {'✓' if event.ok else '✗'} check {event.name}: {event.detail}"
    if kind == "attempt_failed":
        return f"── ! attempt {event.attempt} failed: {event.error}; retry in {event.retry_in_s:g}s"
    if kind == "params_edited":
        changed = ", ".join(f"{name} {old!r} → {new!r}"
                            for name, (old, new) in event.changed.items())
        return f"── ✎ parameters edited: {changed}; from {event.rerun_from} again"
    if kind == "milestone":
        return f"── ◆ milestone {event.name} at {format_clock(event.elapsed_s)}"
    if kind == "run_finished":
        return f"── run {event.status} in {format_clock(event.duration_s)}"
    return None
