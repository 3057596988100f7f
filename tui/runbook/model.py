"""The validated, immutable shape of a runbook. The loader builds it; the engine reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCENARIOS = ("snapshot", "pitr", "backup", "verify", "other")
PARAM_TYPES = (
    "string", "int", "bool", "duration", "timestamp", "choice", "secret", "dsn", "snapshot",
    "port", "new_directory", "recovery_target", "expect_back",
)
ON_FAILURE = ("abort", "continue", "ask")
MILESTONE_SERVICE_RESTORED = "service-restored"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Expect:
    """What a value must look like. Every condition given must hold."""

    equals: Any = MISSING
    min: float | None = None
    max: float | None = None
    rows: int | None = None
    contains: str | None = None
    matches: str | None = None
    exit_code: int | None = None

    def describe(self) -> str:
        parts = []
        if self.equals is not MISSING:
            parts.append(f"= {shown_value(self.equals)}")
        if self.min is not None:
            parts.append(f"≥ {shown_value(self.min)}")
        if self.max is not None:
            parts.append(f"≤ {shown_value(self.max)}")
        if self.rows is not None:
            parts.append(f"{self.rows} rows")
        if self.contains is not None:
            parts.append(f"contains {self.contains!r}")
        if self.matches is not None:
            parts.append(f"matches /{self.matches}/")
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        return ", ".join(parts)


def shown_value(value: Any) -> str:
    """An expected value as a person reads it: 1,500,000,000, true, 'text'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Check:
    """A named assertion evaluated after a step: a query or a command, and its expectation."""

    name: str
    expect: Expect
    query: str | None = None
    command: str | list[str] | None = None
    dsn: str | None = None


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    help: str = ""
    default: Any = MISSING
    choices: tuple[str, ...] = ()
    warn_when_on: str = ""  # a bool's consequence, said in warning colour while it is on

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def is_secret(self) -> bool:
        return self.type == "secret"


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 5.0
    on_failure: str = "abort"
    confirm: str | None = None
    confirm_input: str | None = None
    capture: bool = False
    description: str = ""
    checks: tuple[Check, ...] = ()
    expect: Expect | None = None
    when: str | None = None  # "${param}" or "not ${param}": run only when it holds
    confirm_when: str | None = None  # ask for the confirmation only when this holds


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    scenario: str = "other"
    description: str = ""
    rto: float | None = None
    rpo: float | None = None
    contacts: tuple[str, ...] = ()
    lock: str | None = None  # the target a run works on: two runs on one target are refused
    cadence: float | None = None  # how often a drill is due (seconds); None: monthly
    params: dict[str, Param] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    path: Path | None = None
    sha256: str = ""

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
