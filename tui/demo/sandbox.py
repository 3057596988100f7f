"""A sandbox to drill on: a "production" cluster with data, backups and a live write load.

Everything lives in one directory: the cluster, its WAL archive and backups (a
local repository), an ephemeral GnuPG key, a drdeck.toml and the journal. The
cluster archives through `drdeck wal push`, exactly as production would, and a
light load keeps committing orders so a point-in-time target is meaningful.
The shop belongs to an application role that logs in with a password, as in
production, and a second, empty server stands by as the disaster-recovery
site: a snapshot restored there brings its roles along. `close()` stops
everything it started, restored servers included, and removes the directory
unless asked to keep it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.child_python import python_module
from tui.errors import DrdeckError
from tui.postgres.access import give_back, give_to_server, let_server_account_run_drdeck
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import LocalCluster, free_port

CLUSTER = "demo"
DATABASE = "shop"
APP_ROLE = "shop_app"  # owns the shop, logs in with a password
READER_ROLE = "shop_reporting"
EMAIL = "sandbox@drdeck.invalid"


class SandboxError(DrdeckError):
    pass


@dataclass
class Sandbox:
    root: Path
    keep: bool = False
    say: Any = print
    cluster: LocalCluster | None = None
    dr: LocalCluster | None = None  # the empty disaster-recovery server
    app_passfile: Path | None = None  # the application's password, as a libpq passfile
    config: Path | None = None
    state: Path | None = None
    built_in_s: float = 0.0
    _load: threading.Thread | None = None
    _stop_load: threading.Event = field(default_factory=threading.Event)
    _opened: list[tuple[Path, int]] = field(default_factory=list)  # modes we changed

    # --- building ---------------------------------------------------------------------

    def build(self) -> Sandbox:
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._let_the_server_run_drdeck()
        repo, gpg_home = self.root / "repo", self.root / "gnupg"
        for directory in (repo, gpg_home):
            directory.mkdir(mode=0o700, exist_ok=True)
        self.state = self.root / "state"
        self.state.mkdir(mode=0o700, exist_ok=True)
        self.say("· an ephemeral GnuPG key")
        fingerprint = _make_key(gpg_home)
        self.cluster = LocalCluster.in_directory(self.root / "prod")
        (self.root / "prod").mkdir(exist_ok=True)
        give_to_server(self.root / "prod")
        self.say(f"· a PostgreSQL cluster on port {self.cluster.port}")
        self.cluster.init(wal_segsize_mb=1, no_sync=True)
        self.config = self.root / "drdeck.toml"
        self.config.write_text(self._config_text(repo, gpg_home, fingerprint))
        self.config.chmod(0o644)
        give_to_server(repo)
        give_to_server(gpg_home)
        self.cluster.configure(
            archive_mode="on", archive_command=self._archive_command(), archive_timeout="5s",
            track_commit_timestamp="on", fsync="off", synchronous_commit="off")
        self.cluster.start()
        self.say(f"· data: pgbench and an orders table, owned by the role {APP_ROLE}")
        self._seed()
        self._start_dr_server()
        self.say("· WAL archiving through drdeck wal push, a base backup, two snapshots")
        self._drdeck("run", "base-backup", "--headless")
        self._drdeck("run", "snapshot-backup", "--headless")
        self._start_load()
        time.sleep(1.0)  # a few orders between the two snapshots
        self._drdeck("run", "snapshot-backup", "--headless")
        self.built_in_s = time.monotonic() - started
        return self

    def _config_text(self, repo: Path, gpg_home: Path, fingerprint: str) -> str:
        assert self.cluster is not None
        restored = self.root / "restored"
        return f"""# drdeck sandbox: everything here is throwaway
[repositories.local]
type = "local"
path = "{repo}"

[gpg]
home = "{gpg_home}"

[clusters.{CLUSTER}]
dsn = "{self.cluster.dsn(DATABASE)}"
repository = "local"
databases = ["{DATABASE}"]
gpg_recipients = ["{fingerprint}"]
rpo = "1h"
rto = "30m"
retention = {{ daily = 7, weekly = 4, monthly = 3 }}

[runbooks.defaults.snapshot-restore]
target_db = "shop_restored"

[runbooks.defaults.pitr-restore]
data_dir = "{restored}/pitr-1"
port = {free_port()}
check_query = "select count(*) as orders, max(placed_at) from orders"
"""

    def _archive_command(self) -> str:
        return " ".join([*map(shlex.quote, python_module("tui")), "--config",
                         shlex.quote(str(self.config)), "wal", "push", "--cluster", CLUSTER,
                         "%p"]).replace("%p", "%p")

    def _seed(self) -> None:
        assert self.cluster is not None
        password = secrets.token_urlsafe(12)
        self.cluster.execute(f"create role {APP_ROLE} login password '{password}'")
        self.cluster.execute(f"create role {READER_ROLE} nologin")
        self.cluster.execute(f"create database {DATABASE} owner {APP_ROLE}")
        self.app_passfile = self.root / "app.pgpass"
        self.app_passfile.write_text(f"*:*:{DATABASE}:{APP_ROLE}:{password}\n")
        self.app_passfile.chmod(0o600)
        subprocess.run([pg_bin("pgbench"), "-i", "-s", "2", "-q", "-n",
                        self.cluster.dsn(DATABASE, user=APP_ROLE)], check=True,
                       capture_output=True)
        self.cluster.execute(f"""
            set role {APP_ROLE};
            alter default privileges grant select on tables to {READER_ROLE};
            create table customers (id int primary key, name text not null);
            insert into customers select g, 'customer ' || g from generate_series(1, 500) g;
            create table orders (
                id bigserial primary key,
                customer_id int not null references customers,
                amount numeric(10, 2) not null,
                placed_at timestamptz not null default clock_timestamp()
            );
            insert into orders (customer_id, amount, placed_at)
            select 1 + g % 500, (g % 97) * 1.25, now() - (1000 - g) * interval '1 minute'
            from generate_series(1, 1000) g;
        """, dbname=DATABASE)

    def _start_dr_server(self) -> None:
        """A second server with nothing on it; the application may log in with its password."""
        self.dr = LocalCluster.in_directory(self.root / "dr")
        (self.root / "dr").mkdir(exist_ok=True)
        give_to_server(self.root / "dr")
        self.dr.init(no_sync=True)
        hba = self.dr.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {APP_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.dr.configure(fsync="off")
        self.dr.start()
        self.say(f"· an empty disaster-recovery server on port {self.dr.port}: no roles, "
                 "no databases")

    def _start_load(self) -> None:
        """A few orders a second until the sandbox closes."""
        assert self.cluster is not None
        dsn = self.cluster.dsn(DATABASE)

        def load() -> None:
            import psycopg

            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    n = 0
                    while not self._stop_load.wait(0.25):
                        n += 1
                        conn.execute("insert into orders (customer_id, amount) values (%s, %s)",
                                     (1 + n % 500, (n % 89) * 2.5))
            except Exception:  # the cluster went away: the sandbox is closing
                return

        self._load = threading.Thread(target=load, name="drdeck-demo-load", daemon=True)
        self._load.start()

    def _drdeck(self, *args: str) -> None:
        result = subprocess.run([*python_module("tui"), "--config", str(self.config),
                                 *args], capture_output=True, text=True, env=self.env(),
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise SandboxError(f"drdeck {' '.join(args)} failed while building the sandbox:"
                               f"\n{tail}")

    def env(self) -> dict[str, str]:
        return {**os.environ, "DRDECK_STATE_DIR": str(self.state), "NO_COLOR": "1"}

    def _let_the_server_run_drdeck(self) -> None:
        """archive_command runs as postgres: it must reach our interpreter and code."""
        self._opened = let_server_account_run_drdeck()
        for directory, _ in self._opened:
            self.say(f"· made {directory} traversable (o+x) for the postgres user "
                     "(restored when the sandbox closes)")

    # --- closing ----------------------------------------------------------------------

    def close(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            self._load.join(timeout=5)
        for pid_file in self.root.rglob("postmaster.pid"):
            data_dir = pid_file.parent
            with contextlib.suppress(Exception):
                LocalCluster(data_dir, 1, data_dir, data_dir / "stop.log").stop("immediate")
        with contextlib.suppress(Exception):
            subprocess.run(["gpgconf", "--homedir", str(self.root / "gnupg"), "--kill",
                            "gpg-agent"], capture_output=True, check=False, timeout=10)
        give_back(self._opened)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def _make_key(home: Path) -> str:
    import gnupg

    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(
        key_type="EDDSA", key_curve="ed25519", subkey_type="ECDH", subkey_curve="cv25519",
        name_real="drdeck sandbox", name_email=EMAIL, expire_date="1d", no_protection=True))
    if not key.fingerprint:
        raise SandboxError(f"could not make a GnuPG key: {key.stderr.strip()[-300:]}")
    return key.fingerprint


def new_root(directory: str | None) -> Path:
    if directory:
        root = Path(directory).expanduser().absolute()
        if root.exists() and any(root.iterdir()):
            raise SandboxError(f"{root} is not empty: the sandbox needs a directory of its own")
        return root
    # short: the cluster's socket lives here, and socket paths are limited to 107 bytes
    return Path(tempfile.mkdtemp(prefix="drdeck-demo-"))
