"""A scratch database owned by a throwaway role, for restoring a dump that is not trusted.

A dump is repository content, and anyone who can write the repository can plant one.
pg_restore runs the archive's SQL, and as a superuser that SQL runs programs on the
server (`COPY ... TO PROGRAM`), reads and writes its files, or makes itself a superuser
for good; `pg_restore --role` is no guard, since the SQL can `RESET ROLE`. So the test
restore logs in as a role made for it alone: LOGIN and nothing else, a member of no
role, owner of the scratch database and nothing more, with a random password that
expires within the hour (were drdeck killed before it drops the role). The database and
then the role are dropped on the way out, whatever happened inside.

The password reaches the server only as a SCRAM (or md5) verifier, so no statement log
holds it, and child processes get it through PGPASSWORD, never on a command line. The
configured user connects to the scratch database only before the restore: what a dump
leaves there (functions, `ALTER DATABASE ... SET`) would run as whoever connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from tui.errors import DrdeckError, PermanentFailure
from tui.postgres.dsn import describe, with_database
from tui.postgres.restore import NAME_MAX_BYTES, create_database, drop_database

VALID_FOR = timedelta(hours=1)
# a restore can outlast VALID_FOR, and the row count logs in after it
RENEW_EVERY_S = 20 * 60


class ThrowawayRoleFailed(PermanentFailure):
    pass


@dataclasses.dataclass(frozen=True)
class ThrowawayRole:
    name: str
    dsn: str = dataclasses.field(repr=False)  # logs in as `name` to the scratch database


@contextlib.asynccontextmanager
async def scratch_database_as_throwaway_role(server_dsn: str, database: str, *,
                                             connections: int) -> AsyncIterator[ThrowawayRole]:
    """A new database `database` (dropped first if it exists) owned by a new unprivileged
    role that may open `connections` sessions at once; the role's name and its DSN to the
    database. Afterwards the database is dropped, then the role, as `server_dsn`'s user."""
    name = _role_name(database)
    password = secrets.token_urlsafe(24)
    renewing = None
    try:
        await _create_role(server_dsn, name, password, connections)
        await create_database(server_dsn, database, replace=True)
        await _give_database(server_dsn, database, name)
        role = ThrowawayRole(name, _login_dsn(server_dsn, database, name, password))
        await _check_login(role, server_dsn)
        renewing = asyncio.ensure_future(_keep_valid(server_dsn, name))
        yield role
    except BaseException:  # cancelled too, at any point: what was made may exist
        with contextlib.suppress(DrdeckError):  # what went wrong first is what to tell
            await _clean_up(server_dsn, database, name, renewing)
        raise
    await _clean_up(server_dsn, database, name, renewing)


async def _clean_up(server_dsn: str, database: str, name: str,
                    renewing: asyncio.Future | None) -> None:
    """The database first: the role owns it, and its objects inside."""
    if renewing is not None:
        renewing.cancel()
    try:
        await drop_database(server_dsn, database)
    except DrdeckError:
        with contextlib.suppress(DrdeckError):
            await _drop_role(server_dsn, name)
        raise
    await _drop_role(server_dsn, name)


def _role_name(database: str) -> str:
    suffix = f"_{secrets.token_hex(3)}"
    room = NAME_MAX_BYTES - len(suffix)
    prefix = database.encode()[:room].decode(errors="ignore")  # never cut by PostgreSQL
    return prefix + suffix


def _login_dsn(server_dsn: str, database: str, name: str, password: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(with_database(server_dsn, database))
    params.update(user=name, password=password)
    return make_conninfo(**params)


def _valid_until() -> str:
    return (datetime.now(UTC) + VALID_FOR).isoformat(timespec="seconds")


async def _admin(server_dsn: str, database: str | None = None):
    import psycopg

    dsn = with_database(server_dsn, database) if database else server_dsn
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)


async def _create_role(server_dsn: str, name: str, password: str, connections: int) -> None:
    import psycopg
    from psycopg import sql

    try:
        async with await _admin(server_dsn) as conn:
            row = await (await conn.execute("show password_encryption")).fetchone()
            # hashed here: the clear password never reaches the server, nor its log
            verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(),
                                                    row[0].encode()).decode()
            await conn.execute(sql.SQL(
                "create role {} login nosuperuser nocreatedb nocreaterole noreplication "
                "nobypassrls connection limit {} password {} valid until {}").format(
                sql.Identifier(name), sql.Literal(connections), sql.Literal(verifier),
                sql.Literal(_valid_until())))
    except psycopg.Error as exc:
        raise ThrowawayRoleFailed(
            f"full verification restores as a throwaway unprivileged role ({name}), which "
            f"{describe(server_dsn)} could not create: {_first_line(exc)}; give target_dsn a "
            "user with CREATEROLE and CREATEDB (a superuser will do)") from None


async def _give_database(server_dsn: str, database: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        async with await _admin(server_dsn) as conn:
            await conn.execute(sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(database), sql.Identifier(name)))
        # from PostgreSQL 15 the database's owner owns schema public (pg_database_owner);
        # before, everyone may create in it. Granted all the same, in case the template
        # says otherwise: the restore creates its tables there
        async with await _admin(server_dsn, database) as conn:
            if await (await conn.execute(
                    "select 1 from pg_namespace where nspname = 'public'")).fetchone():
                await conn.execute(sql.SQL("grant usage, create on schema public to {}").format(
                    sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ThrowawayRoleFailed(f"cannot give the scratch database {database} to the "
                                  f"throwaway role {name}: {_first_line(exc)}") from None


async def _check_login(role: ThrowawayRole, server_dsn: str) -> None:
    """Before the restore: pg_hba.conf may let the configured user in and not this role."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        async with await psycopg.AsyncConnection.connect(role.dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            await conn.execute("select 1")
    except psycopg.Error as exc:
        host = str(conninfo_to_dict(server_dsn).get("host") or "/")
        tcp = ", or give target_dsn a host=127.0.0.1 connection" if host.startswith("/") else ""
        raise ThrowawayRoleFailed(
            f"full verification restores as a throwaway unprivileged role ({role.name}), "
            f"which could not log in: {_first_line(exc)}; allow password login for it in "
            f"pg_hba.conf (e.g. host all all 127.0.0.1/32 scram-sha-256){tcp}") from None


async def _keep_valid(server_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        with contextlib.suppress(psycopg.Error):  # a login after this would say why
            async with await _admin(server_dsn) as conn:
                await conn.execute(sql.SQL("alter role {} valid until {}").format(
                    sql.Identifier(name), sql.Literal(_valid_until())))


async def _drop_role(server_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        async with await _admin(server_dsn) as conn:
            await conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                               "where usename = %s", (name,))
            await conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ThrowawayRoleFailed(
            f"cannot drop the throwaway role {name}: {_first_line(exc)}; its password "
            f"expires within the hour, and DROP ROLE {name} on {describe(server_dsn)} "
            "removes it") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
