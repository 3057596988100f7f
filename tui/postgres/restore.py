"""pg_restore with live progress, and the database-level guardrails around it.

Progress counts the archive's table-of-contents items as pg_restore reports
them finished (`pg_restore -l` gives the total). The guardrails: a restore
never lands in a database that exists (unless the operator asked to replace
it), and never, whatever the parameters, in the database it was taken from.
"""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from tui.errors import DrdeckError, PermanentFailure
from tui.postgres.binaries import pg_bin
from tui.postgres.dsn import describe, for_child_process, with_database
from tui.snapshots.pipes import Reporter, Throttled, reap, spawn

NAME_MAX_BYTES = 63  # NAMEDATALEN - 1
_TOC_ENTRY = re.compile(r"^(\d+);")
_DONE = re.compile(r"pg_restore: (?:processing|finished) item (\d+) ")


class RestoreFailed(PermanentFailure):
    pass


class ServerUnreachable(DrdeckError):
    """A connection failed: worth retrying (a server restarting, a network blip)."""


async def toc_items(dump: Path, env: dict[str, str]) -> set[int]:
    """The dump ids of every entry in the archive's table of contents."""
    proc = await spawn([pg_bin("pg_restore"), "--list", str(dump)], env=env)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise RestoreFailed(f"pg_restore cannot read {dump.name}: "
                            f"{message[-1] if message else 'no message'}")
    ids = set()
    for line in out.decode(errors="replace").splitlines():
        match = _TOC_ENTRY.match(line)
        if match:
            ids.add(int(match[1]))
    return ids


async def schema_sql(dump: Path, env: dict[str, str]) -> str:
    """The archive's schema as SQL (`pg_restore --schema-only -f -`): what it will run."""
    proc = await spawn([pg_bin("pg_restore"), "--schema-only", "--file=-", str(dump)], env=env)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise RestoreFailed(f"pg_restore cannot read {dump.name}: "
                            f"{message[-1] if message else 'no message'}")
    return out.decode(errors="replace")


async def restore_dump(dump: Path, database_dsn: str, *, jobs: int, reporter: Reporter,
                       env: dict[str, str], no_owner: bool = False,
                       no_tablespaces: bool = False) -> int:
    """Restore into an existing, empty database; returns the number of TOC items."""
    items = await toc_items(dump, env)
    target = for_child_process(database_dsn, env)
    argv = [pg_bin("pg_restore"), f"--jobs={max(1, jobs)}", "--verbose", "--exit-on-error",
            f"--dbname={target.dsn}", str(dump)]
    if no_owner:
        argv[1:1] = ["--no-owner", "--no-privileges"]
    if no_tablespaces:
        argv[1:1] = ["--no-tablespaces"]
    progress = Throttled(reporter, len(items), "items")
    done: set[int] = set()
    errors: list[str] = []
    proc = await spawn(argv, env=target.env)
    try:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            match = _DONE.match(line)
            if match:
                item = int(match[1])
                if item in items:
                    done.add(item)
                    progress(len(done), line.split(" item ", 1)[1].split(" ", 1)[1])
            elif "error" in line.lower():
                errors.append(line)
            reporter.output(line, "stderr")
        code = await proc.wait()
    except BaseException:
        await reap(proc)
        raise
    if code != 0:
        if code < 0:  # killed: its workers' complaints about the lost leader come after
            reason = f"pg_restore was killed ({signal.Signals(-code).name})"
        else:
            reason = errors[0] if errors else f"pg_restore exited with {code}"
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(database_dsn).get("dbname")
        raise RestoreFailed(f"{reason}; database {name} is partly restored")
    progress(len(items), "done", final=True)
    return len(items)


@dataclass(frozen=True)
class ServerIdentity:
    system_identifier: int
    version: str


async def server_identity(dsn: str) -> ServerIdentity:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            row = await (await conn.execute(
                "select system_identifier, current_setting('server_version') "
                "from pg_control_system()")).fetchone()
    except psycopg.Error as exc:
        raise ServerUnreachable(f"cannot connect to {describe(dsn)}: {_first_line(exc)}") from None
    return ServerIdentity(int(row[0]), row[1])


async def database_exists(server_dsn: str, name: str) -> bool:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            row = await (await conn.execute(
                "select count(*) from pg_database where datname = %s", (name,))).fetchone()
    except psycopg.Error as exc:
        raise ServerUnreachable(f"cannot connect to {describe(server_dsn)}: "
                                f"{_first_line(exc)}") from None
    return bool(row[0])


async def create_database(server_dsn: str, name: str, *, replace: bool = False,
                          statement: str | None = None) -> None:
    """CREATE DATABASE (from template0: a dump brings its own objects); DROP first if asked.

    `statement` is the whole CREATE DATABASE to run instead, naming `name`: the
    snapshot's own, with its encoding and locale.
    """
    import psycopg
    from psycopg import sql

    try:
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            if replace:
                await conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                    sql.Identifier(name)))
            await conn.execute(statement.encode() if statement else sql.SQL(
                "create database {} template template0").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reason = _first_line(exc)
        if "locale" in reason or "collation" in reason:
            reason += (" (the snapshot's database was made with a locale this server does not "
                       "have: install it on the server, e.g. with locale-gen, and retry)")
        raise RestoreFailed(f"cannot create database {name}: {reason}") from None


async def drop_database(server_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            await conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))
    except psycopg.Error as exc:
        raise RestoreFailed(f"cannot drop database {name}: {_first_line(exc)}") from None


async def refuse_unsafe_target(source_server_dsn: str, source_database: str,
                               target_server_dsn: str, target_database: str,
                               replace: bool) -> None:
    """The guardrails, checked before a single byte is downloaded or written."""
    size = len(target_database.encode())
    if size > NAME_MAX_BYTES:
        # PostgreSQL cuts a longer name silently, in CREATE and DROP DATABASE as in the
        # existence check: the name compared here would not be the database written to
        # (with replace = true, a DROP of the source database itself)
        raise RestoreFailed(
            f"refusing to restore into {target_database!r}: a database name is at most "
            f"{NAME_MAX_BYTES} bytes, and PostgreSQL would silently cut this one ({size} "
            "bytes) to the name of another database. Choose a shorter name")
    source, target = await asyncio.gather(server_identity(source_server_dsn),
                                          server_identity(target_server_dsn))
    if source.system_identifier == target.system_identifier and \
            source_database == target_database:
        raise RestoreFailed(
            f"refusing to restore into {target_database} on {describe(target_server_dsn)}: it "
            "is the database the snapshot was taken from. Restore into a new database and "
            "switch the application to it")
    if await database_exists(target_server_dsn, target_database) and not replace:
        raise RestoreFailed(
            f"database {target_database} already exists on {describe(target_server_dsn)}; "
            "choose a new name, or set replace = true to drop and recreate it (you will be "
            "asked to type its name)")


def database_dsn(server_dsn: str, database: str) -> str:
    return with_database(server_dsn, database)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
