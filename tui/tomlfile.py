"""Reading a TOML file a person wrote (a runbook, drdeck.toml) into problems with positions.

Both loaders share this: the file read and decoded, TOML syntax errors placed
at their line and column, and the small words their messages use.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from tui.errors import Problem


class Unreadable(Exception):
    """The file could not be read or parsed; `problem` says where and why."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def read_source(path: Path, what: str = "file") -> tuple[str, bytes]:
    """(text, raw bytes) of a UTF-8 file; Unreadable with a placed problem otherwise."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Unreadable(Problem(shown, 1, 1, "no such file")) from None
    except IsADirectoryError:
        raise Unreadable(Problem(shown, 1, 1, f"is a directory, not a {what}")) from None
    except OSError as exc:
        raise Unreadable(Problem(shown, 1, 1, f"cannot read: {exc.strerror}")) from None
    try:
        return data.decode("utf-8-sig"), data  # an editor's byte-order mark is not an error
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Unreadable(Problem(shown, line, 1, "not UTF-8 text")) from None


def parse(source: str, shown_path: str) -> dict[str, Any]:
    """The TOML document, or Unreadable placed at tomllib's line and column."""
    import tomllib

    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise Unreadable(_syntax_problem(shown_path, exc, source)) from None
    except RecursionError:
        raise Unreadable(Problem(shown_path, 1, 1, "TOML nested too deeply")) from None


def _syntax_problem(path: str, exc: Exception, source: str) -> Problem:
    text = str(exc)
    message = re.sub(r"\s*\((at line \d+, column \d+|at end of document)\)", "", text)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    if match:
        return Problem(path, int(match[1]), int(match[2]), f"TOML syntax: {message}")
    lines = source.split("\n")  # "at end of document": where the reader ran out
    last = len(lines) if lines[-1] else max(len(lines) - 1, 1)
    return Problem(path, last, 1, f"TOML syntax: {message} (at the end of the file)")


def type_name(value: Any) -> str:
    """How a value's type reads in a message: text, a number, a list..."""
    return {
        str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list",
        dict: "a table",
    }.get(type(value), "a date/time")


def closest(word: str, options: set[str]) -> str | None:
    """The option a typo most likely meant, for "did you mean ...?"."""
    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return matches[0] if matches else None
