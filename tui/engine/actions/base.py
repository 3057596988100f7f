"""What an action is: a name, the arguments it takes, and an async `run`.

Arguments are declared with a kind, so the loader can check a runbook before
anything runs and the runner can render `${...}` templates the right way for
each place (shell-quoted, bound SQL parameter, plain text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from tui.engine.context import StepContext
    from tui.engine.expect import Observed

ArgKind = Literal["text", "command", "sql", "sql_params", "int", "bool", "duration", "env"]


@dataclass(frozen=True)
class Arg:
    kind: ArgKind
    required: bool = False
    help: str = ""
    default: Any = None


@dataclass(frozen=True)
class Command:
    """A rendered command: the argv that runs and the line shown to a person."""

    argv: list[str]
    display: str


@dataclass(frozen=True)
class SqlQuery:
    text: str
    params: dict[str, Any] | None
    display: str


@dataclass
class ActionResult:
    observed: Observed | None = None  # judged by the step's own `expect`
    output: str | None = None  # what `capture = true` keeps for ${steps.ID.output}
    extra: dict[str, Any] = field(default_factory=dict)


class StepFailed(Exception):
    """The action did its work and the result is a failure; the message says why."""


class Action:
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    args: ClassVar[dict[str, Arg]] = {}
    #: a step that runs no timeout of its own gets this one (None: unbounded)
    default_timeout: ClassVar[float | None] = None
    #: needs the step-level `expect` (wait) or forbids it
    needs_expect: ClassVar[bool] = False
    #: its result is worth `capture = true` (${steps.ID.output})
    produces_output: ClassVar[bool] = False
    #: the engine (tui.sources kind) whose recoverable window its recovery target must lie
    #: in: the briefing reads that window of the chosen cluster as the operator types
    window_of: ClassVar[str | None] = None

    def describe(self, args: dict[str, Any]) -> str:
        """The exact thing this step runs, for the screen and --dry-run (already redacted)."""
        parts = []
        for key, value in args.items():
            shown = getattr(value, "display", value)
            parts.append(f"{key}={shown}")
        return " ".join(parts)

    def volumes(self, config: Any, args: dict[str, Any]) -> dict[str, int]:
        """What a run with these arguments will move, in bytes by volume (tui.engine.volumes:
        snapshot, dump, base, wal), read before the run starts so its forecast can be
        scaled; {} when this action does not say. Blocking, and called in a thread of its
        own that may be abandoned (no event loop, no journal). Raises DrdeckError when the
        source cannot be read."""
        return {}

    async def run(self, ctx: StepContext, args: dict[str, Any]) -> ActionResult:
        raise NotImplementedError
