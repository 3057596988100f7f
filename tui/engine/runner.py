"""The runner: executes a runbook's steps in order and emits one stream of events.

It owns the rules every front end relies on: attempts and retries with backoff,
timeouts that stop the step's whole process group, checks after each step,
confirmations and failures handed to the Operator, the RTO clock, and secrets
masked before any event leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tui.durations import format_duration
from tui.engine import events as ev
from tui.engine.actions import get_action
from tui.engine.actions.base import Action, ActionResult, StepFailed
from tui.engine.context import RunInfo, StepContext, default_env
from tui.engine.expect import Observed, evaluate
from tui.engine.operator import (
    Answer,
    ConfirmRequest,
    FailureDecision,
    FailureRequest,
    ManualRequest,
    Operator,
)
from tui.engine.process import ProcessNotFound
from tui.engine.render import render_args, render_command, render_query
from tui.errors import DrdeckError, InvalidInput
from tui.paths import private_dir, state_dir
from tui.postgres.query import QueryFailed, run_query
from tui.redact import Redactor
from tui.runbook.model import MILESTONE_SERVICE_RESTORED, Runbook, Step
from tui.runbook.templating import TemplateError, refs, render_text, to_text

Subscriber = Callable[[ev.Event], None]

_TAIL_LINES = 50
_SECRET_ENV_HINTS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "PRIVATE", "CREDENTIAL")


@dataclass(frozen=True)
class _Failure:
    message: str
    retryable: bool = True  # False: automatic retries are skipped (a person may still retry)


class _Aborted(Exception):
    """The operator or a signal asked the run to stop."""


@dataclass
class StepRecord:
    id: str
    title: str
    status: str = "pending"  # pending | succeeded | failed | skipped
    attempts: int = 0
    duration_s: float | None = None
    error: str | None = None
    reason: str | None = None
    operator_wait_s: float = 0.0
    checks: list[ev.CheckResult] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    # the current attempt's lines only: a failure shows what *this* attempt printed
    attempt_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))


@dataclass
class RunResult:
    run_id: str
    status: str  # succeeded | failed | aborted
    duration_s: float
    rto_s: float | None
    steps: list[StepRecord]
    milestones: list[ev.Milestone]
    interrupted: bool = False
    workdir: Path | None = None


def new_run_id() -> str:
    return secrets.token_hex(6)


class Runner:
    def __init__(
        self,
        runbook: Runbook,
        params: dict[str, Any],
        operator: Operator,
        *,
        mode: str = "drill",
        dry_run: bool = False,
        run_id: str | None = None,
        workdir_root: Path | None = None,
        keep_workdir: bool = False,
        env: dict[str, str] | None = None,
        config: Any = None,
        resume: Any = None,
    ):
        from tui.config import Config

        self.config = config if config is not None else Config()
        self.runbook = runbook
        self.params = params
        self.operator = operator
        self.mode = mode
        self.dry_run = dry_run
        self.run_id = run_id or new_run_id()
        self.forecast: dict[str, Any] | None = None  # set by the journal's recorder
        self.keep_workdir = keep_workdir
        self.env = dict(env if env is not None else default_env())
        root = workdir_root or (state_dir() / "runs")
        self.workdir = root / self.run_id
        self.redact = Redactor()
        self._subscribers: list[Subscriber] = []
        self._records = {s.id: StepRecord(s.id, s.title) for s in runbook.steps}
        self._outputs: dict[str, str] = {}
        self._milestones: list[ev.Milestone] = []
        self.measures: list[ev.Measure] = []
        self._rto_s: float | None = None
        self._start = 0.0
        self._current: asyncio.Task[Any] | None = None
        self._abort_reason: str | None = None
        # key -> (step, undo, what to say when kept): a failed or aborted run undoes them
        self._undo: dict[str, tuple[str, Callable[[], Coroutine[Any, Any, str]], str]] = {}
        self.resume = resume  # a journal RunDetail: continue it from its first unfinished step
        self._done_before_run: dict[str, Any] = {}
        # set by whoever holds the run's lock (the journal): moves it to a new target when an
        # edit changes what the lock names; raises DrdeckError when another run holds that
        self.relock: Callable[[str | None], None] | None = None
        self._register_secrets()

    # --- wiring -----------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: ev.Event) -> None:
        for subscriber in self._subscribers:
            subscriber(event)

    def abort(self, reason: str = "aborted by the operator") -> None:
        """Stop the run: the current step is cancelled and recorded. Call from the run's loop."""
        if self._abort_reason is None:
            self._abort_reason = reason
        if self._current is not None and not self._current.done():
            self._current.cancel()

    @property
    def records(self) -> list[StepRecord]:
        return [self._records[s.id] for s in self.runbook.steps]

    def _register_secrets(self) -> None:
        for name, param in self.runbook.params.items():
            value = self.params.get(name)
            if param.type == "secret":
                self.redact.add(to_text(value))
            elif param.type == "dsn":
                self.redact.add_dsn(to_text(value))
        for name in _referenced_env(self.runbook):
            if any(hint in name.upper() for hint in _SECRET_ENV_HINTS):
                self.redact.add(self.env.get(name))

    def check_environment(self) -> None:
        """Refuse to start when a referenced environment variable is not set."""
        missing = sorted(n for n in _referenced_env(self.runbook) if n not in self.env)
        if missing:
            raise InvalidInput(
                "environment variables used by this runbook are not set: " + ", ".join(missing)
            )

    # --- values for ${...} --------------------------------------------------------------

    def lookup(self, name: str) -> Any:
        if name.startswith("env."):
            key = name[4:]
            if key not in self.env:
                raise TemplateError(f"environment variable {key} is not set")
            return self.env[key]
        if name.startswith("run."):
            return {
                "run.id": self.run_id,
                "run.workdir": str(self.workdir),
                "run.started_at": self._started_at,
                "run.mode": self.mode,
            }[name]
        if name.startswith("steps."):
            step_id = name.split(".")[1]
            if step_id not in self._outputs:
                if self.dry_run:
                    return f"<output of {step_id}>"
                raise TemplateError(f"step {step_id!r} has no output (it did not succeed)")
            return self._outputs[step_id]
        return self.params[name]

    # --- the run ----------------------------------------------------------------------

    def lock_key(self, params: dict[str, Any] | None = None) -> str | None:
        """The target this run works on (the runbook's `lock`), for the journal's lock;
        with `params`, the target those values would name."""
        if not self.runbook.lock:
            return None

        def lookup(name: str) -> Any:
            return params[name] if params is not None and name in params else \
                self.lookup(name)

        try:
            return self.redact(render_text(self.runbook.lock, lookup))
        except TemplateError:
            return self.runbook.lock

    async def run(self) -> RunResult:
        self._start = time.monotonic()
        self._started_at = datetime.now(UTC).isoformat()
        if self.resume is not None:
            # one run with its full history: the clock counts from the first start
            first = datetime.fromisoformat(self.resume.run.started_at)
            self._start -= (datetime.now(UTC) - first).total_seconds()
            self._started_at = self.resume.run.started_at
        if not self.dry_run:
            private_dir(self.workdir)
        self.emit(ev.RunStarted(
            run_id=self.run_id,
            runbook=self.runbook.name,
            title=self.runbook.title,
            scenario=self.runbook.scenario,
            mode=self.mode,
            params=self.shown_params(),
            steps=[ev.StepInfo(id=s.id, title=s.title, action=s.action)
                   for s in self.runbook.steps],
            workdir=str(self.workdir),
            rto_target_s=self.runbook.rto,
            rpo_target_s=self.runbook.rpo,
            dry_run=self.dry_run,
            forecast=self.forecast,
        ))
        status = "succeeded"
        error: str | None = None
        try:
            done_before = self._done_before_run = self._done_before()
            steps = self.runbook.steps
            index = 0
            while index < len(steps):
                step = steps[index]
                index += 1
                if self.dry_run:
                    self._plan(step)
                    continue
                if step.id in done_before:
                    self._replay(step, done_before[step.id])
                    continue
                if self._abort_reason:
                    status = "aborted"
                    break
                verdict = await self._run_step(step)
                if verdict.startswith("rerun:"):  # edited parameters: go back to the first
                    index = [s.id for s in steps].index(verdict[len("rerun:"):])  # step they change
                    continue
                if verdict == "aborted":
                    status, error = "aborted", self._abort_reason
                    break
                if verdict == "failed-stop":
                    status, error = "failed", self._records[step.id].error
                    break
                if verdict == "failed-continue":
                    status = "failed"
        except asyncio.CancelledError:
            self._abort_reason = self._abort_reason or "interrupted"
            for step_id, _undo, kept in reversed(self._undo.values()):
                self._say(step_id, kept)
            self._finish_run("aborted", self._abort_reason)
            raise
        if status != "succeeded":
            await self._undo_work()
        return self._finish_run(status, error)

    async def _undo_work(self) -> None:
        """What steps asked to undo when the run does not succeed, newest first."""
        while self._undo:
            step_id, undo, kept = self._undo.pop(next(reversed(self._undo)))
            try:
                self._say(step_id, await undo())
            except asyncio.CancelledError:
                self._say(step_id, kept)
                raise
            except Exception as exc:  # an undo that fails must not hide the run's failure
                self._say(step_id, f"could not undo: {exc}; {kept}", ok=False)

    def _say(self, step_id: str, line: str, ok: bool = True) -> None:
        """What became of a step's work after the run failed: in its output, and as a check,
        so the run's report (what an auditor reads) says it too."""
        line = self.redact(line)
        self._records[step_id].tail.append(line)
        self.emit(ev.Output(step=step_id, stream="stdout", line=line))
        self.emit(ev.CheckResult(step=step_id, name="after the run: its unfinished work",
                                 ok=ok, detail=line))

    def _done_before(self) -> dict[str, Any]:
        if self.resume is None:
            return {}
        return {s.step_id: s for s in self.resume.steps
                if s.status in ("succeeded", "skipped")}

    def _replay(self, step: Step, before: Any) -> None:
        """A step a resumed run finished before: announced again, not run again."""
        record = self._records[step.id]
        record.status, record.attempts = before.status, before.attempts
        record.duration_s, record.reason = before.duration_s, before.reason
        if before.captured is not None:
            self._outputs[step.id] = before.captured
        for milestone in (self.resume.milestones if self.resume else []):
            if milestone["name"] == MILESTONE_SERVICE_RESTORED and self._rto_s is None:
                self._rto_s = milestone["elapsed_s"]
        self.emit(ev.StepFinished(step=step.id, status=before.status,
                                  duration_s=before.duration_s or 0.0,
                                  attempts=before.attempts, reason=before.reason,
                                  replayed=True))

    def _finish_run(self, status: str, error: str | None) -> RunResult:
        duration = time.monotonic() - self._start
        rto = self._rto_s if self._rto_s is not None else (
            duration if status == "succeeded" else None
        )
        counts = {"succeeded": 0, "failed": 0, "skipped": 0, "pending": 0}
        for record in self._records.values():
            counts[record.status] += 1
        self.emit(ev.RunFinished(
            status=status,
            duration_s=round(duration, 3),
            rto_s=None if rto is None else round(rto, 3),
            rto_target_s=self.runbook.rto,
            error=self.redact(error) if error else None,
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            skipped=counts["skipped"],
            not_run=counts["pending"],
        ))
        if not self.dry_run and not self.keep_workdir and (
            status == "succeeded" or _is_empty_dir(self.workdir)
        ):
            # kept after a failure when it holds something worth inspecting
            shutil.rmtree(self.workdir, ignore_errors=True)
        return RunResult(
            run_id=self.run_id,
            status=status,
            duration_s=duration,
            rto_s=rto,
            steps=self.records,
            milestones=list(self._milestones),
            interrupted=self._abort_reason == "interrupted",
            workdir=self.workdir if self.workdir.exists() else None,
        )

    def connection_string(self) -> tuple[str, str] | None:
        """The newest output of a step that succeeded and is a connection string (a
        restored server's), with that step's title: what an operator copies to point the
        application at it."""
        from tui.runbook.params import check_dsn

        for step in reversed(self.runbook.steps):
            output = (self._outputs.get(step.id) or "").strip()
            if self._records[step.id].status != "succeeded" or "\n" in output \
                    or not ("=" in output or "://" in output):
                continue
            try:
                check_dsn(output)
            except ValueError:
                continue
            return output, step.title
        return None

    def raw_params(self) -> dict[str, str]:
        """The values as text, to fill a form again (secrets included: for the form only)."""
        return {name: to_text(value) for name, value in self.params.items()}

    def shown_params(self) -> dict[str, str]:
        shown = {}
        for name, value in self.params.items():
            param = self.runbook.params.get(name)
            shown[name] = "***" if param and param.is_secret else self.redact(to_text(value))
        return shown

    # --- one step ---------------------------------------------------------------------

    async def _run_step(self, step: Step) -> str:
        """Run a step to its end. Returns ok | failed-continue | failed-stop | aborted, or
        rerun:STEP when edited parameters change an earlier step, which runs again first."""
        record = self._records[step.id]
        action = get_action(step.action)
        assert action is not None, step.action  # the loader guarantees it
        started = time.monotonic()
        try:
            if step.when is not None and not self._holds(step.when):
                record.reason = f"when = {step.when!r} does not hold"
                self._finish_step(record, "skipped", started)
                return "ok"
            needs_confirmation = (step.confirm or step.confirm_input) and (
                step.confirm_when is None or self._holds(step.confirm_when))
            if needs_confirmation:
                answer = await self._confirm(step, action)
                if not answer.ok:
                    record.error = answer.note or "not confirmed"
                    self._finish_step(record, "failed", started)
                    return "aborted" if answer.by_person else "failed-stop"
            automatic_left = step.retries
            delay = step.retry_delay
            while True:
                record.attempts += 1
                failure = await self._abortable(self._attempt(step, action, record.attempts))
                if failure is None:
                    self._finish_step(record, "succeeded", started)
                    return "ok"
                error = record.error = failure.message
                if automatic_left > 0 and failure.retryable:
                    automatic_left -= 1
                    self.emit(ev.AttemptFailed(step=step.id, attempt=record.attempts,
                                               error=error, retry_in_s=delay))
                    await self._abortable(asyncio.sleep(delay))
                    delay *= 2
                    continue
                if step.on_failure == "continue":
                    self._finish_step(record, "failed", started)
                    return "failed-continue"
                if not self.operator.interactive:
                    if step.on_failure == "ask":
                        record.error = f"{error} (on_failure = ask, and no person is here to ask)"
                    self._finish_step(record, "failed", started)
                    return "failed-stop"
                decision = await self._decide(step, record)
                if decision.choice == "edit":
                    rerun_from = self._edit_params(step, decision.params or {})
                    if rerun_from is not None:
                        # from the top of the step (or an earlier one): its condition and its
                        # confirmation are judged again with the new values
                        record.status = "pending"
                        return f"rerun:{rerun_from}"
                    continue  # nothing changed: a plain retry
                if decision.choice == "retry":
                    continue
                if decision.choice == "skip":
                    record.reason = decision.reason or "skipped by the operator"
                    self._finish_step(record, "skipped", started)
                    return "ok"
                self._abort_reason = decision.reason or "aborted by the operator"
                self._finish_step(record, "failed", started)
                return "aborted"
        except _Aborted:
            record.error = self._abort_reason
            self._finish_step(record, "failed", started)
            return "aborted"

    def _holds(self, condition: str) -> bool:
        """`when`: the rendered text is true unless empty or false/0/no/off; `not` inverts."""
        text = condition.strip()
        negate = text.startswith("not ")
        value = render_text(text[4:] if negate else text, self.lookup).strip().lower()
        truth = value not in ("", "false", "0", "no", "off", "none")
        return truth != negate

    async def _abortable(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await `coro` as its own task, so abort() can cancel just this piece of work."""
        task = asyncio.ensure_future(coro)
        # a question asked inside a step's attempt nests: once answered, abort() must
        # reach the attempt again
        outer, self._current = self._current, task
        try:
            return await task
        except asyncio.CancelledError:
            if self._abort_reason is not None and task.cancelled():
                raise _Aborted() from None
            raise
        finally:
            self._current = outer

    def _finish_step(self, record: StepRecord, status: str, started: float) -> None:
        record.status = status
        record.duration_s = time.monotonic() - started
        captured = self._outputs.get(record.id)
        self.emit(ev.StepFinished(
            step=record.id,
            status=status,
            duration_s=round(record.duration_s, 3),
            error=self.redact(record.error) if record.error and status == "failed" else None,
            attempts=record.attempts,
            reason=self.redact(record.reason) if record.reason else None,
            captured=self.redact(captured) if captured is not None else None,
        ))

    async def _attempt(self, step: Step, action: type[Action],
                       attempt: int) -> _Failure | None:
        """One attempt: render, run, check. Returns None on success, else why it failed."""
        record = self._records[step.id]
        record.checks = []
        record.attempt_tail.clear()
        instance = action()
        try:
            args = render_args(action, step.args, self.lookup)
        except (TemplateError, ValueError) as exc:
            self._emit_started(step, attempt, "")
            return _Failure(f"cannot prepare the step: {exc}", retryable=False)
        if isinstance(args.get("dsn"), str):
            self.redact.add_dsn(args["dsn"])
        self._emit_started(step, attempt, instance.describe(args))
        timeout = _timeout_of(step)
        ctx = self._context(step)
        try:
            async with asyncio.timeout(timeout) as budget:
                result = await instance.run(ctx, args)
                failures = ctx.failed_checks + await self._judge(step, args, result)
        except TimeoutError:
            if budget.expired():
                return _Failure(f"timed out after {format_duration(timeout)}")
            return _Failure("timed out")
        except DrdeckError as exc:
            return _Failure(str(exc), exc.retryable)
        except (StepFailed, QueryFailed, ProcessNotFound, TemplateError) as exc:
            return _Failure(str(exc))
        except OSError as exc:
            return _Failure(f"{exc.strerror or exc}"
                            + (f": {exc.filename}" if exc.filename else ""))
        except _Aborted:  # a question inside the step was answered with an abort
            raise
        except Exception as exc:  # a bug in an action must not take the whole run down
            return _Failure(f"internal error in the {step.action} action: "
                            f"{type(exc).__name__}: {exc}", retryable=False)
        if failures:
            shown = ", ".join(failures[:5])
            more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
            return _Failure(f"check failed: {shown}{more}")
        if step.capture:
            self._outputs[step.id] = result.output or ""
        return None

    def _emit_started(self, step: Step, attempt: int, command: str) -> None:
        self.emit(ev.StepStarted(
            step=step.id,
            title=step.title,
            attempt=attempt,
            max_attempts=step.retries + 1,
            timeout_s=_timeout_of(step),
            command=self.redact(command),
        ))

    def _context(self, step: Step) -> StepContext:
        record = self._records[step.id]
        redact = self.redact

        def output(stream: str, line: str) -> None:
            line = redact(line)
            record.tail.append(line)
            record.attempt_tail.append(line)
            self.emit(ev.Output(step=step.id, stream=stream, line=line))

        def progress(**kwargs: Any) -> None:
            if kwargs.get("detail"):
                kwargs["detail"] = redact(kwargs["detail"])
            self.emit(ev.Progress(step=step.id, **kwargs))

        def milestone(name: str) -> None:
            elapsed = time.monotonic() - self._start
            event = ev.Milestone(name=name, elapsed_s=round(elapsed, 3), step=step.id)
            self._milestones.append(event)
            if name == MILESTONE_SERVICE_RESTORED and self._rto_s is None:
                self._rto_s = elapsed
            self.emit(event)

        async def ask_manual(instructions: str) -> Answer:
            request = ManualRequest(step.id, step.title, redact(instructions))
            return await self._ask(step, "manual", request.instructions,
                                   self.operator.manual(request))

        async def ask_confirm(text: str, command: str, expected: str | None) -> Answer:
            request = ConfirmRequest(step.id, step.title, redact(text), redact(command),
                                     expected)
            return await self._ask(step, "confirm", request.text,
                                   self.operator.confirm(request))

        def on_run_failed(key: str, undo: Callable[[], Coroutine[Any, Any, str]],
                          kept: str) -> None:
            # a retried attempt asks again for the same thing: undone once
            self._undo.pop(key, None)
            self._undo[key] = (step.id, undo, kept)

        return StepContext(
            step,
            RunInfo(self.run_id, self.workdir, self.mode, self._started_at),
            emit_output=output,
            emit_progress=progress,
            emit_milestone=milestone,
            ask_manual=ask_manual,
            base_env=self.env,
            emit_check=lambda name, ok, detail: self._record_check(step, name, ok, detail),
            config=self.config,
            emit_measure=lambda name, value, unit, detail: self._record_measure(
                step, name, value, unit, detail),
            ask_confirm=ask_confirm,
            on_run_failed=on_run_failed,
            settle=lambda key: self._undo.pop(key, None),
        )

    # --- checks -----------------------------------------------------------------------

    async def _judge(self, step: Step, args: dict[str, Any], result: ActionResult) -> list[str]:
        """Evaluate the step's own `expect` and its named checks; return the failed names."""
        failed = []
        if step.expect is not None and result.observed is not None:
            ok, detail = evaluate(step.expect, result.observed)
            self._record_check(step, "expected result", ok, detail)
            if not ok:
                failed.append("expected result")
        default_dsn = args.get("dsn") if isinstance(args.get("dsn"), str) else None
        for check in step.checks:
            try:
                observed = await self._observe_check(check, default_dsn)
                ok, detail = evaluate(check.expect, observed)
            except (QueryFailed, ProcessNotFound, TemplateError, ValueError, OSError) as exc:
                ok, detail = False, str(exc)
            self._record_check(step, check.name, ok, detail)
            if not ok:
                failed.append(check.name)
        return failed

    async def _observe_check(self, check: Any, default_dsn: str | None) -> Observed:
        if check.query is not None:
            dsn = render_text(check.dsn, self.lookup) if check.dsn else default_dsn
            if not dsn:
                raise ValueError("the check has a query but no dsn")
            self.redact.add_dsn(dsn)
            result = await run_query(dsn, render_query(check.query, self.lookup))
            return Observed(value=result.first, rows=len(result.rows))
        command = render_command(check.command, self.lookup)
        from tui import environment
        from tui.engine.process import run_process

        # a runbook's command, as a shell step is: the base set, never drdeck's secrets
        env = {**environment.base(self.env), "DRDECK_RUN_ID": self.run_id,
               "DRDECK_WORKDIR": str(self.workdir)}
        outcome = await run_process(command.argv, on_line=lambda *_: None, env=env,
                                    cwd=str(self.workdir), capture_stdout=True)
        return Observed(text=outcome.stdout or "", exit_code=outcome.exit_code)

    def _record_measure(self, step: Step, name: str, value: float, unit: str,
                        detail: str) -> None:
        event = ev.Measure(step=step.id, name=name, value=value, unit=unit,
                           detail=self.redact(detail))
        self.measures.append(event)
        self.emit(event)

    def _record_check(self, step: Step, name: str, ok: bool, detail: str) -> None:
        event = ev.CheckResult(step=step.id, name=name, ok=ok, detail=self.redact(detail))
        self._records[step.id].checks.append(event)
        self.emit(event)

    # --- the person -------------------------------------------------------------------

    async def _confirm(self, step: Step, action: type[Action]) -> Answer:
        try:
            args = render_args(action, step.args, self.lookup)
            command = self.redact(action().describe(args))
            text = render_text(step.confirm or f"Run {step.title}?", self.lookup)
            expected = render_text(step.confirm_input, self.lookup) if step.confirm_input else None
        except (TemplateError, ValueError) as exc:
            return Answer(False, by_person=False, note=f"cannot prepare the step: {exc}")
        request = ConfirmRequest(step.id, step.title, self.redact(text), command, expected)
        return await self._ask(step, "confirm", request.text, self.operator.confirm(request))

    async def _ask_failure(self, step: Step, record: StepRecord) -> FailureDecision:
        request = FailureRequest(step.id, step.title, self.redact(record.error or ""),
                                 record.attempts, tuple(record.attempt_tail)[-20:],
                                 skip_refused=self._skip_refused(step),
                                 editable=self.editable_params(),
                                 uses=tuple(n for n in self.runbook.params
                                            if n in _references(step)))
        return await self._ask(step, "failure", request.error, self.operator.on_failure(request))

    async def _decide(self, step: Step, record: StepRecord) -> FailureDecision:
        """The person's answer to a failure; a refused skip or an edit that cannot be taken
        is said, and the question asked again."""
        while True:
            decision = await self._ask_failure(step, record)
            if decision.choice == "skip" and self._skip_refused(step):
                continue
            if decision.choice == "edit":
                problem = self._edit_refused(decision.params or {})
                if problem:
                    self._note(step, f"the edit was not taken: {problem}")
                    continue
            return decision

    def _note(self, step: Step, line: str) -> None:
        line = self.redact(line)
        self._records[step.id].tail.append(line)
        self._records[step.id].attempt_tail.append(line)
        self.emit(ev.Output(step=step.id, stream="stderr", line=line))

    def _skip_refused(self, step: Step) -> str | None:
        """Why a failed step may not be skipped: a later step uses its output."""
        users = [s.title for s in self.runbook.steps
                 if step.id in {n.split(".")[1] for n in _references(s)
                                if n.startswith("steps.")}]
        if not users:
            return None
        named = ", ".join(f"“{t}”" for t in users[:3]) + (" and more" if len(users) > 3 else "")
        return (f"it cannot be skipped: {named} use{'s' if len(users) == 1 else ''} what it "
                "finds. Fix the cause and retry, edit the parameters, or abort.")

    def editable_params(self) -> tuple[str, ...]:
        """What a person may change mid-run: everything, when the run's lock can follow a
        changed target; else not what names the lock (its target is what the journal
        holds for this run)."""
        locked = _refs_in(self.runbook.lock) if self.runbook.lock and self.relock is None \
            else set()
        return tuple(name for name in self.runbook.params if name not in locked)

    def _changes(self, new: dict[str, Any]) -> dict[str, Any]:
        editable = set(self.editable_params())
        return {name: value for name, value in new.items()
                if name in editable and self.params.get(name) != value}

    def _edit_refused(self, new: dict[str, Any]) -> str | None:
        """Why the edited values cannot be taken (the new target is another run's), or None;
        when they can, the lock has moved to the new target."""
        changed = self._changes(new)
        if not changed or self.relock is None:
            return None
        new_key = self.lock_key({**self.params, **changed})
        if new_key == self.lock_key():
            return None
        try:
            self.relock(new_key)
        except DrdeckError as exc:
            return str(exc)
        return None

    def _edit_params(self, failed: Step, new: dict[str, Any]) -> str | None:
        """Take the edited values; returns the first step that must run again with them
        (None: nothing changed)."""
        changed = self._changes(new)
        if not changed:
            return None
        before = self.shown_params()
        error = self._records[failed.id].error
        self.params.update(changed)
        self._register_secrets()
        after = self.shown_params()
        steps = self.runbook.steps
        upto = [s.id for s in steps].index(failed.id)
        affected: set[str] = set()
        for earlier in steps[:upto]:
            names = _references(earlier)
            if names & set(changed) or any(n.startswith("steps.") and n.split(".")[1] in affected
                                           for n in names):
                affected.add(earlier.id)
        rerun_from = next((s.id for s in steps[:upto] if s.id in affected), failed.id)
        again = [s.id for s in steps[[s.id for s in steps].index(rerun_from):upto + 1]]
        for step_id in again:
            self._outputs.pop(step_id, None)
            self._records[step_id].status = "pending"
            # a resumed run replays what the journal says was done: not these any more
            self._done_before_run.pop(step_id, None)
        if any(m.name == MILESTONE_SERVICE_RESTORED and m.step in again
               for m in self._milestones):
            self._rto_s = None  # service is restored again when that step runs again
        self.emit(ev.ParamsEdited(step=failed.id, rerun_from=rerun_from, params=after,
                                  error=self.redact(error) if error else "",
                                  changed={n: [before.get(n, ""), after.get(n, "")]
                                           for n in changed}))
        return rerun_from

    async def _ask(self, step: Step, kind: str, prompt: str, waiting: Coroutine) -> Any:
        """Ask the operator; the wait is timed, shown as an event, and can be aborted."""
        self.emit(ev.OperatorWait(step=step.id, request=kind, prompt=self.redact(prompt)))
        asked = time.monotonic()
        answer = await self._abortable(waiting)
        waited = time.monotonic() - asked
        self._records[step.id].operator_wait_s += waited
        if isinstance(answer, FailureDecision):
            shown, by_person, note = answer.choice, True, answer.reason
        else:
            shown = "yes" if answer.ok else "no"
            by_person, note = answer.by_person, answer.note
        self.emit(ev.OperatorAnswer(step=step.id, request=kind, answer=shown,
                                    waited_s=round(waited, 3), by_person=by_person,
                                    note=self.redact(note)))
        return answer

    # --- dry run ----------------------------------------------------------------------

    def _plan(self, step: Step) -> None:
        action = get_action(step.action)
        try:
            command = action().describe(render_args(action, step.args, self.lookup))
        except (TemplateError, ValueError) as exc:
            command = f"(cannot render: {exc})"
        extra = []
        if step.when is not None:
            try:
                if not self._holds(step.when):
                    extra.append(f"would be skipped: when = {step.when!r} does not hold")
            except (TemplateError, ValueError):  # an earlier step's output, say: not yet
                extra.append(f"runs only when {step.when!r} holds")
        if step.confirm or step.confirm_input:
            extra.append("asks for confirmation")
        if step.retries:
            extra.append(f"{step.retries} retries")
        if step.checks:
            extra.append(f"checks: {', '.join(c.name for c in step.checks)}")
        self.emit(ev.StepPlanned(
            step=step.id, title=step.title, action=step.action,
            command=self.redact(command),
            timeout_s=_timeout_of(step),
            notes=extra,
        ))


def _timeout_of(step: Step) -> float | None:
    if step.timeout is not None:
        return step.timeout
    action = get_action(step.action)
    return action.default_timeout if action else None


def _is_empty_dir(path: Path) -> bool:
    try:
        return not any(path.iterdir())
    except OSError:
        return False


def _refs_in(value: Any) -> set[str]:
    """Every ${name} a value of a runbook (text, table, list) refers to."""
    names: set[str] = set()

    def walk(item: Any) -> None:
        if isinstance(item, str):
            with contextlib.suppress(TemplateError):
                names.update(r.name for r in refs(item))
        elif isinstance(item, dict):
            for inner in item.values():
                walk(inner)
        elif isinstance(item, list | tuple):
            for inner in item:
                walk(inner)

    walk(value)
    return names


def _references(step: Step) -> set[str]:
    """What a step's run depends on: its arguments, checks, conditions and confirmation."""
    return _refs_in([step.args, step.when, step.confirm, step.confirm_input,
                     step.confirm_when,
                     [[c.query, c.command, c.dsn] for c in step.checks]])


def _referenced_env(runbook: Runbook) -> set[str]:
    return {name[4:] for step in runbook.steps for name in _references(step)
            if name.startswith("env.")}
