"""A restore publishes only when whole: it is built under a staging name, then renamed.

    CREATE DATABASE drdeck_restore_<run>    with the snapshot's encoding and locale
    pg_restore into it, then its properties (owner, settings, privileges, comment)
    checks against the manifest (row counts)
    ALTER DATABASE drdeck_restore_<run> RENAME TO <target>        one catalog change

A failure, an abort or a kill leaves nothing under the target's name: at
worst the staging database, whose name says which run made it. With
replace = true the old database is swapped out in the same transaction as the
new one is renamed in, and only then dropped: until the new one has passed its
checks, the old one is untouched.
"""

from __future__ import annotations

from typing import Any

from tui.errors import PermanentFailure
from tui.postgres.dsn import describe
from tui.postgres.sqltext import first_statement, quote_name

STAGING_PREFIX = "drdeck_restore_"
RETIRED_PREFIX = "drdeck_replaced_"


class PublishFailed(PermanentFailure):
    pass


def staging_name(run_id: str) -> str:
    return f"{STAGING_PREFIX}{run_id}"


def is_staging_name(name: str) -> bool:
    return name.startswith(STAGING_PREFIX) and name[len(STAGING_PREFIX):].isalnum()


def create_statement(template: str, name: str, *,
                     missing_tablespaces: frozenset[str] = frozenset()) -> str:
    """The globals' CREATE DATABASE (its encoding, locale) for `name`, or a plain one.

    A TABLESPACE clause naming a tablespace the server lacks is left out: the
    database goes to the default one, as its objects do.
    """
    if not template:
        return f"CREATE DATABASE {quote_name(name)} TEMPLATE template0"
    text = _with_name(template, name)
    tokens = first_statement(text).tokens
    for i, token in enumerate(tokens):
        if token.depth == 0 and token.is_word("tablespace"):
            last = i + 2 if i + 2 < len(tokens) and tokens[i + 1].text == "=" else i + 1
            if last < len(tokens) and tokens[last].value in missing_tablespaces:
                kept = text[:token.start].rstrip() + " " + text[tokens[last].end:].lstrip()
                return kept.rstrip()
    return text


# settings that load code into every session: never taken from a repository's file
_LOADS_CODE = ("session_preload_libraries", "local_preload_libraries",
               "shared_preload_libraries")


def property_statements(properties: list[str], name: str, *, no_owner: bool,
                        roles: set[str], superusers: set[str]) -> tuple[list[str], list[str]]:
    """(statements to run on the restored database, what is left out and why).

    With no_owner, ownership and privileges are left out, as pg_restore leaves
    them out of the objects. Left out always: a role setting for a role the
    server lacks, or for one of its superusers (a repository's file does not
    get to shape a superuser's sessions); a setting that loads libraries; and a
    template database's flags (the restored copy is an ordinary database).
    """
    run, left_out = [], []
    for text in properties:
        statement = first_statement(text)
        top = statement.top()
        words = {t.value for t in top if t.kind == "word"}
        if no_owner and (statement.starts("grant") or statement.starts("revoke") or
                         "owner" in words):
            left_out.append(f"{_words(text)} (no_owner = true)")
        elif statement.starts("alter", "role") and top[2].value not in roles:
            left_out.append(f"{_words(text)} (role {top[2].value} is not on the target)")
        elif statement.starts("alter", "role") and top[2].value in superusers:
            left_out.append(f"{_words(text)} (role {top[2].value} is a superuser of the "
                            "target: its settings are the target's business)")
        elif words & set(_LOADS_CODE):
            left_out.append(f"{_words(text)} (it loads libraries into sessions)")
        elif statement.starts("alter", "database") and words & {"is_template",
                                                                 "allow_connections"}:
            left_out.append(f"{_words(text)} (a template's flag: the restore is a plain "
                            "database)")
        else:
            run.append(_with_name(text, name))
    return run, left_out


def _with_name(text: str, name: str) -> str:
    """`text` with its one psql variable (the database's name) replaced by `name`, quoted."""
    statement = first_statement(text)
    variables = [t for t in statement.tokens if t.kind == "variable"]
    if len(variables) != 1:
        raise PublishFailed(f"cannot place the database's name in {_words(text)!r}")
    token = variables[0]
    return text[:token.start] + quote_name(name) + text[token.end:]


def _words(text: str) -> str:
    """A statement's first words for a message: never the literals in it."""
    statement = first_statement(text)
    shown = ["'…'" if t.kind == "string" else t.text for t in statement.tokens[:5]]
    return " ".join(shown) + (" …" if len(statement.tokens) > 5 else "")


async def publish(server_dsn: str, staging: str, target: str, *, replace: bool,
                  run_id: str) -> str | None:
    """Rename `staging` to `target`; with replace, swap the old one out and drop it.

    Returns the name the old database had to be kept under when it could not be
    dropped (None when there was none, or it was dropped); raises PublishFailed.
    """
    import psycopg
    from psycopg import sql

    if not is_staging_name(staging):
        raise PublishFailed(f"{staging} is not a staging database of drdeck's; not renamed")
    retired = f"{RETIRED_PREFIX}{run_id}"
    try:
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            names = {row[0] for row in await (await conn.execute(
                "select datname from pg_database where datname = any(%s)",
                ([staging, target],))).fetchall()}
            if staging not in names:
                raise PublishFailed(
                    f"the staging database {staging} is gone from {describe(server_dsn)} (it "
                    "is dropped when a run fails or is aborted); start a new restore")
            old = target in names
            if old and not replace:
                raise PublishFailed(
                    f"database {target} exists on {describe(server_dsn)} now (made since the "
                    f"pre-flight); the restored copy waits as {staging}. Drop or rename {target}, "
                    "then retry this step")
            await _close_sessions(conn, staging)
            swapped = False
            try:
                if old:
                    # no new session may slip in between closing them and the rename
                    await conn.execute(sql.SQL("alter database {} with allow_connections "
                                               "false").format(sql.Identifier(target)))
                    await _close_sessions(conn, target)
                async with conn.transaction():
                    if old:
                        await conn.execute(sql.SQL("alter database {} rename to {}").format(
                            sql.Identifier(target), sql.Identifier(retired)))
                    await conn.execute(sql.SQL("alter database {} rename to {}").format(
                        sql.Identifier(staging), sql.Identifier(target)))
                swapped = True
            except BaseException:
                # an error, an abort or a signal before the swap: the old database is still
                # the live one under its name, and must take connections again
                if old and not swapped:
                    await _allow_connections_again(server_dsn, target)
                raise
            if not old:
                return None
            try:
                await conn.execute(sql.SQL("drop database {} with (force)").format(
                    sql.Identifier(retired)))
            except psycopg.Error:
                return retired
            return None
    except psycopg.Error as exc:
        raise PublishFailed(f"publishing {staging} as {target} on {describe(server_dsn)} "
                            f"failed: {_first_line(exc)}; {staging} is kept as it is") from None


async def _close_sessions(conn: Any, database: str) -> None:
    await conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                       "where datname = %s and pid <> pg_backend_pid()", (database,))


async def _allow_connections_again(server_dsn: str, target: str) -> None:
    import contextlib

    import psycopg
    from psycopg import sql

    with contextlib.suppress(psycopg.Error):
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            await conn.execute(sql.SQL("alter database {} with allow_connections true")
                               .format(sql.Identifier(target)))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
