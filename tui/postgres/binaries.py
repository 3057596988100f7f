"""Where the PostgreSQL server programs live, and which major version they are.

Debian keeps the server programs (initdb, pg_ctl, postgres, ...) out of PATH in
a versioned directory, /usr/lib/postgresql/<major>/bin, and several majors can
be installed side by side. We look in this order:

1. ``$DRDECK_PG_BIN``, when the operator names a directory: then only there,
   so a wrong setting fails loudly instead of silently using another version;
2. the highest-version Debian directory that holds initdb;
3. PATH (other distributions, source builds, Homebrew).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from tui.errors import DrdeckError

PG_BIN_ENV = "DRDECK_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

# The Debian package that ships each program, so a missing one can be named.
# "postgresql" (the metapackage) pulls in both for the distribution's major.
_SERVER_PROGRAMS = {"initdb", "pg_ctl", "postgres", "pgbench", "pg_waldump"}
_CLIENT_PROGRAMS = {"pg_basebackup", "pg_dump", "pg_restore", "psql"}


def debian_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin that holds initdb, if any."""
    candidates = []
    for bin_dir in DEBIAN_PG_ROOT.glob("*/bin"):
        version = _version_key(bin_dir.parent.name)
        if version is not None and (bin_dir / "initdb").is_file():
            candidates.append((version, bin_dir))
    return max(candidates)[1] if candidates else None


def pg_bin(name: str) -> str:
    """The absolute path of PostgreSQL program ``name``.

    Raises DrdeckError naming what to install (or set) when it cannot be found.
    """
    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        path = Path(configured) / name
        if _is_executable(path):
            return str(path)
        problem = "is not a directory" if not Path(configured).is_dir() else f"has no {name}"
        raise DrdeckError(
            f"${PG_BIN_ENV}={configured} {problem}: point it at the directory holding the "
            f"PostgreSQL programs (on Debian /usr/lib/postgresql/<major>/bin, from "
            f"'apt-get install {_debian_package(name, None)}'), or unset it"
        )

    debian = debian_bin_dir()
    if debian is not None and _is_executable(debian / name):
        return str(debian / name)

    found = shutil.which(name)
    if found:
        return found

    where = f"{debian}, " if debian else f"{DEBIAN_PG_ROOT}/*/bin, "
    raise DrdeckError(
        f"{name} not found (looked in {where}PATH): install it with "
        f"'apt-get install {_debian_package(name, debian)}', or set ${PG_BIN_ENV} "
        f"to the directory holding the PostgreSQL server programs"
    )


def server_major_version() -> int:
    """The major version of the server programs pg_bin() finds (e.g. 15)."""
    return _major_version_of(pg_bin("postgres"))


@functools.cache
def _major_version_of(postgres: str) -> int:
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"; before 10 the
    # major had two parts (9.6), which we fold into one number the same way
    # server_version_num does (9.6 -> 9, good enough to refuse it).
    result = subprocess.run([postgres, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
    if result.returncode != 0 or not match:
        raise DrdeckError(
            f"could not tell the version of {postgres}: '{postgres} --version' printed "
            f"{(result.stdout + result.stderr).strip()!r}"
        )
    return int(match.group(1))


def _debian_package(name: str, debian: Path | None) -> str:
    if debian is not None:
        major = debian.parent.name
        if name in _SERVER_PROGRAMS:
            return f"postgresql-{major}"
        if name in _CLIENT_PROGRAMS:
            return f"postgresql-client-{major}"
    return "postgresql"


def _version_key(name: str) -> tuple[int, ...] | None:
    """'15' -> (15,), '9.6' -> (9, 6); None for anything that is not a version."""
    if not re.fullmatch(r"\d+(\.\d+)*", name):
        return None
    return tuple(int(part) for part in name.split("."))


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
