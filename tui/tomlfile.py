"""Reading a TOML file a person wrote (a runbook, drdeck.toml) into problems with positions.

Both loaders share this: the file read and decoded, TOML syntax errors placed
at their line and column, and the small words their messages use.

Both files say what drdeck runs, with its privileges. So a file is read only if
it is a regular file that the user running drdeck or root owns, and that nobody
else can write: a runbook planted in ./runbooks/ of a directory where root runs
`drdeck run health-check` would otherwise run its commands as root.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Any

from tui.errors import Problem


class Unreadable(Exception):
    """The file could not be read or parsed; `problem` says where and why."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def read_source(path: Path, what: str = "file") -> tuple[str, bytes]:
    """(text, raw bytes) of a UTF-8 file; Unreadable with a placed problem otherwise,
    and when someone other than its reader and root could have written it."""
    shown = str(path)
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang drdeck before the check
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unreadable(Problem(shown, 1, 1, "no such file")) from None
    except OSError as exc:
        raise Unreadable(Problem(shown, 1, 1, f"cannot read: {exc.strerror}")) from None
    info = os.fstat(fd)  # of what is read, whatever the name points to later
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise Unreadable(Problem(shown, 1, 1, f"is a directory, not a {what}"))
    with os.fdopen(fd, "rb") as handle:
        why = untrusted(info) if stat.S_ISREG(info.st_mode) else "it is not a regular file"
        if why is None and os.path.islink(path):
            why = untrusted(os.lstat(path), "the link to it")
        if why is not None:
            raise Unreadable(Problem(shown, 1, 1, refusal(why, what)))
        try:
            data = handle.read()
        except OSError as exc:
            raise Unreadable(Problem(shown, 1, 1, f"cannot read: {exc.strerror}")) from None
    try:
        return data.decode("utf-8-sig"), data  # an editor's byte-order mark is not an error
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Unreadable(Problem(shown, line, 1, "not UTF-8 text")) from None


def untrusted(info: os.stat_result, it: str = "it") -> str | None:
    """Why a file with this owner and mode could hold someone else's words; None if not."""
    me = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (me, 0):
        return f"{it} is owned by {_user(info.st_uid)}"
    if stat.S_ISLNK(info.st_mode):
        return None  # a link's own mode means nothing; its owner alone can change it
    if mode & stat.S_IWOTH:
        return f"anyone can write {it} (mode {mode:04o})"
    if mode & stat.S_IWGRP:
        others = _other_members(info.st_gid, info.st_uid)
        if others:
            return (f"group {_group(info.st_gid)} can write {it} (mode {mode:04o}), and "
                    f"{', '.join(others[:3])}{' and others' if len(others) > 3 else ''} "
                    "are in it")
    return None


def refusal(why: str, what: str) -> str:
    me = _user(os.geteuid())
    owners = me if os.geteuid() == 0 else f"{me} or root"
    return (f"refused: {why}. drdeck reads a {what} only when {owners} owns it and no one "
            f"else can write it, since it says what drdeck runs as {me}; check what it says, "
            "then chown it or chmod go-w it")


def _other_members(gid: int, owner: int) -> list[str]:
    """Accounts in the group besides the file's owner (a private group has none)."""
    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return [f"gid {gid}"]
    owner_name = _user(owner)
    members = set(group.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}
    return sorted(members - {owner_name, "root"})


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


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
