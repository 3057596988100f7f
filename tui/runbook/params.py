"""Parameter values: from text (command line, form field) or TOML to typed values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tui.durations import parse_duration
from tui.errors import InvalidInput
from tui.runbook.model import Param, Runbook

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(param: Param, raw: Any) -> Any:
    """The typed value of `raw` for `param`; ValueError says what is wrong, in plain words."""
    kind = param.type
    if kind == "port":
        return _port(raw)
    if kind == "int":
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        if isinstance(raw, int):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not true or false")
    if kind == "timestamp" and isinstance(raw, datetime):  # a TOML datetime default
        if raw.tzinfo is None:
            raise ValueError(f"{raw.isoformat()} has no time zone; add one, e.g. +00:00")
        return raw
    if kind == "duration" and isinstance(raw, int | float) and not isinstance(raw, bool):
        raise ValueError(f"write durations in quotes, like \"{raw}s\"")
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {type(raw).__name__}")
    if kind == "duration":
        parse_duration(raw)
        return raw.strip()
    if kind == "timestamp":
        if not raw.strip() and not param.required:
            return ""  # an optional moment left blank
        return parse_timestamp(raw)
    if kind == "new_directory":
        return _new_directory(raw, param.required)
    if kind == "recovery_target":
        return _recovery_target(raw, param.required)
    if kind == "expect_back":
        from tui.errors import InvalidInput
        from tui.pitr.expect_back import Expectation

        try:
            return Expectation.parse(raw).text()  # as written back: one spelling
        except InvalidInput as exc:
            raise ValueError(str(exc).removeprefix("expect_back: ")) from None
    if kind == "choice":
        if raw not in param.choices:
            raise ValueError(f"{raw!r} is not one of: {', '.join(param.choices)}")
        return raw
    if kind in ("dsn", "string", "snapshot") and param.required and not raw.strip():
        raise ValueError("must not be empty")
    if kind == "dsn" and raw.strip():
        check_dsn(raw)
    return raw


def _port(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError("expected a port number")
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a port number (1 to 65535)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a port: ports run from 1 to 65535")
    return port


def _new_directory(raw: str, required: bool) -> str:
    """An absolute path (~ expanded): relative to where drdeck happened to start is no
    place to restore a cluster. Whether it is empty is asked of the machine, not here."""
    text = raw.strip()
    if not text:
        if required:
            raise ValueError("must not be empty")
        return ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{text!r} is not an absolute path; write it from /, e.g. "
                         "/var/lib/postgresql/restored")
    return str(path)


def _recovery_target(raw: str, required: bool) -> str:
    """A target PostgreSQL can recover to, parsed as the restore will parse it."""
    from tui.pitr.target import TargetRefused, parse_target

    text = raw.strip()
    if not text and required:
        raise ValueError("must not be empty; write latest for the end of the archive")
    try:
        parse_target(text)
    except TargetRefused as exc:
        raise ValueError(str(exc)) from None
    return text


def check_on_this_machine(param: Param, value: Any) -> None:
    """What only this machine can say about a valid value, right now: a port is free, a
    new directory is absent or empty. The form asks before a run; the run's pre-flight
    asks again (the answer can change in between). ValueError says what is wrong."""
    if param.type == "port":
        from tui.postgres.placement import port_in_use

        if port_in_use(value):
            raise ValueError(f"port {value} is in use on this machine; choose another")
    elif param.type == "new_directory" and value:
        from tui.postgres.placement import why_not_a_new_directory

        why = why_not_a_new_directory(Path(value))
        if why:
            raise ValueError(why)


def check_dsn(text: str) -> None:
    """A connection string libpq can parse (URL or key=value); the message never echoes it."""
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(text)
    except Exception:
        raise ValueError(
            "not a connection string; write postgresql://user@host:5432/dbname "
            "or host=... port=... dbname=..."
        ) from None


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 timestamp that says its time zone; naive times are refused, not guessed."""
    cleaned = text.strip()
    try:
        value = datetime.fromisoformat(cleaned.replace(" ", "T", 1) if "T" not in cleaned
                                       else cleaned)
    except ValueError as exc:
        # "minute must be in 0..59" says which part is wrong; the format errors say nothing
        why = f" ({exc})" if "must be in" in str(exc) else ""
        raise ValueError(
            f"{text!r} is not a timestamp; write it like 2026-11-27 14:29:59+00:00{why}"
        ) from None
    if value.tzinfo is None:
        example = value.isoformat(sep=" ") + "+00:00"
        raise ValueError(f"{text!r} has no time zone; add one, e.g. {example}")
    return value


def resolve(runbook: Runbook, given: dict[str, str]) -> dict[str, Any]:
    """Every parameter's typed value: given ones coerced, defaults filled.

    Raises InvalidInput naming every unknown, invalid or missing parameter at once,
    so the operator fixes the command line in one go.
    """
    problems: list[str] = []
    for name in given:
        if name not in runbook.params:
            known = ", ".join(runbook.params) or "none"
            problems.append(f"unknown parameter {name!r} (this runbook takes: {known})")
    values: dict[str, Any] = {}
    missing = []
    for name, param in runbook.params.items():
        if name in given:
            try:
                values[name] = coerce(param, given[name])
            except ValueError as exc:
                problems.append(f"parameter {name}: {exc}")
        elif param.required:
            missing.append(param)
        else:
            values[name] = param.default
    if missing:
        lines = [f"  {_how_to_give(p)}   {p.type}{': ' + p.help if p.help else ''}"
                 for p in missing]
        problems.append("missing required parameters:\n" + "\n".join(lines))
    if problems:
        raise InvalidInput("\n".join(problems))
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`-p NAME=VALUE` items into a dict; the value may itself contain '='."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"-p {item!r}: write parameters as NAME=VALUE")
        result[name.strip()] = value
    return result


def secret_variable(name: str) -> str:
    """Where a secret parameter can wait for a headless run: off the command line."""
    return "DRDECK_SECRET_" + re.sub(r"\W", "_", name).upper()


def with_secrets_from_environment(runbook: Runbook, given: dict[str, str],
                                  environ: Mapping[str, str]) -> dict[str, str]:
    """`given`, plus each secret parameter it lacks that $DRDECK_SECRET_<NAME> holds.

    `-p token=...` would put the secret in drdeck's own command line, readable by every
    user (ps), so it is refused; cron and CI keep secrets in the environment anyway.
    """
    found = dict(given)
    for name, param in runbook.params.items():
        variable = secret_variable(name)
        if param.is_secret and name not in found and environ.get(variable):
            found[name] = environ[variable]
    return found


def refuse_secrets_on_the_command_line(runbook: Runbook, assigned: dict[str, str]) -> None:
    """A secret in drdeck's own argv is readable by every user of the machine (ps) and
    lands in shell histories: it goes through the environment, or the app's form."""
    secrets = [name for name in assigned if name in runbook.params
               and runbook.params[name].is_secret]
    if secrets:
        raise InvalidInput(
            f"{', '.join(secrets)}: a secret is not taken with -p, where every user of "
            "this machine can read it (ps) and the shell history keeps it; give it in the "
            "environment instead, "
            + " ".join(f"{secret_variable(name)}=..." for name in secrets)
            + ", or type it in the app")
    with_password = [name for name, value in assigned.items() if name in runbook.params
                     and runbook.params[name].type == "dsn" and _has_password(value)]
    if with_password:
        raise InvalidInput(
            f"{', '.join(with_password)}: a connection string with a password is not taken "
            "with -p, where every user of this machine can read it (ps) and the shell "
            "history keeps it; leave the password out and let libpq read it from "
            "~/.pgpass (or PGPASSFILE), or name the variable that holds the whole "
            "connection string with dsn_env in drdeck.toml")


def _has_password(dsn: str) -> bool:
    from psycopg import conninfo

    try:
        return bool(conninfo.conninfo_to_dict(dsn).get("password"))
    except Exception:
        return False  # not a connection string: resolve() says so


def _how_to_give(param: Param) -> str:
    if param.is_secret:
        return f"{secret_variable(param.name)}=... in the environment"
    return f"-p {param.name}=..."
