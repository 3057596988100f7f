"""What a restore to just before a destructive event must bring back, and the check that
it did: the dropped database exists, the dropped or emptied tables exist, and the rows a
DELETE took are there.

Written as pitr-restore's `expect_back` parameter, one clause per thing, `;` between:

    database "shop"; table "shop"."public"."orders"; rows >= 5000

`table` names database, schema and table; `rows >= N` is what those tables hold between
them at least. A name is written as it is in the catalog, in double quotes when it holds
a dot, a space, a quote (doubled) or a `;`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tui.errors import InvalidInput

_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|(>=|[.;])|([^\s".;>=]+))')


@dataclass(frozen=True)
class Expectation:
    database: str | None = None
    tables: tuple[tuple[str, str, str], ...] = ()  # (database, schema, table)
    rows: int | None = None

    def text(self) -> str:
        clauses = [f"database {_quoted(self.database)}"] if self.database else []
        clauses += ["table " + ".".join(_quoted(part) for part in table)
                    for table in self.tables]
        if self.rows is not None and self.tables:
            clauses.append(f"rows >= {self.rows}")
        return "; ".join(clauses)

    @classmethod
    def parse(cls, text: str) -> Expectation:
        database, tables, rows = None, [], None
        for clause in _clauses(text):
            word, rest = clause[0], clause[1:]
            if word == "database" and len(rest) == 1:
                database = rest[0]
            elif word == "table" and len(rest) == 5 and rest[1] == rest[3] == ".":
                tables.append((rest[0], rest[2], rest[4]))
            elif word == "rows" and len(rest) == 2 and rest[0] == ">=" and rest[1].isdigit():
                rows = int(rest[1])
            else:
                raise InvalidInput(f"expect_back: {' '.join(clause)!r} is not `database "
                                   'NAME`, `table DB.SCHEMA.TABLE` or `rows >= N`')
        if rows is not None and not tables:
            raise InvalidInput("expect_back: `rows >= N` needs the tables that hold them")
        return cls(database, tuple(tables), rows)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clauses(text: str) -> list[list[str]]:
    clauses: list[list[str]] = [[]]
    at = 0
    while at < len(text.rstrip()):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise InvalidInput(f"expect_back: cannot read {text[at:].strip()!r} "
                               "(an unclosed quote?)")
        at = match.end()
        quoted, mark, word = match.groups()
        if mark == ";":
            clauses.append([])
        else:
            clauses[-1].append(quoted.replace('""', '"') if quoted is not None
                               else mark or word)
    return [c for c in clauses if c]


def check_back(dsn: str, expected: Expectation) -> list[tuple[str, bool, str]]:
    """Each thing expected, looked for in the restored server (`dsn`): a named check
    (name, ok, what was found) for each."""
    import psycopg
    from psycopg import sql

    from tui.postgres.dsn import with_database
    from tui.postgres.query import CONNECT_TIMEOUT_S

    checks: list[tuple[str, bool, str]] = []
    if expected.database:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            there = conn.execute("select 1 from pg_database where datname = %s",
                                 (expected.database,)).fetchone()
        checks.append((f"database {expected.database} is back", bool(there),
                       "it is in the restored server" if there else
                       "it is not in the restored server"))
        if not there:
            return checks  # its tables cannot be either
    held = 0
    for database, schema, table in expected.tables:
        with psycopg.connect(with_database(dsn, database),
                             connect_timeout=CONNECT_TIMEOUT_S) as conn:
            exists = conn.execute(
                "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relname = %s", (schema, table)).fetchone()
            rows = conn.execute(sql.SQL("select count(*) from {}").format(
                sql.Identifier(schema, table))).fetchone()[0] if exists else 0
        held += rows
        checks.append((f"table {schema}.{table} is back", bool(exists),
                       f"in {database}, {rows:,} rows" if exists else
                       f"it is not in database {database} of the restored server"))
    if expected.rows is not None:
        checks.append((f"the {expected.rows:,} rows the event took are back",
                       held >= expected.rows,
                       f"the table{'s hold' if len(expected.tables) > 1 else ' holds'} "
                       f"{held:,} rows"))
    return checks
