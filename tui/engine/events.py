"""The event vocabulary: everything a front end, the journal or a script learns about a run.

Every subscriber (the app, the headless printers, the journal) reads these and
nothing else, so none of them re-derives what another already knows. Field
names follow the `--json` contract; `to_json()` gives that object.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar


def _now() -> float:
    # a float per event: datetime.now() on every output line of a flood is measurable
    return time.time()


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    ts: float = field(default_factory=_now)  # seconds since the epoch, UTC

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, list):
                value = [asdict(v) if is_dataclass(v) else v for v in value]
            data[name] = value
        data["ts"] = self.at.isoformat().replace("+00:00", "Z")
        return data


@dataclass(slots=True, kw_only=True)
class StepInfo:
    id: str
    title: str
    action: str


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    runbook: str
    title: str
    scenario: str
    mode: str
    params: dict[str, str]
    steps: list[StepInfo]
    workdir: str
    rto_target_s: float | None = None
    rpo_target_s: float | None = None
    dry_run: bool = False
    # tui.journal.forecast.Forecast.to_json(): how long it should take, before it starts
    forecast: dict[str, Any] | None = None


@dataclass(slots=True, kw_only=True)
class StepPlanned(Event):
    """--dry-run: what a step would run, rendered, with secrets masked."""

    kind: ClassVar[str] = "step_planned"
    step: str
    title: str
    action: str
    command: str
    timeout_s: float | None
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class StepStarted(Event):
    kind: ClassVar[str] = "step_started"
    step: str
    title: str
    attempt: int
    max_attempts: int
    timeout_s: float | None
    command: str = ""


@dataclass(slots=True, kw_only=True)
class Output(Event):
    kind: ClassVar[str] = "output"
    step: str
    stream: str
    line: str


@dataclass(slots=True, kw_only=True)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    step: str
    done: float
    total: float | None
    unit: str
    rate: float | None = None
    eta_s: float | None = None
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class CheckResult(Event):
    kind: ClassVar[str] = "check"
    step: str
    name: str
    ok: bool
    detail: str


@dataclass(slots=True, kw_only=True)
class Measure(Event):
    """A number the run measured and keeps: the achieved RPO of a restore, say."""

    kind: ClassVar[str] = "measure"
    step: str
    name: str  # e.g. achieved_rpo
    value: float
    unit: str  # e.g. s
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class AttemptFailed(Event):
    """One attempt failed and another follows after `retry_in_s`."""

    kind: ClassVar[str] = "attempt_failed"
    step: str
    attempt: int
    error: str
    retry_in_s: float


@dataclass(slots=True, kw_only=True)
class OperatorWait(Event):
    """The run waits for a person: a confirmation, a manual step or a failure decision."""

    kind: ClassVar[str] = "operator_wait"
    step: str
    request: str
    prompt: str


@dataclass(slots=True, kw_only=True)
class OperatorAnswer(Event):
    kind: ClassVar[str] = "operator_answer"
    step: str
    request: str
    answer: str
    waited_s: float
    by_person: bool = True
    note: str = ""


@dataclass(slots=True, kw_only=True)
class ParamsEdited(Event):
    """The person changed parameters after `step` failed; the steps from `rerun_from` to
    `step` run again with the new values (secrets shown as ***)."""

    kind: ClassVar[str] = "params_edited"
    step: str
    changed: dict[str, list[str]]  # name -> [before, after]
    rerun_from: str
    params: dict[str, str] = field(default_factory=dict)  # every value now (as shown)
    error: str = ""  # the failure that led to the edit


@dataclass(slots=True, kw_only=True)
class StepFinished(Event):
    kind: ClassVar[str] = "step_finished"
    step: str
    status: str
    duration_s: float
    error: str | None = None
    attempts: int = 1
    reason: str | None = None
    captured: str | None = None  # what capture = true kept (secrets masked)
    replayed: bool = False  # a resumed run re-announcing a step finished before


@dataclass(slots=True, kw_only=True)
class Milestone(Event):
    kind: ClassVar[str] = "milestone"
    name: str
    elapsed_s: float
    step: str = ""


@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str
    duration_s: float
    rto_s: float | None
    rto_target_s: float | None = None
    error: str | None = None
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    not_run: int = 0
