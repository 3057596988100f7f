"""Where the PostgreSQL server programs live, and which major version they are.

Debian keeps the server programs (initdb, pg_ctl, postgres, ...) out of PATH in
a versioned directory, /usr/lib/postgresql/<major>/bin, and several majors can
be installed side by side. We look in this order:

1. ``$DRDECK_PG_BIN``, when the operator names a directory: then only there,
   so a wrong setting fails loudly instead of silently using another version;
2. the highest-version Debian directory that holds initdb;
3. PATH (other distributions, source builds, Homebrew).

The programs read only their own major's data directories, and servers and dumps of
their own major or older: require_binaries_for() and require_program_for() refuse the
others up front, naming the programs to install or the $DRDECK_PG_BIN to set.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from tui.errors import DrdeckError, PermanentFailure

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


def data_dir_major_version(data_dir: Path | str) -> int | None:
    """The major version that made a data directory (its PG_VERSION), None without one.

    "17" -> 17; before 10 the file said "9.6", folded to 9 as _major_version_of does.
    """
    # the server's account owns the directory: as root, never follow a link it put there,
    # never block on a FIFO, and read no more than a version takes
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(Path(data_dir) / "PG_VERSION", flags)
    except OSError:
        return None  # not a data directory (yet): the server says what is wrong with it
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        text = os.read(descriptor, 64).decode("ascii", errors="replace").strip()
    finally:
        os.close(descriptor)
    version = _version_key(text)
    return version[0] if version else None


def require_binaries_for(data_dir: Path | str) -> None:
    """Refuse, naming what to install or set, a data directory of another major version
    than the server programs pg_bin() finds: PostgreSQL starts only its own major's.

    Says nothing about a directory without a PG_VERSION (the server will).
    """
    wanted = data_dir_major_version(data_dir)
    if wanted is None:
        return
    postgres = pg_bin("postgres")
    have = _major_version_of(postgres)
    if wanted == have:
        return
    raise DrdeckError(
        f"{Path(data_dir)} is a PostgreSQL {wanted} data directory, but the server programs "
        f"in {_where(postgres)} are PostgreSQL {have}: a server starts only a data directory "
        f"of its own major version. To use it, {_remedy(wanted)}"
    )


def require_program_for(program: str, major: int, what: str) -> None:
    """Refuse, naming what to install or set, a `program` (pg_dump, pg_restore...) older
    than `major`, the major of `what` it must read (a server, a dump): these programs read
    their own major's and older ones', and a newer one's only by chance, or not at all.

    A PermanentFailure: trying again with the same programs cannot help.
    """
    path = pg_bin(program)
    have = _major_version_of(path)
    if have >= major:
        return
    raise PermanentFailure(
        f"{what} needs {program} from PostgreSQL {major} or newer, but the one in "
        f"{_where(path)} is PostgreSQL {have}. To use it, {_remedy(major)}"
    )


def require_server_programs(major: int, what: str) -> str:
    """Refuse, naming what to install or set, server programs of another major than
    `major`, the major of `what` (a base backup): it restores, starts and combines with
    its own major's programs only. Says where they are when they match."""
    postgres = pg_bin("postgres")
    have = _major_version_of(postgres)
    if have != major:
        raise PermanentFailure(
            f"{what} is of PostgreSQL {major}, but the server programs in {_where(postgres)} "
            f"are PostgreSQL {have}: it can only be restored with PostgreSQL {major}'s. To "
            f"restore it, {_remedy(major)}")
    return f"PostgreSQL {major} in {_where(postgres)}"


def major_of_version(version: str) -> int | None:
    """'17.10' -> 17, '15.18 (Debian 15.18-0+deb12u1)' -> 15, '9.6.24' -> 9; None when
    `version` does not start with a number (drdeck records "unknown" when it could not
    tell)."""
    match = re.match(r"\s*(\d+)", version)
    return int(match[1]) if match else None


def _where(program: str) -> str:
    """Where `program` (a path pg_bin() gave) was found, as the operator chose it."""
    configured = os.environ.get(PG_BIN_ENV)
    return f"${PG_BIN_ENV}={configured}" if configured else str(Path(program).parent)


def _remedy(major: int) -> str:
    """How to give drdeck PostgreSQL `major`'s programs."""
    debian = DEBIAN_PG_ROOT / str(major) / "bin"
    if _is_executable(debian / "postgres"):
        return f"set {PG_BIN_ENV}={debian} (PostgreSQL {major} is installed there)"
    return (f"install PostgreSQL {major}'s server programs (on Debian 'apt-get install "
            f"postgresql-{major}', which puts them in {debian}) and set {PG_BIN_ENV} to "
            f"their directory")


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
