"""`${...}` templates: parsing, checking and rendering for each place a value can go.

A value is never spliced unquoted into a shell line or an SQL statement:
- in an argv item or any plain text it is substituted as text, and an argv item
  stays a single argument whatever the value holds;
- in a shell string (run by /bin/sh) it is shell-quoted;
- in an SQL query it becomes a bound parameter; `${ident:name}` inlines it as a
  quoted identifier and `${literal:name}` as a quoted literal, for the places
  where PostgreSQL accepts no parameters (CREATE DATABASE, SET, DO bodies).
Because drdeck quotes, a template written inside quotes is a mistake, and the
checker says so before anything runs. `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RUN_NAMES = ("id", "workdir", "started_at", "mode")
SQL_FILTERS = ("ident", "literal")

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_REF = re.compile(
    r"\s*(?:(?P<filter>[a-z]+):)?\s*"
    r"(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*"
)


class TemplateError(ValueError):
    """A template that cannot be parsed or names something unknown."""


@dataclass(frozen=True)
class Ref:
    """One `${filter:name}` occurrence."""

    name: str
    filter: str | None
    start: int
    end: int

    @property
    def text(self) -> str:
        return "${" + (f"{self.filter}:" if self.filter else "") + self.name + "}"


Piece = str | Ref


def parse(text: str) -> list[Piece]:
    """Split `text` into literal strings and references."""
    pieces: list[Piece] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        if match.start() > pos:
            pieces.append(text[pos : match.start()])
        if match.group(1) is None:  # the `$${` escape
            pieces.append("${")
        else:
            ref = _REF.fullmatch(match.group(1))
            if ref is None:
                raise TemplateError(f"malformed template {match.group(0)!r}")
            pieces.append(Ref(ref["name"], ref["filter"], match.start(), match.end()))
        pos = match.end()
    rest = text[pos:]
    if "${" in rest:
        raise TemplateError(f"unclosed template in {rest!r}: write ${{name}}")
    if rest:
        pieces.append(rest)
    return pieces


def refs(text: str) -> list[Ref]:
    return [p for p in parse(text) if isinstance(p, Ref)]


def to_text(value: Any) -> str:
    """The text form of a typed value, as a command line or a message shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


Lookup = Callable[[str], Any]


def _only_ref(text: str) -> Ref | None:
    pieces = parse(text)
    if len(pieces) == 1 and isinstance(pieces[0], Ref) and pieces[0].filter is None:
        return pieces[0]
    return None


def render_value(text: str, lookup: Lookup) -> Any:
    """A string that is exactly one template keeps its value's type (int, bool, ...)."""
    ref = _only_ref(text)
    if ref is not None:
        return lookup(ref.name)
    return render_text(text, lookup)


def render_text(text: str, lookup: Lookup) -> str:
    out = []
    for piece in parse(text):
        if isinstance(piece, Ref):
            if piece.filter:
                raise TemplateError(f"{piece.text}: '{piece.filter}:' only works in an SQL query")
            out.append(to_text(lookup(piece.name)))
        else:
            out.append(piece)
    return "".join(out)


def render_shell(text: str, lookup: Lookup) -> str:
    """A /bin/sh command line with every substituted value shell-quoted."""
    out = []
    for piece in parse(text):
        if isinstance(piece, Ref):
            if piece.filter:
                raise TemplateError(f"{piece.text}: '{piece.filter}:' only works in an SQL query")
            out.append(shlex.quote(to_text(lookup(piece.name))))
        else:
            out.append(piece)
    return "".join(out)


def render_sql(
    text: str, lookup: Lookup, explicit_params: bool = False
) -> tuple[str, dict[str, Any] | None]:
    """An SQL query with each plain template turned into a named bound parameter.

    psycopg reads `%` as a placeholder marker once parameters are passed, so a
    literal `%` in the query is doubled when templates become parameters, unless
    the runbook passes its own `params` (then it follows psycopg's rules itself).
    """
    from psycopg import sql

    pieces = parse(text)
    binds = any(isinstance(p, Ref) and p.filter is None for p in pieces)
    escape = binds and not explicit_params
    out: list[str] = []
    params: dict[str, Any] = {}
    for piece in pieces:
        if isinstance(piece, Ref):
            value = lookup(piece.name)
            if piece.filter in SQL_FILTERS:
                inlined = (sql.Identifier(to_text(value)) if piece.filter == "ident"
                           else sql.Literal(value)).as_string(None)
                out.append(inlined.replace("%", "%%") if escape else inlined)
            elif piece.filter is None:
                key = f"_t{len(params)}"
                params[key] = value
                out.append(f"%({key})s")
            else:
                raise TemplateError(f"{piece.text}: unknown filter {piece.filter!r}")
        else:
            out.append(piece.replace("%", "%%") if escape else piece)
    return "".join(out), (params or None)


# --- checks made before anything runs -------------------------------------------------


def quoted_refs_in_shell(text: str) -> list[Ref]:
    """References written inside quotes in a shell string (drdeck quotes them itself)."""
    inside = _quote_spans_shell(text)
    return [r for r in refs(text) if inside(r.start)]


def quoted_refs_in_sql(text: str) -> list[Ref]:
    """References that would break out of, or be dead inside, SQL quoting.

    A plain `${x}` (a bound parameter) is wrong inside any quotes, dollar-quoted
    bodies included: PostgreSQL substitutes no parameters there. `${literal:x}`
    and `${ident:x}` bring their own quotes, so they belong outside '...' and
    "...", and are the way to put a value inside a dollar-quoted body.
    """
    in_quotes, in_dollar = _quote_spans_sql(text)
    return [
        r for r in refs(text)
        if in_quotes(r.start) or (r.filter is None and in_dollar(r.start))
    ]


def _spans_checker(spans: list[tuple[int, int]]) -> Callable[[int], bool]:
    return lambda pos: any(start < pos < end for start, end in spans)


def _quote_spans_shell(text: str) -> Callable[[int], bool]:
    spans, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "'\"":
            start, i = i, i + 1
            while i < n and text[i] != c:
                i += 2 if (c == '"' and text[i] == "\\") else 1
            spans.append((start, i))
        i += 1
    return _spans_checker(spans)


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_]\w*)?\$")


def _quote_spans_sql(text: str) -> tuple[Callable[[int], bool], Callable[[int], bool]]:
    """(inside '...' or "...", inside a $tag$ body)."""
    spans, dollar_spans, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c in "'\"":
            start, i = i, i + 1
            while i < n:
                if text[i] == c and text.startswith(c * 2, i):
                    i += 2
                    continue
                if text[i] == c:
                    break
                i += 1
            spans.append((start, i))
            i += 1
            continue
        if c == "$" and not text.startswith("${", i):
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                end = text.find(tag.group(0), tag.end())
                end = n if end < 0 else end
                dollar_spans.append((i, end + 1))
                i = end + len(tag.group(0))
                continue
        i += 1
    return _spans_checker(spans), _spans_checker(dollar_spans)
