"""A pgBackRest stanza in a private directory, archiving a throwaway cluster.

pgbackrest runs as the postgres OS user, as the cluster's archive_command does:
its configuration, repository, lock and log directories live in one temp
directory that user owns. Everything is named on the command line or in the
config file; nothing under /etc/pgbackrest or /var/lib/pgbackrest is used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.postgres.cluster import server_account

from pitr_support import give_to_server

PGBACKREST = shutil.which("pgbackrest")


@dataclass
class Stanza:
    base: Path
    name: str = "demo"

    @property
    def config(self) -> Path:
        return self.base / "pgbackrest.conf"

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={self.name} archive-push %p"

    def write_config(self, cluster: Any) -> None:
        """Once the cluster runs: its port is known only then."""
        self.config.write_text(f"""[global]
repo1-path={self.repo}
repo1-retention-full=9
log-path={self.base / "log"}
lock-path={self.base / "lock"}
log-level-console=warn
log-level-file=off
compress-type=gz
compress-level=1
start-fast=y
archive-timeout=30

[{self.name}]
pg1-path={cluster.data_dir}
pg1-port={cluster.port}
pg1-socket-path={cluster.socket_dir}
""")
        give_to_server(self.base)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """pgbackrest as the postgres OS user (as ourselves when not root)."""
        account = server_account()
        run_as: dict[str, Any] = {}
        if account is not None:
            run_as = {"user": account.uid, "group": account.gid,
                      "extra_groups": account.groups}
        result = subprocess.run(
            [PGBACKREST or "pgbackrest", f"--config={self.config}", f"--stanza={self.name}",
             *args], capture_output=True, text=True, cwd="/", check=False, **run_as)
        if check and result.returncode != 0:
            raise AssertionError(f"pgbackrest {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def backup(self, kind: str = "full") -> str:
        """Take a backup; its label."""
        result = self.run("backup", f"--type={kind}", "--log-level-console=info")
        match = re.search(r"new backup label = (\S+)", result.stdout)
        assert match, result.stdout
        return match[1]


def new_stanza(name: str = "demo") -> Stanza:
    base = Path(tempfile.mkdtemp(prefix="drdeck-pgbr-"))
    base.chmod(0o755)
    for sub in ("repo", "log", "lock"):
        (base / sub).mkdir()
    give_to_server(base)
    return Stanza(base, name)


def remove(stanza: Stanza) -> None:
    shutil.rmtree(stanza.base, ignore_errors=True)
