"""Roles on a target server: which a restore needs, and creating exactly those.

Creating is the only change made: a role the server already has is never
altered, whatever the snapshot's globals say about it. A membership is
granted only to a role created here (it joins its groups); one that would
make an existing role a member of a new one would change what that existing
role may do, so it is left out and said.

The globals come from a repository that others can write, so the plan shows
everything it will do, and names the powers it would hand out: superuser
attributes, and memberships in superusers or in the roles that reach the
server's files and programs. A person sees them in the confirmation; --yes
alone does not grant them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tui.errors import PermanentFailure
from tui.postgres.dsn import describe
from tui.postgres.globals_file import Globals, Membership, RoleDefinition, membership_sql, role_sql
from tui.postgres.restore import ServerUnreachable

# predefined roles whose members act as the server's operating-system account
_SERVER_ACCESS = frozenset({"pg_execute_server_program", "pg_read_server_files",
                            "pg_write_server_files"})
_POWERFUL_ATTRIBUTES = ("SUPERUSER", "REPLICATION", "BYPASSRLS")
# settings that load code into every session of the role
_LOADS_CODE = ("session_preload_libraries", "local_preload_libraries")


class RolesFailed(PermanentFailure):
    pass


@dataclass(frozen=True)
class Target:
    """What the server has: every role, and which of them are superusers."""

    roles: frozenset[str]
    superusers: frozenset[str]


@dataclass
class RolePlan:
    create: list[RoleDefinition]
    grants: list[Membership]  # memberships of created roles, in roles that will exist
    left_out: list[str] = field(default_factory=list)  # in words, with why
    powers: list[str] = field(default_factory=list)  # what a person must see, in words

    @property
    def names(self) -> list[str]:
        return [role.name for role in self.create]

    def describe(self) -> list[str]:
        """The plan as lines for a confirmation: a summary first, then every role and grant."""
        lines = [f"{len(self.create)} role{'s' * (len(self.create) != 1)} to create, "
                 f"{len(self.grants)} membership{'s' * (len(self.grants) != 1)}"
                 + (f", {len(self.powers)} with powers over the server: look at them"
                    if self.powers else "")]
        lines += [f"  ⚠ {power}" for power in self.powers]
        for role in self.create:
            groups = [g.role for g in self.grants if g.member == role.name]
            member_of = f"; member of {', '.join(groups)}" if groups else ""
            lines.append(f"  {role.name}: {role.describe()}{member_of}")
        lines += [f"  not granted: {line}" for line in self.left_out]
        return lines


@dataclass
class CreatedRoles:
    roles: list[str] = field(default_factory=list)
    memberships: list[str] = field(default_factory=list)  # "app in reporting"
    without_password: list[str] = field(default_factory=list)  # LOGIN roles with no hash


async def existing_roles(server_dsn: str) -> set[str]:
    return set((await read_target(server_dsn)).roles)


async def read_target(server_dsn: str) -> Target:
    rows = await _query(server_dsn, "select rolname, rolsuper from pg_roles")
    return Target(frozenset(row[0] for row in rows), frozenset(row[0] for row in rows
                                                              if row[1]))


async def existing_tablespaces(server_dsn: str) -> set[str]:
    rows = await _query(server_dsn, "select spcname from pg_tablespace")
    return {row[0] for row in rows}


def missing(named: Iterable[str], existing: Iterable[str]) -> list[str]:
    return sorted(set(named) - set(existing))


def plan_roles(globals_: Globals, names: list[str], target: Target) -> RolePlan:
    """What creating `names` from the globals would do on `target`; RolesFailed if one is
    not defined there."""
    undefined = [name for name in names if name not in globals_.roles]
    if undefined:
        raise RolesFailed(f"the snapshot's globals do not define {', '.join(undefined)}")
    created = set(names)
    plan = RolePlan([globals_.roles[name] for name in names], [])
    for role in plan.create:
        powerful = [word for word in _POWERFUL_ATTRIBUTES if word in role.options]
        if powerful:
            plan.powers.append(f"{role.name} would be {' and '.join(powerful)}")
        for setting in role.settings:
            if any(name in setting.lower() for name in _LOADS_CODE):
                plan.powers.append(f"{role.name}'s setting {setting.split()[1]} loads "
                                   "libraries into its sessions")
    after = target.roles | created
    for membership in globals_.memberships:
        if membership.member not in created:
            if membership.role in created and membership.member in target.roles:
                plan.left_out.append(f"{membership.member} in {membership.role}: "
                                     f"{membership.member} exists on the target and is not "
                                     "changed")
            continue
        if membership.role not in after:
            plan.left_out.append(f"{membership.member} in {membership.role}: "
                                 f"{membership.role} is not on the target and the snapshot "
                                 "does not need it")
            continue
        plan.grants.append(membership)
        power = _power_of(membership, target)
        if power:
            plan.powers.append(power)
    return plan


def _power_of(membership: Membership, target: Target) -> str | None:
    role, member = membership.role, membership.member
    if role in target.superusers:
        return f"{member} would be a member of {role}, a superuser of the target"
    if role in _SERVER_ACCESS:
        return (f"{member} would be a member of {role}: it acts on the server's files or "
                "programs as the server's account")
    if "ADMIN" in membership.options and role in target.roles:
        return f"{member} would administer the existing role {role} (WITH ADMIN OPTION)"
    return None


async def create_roles(server_dsn: str, plan: RolePlan) -> CreatedRoles:
    """Carry out `plan` in one transaction: the roles, their settings, their memberships.

    Raises RolesFailed (nothing is created) when one of them exists by now or
    the server refuses a statement.
    """
    import psycopg

    result = CreatedRoles(roles=plan.names)
    try:
        async with await psycopg.AsyncConnection.connect(server_dsn,
                                                         connect_timeout=10) as conn:
            await plain_strings(conn)
            existing = {row[0] for row in await (await conn.execute(
                "select rolname from pg_roles")).fetchall()}
            already = [name for name in plan.names if name in existing]
            if already:
                raise RolesFailed(f"{', '.join(already)} already exist on "
                                  f"{describe(server_dsn)}: not changed, nothing created")
            after = existing | set(plan.names)
            async with conn.transaction():
                for definition in plan.create:
                    for statement in role_sql(definition):
                        await conn.execute(statement.encode())
                    if "LOGIN" in definition.options and not definition.has_password:
                        result.without_password.append(definition.name)
                for membership in plan.grants:
                    await conn.execute(membership_sql(
                        membership, membership.grantor in after).encode())
                    result.memberships.append(f"{membership.member} in {membership.role}")
    except psycopg.Error as exc:
        reason = _first_line(exc)
        # a server's message may quote the statement: never its password hash
        for definition in plan.create:
            for option in definition.options:
                if option.startswith("PASSWORD '"):
                    reason = reason.replace(option[len("PASSWORD '"):-1], "***")
        raise RolesFailed(f"creating the roles on {describe(server_dsn)} failed, so none "
                          f"was created: {reason}") from None
    return result


async def plain_strings(conn: Any) -> None:
    """String literals as the checks read them: a backslash is a backslash.

    With standard_conforming_strings off (a server's or a role's setting), '\\'' would
    end a literal the checks saw as whole, and what follows would run.
    """
    await conn.execute("set standard_conforming_strings = on")


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
