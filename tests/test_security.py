"""Security, on real services: secrets never reach the output, the run's files, the journal,
the exports or any process's command line; what drdeck writes that holds backup data or
the journal is private; and no parameter talks the restore guardrails round.

The cluster here asks for a password (scram-sha-256), so the password is really used:
drdeck reads it from `dsn_env`, pg_dump and pg_restore must get it through PGPASSWORD,
and a watcher thread reads every process's /proc/PID/cmdline and comm (what `ps` and
`top` show, PostgreSQL's process titles included) many times a second while the runs go.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import zstandard

from backup_support import seed_app
from cli_support import drdeck, json_events
from crash_support import processes
from harness.gpg import scratch_gpg_home
from harness.postgres import ScratchCluster, start_on_a_free_port

pytestmark = pytest.mark.slow

LONG_DB = "orders_archive_" + "x" * 48  # 63 bytes: the longest name PostgreSQL keeps whole
assert len(LONG_DB.encode()) == 63


@dataclass
class World:
    """A password-protected cluster with app (pgbench), shop and LONG_DB, a GnuPG key, a
    local repository and a drdeck.toml naming the DSN's environment variable."""

    cluster: ScratchCluster
    password: str
    token: str  # an API token in drdeck's environment, handed to a step
    secret: str  # a parameter of type secret, given with -p
    base: Path
    config: Path
    repo: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    launched: set[bytes] = field(default_factory=set)  # the test's own command lines

    @property
    def secrets(self) -> dict[str, bytes]:
        found = {}
        for name, value in (("password", self.password), ("token", self.token),
                            ("secret", self.secret)):
            found[name] = value.encode()
            found[f"{name} (URL-encoded)"] = quote(value, safe="").encode()
        return found

    def dsn(self, dbname: str = "postgres", *, tcp: bool = False) -> str:
        return self.cluster.dsn(dbname, tcp=tcp)  # with password=...

    def bare_dsn(self, dbname: str = "postgres", *, tcp: bool = False) -> str:
        """Without the password: libpq finds it in PGPASSFILE (drdeck refuses one in -p)."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(self.dsn(dbname, tcp=tcp))
        params.pop("password")
        return make_conninfo(**params)

    def drdeck(self, *args: str, state: Path, timeout: float = 180, **env: str) -> Any:
        argv = [sys.executable, "-m", "tui", "--config", str(self.config), *args]
        if any(s.decode() in " ".join(argv) for s in self.secrets.values()):
            # a secret typed on drdeck's own command line: only that process may show it
            self.launched.add(b"\0".join(a.encode() for a in argv) + b"\0")
        proc = drdeck("--config", str(self.config), *args, state_dir=state, timeout=timeout,
                      **{**self.env, **env})
        self.outputs.append(proc.stdout + proc.stderr)
        return proc


@contextlib.contextmanager
def password_cluster(password: str) -> Iterator[ScratchCluster]:
    cluster = ScratchCluster.in_temp_directory(prefix="pg")
    try:
        cluster.init(auth="scram-sha-256", password=password, no_sync=True)
        start_on_a_free_port(cluster)
        yield cluster
    finally:
        try:
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # unique per fixture: a watcher in another worker must not see this one's set-up
    password = f"pw-{secrets.token_hex(6)}@db/x"
    token = f"tok-{secrets.token_hex(8)}"
    secret = f"sec-{secrets.token_hex(8)}"
    base = tmp_path_factory.mktemp("security")
    with password_cluster(password) as cluster, scratch_gpg_home() as gpg:
        seed_app(cluster)
        for name in ("shop", LONG_DB):
            cluster.execute(f'create database "{name}"')
            cluster.execute("create table keep (note text); insert into keep values "
                            "('before the backup')", dbname=name)
        repo = base / "repo"  # made by drdeck
        config = base / "drdeck.toml"
        config.write_text(f"""[repositories.backups]
type = "local"
path = "{repo}"

[gpg]
home = "{gpg.path}"

[clusters.prod]
dsn_env = "DATABASE_URL"
repository = "backups"
databases = ["app", "shop", "{LONG_DB}"]
gpg_recipients = ["{gpg.fingerprint}"]
rpo = "1h"
rto = "4h"
""")
        pgpass = base / "pgpass"  # where an operator keeps a target's password: ~/.pgpass
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        pgpass.write_text(f"*:*:*:*:{escaped}\n")
        pgpass.chmod(0o600)
        env = {"DATABASE_URL": cluster.dsn("app"), "API_TOKEN": token,
               "PGPASSFILE": str(pgpass)}
        yield World(cluster, password, token, secret, base, config, repo, env)


# --- watching every process while drdeck works ----------------------------------------------


class Watcher(threading.Thread):
    """Reads every process's command line and name, and the modes of files under `roots`,
    over and over until stopped."""

    def __init__(self, world: World, roots: list[Path]):
        super().__init__(daemon=True)
        self.world = world
        self.roots = roots
        self.leaks: dict[bytes, str] = {}  # command line or name -> which secret
        self.programs: set[str] = set()
        self.pgpassword_seen: set[str] = set()  # programs whose environment carried it
        self.modes: dict[Path, int] = {}
        self.rounds = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()

    def sample(self) -> None:
        password = self.world.password.encode()
        for pid, (line, comm) in processes().items():
            for name, value in self.world.secrets.items():
                if value in line and line not in self.world.launched:
                    self.leaks[line] = name
                if value in comm:
                    self.leaks[comm] = name
            program = os.path.basename(line.split(b"\0", 1)[0]).decode(errors="replace")
            self.programs.add(program)
            if program in ("pg_dump", "pg_restore"):
                with contextlib.suppress(OSError):
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                    if b"PGPASSWORD=" + password in environ:
                        self.pgpassword_seen.add(program)
        for root in self.roots:
            for folder, dirs, files in os.walk(root):
                for name in [*dirs, *files]:
                    with contextlib.suppress(OSError):
                        path = Path(folder, name)
                        self.modes[path] = path.lstat().st_mode
        self.rounds += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self.sample()  # and once more, after the last process ended


@contextlib.contextmanager
def watching(world: World, roots: list[Path]) -> Iterator[Watcher]:
    watcher = Watcher(world, roots)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


SECRET_DRILL = """
[runbook]
name = "secret-drill"
title = "Secrets everywhere a runbook can hold them"
rto = "1h"

[params.token]
type = "secret"

[params.target_dsn]
type = "dsn"
default = ""

[[steps]]
id = "long"
title = "A long step with secrets in its environment"
action = "shell"
[steps.with]
command = '''echo started; sleep 1.5; echo "param=$SECRET_PARAM api=$API_TOKEN"'''
env = { SECRET_PARAM = "${token}", API_TOKEN = "${env.API_TOKEN}" }

[[steps]]
id = "query"
title = "A query over a DSN that holds a password"
action = "sql"
capture = true
with = { dsn = "${env.DATABASE_URL}", query = "select 'connected as ' || current_user" }

[[steps]]
id = "echo"
title = "A step that prints every secret it can reach"
action = "shell"
capture = true
[steps.with]
command = '''
echo "$DATABASE_URL"
echo dsn "$TARGET_DSN"
echo "$SECRET_PARAM" >&2
echo note > "$DRDECK_WORKDIR/notes.txt"'''
[steps.with.env]
SECRET_PARAM = "${token}"
TARGET_DSN = "${target_dsn}"
DATABASE_URL = "${env.DATABASE_URL}"

[[steps]]
id = "fails"
title = "A failure that names the secret"
action = "shell"
[steps.with]
command = '''echo "bad token $SECRET_PARAM" >&2; exit 3'''
env = { SECRET_PARAM = "${token}" }
"""


def test_secrets_reach_no_output_file_journal_export_or_command_line(world: World) -> None:
    state = world.base / "state-sweep"  # made by drdeck
    docs = world.base / "docs-sweep"
    drill = world.base / "secret-drill.toml"
    drill.write_text(SECRET_DRILL)
    with watching(world, [state, world.repo]) as watcher:
        backup = world.drdeck("run", "snapshot-backup", "-p", "database=app", "--json",
                              state=state)
        assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
        restore = world.drdeck(
            "run", "snapshot-restore", "-p", "database=app", "-p", "target_db=app_copy",
            "-p", f"target_dsn={world.bare_dsn(tcp=True)}", "--keep-workdir", "--yes", "--json",
            state=state)
        assert restore.returncode == 0, restore.stdout[-3000:] + restore.stderr
        failed = world.drdeck("run", str(drill), "-p", f"target_dsn={world.bare_dsn('shop')}",
                              "--headless", state=state, DRDECK_SECRET_TOKEN=world.secret)
        assert failed.returncode == 1, failed.stdout + failed.stderr
    assert watcher.rounds > 20

    # the secrets were there to leak: printed by the steps, and masked
    assert "param=*** api=***" in failed.stdout, failed.stdout
    assert "password=***" in failed.stdout
    assert "bad token ***" in failed.stdout + failed.stderr

    # ps: no child's command line or name ever showed one; PGPASSWORD carried the password
    assert not watcher.leaks, watcher.leaks
    assert {"pg_dump", "pg_restore", "gpg", "sleep"} <= watcher.programs, watcher.programs
    assert watcher.pgpassword_seen, "pg_dump/pg_restore never seen with PGPASSWORD"

    # exports: the journal's reports, the month report, the generated documents
    runs = [e["run_id"] for e in json_events(backup.stdout + restore.stdout)
            if e["event"] == "run_started"]
    journal_runs = world.drdeck("drills", "--json", state=state)
    ids = [r["id"] for r in json.loads(journal_runs.stdout)["runs"]]
    assert set(runs) <= set(ids) and len(ids) == 3
    for run_id in ids:
        for fmt in ("md", "json"):
            shown = world.drdeck("drills", "show", run_id, "--format", fmt, state=state)
            assert shown.returncode == 0, shown.stderr
    world.drdeck("drills", state=state)
    month = datetime.now(UTC).strftime("%Y-%m")
    for fmt in ("md", "json"):
        report = world.drdeck("report", "--month", month, "--format", fmt, state=state)
        assert report.returncode == 0, report.stderr
    written = world.drdeck("docs", "--out", str(docs), state=state)
    assert written.returncode == 0, written.stderr
    assert "***" in "".join(world.outputs)

    for text in world.outputs:
        for name, value in world.secrets.items():
            assert value.decode() not in text, f"the {name} was printed:\n{text[-2000:]}"
    files = [p for root in (state, docs, world.repo) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.startswith("journal.sqlite") for p in files)
    assert any(p.suffix == ".dump" for p in files), "the kept work directory holds the dump"
    for path in files:
        data = path.read_bytes()
        for name, value in world.secrets.items():
            assert value not in data, f"the {name} is in {path}"

    # what holds backup data or the journal is private, from the moment it exists
    modes = dict(watcher.modes)
    for path in state.glob("journal.sqlite*"):
        modes[path] = path.lstat().st_mode
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    workdirs = sorted((state / "runs").iterdir())
    assert workdirs, "the failed run and the kept restore keep their work directories"
    private = []
    for path, mode in modes.items():
        if path.name == "notes.txt":
            continue  # written by the runbook's own command, with the user's umask
        inside_a_workdir = (state / "runs") in path.parents
        if not (inside_a_workdir or world.repo in path.parents or path == world.repo
                or path.name.startswith("journal.sqlite")):
            continue
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        private.append(path)
        assert stat.S_IMODE(mode) == want, f"{path} is {oct(stat.S_IMODE(mode))}"
    kinds = {p.suffix for p in private}
    assert {".gpg", ".json", ".dump", ""} <= kinds, kinds  # dumps, manifests, folders


@pytest.mark.parametrize("command", [
    '["curl", "-H", "Authorization: ${token}", "https://example.invalid"]',
    '"curl -H Authorization:${token} https://example.invalid"',
])
def test_a_secret_spliced_into_a_command_line_is_refused(tmp_path: Path, command: str) -> None:
    book = tmp_path / "leaky.toml"
    book.write_text(f"""
[runbook]
name = "leaky"
title = "Puts a secret on a command line"

[params.token]
type = "secret"

[[steps]]
id = "call"
title = "Call the API"
action = "shell"
with = {{ command = {command} }}
""")
    proc = drdeck("validate", str(book), state_dir=tmp_path / "state")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{book}:" in proc.stderr and "${token} is a secret" in proc.stderr
    assert 'env = { TOKEN = "${token}" }' in proc.stderr


def test_a_connection_string_spliced_into_a_command_line_is_refused(tmp_path: Path) -> None:
    """A dsn parameter may hold a password (found by the ps sweep above: `echo ${dsn}`)."""
    book = tmp_path / "leaky.toml"
    book.write_text("""
[runbook]
name = "leaky"
title = "Puts a connection string on a command line"

[params.target_dsn]
type = "dsn"

[[steps]]
id = "dump"
title = "Dump it"
action = "shell"
with = { command = ["pg_dump", "${target_dsn}"] }
""")
    proc = drdeck("validate", str(book), state_dir=tmp_path / "state")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("${target_dsn} is a connection string, which may hold a password: on a command "
            "line every user of the machine can read it (ps)") in proc.stderr
    assert 'env = { TARGET_DSN = "${target_dsn}" }' in proc.stderr


def test_a_wal_segment_pushed_to_a_local_repository_is_private(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{repo}"\n\n'
                      '[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\n'
                      'repository = "backups"\n')
    segment = tmp_path / "pg_wal" / "000000010000000000000001"
    segment.parent.mkdir()
    segment.write_bytes(os.urandom(8192))
    os.chmod(segment, 0o644)  # as the server leaves it; the archived copy must not be

    pushed = drdeck("--config", str(config), "wal", "push", "--cluster", "prod", str(segment),
                    state_dir=tmp_path / "state")

    assert pushed.returncode == 0, pushed.stderr
    archived = repo / "prod" / "wal" / f"{segment.name}.zst"  # zstd, the default
    assert zstandard.ZstdDecompressor().decompress(archived.read_bytes()) == segment.read_bytes()
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    for folder in (repo, repo / "prod", repo / "prod" / "wal"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# --- the restore guardrails -----------------------------------------------------------------


def database_oid(world: World, name: str) -> int | None:
    return world.cluster.scalar("select oid from pg_database where datname = %s", (name,))


def restore(world: World, state: Path, database: str, target_db: str,
            target_dsn: str | None = None) -> tuple[Any, str]:
    args = ["run", "snapshot-restore", "-p", f"database={database}", "-p",
            f"target_db={target_db}", "-p", "replace=true", "--yes", "--json"]
    if target_dsn is not None:
        args += ["-p", f"target_dsn={target_dsn}"]
    proc = world.drdeck(*args, state=state)
    errors = [e["error"] for e in json_events(proc.stdout)
              if e["event"] == "step_finished" and e["error"]]
    return proc, " ".join(errors) + proc.stderr


def test_no_parameter_gets_a_restore_into_the_source_database(world: World) -> None:
    state = world.base / "state-guardrails"
    for database in ("shop", LONG_DB):
        backup = world.drdeck("run", "snapshot-backup", "-p", f"database={database}",
                              "--json", state=state)
        assert backup.returncode == 0, backup.stdout[-2000:] + backup.stderr
        # written after the snapshot: a restore over the source would lose it
        world.cluster.execute("insert into keep values ('after the backup')", dbname=database)
    sources = {name: database_oid(world, name) for name in ("shop", LONG_DB)}

    def untouched() -> None:
        for name, oid in sources.items():
            assert database_oid(world, name) == oid, f"{name} was dropped and recreated"
            notes = world.cluster.execute("select note from keep order by note", dbname=name)
            assert notes == [("after the backup",), ("before the backup",)], name

    tcp = world.bare_dsn(tcp=True)
    url = f"postgresql://postgres@127.0.0.1:{world.cluster.port}/shop"
    refused = [
        ("shop", "shop", None),  # the source itself, replace = true
        ("shop", "shop", tcp),  # the same server through TCP, not the socket
        ("shop", "shop", world.bare_dsn("shop")),  # a target DSN whose dbname is the source
        ("shop", "shop", url),  # the same, as a URL
        # longer than PostgreSQL keeps: it would cut the name to the source's, and DROP it
        (LONG_DB, LONG_DB + "_restored", None),
        (LONG_DB, LONG_DB + "_restored", tcp),
    ]
    for database, target_db, target_dsn in refused:
        proc, error = restore(world, state, database, target_db, target_dsn)
        assert proc.returncode == 1, (target_db, target_dsn, proc.stdout[-2000:])
        assert "refusing to restore into" in error, (target_db, target_dsn, error)
        untouched()

    # PostgreSQL's database names are case-sensitive, and drdeck always quotes them: these
    # are other databases, made new beside the source, which stays as it was
    for target_db, target_dsn in (("SHOP", None), ('"shop"', None), ("shop ", tcp),
                                  ("Shop", world.bare_dsn("shop"))):
        proc, error = restore(world, state, "shop", target_db, target_dsn)
        if proc.returncode == 0:
            assert database_oid(world, target_db) not in (None, sources["shop"])
            assert world.cluster.execute("select note from keep", dbname=target_db) == [
                ("before the backup",)]
        else:
            assert "refusing" in error, error
        untouched()
    for text in world.outputs:
        assert world.password not in text and quote(world.password, safe="") not in text


@pytest.mark.parametrize("dsn", [
    "postgresql://app:Hunter2-{tag}@db.internal:5432/app",
    "host=db.internal dbname=app user=app password=Hunter2-{tag}",
])
def test_a_password_in_a_connection_string_given_with_p_is_refused(tmp_path: Path,
                                                                   dsn: str) -> None:
    """On drdeck's own command line it would sit in ps for the whole run."""
    password = f"Hunter2-{secrets.token_hex(4)}"
    dsn = dsn.replace("Hunter2-{tag}", password)
    proc = drdeck("run", "health-check", "-p", f"dsn={dsn}", "--headless",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("drdeck: dsn: a connection string with a password is not "
                                  "taken with -p, where every user of this machine can read it")
    assert "~/.pgpass" in proc.stderr and "dsn_env" in proc.stderr
    assert password not in proc.stderr
    assert not (tmp_path / "state" / "runs").exists()  # nothing ran
    # the same server without the password is taken (and is merely unreachable here)
    bare = drdeck("run", "health-check", "-p", "dsn=host=/nonexistent dbname=app",
                  "--dry-run", state_dir=tmp_path / "state")
    assert bare.returncode == 0, bare.stderr
