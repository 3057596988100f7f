"""A snapshot's globals: what recreating its database on another server needs.

A pg_dump of one database carries no roles, memberships, role settings or
tablespaces, and (restored without --create) none of the database's own
properties. Restored onto a new server it stops at `role "app" does not
exist`. So every snapshot also stores one SQL file, encrypted like the dump:

    \\if :{?create_database}       the database, with its encoding and locale
    \\elif :{?target_db}           its owner, settings, privileges and comment
    \\else                         roles, memberships, role settings, tablespaces
    \\endif                        (pg_dumpall --globals-only, as it wrote them)

It is a psql script, so it is usable without drdeck (docs/restore-by-hand.md):
`psql -f FILE` recreates the roles, `psql -v create_database=NAME -f FILE`
creates the database, `psql -v target_db=NAME -f FILE` gives it its
properties after pg_restore. drdeck reads the same file statement by statement
(tui/postgres/globals_file.py) and applies only what the restore needs.

The database's statements come from `pg_dump --schema-only --create`, run in
the snapshot's own exported transaction snapshot: pg_dump writes them exactly
for its version, and the same text says which roles and tablespaces the dump
names (tui/postgres/dumpnames.py), which the manifest records so a restore
can compare them with the target before downloading anything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.errors import DrdeckError
from tui.postgres.binaries import pg_bin
from tui.postgres.dsn import for_child_process
from tui.postgres.dumpnames import Named, names_in, worth_reading
from tui.postgres.sqltext import SqlSyntaxError, Statement, Token, statements
from tui.snapshots.pipes import Reporter, spawn

CREATE_VARIABLE = "create_database"
TARGET_VARIABLE = "target_db"
PASSWORDS_MISSING = "role password hashes (the backup role cannot read pg_authid)"


class GlobalsFailed(DrdeckError):
    pass


@dataclass(frozen=True)
class CapturedGlobals:
    text: str  # the globals file
    named: Named  # roles and tablespaces the database's dump names
    role_passwords: bool
    missing: tuple[str, ...]  # what could not be read, in words


async def capture_globals(dsn: str, database: str, exported_snapshot: str | None,
                          env: dict[str, str], *, header: str) -> CapturedGlobals:
    """Read the server's globals and the database's properties; raises GlobalsFailed."""
    target = for_child_process(dsn, env)
    schema_argv = [pg_bin("pg_dump"), "--schema-only", "--create", f"--dbname={target.dsn}"]
    if exported_snapshot:
        schema_argv.insert(1, f"--snapshot={exported_snapshot}")
    schema, (cluster_text, passwords, unread) = await asyncio.gather(
        _output_of(schema_argv, target.env), _dumpall_globals(target.dsn, target.env))
    try:
        # a large schema takes seconds to read: in a thread, beside the dump's streaming
        schema_statements = await asyncio.to_thread(
            lambda: list(statements(schema, keep=worth_reading)))
    except SqlSyntaxError as exc:
        raise GlobalsFailed(f"cannot read pg_dump's schema of {database}: {exc}") from None
    named = names_in(schema_statements)
    create, properties = database_statements(schema_statements, database)
    missing = (unread,) if unread else () if passwords else (PASSWORDS_MISSING,)
    text = build_file(header=header, create=create, properties=properties,
                      cluster_text=cluster_text, missing=missing)
    # read back now what a restore will read: a form drdeck does not know is found tonight,
    # not on the night of the restore
    from tui.postgres.globals_file import GlobalsInvalid, parse_globals

    try:
        parse_globals(text, "the new globals")
    except GlobalsInvalid as exc:
        missing = (*missing, f"roles and the database's properties in a form drdeck reads "
                             f"({exc})")
    return CapturedGlobals(text, named, passwords, missing)


async def _dumpall_globals(dsn: str, env: dict[str, str]) -> tuple[str, bool, str | None]:
    """(pg_dumpall --globals-only output, whether it holds the password hashes, what
    could not be read), the most that can be read: a backup never fails for its globals."""
    argv = [pg_bin("pg_dumpall"), "--globals-only", f"--dbname={dsn}"]
    try:
        return await _output_of(argv, env), True, None
    except GlobalsFailed as exc:
        if "permission denied" not in str(exc):
            return "", False, f"roles, memberships and tablespaces ({exc})"
    # not a superuser: pg_authid (the hashes) is closed to it, pg_roles is not
    try:
        return await _output_of([*argv, "--no-role-passwords"], env), False, None
    except GlobalsFailed as exc:
        return "", False, f"roles, memberships and tablespaces ({exc})"


async def _output_of(argv: list[str], env: dict[str, str]) -> str:
    proc = await spawn(argv, env=env)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        # the error, not the "detail: Query was ..." that follows it
        shown = next((line for line in lines if "error:" in line), lines[-1] if lines else
                     "no message")
        name = argv[0].rsplit("/", 1)[-1]
        raise GlobalsFailed(f"{name} failed (exit {proc.returncode}): {shown}")
    return out.decode()


def database_statements(found: list[Statement],
                        database: str) -> tuple[list[str], list[str]]:
    """(CREATE DATABASE, then its properties) from pg_dump --create, the name a variable.

    Properties are what pg_dump applies after creating the database: OWNER,
    SET, CONNECTION LIMIT, COMMENT, SECURITY LABEL, the database's GRANTs and
    REVOKEs, and `ALTER ROLE ... IN DATABASE ... SET`.
    """
    create: list[str] = []
    properties: list[str] = []
    for statement in found:
        token = database_name_token(statement)
        if token is None or token.value != database:
            continue
        if statement.starts("create", "database"):
            create.append(_replace(statement, token, f':"{CREATE_VARIABLE}"'))
        else:
            properties.append(_replace(statement, token, f':"{TARGET_VARIABLE}"'))
    return create, properties


def database_name_token(statement: Statement) -> Token | None:
    """The token naming the database a database-level statement is about, if it is one."""
    top = statement.top()
    if statement.starts("create", "database") or statement.starts("alter", "database"):
        return _name_at(top, 2)
    if statement.starts("comment", "on", "database"):
        return _name_at(top, 3)
    if statement.starts("alter", "role") or statement.starts("alter", "user"):
        for i, token in enumerate(top[:-1]):
            if token.is_word("in") and top[i + 1].is_word("database"):
                return _name_at(top, i + 2)
        return None
    if statement.starts("grant") or statement.starts("revoke") or \
            statement.starts("security", "label"):
        for i, token in enumerate(top[:-1]):
            if token.is_word("on") and top[i + 1].is_word("database"):
                return _name_at(top, i + 2)
    return None


def _name_at(top: list[Token], i: int) -> Token | None:
    # a variable: the same statement in a globals file, its name left to psql
    if i < len(top) and top[i].kind in ("word", "name", "variable"):
        return top[i]
    return None


def _replace(statement: Statement, token: Token, replacement: str) -> str:
    source, first = statement.source, statement.tokens[0].start
    last = statement.tokens[-1].end
    return source[first:token.start] + replacement + source[token.end:last] + ";"


def build_file(*, header: str, create: list[str], properties: list[str],
               cluster_text: str, missing: tuple[str, ...]) -> str:
    """The globals file (see the module docstring)."""
    lines = [f"-- {line}" if line else "--" for line in header.splitlines()]
    lines += [
        "--",
        "-- A psql script in three parts; run each as a superuser of the new server:",
        "--   1. roles, memberships, role settings and tablespaces:",
        "--        psql -X -d postgres -f FILE",
        "--      (it also sets the attributes and password of roles the server has, its",
        "--      superuser's included: on a server with other databases, create only the",
        "--      roles you lack, by hand or with drdeck's snapshot-restore)",
        "--   2. the database, with its encoding and locale:",
        f"--        psql -X -d postgres -v {CREATE_VARIABLE}=NAME -f FILE",
        "--   3. after pg_restore into it, its owner, settings, privileges and comment:",
        f"--        psql -X -d postgres -v {TARGET_VARIABLE}=NAME -f FILE",
    ]
    lines += [f"-- NOT INCLUDED: {what}" for what in missing]
    lines.append(f"\\if :{{?{CREATE_VARIABLE}}}")
    lines += _restricted(create or [f'CREATE DATABASE :"{CREATE_VARIABLE}" '
                                    "WITH TEMPLATE = template0;"])
    lines.append(f"\\elif :{{?{TARGET_VARIABLE}}}")
    lines += _restricted(properties)
    lines.append("\\else")
    lines += cluster_text.rstrip("\n").splitlines()
    lines.append("\\endif")
    return "\n".join(lines) + "\n"


def _restricted(body: list[str]) -> list[str]:
    # as pg_dump does: no backslash command can run between \restrict and \unrestrict,
    # whatever a name in the text holds
    key = secrets.token_hex(16)
    return [f"\\restrict {key}", *body, f"\\unrestrict {key}"]


async def fetch_globals(manifest: Any, store: Any, workdir: Path, reporter: Reporter,
                        gpg_home: str | None) -> str:
    """The snapshot's globals file, its checksums and gpg's integrity check proven.

    Raises FetchFailed, like a dump's fetch, when it is missing, corrupt or not
    the one the manifest describes; GlobalsFailed when the snapshot has none.
    """
    import hashlib

    from tui.snapshots.fetch import FetchFailed, StoredItem, stream_object

    record = manifest.globals
    if record is None:
        raise GlobalsFailed(f"snapshot {manifest.stamp} of {manifest.database} carries no "
                            "globals (it was taken before drdeck stored them)")
    item = StoredItem(record.object, record.stored_size, record.sha256_stored,
                      manifest.encrypted, what="this snapshot's globals")
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # a fixed name in the run's private directory: nothing from the manifest makes the path;
    # O_EXCL|O_NOFOLLOW: never through a name planted there
    path = workdir / "globals.sql.partial"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        got = await stream_object(item, store, fd, _WithoutProgress(reporter), gpg_home,
                                  hash_plaintext=True)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    if got != record.sha256_plaintext or hashlib.sha256(data).hexdigest() != got:
        raise FetchFailed(f"{store.location(record.object)}: the decrypted globals are not the "
                          "ones the manifest describes (sha256 differs); not used")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise FetchFailed(f"{store.location(record.object)}: the globals are not text; "
                          "not used") from None


class _WithoutProgress:
    """Kilobytes need no progress bar: the step's bar stays the step's own work."""

    def __init__(self, reporter: Reporter):
        self._reporter = reporter

    def output(self, line: str, stream: str = "stdout") -> None:
        self._reporter.output(line, stream)

    def progress(self, done: float, total: float | None = None, unit: str = "",
                 detail: str = "") -> None:
        pass
