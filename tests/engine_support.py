"""Helpers for engine tests: run a runbook text and keep every event it emitted.

`ScriptedOperator` stands in for the person at the keyboard (the Operator
protocol is the boundary to a human); everything else is the real engine.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tui.engine import events as ev
from tui.engine.operator import Answer, FailureDecision
from tui.engine.runner import Runner, RunResult
from tui.headless import HeadlessOperator
from tui.runbook.loader import load_text
from tui.runbook.params import resolve


class ScriptedOperator:
    """A person who answers from a script, and remembers what they were asked."""

    interactive = True

    def __init__(self, confirms: Iterable[Any] = (), failures: Iterable[FailureDecision] = (),
                 manuals: Iterable[bool] = ()):
        self.confirms = list(confirms)
        self.failures = list(failures)
        self.manuals = list(manuals)
        self.asked: list[tuple[str, Any]] = []

    async def confirm(self, request):
        self.asked.append(("confirm", request))
        answer = self.confirms.pop(0)
        return answer if isinstance(answer, Answer) else Answer(bool(answer))

    async def manual(self, request):
        self.asked.append(("manual", request))
        return Answer(self.manuals.pop(0))

    async def on_failure(self, request):
        self.asked.append(("failure", request))
        return self.failures.pop(0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.kind == kind]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def as_json_text(self) -> str:
        return "\n".join(json.dumps(e.to_json(), default=str) for e in self.events)

    def finished(self, step: str) -> ev.StepFinished:
        return next(e for e in self.of("step_finished") if e.step == step)

    def lines(self, step: str | None = None) -> list[str]:
        return [e.line for e in self.of("output") if step is None or e.step == step]


def make_runner(text: str, workdir_root: Path, params: dict[str, str] | None = None,
                operator: Any = None, **kwargs: Any) -> tuple[Runner, Recorder]:
    runbook = load_text(textwrap.dedent(text))
    values = resolve(runbook, params or {})
    runner = Runner(runbook, values, operator or HeadlessOperator(yes=False),
                    workdir_root=workdir_root, **kwargs)
    recorder = Recorder()
    runner.subscribe(recorder)
    return runner, recorder


def run_text(text: str, workdir_root: Path, params: dict[str, str] | None = None,
             operator: Any = None, **kwargs: Any) -> tuple[RunResult, Recorder]:
    runner, recorder = make_runner(text, workdir_root, params, operator, **kwargs)
    result = asyncio.run(runner.run())
    return result, recorder
