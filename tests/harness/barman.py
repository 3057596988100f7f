"""A real Barman server (the `barman` program in .tools/barman, built by `make tools`)
backing up a scratch cluster, all on this machine.

The least machinery that is still Barman's own: the cluster's archive_command copies
each segment into the server's incoming directory (what barman-wal-archive does over
ssh), `barman archive-wal` files it (what `barman cron` starts in the background; run
here in the foreground so a test knows when it is done), and `barman backup` takes a
base backup with pg_basebackup (backup_method = postgres). Barman runs as root only to
switch to its barman_user: the postgres account, which owns barman_home and can reach
the cluster's socket.
"""

from __future__ import annotations

import getpass
import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.postgres.access import give_to_server
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import server_account

BARMAN = Path(__file__).resolve().parents[2] / ".tools" / "barman" / "bin" / "barman"
SERVER = "pg"


def missing_reason() -> str | None:
    """Why the Barman server tests cannot run here, or None."""
    if not BARMAN.exists():
        return f"{BARMAN} is missing: `make tools` installs barman"
    return None


@dataclass
class BarmanServer:
    """barman_home in a temporary directory, and a barman.conf with one server in it."""

    home: Path
    server: str = SERVER

    @classmethod
    def create(cls) -> BarmanServer:
        home = Path(tempfile.mkdtemp(prefix="drdeck-barman-"))
        home.chmod(0o755)
        (home / SERVER / "incoming").mkdir(parents=True)
        give_to_server(home)
        return cls(home)

    @property
    def config(self) -> Path:
        return self.home / "barman.conf"

    @property
    def wals_directory(self) -> Path:
        return self.home / self.server / "wals"

    def wal_path(self, name: str) -> Path:
        return self.wals_directory / name[:16] / name

    def archive_command(self) -> str:
        incoming = shlex.quote(str(self.home / self.server / "incoming")).replace("%", "%%")
        return f"test ! -f {incoming}/%f && cp %p {incoming}/%f"

    def configure(self, cluster: Any, compression: str = "gzip") -> None:
        account = server_account()
        host = f"host={cluster.socket_dir} port={cluster.port} user=postgres"
        self.config.write_text(f"""[barman]
barman_user = {account.name if account else getpass.getuser()}
barman_home = {self.home}
log_file = {self.home}/barman.log
compression = {compression}

[{self.server}]
description = "drdeck's test server"
conninfo = {host} dbname=postgres
streaming_conninfo = {host}
backup_method = postgres
immediate_checkpoint = true
archiver = on
path_prefix = {Path(pg_bin("pg_basebackup")).parent}
""")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BARMAN), "-c", str(self.config), *args],
                                capture_output=True, text=True, cwd="/", check=False,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise AssertionError(f"barman {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def archive_wal(self) -> None:
        """File what the cluster copied into incoming (`barman cron`'s job)."""
        self.run("archive-wal", self.server)

    def backup(self) -> str:
        """A base backup, waiting for its last segment to be filed; its id."""
        before = set(self.backup_ids())
        self.run("backup", "--wait", self.server)
        (new,) = set(self.backup_ids()) - before
        return new

    def backup_ids(self) -> list[str]:
        listed = json.loads(self.run("-f", "json", "list-backups", self.server).stdout)
        return [b["backup_id"] for b in listed[self.server]]

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
