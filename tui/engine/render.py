"""Turn a step's `with` table into the typed arguments its action runs with."""

from __future__ import annotations

import shlex
from typing import Any

from tui.durations import parse_duration
from tui.engine.actions.base import Action, Arg, Command, SqlQuery
from tui.runbook.templating import (
    Lookup,
    Ref,
    parse,
    render_shell,
    render_sql,
    render_text,
    render_value,
    to_text,
)


def render_args(action: type[Action], raw: dict[str, Any], lookup: Lookup) -> dict[str, Any]:
    """Rendered arguments, defaults filled. Raises TemplateError/ValueError with the reason."""
    explicit_params = "params" in raw
    rendered: dict[str, Any] = {}
    for name, spec in action.args.items():
        if name in raw:
            rendered[name] = render_arg(spec, raw[name], lookup, explicit_params)
        elif spec.default is not None:
            rendered[name] = spec.default
    return rendered


def render_arg(spec: Arg, value: Any, lookup: Lookup, explicit_params: bool = False) -> Any:
    kind = spec.kind
    if kind == "text":
        return render_text(value, lookup)
    if kind == "command":
        return render_command(value, lookup)
    if kind == "sql":
        return render_query(value, lookup, explicit_params)
    if kind == "sql_params":
        return {k: render_value(v, lookup) if isinstance(v, str) else v for k, v in value.items()}
    if kind == "env":
        return {k: render_text(str(v), lookup) for k, v in value.items()}
    if isinstance(value, str):
        value = render_value(value, lookup)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return value if isinstance(value, bool) else to_text(value).lower() in ("true", "1")
    if kind == "duration":
        return parse_duration(to_text(value))
    raise ValueError(f"unknown argument kind {kind}")


def render_command(value: str | list[str], lookup: Lookup) -> Command:
    if isinstance(value, str):
        line = render_shell(value, lookup)
        return Command(["/bin/sh", "-c", line], line)
    argv = [render_text(item, lookup) for item in value]
    return Command(argv, shlex.join(argv))


def render_query(text: str, lookup: Lookup, explicit_params: bool = False) -> SqlQuery:
    query, params = render_sql(text, lookup, explicit_params)
    return SqlQuery(query, params, _readable_sql(text, lookup))


def _readable_sql(text: str, lookup: Lookup) -> str:
    """The query as a person reads it: bound values shown as SQL literals in place."""
    from psycopg import sql

    out = []
    for piece in parse(text):
        if isinstance(piece, Ref):
            value = lookup(piece.name)
            if piece.filter == "ident":
                out.append(sql.Identifier(to_text(value)).as_string(None))
            else:
                out.append(sql.Literal(value).as_string(None))
        else:
            out.append(piece)
    return "".join(out)
