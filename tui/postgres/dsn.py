"""Connection strings: pick a database, and keep passwords off command lines.

A password inside a DSN passed to pg_dump or pg_restore would be visible to
anyone running `ps`. Child processes get the DSN without it and the password
through PGPASSWORD in their environment instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LibpqTarget:
    """What a libpq program needs: a DSN without the password, and the environment."""

    dsn: str
    env: dict[str, str]


def with_database(dsn: str, database: str) -> str:
    """The same server and user, another database."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = database
    return make_conninfo(**params)


def for_child_process(dsn: str, base_env: dict[str, str] | None = None) -> LibpqTarget:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = dict(base_env or {})
    if password:
        env["PGPASSWORD"] = str(password)
    return LibpqTarget(make_conninfo(**params), env)


def describe(dsn: str) -> str:
    """user@host:port/dbname, for messages (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable connection string)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user")
    db = params.get("dbname") or user or "?"
    return f"{user + '@' if user else ''}{host}:{port}/{db}"
