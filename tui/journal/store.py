"""Where the journal lives: a SQLite file (default, mode 0600) or a shared PostgreSQL database.

Both speak the same SQL; the only difference the rest of drdeck sees is the
URL. Every write commits at once: a crash or a SIGKILL loses nothing that was
recorded.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tui.errors import DrdeckError, InvalidInput
from tui.journal.location import journal_location, parse_journal_url
from tui.journal.schema import LATEST, MIGRATIONS

HEARTBEAT_STALE = timedelta(minutes=2)  # a run on another host is presumed dead after this


class JournalError(DrdeckError):
    pass


class RunNotFound(InvalidInput):
    pass


class LockHeld(DrdeckError):
    """Another run holds the lock on the same target."""

    retryable = False


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def default_path() -> Path:
    from tui.paths import state_dir

    return state_dir() / "journal.sqlite"


@dataclass
class RunRow:
    id: str
    runbook: str
    runbook_sha256: str
    title: str
    scenario: str
    mode: str
    operator: str
    host: str
    pid: int
    started_at: str
    status: str
    params_json: str
    ended_at: str | None = None
    heartbeat_at: str = ""
    rto_s: float | None = None
    rto_target_s: float | None = None
    rpo_s: float | None = None
    rpo_target_s: float | None = None
    error: str | None = None
    lock_key: str | None = None
    resumes: int = 0
    dry_run: int = 0
    runbook_path: str | None = None
    forecast_json: str | None = None

    @property
    def params(self) -> dict[str, str]:
        return json.loads(self.params_json)

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def ended(self) -> datetime | None:
        return datetime.fromisoformat(self.ended_at) if self.ended_at else None

    @property
    def duration_s(self) -> float | None:
        return (self.ended - self.started).total_seconds() if self.ended else None


@dataclass
class StepRow:
    run_id: str
    step_id: str
    position: int
    title: str
    action: str
    status: str
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    operator_wait_s: float = 0.0
    error: str | None = None
    reason: str | None = None
    command: str | None = None
    output_tail: str = ""
    captured: str | None = None


@dataclass
class RunDetail:
    run: RunRow
    steps: list[StepRow] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    milestones: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)


_RUN_FIELDS = list(RunRow.__dataclass_fields__)
_STEP_FIELDS = list(StepRow.__dataclass_fields__)


class Journal:
    """One connection to the journal. Not shared between threads: open one per thread."""

    def __init__(self, url: str | Path | None = None):
        """`url` in any form [journal] url accepts (tui.journal.location), or the SQLite
        file itself; None or "" is the SQLite file in the state directory."""
        location = parse_journal_url(url, Path.cwd()) if isinstance(url, str) and url \
            else url or default_path()
        self.postgres = isinstance(location, str)
        self.where = _shown_url(location) if isinstance(location, str) else str(location)
        self._in_transaction = False
        self._location = location
        self._conn = _connect_postgres(location, self.where) if isinstance(location, str) \
            else _connect_sqlite(location)
        self._migrate()

    # --- plumbing -------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def _said_clearly(self) -> Iterator[None]:
        """A database's failure as a JournalError naming the journal; on PostgreSQL, outside
        a transaction, rolled back so the connection serves the next statement."""
        try:
            yield
        except DrdeckError:
            raise
        except Exception as exc:
            if self.postgres and not self._in_transaction and not self._conn.closed:
                with suppress(Exception):  # a connection that broke just now: said below
                    self._conn.rollback()
            raise JournalError(f"journal at {self.where}: {_first_line(exc)}") from None

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._said_clearly():
            if self.postgres and self._conn.closed and not self._in_transaction:
                # the server restarted or failed over, or the network dropped us: what
                # failed then was said; a long run's journal must not stay lost for good
                self._conn = _connect_postgres(self._location, self.where)
            if self.postgres:
                with self._conn.cursor() as cur:
                    cur.execute(self._sql(statement), params)
                    rows = cur.fetchall() if cur.description else []
                if not self._in_transaction:
                    self._conn.commit()
                return rows
            cursor = self._conn.execute(statement, params)
            return cursor.fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes that must happen together (a lock check and its insert)."""
        if self.postgres:
            self._in_transaction = True
            try:
                with self._conn.transaction():
                    yield
            finally:
                self._in_transaction = False
            return
        self._conn.execute("begin immediate")
        try:
            yield
        except BaseException:
            self._conn.execute("rollback")
            raise
        self._conn.execute("commit")

    def _migrate(self) -> None:
        # One transaction: a process killed half-way (the first drdeck command, creating
        # the journal) must not leave tables without their version row, which would make
        # every later command fail with "table runs already exists"; and of two processes
        # creating the journal at once, the second finds it made.
        self.execute("create table if not exists schema_version (version integer not null)")
        if self._schema_version() >= LATEST:
            return
        with self.transaction():
            if self.postgres:
                self.execute("lock table schema_version in exclusive mode")
            for version in range(self._schema_version() + 1, LATEST + 1):
                for statement in MIGRATIONS[version - 1]:
                    self.execute(statement)
                self.execute("insert into schema_version (version) values (?)", (version,))

    def _schema_version(self) -> int:
        return self.execute("select max(version) from schema_version")[0][0] or 0

    def close(self) -> None:
        self._conn.close()

    # --- writing --------------------------------------------------------------------

    def insert_run(self, run: RunRow) -> None:
        values = [getattr(run, name) for name in _RUN_FIELDS]
        self.execute(f"insert into runs ({', '.join(_RUN_FIELDS)}) values "
                     f"({', '.join('?' * len(values))})", values)

    def update_run(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.execute(f"update runs set {assignments} where id = ?", [*fields.values(), run_id])

    def upsert_step(self, step: StepRow) -> None:
        values = [getattr(step, name) for name in _STEP_FIELDS]
        updates = ", ".join(f"{name} = excluded.{name}" for name in _STEP_FIELDS[2:])
        self.execute(f"insert into steps ({', '.join(_STEP_FIELDS)}) values "
                     f"({', '.join('?' * len(values))}) on conflict (run_id, step_id) do "
                     f"update set {updates}", values)

    def add(self, table: str, **values: Any) -> None:
        names = list(values)
        self.execute(f"insert into {table} ({', '.join(names)}) values "
                     f"({', '.join('?' * len(names))})", list(values.values()))

    def add_events(self, run_id: str, events: Sequence[tuple[int, str]]) -> None:
        """A run's events (sequence number, its `--json` text), in one transaction."""
        if not events:
            return
        statement = "insert into events (run_id, seq, body) values (?, ?, ?)"
        rows = [(run_id, seq, body) for seq, body in events]
        with self._said_clearly():
            if self.postgres:
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(statement), rows)
                if not self._in_transaction:
                    self._conn.commit()
                return
            with self.transaction():
                self._conn.executemany(statement, rows)

    # --- locks ----------------------------------------------------------------------

    def acquire_lock(self, key: str, run_id: str) -> None:
        """Take `key` for `run_id`, or raise LockHeld naming the run that holds it."""
        with self.transaction():
            rows = self.execute("select l.run_id, r.runbook, r.operator, r.started_at, "
                                "r.status from locks l left join runs r on r.id = l.run_id "
                                "where l.lock_key = ?", (key,))
            if rows:
                holder, runbook, operator, started, status = rows[0]
                if status == "running" and holder != run_id:
                    raise LockHeld(
                        f"another run works on the same target ({key}): run {holder} of "
                        f"{runbook}, started {started} by {operator}. Wait for it, or abort "
                        f"it; a crashed run frees its lock when drdeck next starts")
                self.execute("delete from locks where lock_key = ?", (key,))
            self.execute("insert into locks (lock_key, run_id, taken_at) values (?, ?, ?)",
                         (key, run_id, now_iso()))

    def release_lock(self, key: str, run_id: str) -> None:
        self.execute("delete from locks where lock_key = ? and run_id = ?", (key, run_id))

    # --- housekeeping ---------------------------------------------------------------

    def mark_interrupted(self) -> list[str]:
        """Runs that were running when their process died are interrupted; their ids."""
        host = socket.gethostname()
        stale = (datetime.now(UTC) - HEARTBEAT_STALE).isoformat()
        found = []
        for run_id, run_host, pid, heartbeat in self.execute(
                "select id, host, pid, heartbeat_at from runs where status = 'running'"):
            dead = (not _alive(pid)) if run_host == host else heartbeat < stale
            if dead:
                found.append(run_id)
        for run_id in found:
            when = now_iso()
            self.execute("update runs set status = 'interrupted', ended_at = ?, error = ? "
                         "where id = ? and status = 'running'",
                         (when, "the drdeck process ended without finishing the run", run_id))
            self.execute("update steps set status = 'interrupted', ended_at = ? "
                         "where run_id = ? and status in ('running', 'waiting')",
                         (when, run_id))
            self.execute("delete from locks where run_id = ?", (run_id,))
        return found

    # --- reading --------------------------------------------------------------------

    def runs(self, runbook: str | None = None, limit: int | None = None,
             statuses: Sequence[str] | None = None) -> list[RunRow]:
        where, params = [], []
        if runbook:
            where.append("runbook = ?")
            params.append(runbook)
        if statuses:
            where.append(f"status in ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        sql = f"select {', '.join(_RUN_FIELDS)} from runs"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by started_at desc"
        if limit:
            sql += f" limit {int(limit)}"
        return [RunRow(*row) for row in self.execute(sql, params)]

    def run(self, run_id: str) -> RunDetail:
        rows = self.execute(f"select {', '.join(_RUN_FIELDS)} from runs where id = ?",
                            (run_id,))
        if not rows:
            prefix = self.execute(f"select {', '.join(_RUN_FIELDS)} from runs where id like ?",
                                  (f"{run_id}%",))
            if len(prefix) != 1:
                raise RunNotFound(f"no run {run_id!r} in the journal at {self.where}" +
                                  (" (several runs start so: give more of the id)"
                                   if prefix else ""))
            rows = prefix
        run = RunRow(*rows[0])
        detail = RunDetail(run)
        detail.steps = [StepRow(*row) for row in self.execute(
            f"select {', '.join(_STEP_FIELDS)} from steps where run_id = ? order by position",
            (run.id,))]
        detail.checks = [dict(zip(("step_id", "name", "ok", "detail", "at"), row, strict=True))
                         for row in self.execute("select step_id, name, ok, detail, at from "
                                                 "checks where run_id = ? order by at",
                                                 (run.id,))]
        detail.milestones = [dict(zip(("name", "elapsed_s", "at"), row, strict=True))
                             for row in self.execute("select name, elapsed_s, at from "
                                                     "milestones where run_id = ? order by at",
                                                     (run.id,))]
        detail.measures = [dict(zip(("step_id", "name", "value", "unit", "detail", "at"), row,
                                    strict=True))
                           for row in self.execute("select step_id, name, value, unit, detail, "
                                                   "at from measures where run_id = ? "
                                                   "order by at", (run.id,))]
        return detail

    def events(self, run_id: str, after: int = -1, limit: int = 2000) -> list[tuple[int, str]]:
        """The run's events after sequence number `after`, oldest first, at most `limit`."""
        return [(int(seq), body) for seq, body in self.execute(
            "select seq, body from events where run_id = ? and seq > ? order by seq "
            f"limit {int(limit)}", (run_id, after))]

    def run_pulse(self, run_id: str) -> tuple[str, str, str, int] | None:
        """The run's status, its last heartbeat, its host and its process id
        (tui.journal.follow.unheard); None when the journal has no such run."""
        rows = self.execute("select status, heartbeat_at, host, pid from runs where id = ?",
                            (run_id,))
        return tuple(rows[0]) if rows else None

    def last_event(self, run_id: str) -> int:
        """The sequence number of the run's last event; -1 when it has none."""
        found = self.execute("select max(seq) from events where run_id = ?", (run_id,))[0][0]
        return -1 if found is None else int(found)

    def last_runs(self) -> dict[str, RunRow]:
        """The most recent finished, non-dry run of each runbook."""
        latest: dict[str, RunRow] = {}
        for run in self.runs():
            if run.dry_run or run.status == "running":
                continue
            latest.setdefault(run.runbook, run)
        return latest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


LIVENESS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": 30_000}


def _connect_postgres(conninfo: str, where: str) -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    # a server that stops answering (a partition, a failover) is given up on within about
    # half a minute rather than the kernel's hours: a run's heartbeat and its events wait
    # on this connection. What the URL sets itself is kept.
    given = conninfo_to_dict(conninfo)
    patience = {name: value for name, value in LIVENESS.items() if name not in given}
    try:
        return psycopg.connect(conninfo, connect_timeout=10, **patience)
    except psycopg.Error as exc:
        raise JournalError(f"cannot open the journal at {where}: {_first_line(exc)}") from None


def _connect_sqlite(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # created 0600 before SQLite opens it: run records name clusters and operators
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("pragma journal_mode = wal")
        conn.execute("pragma synchronous = normal")
        conn.execute("pragma busy_timeout = 10000")
    except (OSError, sqlite3.Error) as exc:
        raise JournalError(f"cannot open the journal at {path}: {exc}") from None
    for sidecar in ("-wal", "-shm"):
        side = Path(f"{path}{sidecar}")
        if side.exists():
            side.chmod(0o600)
    return conn


def _shown_url(url: str | None) -> str:
    from tui.redact import mask_credentials

    return mask_credentials(url or "")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_journal(config: Any = None) -> Journal:
    """$DRDECK_JOURNAL, else [journal] url, else the SQLite file in the state directory."""
    return Journal(journal_location(config))
