"""Roles on a target server: which a restore needs, and creating exactly those.

Creating is the only change made: a role the server already has is never
altered, whatever the snapshot's globals say about it. A membership is
granted only to a role created here (it joins its groups); one that would
make an existing role a member of a new one would change what that existing
role may do, so it is left out and said.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tui.errors import PermanentFailure
from tui.postgres.dsn import describe
from tui.postgres.globals_file import Globals, membership_sql, role_sql
from tui.postgres.restore import ServerUnreachable


class RolesFailed(PermanentFailure):
    pass


@dataclass
class CreatedRoles:
    roles: list[str] = field(default_factory=list)
    memberships: list[str] = field(default_factory=list)  # "app in reporting"
    left_out: list[str] = field(default_factory=list)  # in words, with why
    without_password: list[str] = field(default_factory=list)  # LOGIN roles with no hash


async def existing_roles(server_dsn: str) -> set[str]:
    rows = await _query(server_dsn, "select rolname from pg_roles")
    return {row[0] for row in rows}


async def existing_tablespaces(server_dsn: str) -> set[str]:
    rows = await _query(server_dsn, "select spcname from pg_tablespace")
    return {row[0] for row in rows}


def missing(named: Iterable[str], existing: set[str]) -> list[str]:
    return sorted(set(named) - existing)


def plan_memberships(globals_: Globals, created: set[str],
                     existing: set[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(memberships to grant as (role, member), what is left out and why)."""
    grant, left_out = [], []
    after = existing | created
    for membership in globals_.memberships:
        if membership.member not in created:
            if membership.role in created and membership.member in existing:
                left_out.append(f"{membership.member} in {membership.role}: {membership.member} "
                                "exists on the target and is not changed")
            continue
        if membership.role not in after:
            left_out.append(f"{membership.member} in {membership.role}: {membership.role} is "
                            "not on the target and the snapshot does not need it")
            continue
        grant.append((membership.role, membership.member))
    return grant, left_out


async def create_roles(server_dsn: str, globals_: Globals, names: list[str]) -> CreatedRoles:
    """Create `names` from the globals, with their settings and memberships, in one transaction.

    Raises RolesFailed (nothing is created) when one is not defined in the
    globals or the server refuses a statement.
    """
    import psycopg

    undefined = [name for name in names if name not in globals_.roles]
    if undefined:
        raise RolesFailed(f"the snapshot's globals do not define {', '.join(undefined)}")
    result = CreatedRoles(roles=list(names))
    try:
        async with await psycopg.AsyncConnection.connect(server_dsn,
                                                         connect_timeout=10) as conn:
            existing = {row[0] for row in await (await conn.execute(
                "select rolname from pg_roles")).fetchall()}
            already = [name for name in names if name in existing]
            if already:
                raise RolesFailed(f"{', '.join(already)} already exist on "
                                  f"{describe(server_dsn)}: not changed, nothing created")
            async with conn.transaction():
                for name in names:
                    definition = globals_.roles[name]
                    for statement in role_sql(definition):
                        await conn.execute(statement.encode())
                    if "LOGIN" in definition.options and not definition.has_password:
                        result.without_password.append(name)
                grants, result.left_out = plan_memberships(globals_, set(names), existing)
                after = existing | set(names)
                for membership in globals_.memberships:
                    if (membership.role, membership.member) in grants:
                        await conn.execute(membership_sql(
                            membership, membership.grantor in after).encode())
                        result.memberships.append(f"{membership.member} in {membership.role}")
    except psycopg.Error as exc:
        reason = _first_line(exc)
        # a server's message may quote the statement: never its password hash
        for name in names:
            for option in globals_.roles[name].options:
                if option.startswith("PASSWORD '"):
                    reason = reason.replace(option[len("PASSWORD '"):-1], "***")
        raise RolesFailed(f"creating the roles on {describe(server_dsn)} failed, so none "
                          f"was created: {reason}") from None
    return result


async def _query(server_dsn: str, query: str) -> list[tuple]:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True,
                                                         connect_timeout=10) as conn:
            return await (await conn.execute(query)).fetchall()
    except psycopg.Error as exc:
        raise ServerUnreachable(f"cannot connect to {describe(server_dsn)}: "
                                f"{_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
