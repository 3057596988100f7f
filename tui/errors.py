"""The error types a user may see, and the exit codes they map to.

Everything that reaches a person goes through one of these, so the CLI can
print one clean line and exit with the right code instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class DrdeckError(Exception):
    """An error with a message written for the operator."""

    exit_code = EXIT_FAILED
    #: whether trying again could help (a network blip) or not (a wrong key)
    retryable = True


class PermanentFailure(DrdeckError):
    """Trying again cannot help: corrupt data, a wrong key, a refused target."""

    retryable = False


class InvalidInput(DrdeckError):
    """Usage, runbook, configuration or parameter errors: exit 2."""

    exit_code = EXIT_INVALID
    retryable = False


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, at a place in it (1-based line and column)."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class RunbookInvalid(InvalidInput):
    """A runbook that does not validate; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
