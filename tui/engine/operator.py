"""The Operator: how the engine asks a person for something, without knowing who answers.

The app answers with screens; headless mode answers from flags (`--yes`) or
refuses clearly. The engine never prints or reads a terminal itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ConfirmRequest:
    step: str
    title: str
    text: str
    command: str
    expected_input: str | None = None  # the value the person must type, when set


@dataclass(frozen=True)
class ManualRequest:
    step: str
    title: str
    instructions: str


@dataclass(frozen=True)
class FailureRequest:
    step: str
    title: str
    error: str
    attempts: int
    last_lines: tuple[str, ...]  # the failed attempt's own output, not the ones before it
    skip_refused: str | None = None  # why skipping is not offered, in plain words
    editable: tuple[str, ...] = ()  # the parameters a person may change before retrying
    uses: tuple[str, ...] = ()  # the parameters the failed step itself uses (likely culprits)


@dataclass(frozen=True)
class Answer:
    """A person's answer. `by_person` is False when flags answered (`--yes`)."""

    ok: bool
    by_person: bool = True
    note: str = ""


FailureChoice = Literal["retry", "skip", "abort", "edit"]


@dataclass(frozen=True)
class FailureDecision:
    choice: FailureChoice
    reason: str = ""
    params: dict[str, Any] | None = None  # "edit": the new typed values, then retry


class Operator(Protocol):
    """Implemented by each front end. Methods may take as long as the person does."""

    @property
    def interactive(self) -> bool:
        """True when a person answers: then every failure is offered retry/skip/abort."""
        ...

    async def confirm(self, request: ConfirmRequest) -> Answer: ...

    async def manual(self, request: ManualRequest) -> Answer: ...

    async def on_failure(self, request: FailureRequest) -> FailureDecision: ...
