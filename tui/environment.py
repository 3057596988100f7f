"""What a child process finds in its environment: an allow-list, never drdeck's own.

drdeck's environment holds secrets: DRDECK_GPG_PASSPHRASE, DRDECK_SECRET_<NAME>, the
AWS credentials, API keys, a DSN with its password. A server drdeck starts runs whatever
SQL its data brings (a restored one: `COPY ... FROM PROGRAM 'env'`), and anyone with the
server's OS account can read its /proc/PID/environ; a runbook's command may be any
program. So each kind of child gets the base set below and only what its job needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

# Where programs and libraries are, whose files, which language and time zone: what a
# command needs to run as it would from a login shell, and nothing that unlocks anything.
BASE_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ",
              "TMPDIR", "LD_LIBRARY_PATH")
BASE_PREFIXES = ("LC_",)


def _pick(environ: Mapping[str, str], names: Iterable[str] = (),
          prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    wanted = set(names)
    return {key: value for key, value in environ.items()
            if key in wanted or (prefixes and key.startswith(prefixes))}


def _from(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def base(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The base set: PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ, TMPDIR and
    LD_LIBRARY_PATH, as drdeck found them."""
    return _pick(_from(environ), BASE_NAMES, BASE_PREFIXES)


def for_server(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """initdb, pg_ctl and the server: the base set alone. PGDATA, PGPORT, PGOPTIONS... would
    quietly change what they do (they get explicit arguments instead)."""
    return base(environ)


def libpq_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The PG* variables libpq reads (PGPASSFILE, PGSSLMODE, PGPASSWORD...): for pg_dump,
    pg_restore and pg_basebackup, which connect where drdeck does."""
    return _pick(_from(environ), prefixes=("PG",))


def for_gpg(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """gpg: the base set and GNUPGHOME (the passphrase goes through a pipe of its own)."""
    environ = _from(environ)
    return {**base(environ), **_pick(environ, ("GNUPGHOME",))}


def for_program(environ: Mapping[str, str] | None = None, names: Iterable[str] = (),
                prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """A backup engine's program (tui.sources): the base set and the variables it is
    configured by, such as its own option variables (a repository key among them: the
    program needs it, a restored server does not)."""
    environ = _from(environ)
    return {**base(environ), **_pick(environ, names, prefixes)}
