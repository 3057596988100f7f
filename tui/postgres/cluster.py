"""A PostgreSQL cluster on this machine, driven with initdb and pg_ctl.

Used for PITR restores (a restored data directory is started here), for the
demo sandbox, and by the tests. Three facts shape it:

- PostgreSQL refuses to run as root. When we are root, initdb and pg_ctl run
  as the ``postgres`` OS user, so every directory the server writes must be
  owned by that user and every ancestor must be searchable by it.
- ``pg_ctl`` without ``-l`` hands the server our stdout and stderr, and a
  caller reading them would wait for the server to exit: always pass a log file.
- The server listens on its own socket directory and on 127.0.0.1 only, so a
  throwaway cluster never collides with a system one or reaches the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import grp
import os
import pwd
import re
import shlex
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from tui import environment
from tui.errors import DrdeckError
from tui.postgres.binaries import pg_bin, require_binaries_for

if TYPE_CHECKING:
    import psycopg

SERVER_OS_USER = "postgres"
LOOPBACK = "127.0.0.1"

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107

# How many log lines an error message quotes: enough for the FATAL line and
# the hint PostgreSQL prints before it, few enough to read.
LOG_LINES_IN_ERRORS = 15


class PortInUse(DrdeckError):
    """The server could not listen on its port: another process took it."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now.

    Another process can still take it before the server binds it; start()
    raises PortInUse then, and the caller may retry with a new port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class ServerAccount:
    """The OS account initdb, pg_ctl and the server run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def run_as(account: ServerAccount | None) -> dict[str, Any]:
    """subprocess's user, group and extra_groups for `account`; nothing for None (as
    ourselves)."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}


def server_account() -> ServerAccount | None:
    """The ``postgres`` account when we are root; None means "run as ourselves"."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise DrdeckError(
            f"PostgreSQL refuses to run as root and there is no '{SERVER_OS_USER}' OS user "
            f"to run it as: install postgresql-common (it creates the user) or run "
            f"'useradd --system --user-group {SERVER_OS_USER}'"
        ) from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


@dataclasses.dataclass
class LocalCluster:
    """One data directory and the server that runs on it.

    The server listens on ``socket_dir`` and on 127.0.0.1:``port``, and logs
    to ``log_file``. Nothing happens until init() or start() is called.
    """

    data_dir: Path
    port: int
    socket_dir: Path
    log_file: Path
    # Set by init(password=...); kept out of repr so it never reaches a log.
    password: str | None = dataclasses.field(default=None, repr=False)
    # What the server is started with besides the base set (tui.environment), as a
    # service manager's Environment= would give it: what an archive_command of its own
    # needs (AWS_* for an S3 repository). Nothing of drdeck's own environment reaches it.
    server_env: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.socket_dir = Path(self.socket_dir).absolute()
        self.log_file = Path(self.log_file).absolute()
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise DrdeckError(
                f"socket path {socket_path} is longer than {MAX_SOCKET_PATH_BYTES} bytes, "
                f"the limit for Unix sockets: choose a shorter socket directory"
            )

    @classmethod
    def in_directory(cls, base_dir: Path | str, port: int | None = None) -> Self:
        """A cluster laid out under one directory: data/, postgres.log, and the socket."""
        base_dir = Path(base_dir).absolute()
        return cls(
            data_dir=base_dir / "data",
            port=free_port() if port is None else port,
            socket_dir=base_dir,
            log_file=base_dir / "postgres.log",
        )

    @classmethod
    def in_temp_directory(cls, prefix: str = "drdeck-pg-") -> Self:
        """A cluster in a new private directory under the system temp directory.

        The directory is given to the server account, so it works as root too,
        where a directory under the caller's home usually would not be reachable.
        The caller removes it (``data_dir.parent``) when done.
        """
        base_dir = Path(tempfile.mkdtemp(prefix=prefix))
        account = server_account()
        if account is not None:
            os.chown(base_dir, account.uid, account.gid)
        return cls.in_directory(base_dir)

    # --- creating ---------------------------------------------------------------

    def init(
        self,
        *,
        wal_segsize_mb: int | None = None,
        auth: str = "trust",
        password: str | None = None,
        locale: str = "C",
        encoding: str = "UTF8",
        superuser: str = SERVER_OS_USER,
        no_sync: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Create the cluster with initdb.

        ``wal_segsize_mb=1`` keeps WAL archives small (tests, demos).
        ``auth`` applies to local and 127.0.0.1 connections; any method but
        trust needs ``password`` for the superuser. The C locale makes the
        cluster behave the same whatever the machine's environment says.
        ``no_sync`` skips initdb's final fsync: for throwaway clusters only.
        """
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DrdeckError(
                f"refusing to initdb into {self.data_dir}: it is not empty "
                f"(choose a new directory; drdeck never writes over an existing one)"
            )
        self._prepare_server_paths()

        argv = [
            pg_bin("initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            superuser,
            "--auth",
            auth,
            "--locale",
            locale,
            "--encoding",
            encoding,
        ]
        if wal_segsize_mb is not None:
            argv += ["--wal-segsize", str(wal_segsize_mb)]
        if no_sync:
            argv.append("--no-sync")
        argv += list(extra_args)

        with self._password_file(password) as pwfile:
            if pwfile is not None:
                argv += ["--pwfile", str(pwfile)]
            self._run(argv, failure=f"initdb of {self.data_dir} failed")
        self.password = password

    def give_data_dir_to_server(self) -> None:
        """Make the server account own every file of the data directory.

        A data directory written as root (a base backup extracted or copied by
        us) must be handed over, or the server refuses to start with "data
        directory has wrong ownership". It also insists on mode 0700 or 0750.
        """
        account = server_account()
        if account is None:
            return
        # by descriptor, never following a link: the server's account may already be able
        # to write here, and a level swapped for a link must not lead root's chown elsewhere
        for _directory, subdirs, files, folder in os.fwalk(self.data_dir):
            os.chown(folder, account.uid, account.gid)
            for name in (*subdirs, *files):  # a link among subdirs: the link itself
                os.chown(name, account.uid, account.gid, dir_fd=folder, follow_symlinks=False)
        self.data_dir.chmod(0o700)

    def configure(self, **settings: str | int | float | bool) -> None:
        """Set server parameters, effective at the next start (or reload()).

        They go to postgresql.auto.conf because PostgreSQL reads it last, so
        they win over postgresql.conf and over anything a restored base backup
        brought along (for example archive_mode = on from the source).
        """
        if not settings:
            return
        lines = ["# set by drdeck"]
        for name, value in settings.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
                raise DrdeckError(f"{name!r} is not a PostgreSQL parameter name")
            lines.append(f"{name} = {config_value(name, value)}")
        auto_conf = self.data_dir / "postgresql.auto.conf"
        if not self.data_dir.is_dir():
            raise DrdeckError(f"cannot configure {self.data_dir}: no such data directory")
        descriptor, created = open_for_append(auto_conf)
        with os.fdopen(descriptor, "a", encoding="utf-8") as conf:
            if created:
                self._give_to_server(descriptor)
            conf.write("\n".join(lines) + "\n")

    def enable_archiving(self, archive_dir: Path | str, *, command: str | None = None) -> None:
        """Archive every finished WAL segment into ``archive_dir`` (at the next start).

        The default command refuses to overwrite a segment already archived,
        as the PostgreSQL documentation asks: a second cluster archiving into
        the same directory must fail loudly, not corrupt the archive.
        """
        archive_dir = Path(archive_dir).absolute()
        self._make_server_dir(archive_dir)
        if command is None:
            # archive_command expands %p and %f, so a literal % must be doubled.
            target = shlex.quote(str(archive_dir)).replace("%", "%%")
            command = f"test ! -f {target}/%f && cp %p {target}/%f"
        self.configure(archive_mode="on", archive_command=command)

    # --- running ----------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout_s: int = 60) -> None:
        """Start the server; with ``wait``, return once it accepts connections.

        A standby or a cluster in recovery accepts connections (hot standby)
        before recovery ends: poll pg_is_in_recovery() to know when it has.
        """
        if self.is_running():
            raise DrdeckError(f"PostgreSQL is already running on {self.data_dir}")
        # before pg_ctl, whose "database files are incompatible with server" is in the log
        require_binaries_for(self.data_dir)
        self._prepare_server_paths()
        server_options = (
            f"-k {shlex.quote(str(self.socket_dir))} -p {self.port} -c listen_addresses={LOOPBACK}"
        )
        argv = [
            pg_bin("pg_ctl"),
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "-o",
            server_options,
        ]
        argv += ["--wait", "--timeout", str(timeout_s)] if wait else ["--no-wait"]
        argv.append("start")

        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        result = self._run(argv, check=False)
        if result.returncode == 0:
            return
        new_log = self._read_log(since=log_offset)
        if "Address already in use" in new_log:
            raise PortInUse(
                f"PostgreSQL in {self.data_dir} could not listen on {LOOPBACK}:{self.port}: "
                f"another process uses that port (choose another port)"
            )
        raise DrdeckError(
            f"PostgreSQL in {self.data_dir} did not start (pg_ctl exited {result.returncode}: "
            f"{_last_line(result)}); last lines of {self.log_file}:\n{_tail(new_log)}"
        )

    def stop(self, mode: str = "fast", *, timeout_s: int = 60) -> None:
        """Stop the server and wait for it to exit; does nothing if it is not running.

        ``mode`` is pg_ctl's: "smart" waits for clients to leave, "fast"
        disconnects them and checkpoints, "immediate" skips the checkpoint
        (the next start runs crash recovery), which is enough for a cluster
        about to be deleted.
        """
        if not self.is_running():
            return
        argv = [
            pg_bin("pg_ctl"),
            "--pgdata",
            str(self.data_dir),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(timeout_s),
            "stop",
        ]
        self._run(argv, failure=f"PostgreSQL in {self.data_dir} did not stop")

    def reload(self) -> None:
        """Make the running server re-read its configuration."""
        self._run(
            [pg_bin("pg_ctl"), "--pgdata", str(self.data_dir), "reload"],
            failure=f"PostgreSQL in {self.data_dir} did not reload its configuration",
        )

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        # The pid file can outlive a crashed server: ask pg_ctl, which checks
        # that the process is alive (exit 0 running, 3 not running, 4 no data dir).
        result = self._run(
            [pg_bin("pg_ctl"), "--pgdata", str(self.data_dir), "status"], check=False
        )
        return result.returncode == 0

    # --- talking to it ------------------------------------------------------------

    def dsn(
        self, dbname: str = "postgres", user: str = SERVER_OS_USER, *, tcp: bool = False
    ) -> str:
        """A libpq connection string: through the socket, or 127.0.0.1 with ``tcp``."""
        params = {
            "host": LOOPBACK if tcp else str(self.socket_dir),
            "port": str(self.port),
            "dbname": dbname,
            "user": user,
        }
        if self.password is not None:
            params["password"] = self.password
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in params.items())

    def connect(
        self, dbname: str = "postgres", user: str = SERVER_OS_USER, *, autocommit: bool = True
    ) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg  # heavy: only for the callers that talk SQL

        return psycopg.connect(self.dsn(dbname, user), autocommit=autocommit)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` in autocommit mode; the rows it returns, or [] if none.

        Several statements separated by semicolons are allowed when there are
        no ``params``.
        """
        with self.connect(dbname) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def scalar(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> Any:
        """The first column of the first row ``sql`` returns, or None."""
        rows = self.execute(sql, params, dbname=dbname)
        return rows[0][0] if rows else None

    # --- plumbing -----------------------------------------------------------------

    def _run(
        self, argv: list[str], *, check: bool = True, failure: str = ""
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            # the base set alone: a restored server runs SQL its data brings
            # (COPY ... FROM PROGRAM 'env'), and drdeck's environment holds secrets
            env={**environment.for_server(), **self.server_env},
            # Our working directory may be one the server account cannot
            # enter (/root), which initdb and postgres complain about.
            cwd="/",
            check=False,
            **run_as(server_account()),
        )
        if check and result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise DrdeckError(f"{failure or 'command failed'}: {shlex.join(argv)}\n{output}")
        return result

    def _prepare_server_paths(self) -> None:
        """Make the directories the server writes, owned by the account it runs as."""
        account = server_account()
        if account is not None:
            # Before creating anything, so a refusal leaves nothing behind.
            for path in (self.data_dir, self.socket_dir, self.log_file):
                _require_reachable(path, account)
        self._make_server_dir(self.data_dir, claim_if_empty=True)
        self._make_server_dir(self.socket_dir)
        self._make_server_dir(self.log_file.parent)
        with contextlib.suppress(FileExistsError):  # pg_ctl appends, as the server account
            descriptor = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
            try:
                self._give_to_server(descriptor)
            finally:
                os.close(descriptor)
        if account is not None and not _permits(self.socket_dir, account, write=True):
            raise DrdeckError(
                f"the {account.name} OS user cannot create its socket in {self.socket_dir}: "
                f"give it a directory it owns"
            )

    def _make_server_dir(self, path: Path, *, claim_if_empty: bool = False) -> None:
        """Create ``path`` and any missing parents, owned by the server account.

        Directories that already exist keep their owner (we never take over
        /tmp or a home directory), except an empty data directory, which
        initdb must own.
        """
        missing = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            directory.mkdir(mode=0o700)
            self._give_to_server(directory)
        if claim_if_empty and not missing and path.is_dir() and not any(path.iterdir()):
            self._give_to_server(path)
            path.chmod(0o700)

    def _give_to_server(self, path: Path | int) -> None:
        """Hand `path` (or an open descriptor: never through a link) to the server account."""
        account = server_account()
        if account is not None:
            os.chown(path, account.uid, account.gid)

    @contextlib.contextmanager
    def _password_file(self, password: str | None) -> Iterator[Path | None]:
        """initdb reads the superuser password from a file, never from argv."""
        if password is None:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix="drdeck-pw-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as pwfile:
                pwfile.write(password + "\n")
            self._give_to_server(Path(name))
            yield Path(name)
        finally:
            os.unlink(name)

    def _read_log(self, since: int = 0) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(since)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def open_for_append(path: Path) -> tuple[int, bool]:
    """(a descriptor to append to the regular file `path`, whether it was created).

    Never through a symbolic link, and never a file with another name too (a hard link):
    as root, writing where the server's account can put either would write elsewhere.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DrdeckError(f"refusing to write {path}: it is a symbolic link") from None
        raise DrdeckError(f"cannot write {path}: {exc.strerror or exc}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(descriptor)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else \
            f"a file with {info.st_nlink} names (hard links)"
        raise DrdeckError(f"refusing to write {path}: it is {what}")
    os.set_blocking(descriptor, True)
    return descriptor, False


def config_value(name: str, value: str | int | float | bool) -> str:
    """`value` written as postgresql.conf reads it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    if "\n" in value or "\r" in value:
        raise DrdeckError(f"the value of {name} must be a single line")
    # postgresql.conf strings: single-quoted, with ' doubled and \ escaped.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conninfo_value(value: str) -> str:
    if value and re.fullmatch(r"[^\s'\\]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _require_reachable(path: Path, account: ServerAccount) -> None:
    blocked = _unreachable(path, account)
    if blocked is not None:
        ancestor, why = blocked
        raise DrdeckError(
            f"{why}. Use a directory it can reach (for example one made with "
            f"tempfile.mkdtemp() under /tmp) or 'chmod o+x {ancestor}'"
        )


def _unreachable(path: Path, account: ServerAccount) -> tuple[Path, str] | None:
    # Ancestors that do not exist yet will be created by us, for the server.
    for ancestor in path.parents:
        if ancestor.exists() and not _permits(ancestor, account, search=True):
            mode = stat.S_IMODE(ancestor.stat().st_mode)
            return ancestor, (f"the {account.name} OS user cannot reach {path}: {ancestor} "
                              f"is mode {mode:04o} owned by {_owner_name(ancestor)}")
    return None


def unreadable_for_server(paths: list[Path]) -> list[str]:
    """Why the server account could not read each of `paths` (a directory: and search it);
    nothing when drdeck does not run as root."""
    account = server_account()
    if account is None:
        return []
    problems = []
    for path in (Path(os.path.realpath(p)) for p in paths):
        blocked = _unreachable(path, account)
        if blocked is not None:
            problems.append(blocked[1])
        elif path.exists() and not _permits(path, account, read=True,
                                            search=path.is_dir()):
            mode = stat.S_IMODE(path.stat().st_mode)
            problems.append(f"the {account.name} OS user cannot read {path}: it is mode "
                            f"{mode:04o} owned by {_owner_name(path)}")
    return problems


def _permits(
    path: Path, account: ServerAccount, *, search: bool = False, write: bool = False,
    read: bool = False,
) -> bool:
    """Whether the mode bits of ``path`` let ``account`` search/write it."""
    info = path.stat()
    if info.st_uid == account.uid:
        allowed = (info.st_mode >> 6) & 0o7
    elif info.st_gid in account.groups:
        allowed = (info.st_mode >> 3) & 0o7
    else:
        allowed = info.st_mode & 0o7
    wanted = (0o1 if search else 0) | (0o3 if write else 0) | (0o4 if read else 0)
    return allowed & wanted == wanted


def _owner_name(path: Path) -> str:
    info = path.stat()
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{user}:{group}"


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else "no output"


def _tail(text: str) -> str:
    lines = text.strip().splitlines()[-LOG_LINES_IN_ERRORS:]
    return "\n".join(f"  {line}" for line in lines) if lines else "  (the log is empty)"
