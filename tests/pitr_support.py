"""A cluster that archives its WAL through `drdeck wal push`, as production would.

archive_command runs as the postgres OS user, so everything it touches must be
reachable by that user: the interpreter (under /root when tests run as root),
the configuration, the repository and the GnuPG home.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tui.pitr.basebackup import BaseManifest, ServerManifest, TablespaceBackup
from tui.postgres.access import give_to_server, let_server_account_run_drdeck
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import LocalCluster
from tui.wal.names import format_lsn

from backup_support import Deck


def let_the_server_account_run_drdeck() -> None:
    """For the whole test session: parallel workers' servers all need it."""
    let_server_account_run_drdeck()


@dataclass
class ArchivingSetup:
    base: Path
    config: Path
    repo: Path
    deck: Deck

    def archive_command(self) -> str:
        return " ".join([shlex.quote(sys.executable), "-m", "tui", "--config",
                         shlex.quote(str(self.config)), "wal", "push", "--cluster", "prod",
                         "%p"])


def archiving_setup(state_dir: Path, *, recipients: list[str], gpg_home: Path | None,
                    env: dict[str, str] | None = None, repository: str | None = None,
                    dsn_placeholder: str = "@DSN@") -> ArchivingSetup:
    """A private directory the postgres user can use: config, local repository."""
    let_the_server_account_run_drdeck()
    base = Path(tempfile.mkdtemp(prefix="drdeck-pitr-"))
    base.chmod(0o755)
    repo = base / "repo"
    repo.mkdir()
    give_to_server(repo)
    config = base / "drdeck.toml"
    gpg = f'[gpg]\nhome = "{gpg_home}"\n\n' if gpg_home else ""
    recipients_toml = ", ".join(f'"{r}"' for r in recipients)
    repository = repository or f'[repositories.backups]\ntype = "local"\npath = "{repo}"'
    config.write_text(f"""{repository}

{gpg}[clusters.prod]
dsn = "{dsn_placeholder}"
repository = "backups"
databases = ["app"]
gpg_recipients = [{recipients_toml}]
rpo = "5m"
rto = "1h"
""")
    config.chmod(0o644)
    return ArchivingSetup(base, config, repo, Deck(config, state_dir, env or {}))


def point_config_at(setup: ArchivingSetup, cluster: Any) -> None:
    setup.config.write_text(setup.config.read_text().replace("@DSN@", cluster.dsn("app")))


def wait_archived(cluster: Any, timeout: float = 30) -> str:
    """Switch to a new segment and wait until the old one is archived; its name."""
    cluster.execute("select pg_switch_wal()")
    wanted = cluster.scalar("select pg_walfile_name(pg_current_wal_lsn() - 1)")
    deadline = time.monotonic() + timeout
    while True:
        row = cluster.execute("select last_archived_wal, last_failed_wal, failed_count "
                              "from pg_stat_archiver")[0]
        if row[0] is not None and row[0] >= wanted:
            return wanted
        if time.monotonic() > deadline:
            log = Path(cluster.log_file).read_text()[-2000:]
            raise AssertionError(f"{wanted} not archived (archiver: {row}); log:\n{log}")
        time.sleep(0.1)


def in_one_transaction(cluster: Any, statement: str, dbname: str = "app"
                       ) -> tuple[int, datetime]:
    """Run `statement` in a transaction of its own; its xid and commit time (the cluster
    tracks commit timestamps)."""
    import psycopg

    with psycopg.connect(cluster.dsn(dbname)) as conn:
        xid = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
        conn.execute(statement)
        conn.commit()
        when = conn.execute("select pg_xact_commit_timestamp(%s::text::xid)",
                            (str(xid),)).fetchone()[0]
    return xid, when


def events_config(path: Path, cluster: Any, engine: str) -> Path:
    """A configuration whose cluster `prod` is backed up by an engine (`engine` is its
    TOML line) and has a drdeck repository beside `path` for the catalog maps alone."""
    repo = path.parent / "maps"
    repo.mkdir(exist_ok=True)
    path.write_text(f'[repositories.maps]\ntype = "local"\npath = "{repo}"\n\n'
                    f'[clusters.prod]\ndsn = "{cluster.dsn("app")}"\nrepository = "maps"\n'
                    f"{engine}\n")
    return path


def assert_moved_as_planned(events: list[dict], source: Any, target: str) -> None:
    """The restore step measured the base backup the source says a restore to `target`
    moves, and WAL replayed; the WAL planned for a target inside the window is less than
    the whole window's."""
    from tui.pitr.target import parse_target

    moved = {e["name"]: e["value"] for e in events
             if e["event"] == "measure" and e["step"] == "restore"}
    planned = source.restore_volumes(parse_target(target))
    assert moved["base_bytes"] == planned["base"] > 0
    assert moved["wal_bytes"] > 0 and moved["base_s"] > 0 and moved["wal_s"] > 0
    assert 0 < planned["wal"] < source.restore_volumes(parse_target("latest"))["wal"]


def stop_restored(data_dir: Path) -> None:
    """The restored server keeps running after the run: tests stop it."""
    if (data_dir / "postmaster.pid").exists():
        LocalCluster(data_dir, 1, data_dir.parent, data_dir / "x.log").stop("immediate")



def app_with_events_in_a_tablespace(cluster: Any, base: Path) -> Path:
    """Database app with pgbench's tables (scale 1) and an events table in tablespace
    events_space, at base/source-tablespace (returned): a backup must carry it, and a
    restore bring it back somewhere new, never into the source's directory."""
    cluster.execute("create database app")
    subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn("app")],
                   check=True, capture_output=True)
    spot = base / "source-tablespace"
    spot.mkdir()
    give_to_server(spot)
    cluster.execute(f"create tablespace events_space location '{spot}'")
    cluster.execute("create table events (n int primary key, at timestamptz) "
                    "tablespace events_space", dbname="app")
    return spot


def base_backups_listed(deck: Deck) -> list[dict]:
    """The cluster's base backups as `drdeck inventory --json` lists them."""
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    return cluster["pitr"]["base_backups"]


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # what hand-written manifests are dated by
MiB = 1 << 20


def backup(days_ago: float, parent: str | None = None, segment: int = 0, size: int = 1,
           tablespaces: tuple[TablespaceBackup, ...] = ()) -> tuple[BaseManifest, str, str]:
    """A usable backup, as read_base_backups lists it, that ended `days_ago` before NOW,
    its WAL starting at `segment` (default: ten segments a day, older backups earlier),
    its data directory `size` bytes."""
    stopped = NOW - timedelta(days=days_ago)
    stamp = stopped.strftime("%Y%m%dT%H%M%SZ")
    start = segment or int(1000 - days_ago * 10)
    manifest = BaseManifest(
        cluster="prod", stamp=stamp, object=f"prod/base/{stamp}/base.tar.zst",
        started_at=(stopped - timedelta(minutes=1)).isoformat(),
        stopped_at=stopped.isoformat(), start_lsn=format_lsn(start * MiB + 40),
        stop_lsn=format_lsn(start * MiB + 4096), timeline=1, system_identifier="7",
        server_version="17.2", wal_segment_size=MiB, encrypted=False, recipients=(),
        plaintext_size=size, stored_size=1, sha256_stored="", sha256_plaintext="",
        compression="zstd", tablespaces=tablespaces,
        server_manifest=ServerManifest("m", 1, 1, "", ""), parent=parent)
    return manifest, stamp, ""
