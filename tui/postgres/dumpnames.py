"""Which roles and tablespaces a dump's SQL names: what a new server must have for it.

A dump of one database refers to roles it does not create: every owner
(`ALTER ... OWNER TO`), every grantee and grantor (`GRANT`, `REVOKE`, default
privileges, `SET SESSION AUTHORIZATION`), the roles of row-level security
policies and user mappings. It refers to tablespaces through
`SET default_tablespace` and `CREATE DATABASE ... TABLESPACE`. Restored onto a
server without them, pg_restore stops at the first: `role "app" does not exist`.

The same reading serves a plain `pg_dump --schema-only` at backup time and
`pg_restore --schema-only -f -` of the fetched dump at restore time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tui.postgres.sqltext import Statement, Token

# role specifications that are not role names
_NOT_ROLES = frozenset({"public", "current_user", "current_role", "session_user"})
# where a role list ends
_LIST_ENDS = frozenset({"with", "granted", "cascade", "restrict", "using", "server",
                        "options", "in"})


@dataclass
class Named:
    roles: set[str] = field(default_factory=set)
    tablespaces: set[str] = field(default_factory=set)

    def add(self, other: Named) -> None:
        self.roles |= other.roles
        self.tablespaces |= other.tablespaces


def worth_reading(first: str, second: str) -> bool:
    """The statements that can name a role or a tablespace, or be about the database itself,
    by their first two words: the rest of a schema (tables, indexes, functions) is skipped."""
    return first in ("grant", "revoke", "alter", "set", "comment", "security") or (
        first == "create" and second in ("policy", "user", "database"))


def names_in(found: Iterable[Statement]) -> Named:
    named = Named()
    for statement in found:
        if statement.is_meta or not statement.tokens:
            continue
        named.roles.update(_roles_of(statement))
        tablespace = _tablespace_of(statement)
        if tablespace:
            named.tablespaces.add(tablespace)
    return named


def _roles_of(statement: Statement) -> set[str]:
    top = statement.top()
    roles: set[str] = set()
    if statement.starts("grant") or statement.starts("revoke"):
        keyword = "to" if statement.starts("grant") else "from"
        roles |= _list_after(top, keyword)
        roles |= _list_after(top, "by")  # GRANTED BY
    elif statement.starts("alter", "default", "privileges"):
        roles |= _list_after(top, "role") | _list_after(top, "user")  # FOR ROLE / FOR USER
        roles |= _list_after(top, "to") | _list_after(top, "from")
    elif statement.starts("set", "session", "authorization"):
        roles |= _list_after(top, "authorization")
    elif statement.starts("create", "policy"):
        roles |= _list_after(top, "to")
    elif statement.starts("create", "user", "mapping") or \
            statement.starts("alter", "user", "mapping"):
        roles |= _list_after(top, "for")
    if statement.starts("alter"):
        roles |= _owner_of(top)
    return roles


def _owner_of(top: list[Token]) -> set[str]:
    for i in range(len(top) - 2):
        if top[i].is_word("owner") and top[i + 1].is_word("to"):
            return _role_list(top, i + 2)
    return set()


def _list_after(top: list[Token], keyword: str) -> set[str]:
    roles: set[str] = set()
    for i, token in enumerate(top):
        if token.is_word(keyword):
            roles |= _role_list(top, i + 1)
    return roles


def _role_list(top: list[Token], i: int) -> set[str]:
    """The names of `a, "B c", GROUP d` starting at top[i]."""
    roles: set[str] = set()
    while i < len(top):
        token = top[i]
        if token.is_word("group"):  # the old GRANT ... TO GROUP g spelling
            i += 1
            continue
        if token.kind == "name":
            roles.add(token.value)
        elif token.kind == "word":
            if token.value in _LIST_ENDS:
                break
            if token.value not in _NOT_ROLES:
                roles.add(token.value)
        else:
            break
        if i + 1 < len(top) and top[i + 1].text == ",":
            i += 2
            continue
        break
    return roles


def _tablespace_of(statement: Statement) -> str | None:
    top = statement.top()
    if statement.starts("set", "default_tablespace"):
        value = top[-1] if len(top) > 2 else None
        if value is None or value.kind == "op" or value.is_word("default", "to"):
            return None
        name = value.value
        return name or None  # '' is the database's default tablespace
    if statement.starts("create", "database"):
        for i, token in enumerate(top[:-1]):
            if token.is_word("tablespace"):
                following = top[i + 2] if top[i + 1].text == "=" and i + 2 < len(top) \
                    else top[i + 1]
                if following.kind in ("word", "name"):
                    return following.value
    return None
