"""What an action sees while it runs: its step, the run, and ways to report back.

Actions never emit events or talk to a person directly; they call these
methods and the runner turns them into events and Operator requests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui import environment
from tui.engine.actions.base import Command
from tui.engine.process import ProcessResult, run_process

if TYPE_CHECKING:
    from tui.engine.operator import Answer
    from tui.runbook.model import Step


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    workdir: Path
    mode: str
    started_at: str


MAX_ETA_S = 7 * 86400


class RateMeter:
    """Smoothed rate and ETA for a progress stream (exponential moving average)."""

    def __init__(self, smoothing: float = 0.3):
        self._smoothing = smoothing
        self._last: tuple[float, float] | None = None
        self.rate: float | None = None

    def update(self, done: float, now: float) -> float | None:
        if self._last is not None:
            last_done, last_time = self._last
            elapsed = now - last_time
            if elapsed >= 0.2:
                instant = (done - last_done) / elapsed
                self.rate = instant if self.rate is None else (
                    self._smoothing * instant + (1 - self._smoothing) * self.rate
                )
                self._last = (done, now)
        else:
            self._last = (done, now)
        return self.rate


class StepContext:
    def __init__(
        self,
        step: Step,
        run: RunInfo,
        *,
        emit_output: Callable[[str, str], None],
        emit_progress: Callable[..., None],
        emit_milestone: Callable[[str], None],
        ask_manual: Callable[[str], Any],
        base_env: dict[str, str],
        emit_check: Callable[[str, bool, str], None] | None = None,
        config: Any = None,
        emit_measure: Callable[[str, float, str, str], None] | None = None,
        ask_confirm: Callable[[str, str, str | None], Any] | None = None,
        on_run_failed: Callable[[str, Callable[[], Awaitable[str]], str], None] | None = None,
        settle: Callable[[str], None] | None = None,
    ):
        self.step = step
        self.run = run
        self._emit_output = emit_output
        self._emit_progress = emit_progress
        self._emit_milestone = emit_milestone
        self._ask_manual = ask_manual
        self._base_env = base_env
        self._emit_check = emit_check
        self._emit_measure = emit_measure
        self._ask_confirm = ask_confirm
        self._on_run_failed = on_run_failed
        self._settle = settle
        self._meter = RateMeter()
        self.config = config
        self.failed_checks: list[str] = []

    def output(self, line: str, stream: str = "stdout") -> None:
        self._emit_output(stream, line)

    def progress(self, done: float, total: float | None = None, unit: str = "",
                 detail: str = "") -> None:
        rate = self._meter.update(done, time.monotonic())
        eta = None
        if rate and rate > 0 and total is not None and total >= done:
            eta = (total - done) / rate
            if eta > MAX_ETA_S:
                eta = None  # stalled: an ETA of years is noise, not information
        self._emit_progress(done=done, total=total, unit=unit, rate=rate, eta_s=eta,
                            detail=detail)

    def milestone(self, name: str) -> None:
        self._emit_milestone(name)

    def measure(self, name: str, value: float, unit: str = "s", detail: str = "") -> None:
        """A number worth keeping with the run (achieved RPO, bytes restored, ...)."""
        if self._emit_measure is not None:
            self._emit_measure(name, value, unit, detail)

    def check(self, name: str, ok: bool, detail: str) -> None:
        """A named check the action judged itself (one per table compared, say).
        A failed one fails the step once the action returns."""
        if self._emit_check is not None:
            self._emit_check(name, ok, detail)
        if not ok:
            self.failed_checks.append(name)

    async def ask_manual(self, instructions: str) -> Answer:
        return await self._ask_manual(instructions)

    async def confirm(self, text: str, command: str = "",
                      expected_input: str | None = None) -> Answer:
        """Ask the operator to confirm what only the action knows (the roles it will create).

        Headless without --yes, the answer is no (by_person False): the action
        refuses, and says how to go on.
        """
        if self._ask_confirm is None:
            from tui.engine.operator import Answer

            return Answer(False, by_person=False, note="no one to ask")
        return await self._ask_confirm(text, command, expected_input)

    def on_run_failed(self, key: str, undo: Callable[[], Awaitable[str]], kept: str) -> None:
        """Undo this step's work if the run ends failed or aborted (a staging database).

        `undo` returns the line that says what it did. When the run is
        interrupted instead (the process is going away; `drdeck resume` may go
        on), nothing is undone and `kept` is said. `key` names the work, for
        settle().
        """
        if self._on_run_failed is not None:
            self._on_run_failed(key, undo, kept)

    def settle(self, key: str) -> None:
        """The work `key` names is done for good (published): never undo it."""
        if self._settle is not None:
            self._settle(key)

    @property
    def environ(self) -> dict[str, str]:
        """The run's whole environment, secrets included: read here, never handed on."""
        return self._base_env

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A command's environment: the base set (tui.environment), DRDECK_RUN_ID,
        DRDECK_WORKDIR, and what the step gives it (`extra`). Nothing else of drdeck's."""
        env = environment.base(self._base_env)
        env["DRDECK_RUN_ID"] = self.run.run_id
        env["DRDECK_WORKDIR"] = str(self.run.workdir)
        if extra:
            env.update(extra)
        return env

    def libpq_env(self) -> dict[str, str]:
        """For pg_dump, pg_restore, pg_basebackup: a command's environment and the PG*
        settings libpq reads (the DSN's password is added by tui.postgres.dsn)."""
        return self.child_env(environment.libpq_settings(self._base_env))

    async def run_process(
        self,
        command: Command,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        capture_stdout: bool = False,
        quiet: bool = False,
        on_line: Callable[[str, str], None] | None = None,
    ) -> ProcessResult:
        """Run a command as part of this step; its lines go to the output unless `quiet`."""
        sink = on_line or ((lambda stream, line: None) if quiet else self._emit_output)
        return await run_process(
            command.argv,
            on_line=sink,
            env=self.child_env(env),
            cwd=cwd or str(self.run.workdir),
            capture_stdout=capture_stdout,
        )


def default_env() -> dict[str, str]:
    return dict(os.environ)
