"""The state of a run, folded from its events: what a screen or a report shows.

Front ends keep one RunState and feed it every event; they read it to draw,
and never work out a step's status or the RTO themselves. `now` is whatever
monotonic clock the caller draws with, so elapsed times can be shown live (and
frozen in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.engine import events as ev


@dataclass
class StepView:
    id: str
    title: str
    action: str
    status: str = "pending"  # pending | running | waiting | succeeded | failed | skipped
    attempt: int = 0
    max_attempts: int = 1
    timeout_s: float | None = None
    command: str = ""
    started_at: float | None = None  # caller's clock
    duration_s: float | None = None
    error: str | None = None
    reason: str | None = None
    retry_in_s: float | None = None
    operator_wait_s: float = 0.0
    checks: list[ev.CheckResult] = field(default_factory=list)
    progress: ev.Progress | None = None

    def elapsed(self, now: float) -> float | None:
        if self.duration_s is not None:
            return self.duration_s
        if self.started_at is None:
            return None
        return now - self.started_at

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "skipped")


@dataclass
class RunState:
    run_id: str = ""
    runbook: str = ""
    title: str = ""
    mode: str = "drill"
    dry_run: bool = False
    rto_target_s: float | None = None
    rpo_target_s: float | None = None
    started_at: float | None = None
    steps: dict[str, StepView] = field(default_factory=dict)
    current: str | None = None
    waiting: ev.OperatorWait | None = None
    waiting_since: float | None = None
    milestones: list[ev.Milestone] = field(default_factory=list)
    measures: list[ev.Measure] = field(default_factory=list)
    finished: ev.RunFinished | None = None
    output_lines: int = 0
    forecast: Any = None  # tui.journal.forecast.Forecast, when the run started with one

    def apply(self, event: ev.Event, now: float) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event, now)

    def count_output(self, lines: int) -> None:
        """Output lines folded in bulk, by a front end that buffers only their text."""
        self.output_lines += lines

    # --- reading --------------------------------------------------------------------

    def elapsed(self, now: float) -> float:
        if self.finished is not None:
            return self.finished.duration_s
        return 0.0 if self.started_at is None else now - self.started_at

    def rto_elapsed(self, now: float) -> float:
        """The RTO clock: stops at service-restored, or at the end of the run."""
        for milestone in self.milestones:
            if milestone.name == "service-restored":
                return milestone.elapsed_s
        return self.elapsed(now)

    def projected_s(self, now: float) -> float | None:
        """Where the run should end, from its start (tui.journal.forecast): None without a
        forecast learnt from earlier runs, or once the run is over."""
        from tui.journal.forecast import projected_total

        if self.forecast is None or not self.forecast.known or self.finished is not None:
            return None
        finished = {step.id for step in self.steps.values() if step.done}
        current = self.current_step()
        running = current.id if current is not None and not current.done else None
        return projected_total(self.forecast, self.elapsed(now), finished, running,
                               (current.elapsed(now) or 0.0) if running else 0.0)

    def rto_share(self, now: float) -> float | None:
        if not self.rto_target_s:
            return None
        return self.rto_elapsed(now) / self.rto_target_s

    @property
    def position(self) -> int:
        """1-based index of the current step (or of the last one when finished)."""
        ids = list(self.steps)
        if self.current in ids:
            return ids.index(self.current) + 1
        return len([s for s in self.steps.values() if s.done])

    @property
    def all_checks(self) -> list[ev.CheckResult]:
        return [c for step in self.steps.values() for c in step.checks]

    def current_step(self) -> StepView | None:
        return self.steps.get(self.current) if self.current else None

    # --- folding --------------------------------------------------------------------

    def _on_run_started(self, e: ev.RunStarted, now: float) -> None:
        self.run_id, self.runbook, self.title, self.mode = e.run_id, e.runbook, e.title, e.mode
        self.dry_run = e.dry_run
        self.rto_target_s, self.rpo_target_s = e.rto_target_s, e.rpo_target_s
        self.started_at = now
        self.steps = {s.id: StepView(s.id, s.title, s.action) for s in e.steps}
        if e.forecast is not None:
            from tui.journal.forecast import from_json

            self.forecast = from_json(e.forecast)

    def _on_step_started(self, e: ev.StepStarted, now: float) -> None:
        step = self.steps[e.step]
        if step.started_at is None:
            step.started_at = now
        step.status, step.attempt, step.max_attempts = "running", e.attempt, e.max_attempts
        step.timeout_s, step.command, step.retry_in_s = e.timeout_s, e.command, None
        step.error, step.duration_s = None, None
        step.checks = []
        step.progress = None
        self.current = e.step

    def _on_step_planned(self, e: ev.StepPlanned, now: float) -> None:
        step = self.steps[e.step]
        step.command, step.timeout_s = e.command, e.timeout_s

    def _on_output(self, e: ev.Output, now: float) -> None:
        self.output_lines += 1

    def _on_progress(self, e: ev.Progress, now: float) -> None:
        self.steps[e.step].progress = e

    def _on_check(self, e: ev.CheckResult, now: float) -> None:
        self.steps[e.step].checks.append(e)

    def _on_attempt_failed(self, e: ev.AttemptFailed, now: float) -> None:
        step = self.steps[e.step]
        step.error, step.retry_in_s = e.error, e.retry_in_s

    def _on_operator_wait(self, e: ev.OperatorWait, now: float) -> None:
        self.waiting, self.waiting_since = e, now
        step = self.steps[e.step]
        if step.started_at is None:  # a confirmation comes before the first attempt
            step.started_at = now
        self.current = e.step
        if e.request == "failure":
            # it failed: ✗ with its time frozen while the person decides what comes next
            step.status, step.duration_s = "failed", now - step.started_at
            return
        step.status = "waiting"

    def _on_operator_answer(self, e: ev.OperatorAnswer, now: float) -> None:
        step = self.steps[e.step]
        step.operator_wait_s += e.waited_s
        if step.status == "waiting":
            step.status = "running"
        self.waiting, self.waiting_since = None, None

    def _on_step_finished(self, e: ev.StepFinished, now: float) -> None:
        step = self.steps[e.step]
        step.status, step.duration_s = e.status, e.duration_s
        step.error, step.reason, step.attempt = e.error, e.reason, e.attempts
        if self.waiting is not None and self.waiting.step == e.step:
            self.waiting, self.waiting_since = None, None

    def _on_params_edited(self, e: ev.ParamsEdited, now: float) -> None:
        ids = list(self.steps)
        for step_id in ids[ids.index(e.rerun_from):ids.index(e.step) + 1]:
            step = self.steps[step_id]
            step.status, step.started_at, step.duration_s = "pending", None, None
            step.error, step.reason, step.retry_in_s, step.progress = None, None, None, None
            step.checks = []

    def _on_milestone(self, e: ev.Milestone, now: float) -> None:
        self.milestones.append(e)

    def _on_measure(self, e: ev.Measure, now: float) -> None:
        self.measures.append(e)

    def _on_run_finished(self, e: ev.RunFinished, now: float) -> None:
        self.finished = e
        self.waiting = None


_HANDLERS = {
    name[len("_on_"):]: function
    for name, function in vars(RunState).items()
    if name.startswith("_on_")
}
