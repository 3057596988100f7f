"""One query against a server, with errors an operator can read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tui.runbook.templating import to_text

CONNECT_TIMEOUT_S = 10
_TABLE_ROWS_SHOWN = 20


class QueryFailed(Exception):
    pass


@dataclass
class QueryResult:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    status: str = ""

    @property
    def first(self) -> Any:
        return self.rows[0][0] if self.rows and self.rows[0] else None

    def table_lines(self) -> list[str]:
        """A small aligned table of the result, or the command status, for the output pane."""
        if not self.columns:
            return [self.status] if self.status else []
        shown = [[to_text(v) if v is not None else "NULL" for v in row]
                 for row in self.rows[:_TABLE_ROWS_SHOWN]]
        widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(self.columns)]
        widths = [min(w, 60) for w in widths]

        def fmt(cells: list[str]) -> str:
            return " | ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

        lines = [fmt(self.columns), "-+-".join("-" * w for w in widths)]
        lines += [fmt(r) for r in shown]
        more = len(self.rows) - len(shown)
        suffix = f", {more} not shown" if more > 0 else ""
        lines.append(f"({len(self.rows)} row{'s' if len(self.rows) != 1 else ''}{suffix})")
        return lines


async def run_query(
    dsn: str,
    query: Any,
    *,
    on_notice: Callable[[str], None] | None = None,
) -> QueryResult:
    """Run `query` (a SqlQuery or text) in autocommit mode; raise QueryFailed with the reason."""
    import psycopg

    text = getattr(query, "text", query)
    params = getattr(query, "params", None)
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.Error as exc:
        raise QueryFailed(f"cannot connect: {error_reason(exc)}") from None
    try:
        if on_notice is not None:
            conn.add_notice_handler(
                lambda diag: on_notice(f"{diag.severity}: {diag.message_primary}")
            )
        async with conn.cursor() as cur:
            try:
                await cur.execute(text, params or None)
            except psycopg.Error as exc:
                raise QueryFailed(error_reason(exc)) from None
            result = QueryResult(status=cur.statusmessage or "")
            if cur.description:
                result.columns = [c.name for c in cur.description]
                result.rows = await cur.fetchall()
            return result
    finally:
        await conn.close()


def error_reason(exc: Exception) -> str:
    """psycopg's message without the noise: first line plus the server's hint when there is one."""
    message = str(exc).strip() or type(exc).__name__
    lines = [ln for ln in message.splitlines() if ln.strip()]
    text = lines[0] if lines else message
    diag = getattr(exc, "diag", None)
    hint = getattr(diag, "message_hint", None) if diag else None
    if hint:
        text += f" (hint: {hint})"
    return text
