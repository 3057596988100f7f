"""Reading a snapshot's globals file back: roles, memberships, the database's statements.

The file (written by tui/snapshots/globals.py) comes from the repository, so
it is read as untrusted text: every statement drdeck will run must have one of
the few shapes pg_dump and pg_dumpall write, checked token by token, or the
file is refused. Role statements are rebuilt from their parts with quoted
names; nothing else in the file is ever executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.errors import PermanentFailure
from tui.postgres.sqltext import SqlSyntaxError, Statement, Token, quote_name, statements
from tui.snapshots.globals import CREATE_VARIABLE, TARGET_VARIABLE, database_name_token

# the options of ALTER ROLE ... WITH as pg_dumpall writes them
_ROLE_FLAGS = frozenset({
    "superuser", "nosuperuser", "inherit", "noinherit", "createrole", "nocreaterole",
    "createdb", "nocreatedb", "login", "nologin", "replication", "noreplication",
    "bypassrls", "nobypassrls",
})
_POWERFUL = ("superuser", "createrole", "replication", "bypassrls")
# GRANT role TO member WITH ... (ADMIN OPTION; from 16, INHERIT/SET TRUE/FALSE)
_MEMBERSHIP_OPTIONS = frozenset({"admin", "option", "inherit", "set", "true", "false"})


class GlobalsInvalid(PermanentFailure):
    pass


@dataclass
class RoleDefinition:
    name: str
    options: list[str] = field(default_factory=list)  # ALTER ROLE ... WITH, each option
    settings: list[str] = field(default_factory=list)  # "SET name TO value" texts
    comment: str | None = None

    @property
    def has_password(self) -> bool:
        return any(option.upper().startswith("PASSWORD '") for option in self.options)

    def describe(self) -> str:
        """The role in words, for a confirmation: never the password hash itself."""
        words = [option.split()[0].upper() for option in self.options]
        shown = []
        shown.append("LOGIN" if "LOGIN" in words else "NOLOGIN")
        shown += [w for w in (p.upper() for p in _POWERFUL) if w in words]
        if self.has_password:
            shown.append("its password hash")
        elif "LOGIN" in words:
            shown.append("NO PASSWORD")
        if self.settings:
            shown.append(f"{len(self.settings)} setting{'s' * (len(self.settings) != 1)}")
        return ", ".join(shown)


@dataclass(frozen=True)
class Membership:
    role: str  # the role granted
    member: str
    options: str  # "WITH ..." as written, or ""
    grantor: str | None


@dataclass
class Globals:
    roles: dict[str, RoleDefinition] = field(default_factory=dict)
    memberships: list[Membership] = field(default_factory=list)
    tablespaces: set[str] = field(default_factory=set)
    create_database: str = ""  # CREATE DATABASE with the variable for its name
    properties: list[str] = field(default_factory=list)  # statements naming the variable
    skipped: list[str] = field(default_factory=list)  # what drdeck will not apply, in words


def parse_globals(text: str, where: str) -> Globals:
    try:
        found = list(statements(text))
    except SqlSyntaxError as exc:
        raise GlobalsInvalid(f"{where}: not a globals file drdeck wrote ({exc})") from None
    parsed = Globals()
    section = None
    for statement in found:
        if statement.is_meta:
            section = _section_after(statement.tokens[0].value, section)
            continue
        if section == "create":
            parsed.create_database = _checked_database_statement(statement, CREATE_VARIABLE,
                                                                 where)
        elif section == "properties":
            parsed.properties.append(_checked_database_statement(statement, TARGET_VARIABLE,
                                                                 where))
        elif section == "cluster":
            _read_cluster_statement(statement, parsed, where)
    if section != "end":
        raise GlobalsInvalid(f"{where}: not a globals file drdeck wrote (its parts are "
                             "missing or unfinished)")
    return parsed


def _section_after(command: str, section: str | None) -> str | None:
    words = command.split()
    name = words[0]
    if name == "\\if" and words[1:] == [f":{{?{CREATE_VARIABLE}}}"]:
        return "create"
    if name == "\\elif" and words[1:] == [f":{{?{TARGET_VARIABLE}}}"]:
        return "properties"
    if name == "\\else" and section == "properties":
        return "cluster"
    if name == "\\endif" and section == "cluster":
        return "end"
    return section  # \restrict, \unrestrict, \connect: no statement of ours


def _checked_database_statement(statement: Statement, variable: str, where: str) -> str:
    """The statement, if it only touches the database the variable names, as pg_dump does."""
    token = database_name_token(statement)
    top = statement.top()
    if token is None or token.kind != "variable" or token.value != variable or \
            sum(t.kind == "variable" for t in statement.tokens) != 1:
        raise GlobalsInvalid(f"{where}: unexpected statement in the database part: "
                             f"{_shown(statement)}")
    if statement.starts("create", "database") != (variable == CREATE_VARIABLE):
        raise GlobalsInvalid(f"{where}: CREATE DATABASE outside its part")
    plain = all(t.kind in ("word", "name", "number", "variable") or
                (t.kind == "string" and t.text[:1] not in "eEuU") or
                t.text in (",", "=", "-", ".") for t in statement.tokens)
    shaped = {
        "create": lambda: _creates_from_template0(top),
        "alter": lambda: _database_change(top) if statement.starts("alter", "database")
        else True,  # ALTER ROLE ... IN DATABASE :"target_db" SET ...
        "grant": lambda: _grant_names_one_database(top, "to"),
        "revoke": lambda: _grant_names_one_database(top, "from"),
        "comment": lambda: len(top) == 6 and top[4].is_word("is") and
        top[5].kind == "string",
        "security": lambda: True,
    }.get(top[0].value)
    if not plain or len(top) != len(statement.tokens) or shaped is None or not shaped():
        raise GlobalsInvalid(f"{where}: unexpected statement in the database part: "
                             f"{_shown(statement)}")
    return statement.text


# what CREATE DATABASE may say: the encoding and locale pg_dump writes, nothing that
# copies another database or changes who owns it
_CREATE_OPTIONS = frozenset({
    "template", "encoding", "locale", "lc_collate", "lc_ctype", "locale_provider",
    "icu_locale", "icu_rules", "builtin_locale", "collation_version", "tablespace",
})


def _creates_from_template0(top: list[Token]) -> bool:
    rest = top[3:]
    if rest and rest[0].is_word("with"):
        rest = rest[1:]
    options: dict[str, str] = {}
    i = 0
    while i < len(rest):
        name = rest[i]
        has_equals = i + 1 < len(rest) and rest[i + 1].text == "="
        value = rest[i + 2] if has_equals and i + 2 < len(rest) else \
            rest[i + 1] if i + 1 < len(rest) else None
        if name.kind != "word" or name.value not in _CREATE_OPTIONS or value is None or \
                value.kind not in ("word", "name", "string"):
            return False
        options[name.value] = value.value
        i += 3 if has_equals else 2
    return options.get("template") == "template0"


def _grant_names_one_database(top: list[Token], keyword: str) -> bool:
    """GRANT ... ON DATABASE :"target_db" TO ...: the variable, then TO (or FROM) at once."""
    for i, token in enumerate(top[:-1]):
        if token.kind == "variable":
            return top[i + 1].is_word(keyword)
    return False


def _database_change(top: list[Token]) -> bool:
    """ALTER DATABASE as pg_dump writes it: an owner, a setting, a connection limit, and the
    flags of a template database (read, then left out: see staging.property_statements)."""
    rest = top[3:]
    if rest and rest[0].is_word("with"):
        rest = rest[1:]
    moves = len(rest) >= 2 and rest[1].is_word("tablespace")  # SET TABLESPACE: not pg_dump's
    return bool(rest) and not moves and (
        rest[0].is_word("set", "reset", "is_template", "allow_connections") or
        (len(rest) >= 2 and rest[0].is_word("owner") and rest[1].is_word("to")) or
        (len(rest) >= 2 and rest[0].is_word("connection") and rest[1].is_word("limit")))


def _read_cluster_statement(statement: Statement, parsed: Globals, where: str) -> None:
    top = statement.top()
    if statement.starts("create", "role"):
        name = _name(top, 2, statement, where)
        parsed.roles.setdefault(name, RoleDefinition(name))
    elif statement.starts("alter", "role") and len(top) > 3 and top[3].is_word("with"):
        role = _defined(parsed, _name(top, 2, statement, where), statement, where)
        role.options += _role_options(top[4:], statement, where)
    elif statement.starts("alter", "role") and len(top) > 3 and top[3].is_word("set"):
        role = _defined(parsed, _name(top, 2, statement, where), statement, where)
        role.settings.append(_setting(statement, top[3], where))
    elif statement.starts("comment", "on", "role"):
        role = _defined(parsed, _name(top, 3, statement, where), statement, where)
        if len(top) == 6 and top[4].is_word("is") and top[5].kind == "string":
            role.comment = top[5].value
    elif statement.starts("grant") and not any(t.is_word("on") for t in top):
        parsed.memberships += _memberships(top, statement, where)
    elif statement.starts("create", "tablespace"):
        parsed.tablespaces.add(_name(top, 2, statement, where))
    elif statement.starts("set") or statement.starts("select"):
        return  # the session settings pg_dumpall begins with
    else:
        # tablespace privileges and options, security labels: not a restore's business
        parsed.skipped.append(_shown(statement))


def _name(top: list[Token], i: int, statement: Statement, where: str) -> str:
    if i < len(top) and top[i].kind in ("word", "name"):
        return top[i].value
    raise GlobalsInvalid(f"{where}: cannot read a name in {_shown(statement)}")


def _defined(parsed: Globals, name: str, statement: Statement, where: str) -> RoleDefinition:
    if name not in parsed.roles:
        raise GlobalsInvalid(f"{where}: {_shown(statement)} names a role the file never "
                             "creates")
    return parsed.roles[name]


def _role_options(tokens: list[Token], statement: Statement, where: str) -> list[str]:
    options, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token.is_word(*_ROLE_FLAGS):
            options.append(token.value.upper())
            i += 1
        elif token.is_word("connection") and i + 2 < len(tokens) and \
                tokens[i + 1].is_word("limit") and tokens[i + 2].kind in ("number", "op"):
            limit = tokens[i + 2].text
            if tokens[i + 2].text == "-" and i + 3 < len(tokens):  # CONNECTION LIMIT -1
                limit, i = "-" + tokens[i + 3].text, i + 1
            if not limit.lstrip("-").isdigit():
                break
            options.append(f"CONNECTION LIMIT {limit}")
            i += 3
        elif token.is_word("password", "valid") and i + 1 < len(tokens):
            value = tokens[i + 1] if token.value == "password" else (
                tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 1].is_word("until")
                else None)
            if value is None or value.kind != "string" or value.text[:1] in "eEuU":
                if token.value == "password" and tokens[i + 1].is_word("null"):
                    i += 2
                    continue
                break
            keyword = "PASSWORD" if token.value == "password" else "VALID UNTIL"
            options.append(f"{keyword} {_literal(value.value)}")
            i += 2 if token.value == "password" else 3
        else:
            break
    else:
        return options
    raise GlobalsInvalid(f"{where}: unexpected role option in {_shown(statement)}")


def _setting(statement: Statement, set_token: Token, where: str) -> str:
    """`SET name TO value, ...`: words, names, literals, numbers and commas only."""
    rest = [t for t in statement.tokens if t.start >= set_token.start]
    if len(rest) < 4 or rest[1].kind not in ("word", "name") or \
            not (rest[2].is_word("to") or rest[2].text == "="):
        raise GlobalsInvalid(f"{where}: unexpected role setting in {_shown(statement)}")
    for token in rest[3:]:
        escaped = token.kind == "string" and token.text[:1] in "eEuU"  # pg_dumpall's are plain
        if token.depth or escaped or (token.kind not in ("word", "name", "string", "number")
                                      and token.text not in (",", "-", ".")):
            raise GlobalsInvalid(f"{where}: unexpected role setting in {_shown(statement)}")
    return statement.source[set_token.start:rest[-1].end]


def _memberships(top: list[Token], statement: Statement, where: str) -> list[Membership]:
    words = [t for t in top]
    try:
        to = next(i for i, t in enumerate(words) if t.is_word("to"))
    except StopIteration:
        raise GlobalsInvalid(f"{where}: cannot read {_shown(statement)}") from None
    granted = _names(words[1:to], statement, where)
    rest = words[to + 1:]
    end = next((i for i, t in enumerate(rest) if t.is_word("with", "granted")), len(rest))
    members = _names(rest[:end], statement, where)
    options, grantor = "", None
    tail = rest[end:]
    if tail and tail[0].is_word("with"):
        stop = next((i for i, t in enumerate(tail) if t.is_word("granted")), len(tail))
        if not all(t.is_word(*_MEMBERSHIP_OPTIONS) or t.text == "," for t in tail[1:stop]):
            raise GlobalsInvalid(f"{where}: unexpected membership option in "
                                 f"{_shown(statement)}")
        options = " ".join(t.text.upper() if t.kind == "word" else t.text
                           for t in tail[:stop]).replace(" ,", ",")
        tail = tail[stop:]
    if tail:
        if len(tail) != 3 or not tail[1].is_word("by") or tail[2].kind not in ("word", "name"):
            raise GlobalsInvalid(f"{where}: cannot read {_shown(statement)}")
        grantor = tail[2].value
    return [Membership(role, member, options, grantor) for role in granted for member in members]


def _names(tokens: list[Token], statement: Statement, where: str) -> list[str]:
    names = [t.value for t in tokens if t.kind in ("word", "name")]
    commas = [t for t in tokens if t.text == ","]
    if not names or len(names) + len(commas) != len(tokens) or len(commas) != len(names) - 1:
        raise GlobalsInvalid(f"{where}: cannot read the role names in {_shown(statement)}")
    return names


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shown(statement: Statement) -> str:
    """A statement for a message: its start, never a password literal in it."""
    words = []
    for token in statement.tokens[:6]:
        words.append("'…'" if token.kind == "string" else token.text)
    return repr(" ".join(words) + (" …" if len(statement.tokens) > 6 else ""))


def role_sql(definition: RoleDefinition) -> list[str]:
    """The statements that create `definition` (names quoted, options as checked)."""
    name = quote_name(definition.name)
    sql = [f"CREATE ROLE {name}"]
    if definition.options:
        sql.append(f"ALTER ROLE {name} WITH {' '.join(definition.options)}")
    sql += [f"ALTER ROLE {name} {setting}" for setting in definition.settings]
    if definition.comment is not None:
        sql.append(f"COMMENT ON ROLE {name} IS {_literal(definition.comment)}")
    return sql


def membership_sql(membership: Membership, grantor_exists: bool) -> str:
    sql = f"GRANT {quote_name(membership.role)} TO {quote_name(membership.member)}"
    if membership.options:
        sql += f" {membership.options}"
    if membership.grantor and grantor_exists:
        sql += f" GRANTED BY {quote_name(membership.grantor)}"
    return sql
