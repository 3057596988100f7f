"""docs/restore-by-hand.md, executed: its commands as written, with only its settings changed.

The repository is a bucket on an S3-protocol server (moto, 127.0.0.1) that a
real cluster archived into through `drdeck wal push`, with a base backup and a
snapshot that drdeck took. The document's shell blocks then run in bash with
the AWS CLI from PyPI, real gpg and real servers: a snapshot restored, globals
first, onto a new server where the application logs in with its own password,
and a point-in-time recovery with a restore_command built from gpg. When the
document and drdeck's layout drift apart, this fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import free_port

from backup_support import s3_repository
from cli_support import REPO
from harness.postgres import start_on_a_free_port
from pitr_support import (
    archiving_setup,
    give_to_server,
    point_config_at,
    wait_archived,
)

pytestmark = pytest.mark.slow

DOCUMENT = REPO / "docs" / "restore-by-hand.md"
APP_PASSWORD = "by-hand-app-pw"
EVENTS = 8


def aws_cli() -> str:
    found = REPO / ".tools" / "awscli" / "bin" / "aws"
    if found.exists():
        return str(found)
    if shutil.which("aws"):
        return str(shutil.which("aws"))
    pytest.fail("the AWS CLI is missing: `make tools` installs it into .tools/awscli")


def sections(markdown: str) -> dict[str, list[str]]:
    """Each `## ` section's ```sh blocks, in order."""
    found: dict[str, list[str]] = {}
    current = ""
    for part in re.split(r"^(## .*)$", markdown, flags=re.M):
        if part.startswith("## "):
            current = part[3:].strip()
            continue
        found.setdefault(current, []).extend(re.findall(r"```sh\n(.*?)```", part, re.S))
    return found


def with_settings(block: str, values: dict[str, str]) -> str:
    """A `# settings:` block with our values for the names it assigns; others as written."""
    assert block.startswith("# settings:"), block
    assigned = set(re.findall(r"(?<![\w$])([A-Z_]+)=", block))
    missing = set(values) - assigned
    assert not missing, f"the document no longer sets {missing}"
    for name, value in values.items():
        block = re.sub(rf"(?<![\w$]){name}=('[^']*'|\S+)", f"{name}={shlex.quote(value)}",
                       block)
    return block


def run_script(blocks: list[str], cwd: Path, env: dict[str, str]) -> str:
    script = "set -euo pipefail\n" + "\n".join(blocks)
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture
def world(tmp_path, s3_server, make_pg_cluster, gpg_home):
    """A cluster archiving into a bucket; a base backup, a snapshot, then timed events."""
    bucket = s3_server.create_bucket("drdeck-hand")
    give_to_server(gpg_home.path)  # archive_command encrypts as the postgres OS user
    setup = archiving_setup(tmp_path / "state", recipients=[gpg_home.fingerprint],
                            gpg_home=gpg_home.path, env=s3_server.env(),
                            repository=s3_repository(s3_server, bucket))
    cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on",
                              archive_command=setup.archive_command(),
                              track_commit_timestamp="on", start=False)
    cluster.server_env = s3_server.env()  # for its archive_command, as Environment= would
    start_on_a_free_port(cluster)
    cluster.execute(f"create role app login password '{APP_PASSWORD}'")
    cluster.execute("create database app owner app")
    cluster.execute("set role app; create table events (n int primary key, at timestamptz)",
                    dbname="app")
    point_config_at(setup, cluster)
    wait_archived(cluster, timeout=90)
    proc = setup.deck.run("run", "snapshot-backup", "--headless")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # then the events move to a tablespace of their own: the document restores it with the
    # base backup (the snapshot, restored on this same machine, would want its directory)
    spot = setup.base / "source-tablespace"
    spot.mkdir()
    give_to_server(spot)
    cluster.execute(f"create tablespace events_space owner app location '{spot}'")
    cluster.execute("alter table events set tablespace events_space", dbname="app")
    proc = setup.deck.run("run", "base-backup", "--headless")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commits = []
    for n in range(1, EVENTS + 1):
        cluster.execute("insert into events values (%s, clock_timestamp())", (n,), dbname="app")
        commits.append(cluster.scalar("select pg_xact_commit_timestamp(xmin) from events "
                                      "where n = %s", (n,), dbname="app"))
    wait_archived(cluster, timeout=90)
    yield {"bucket": bucket, "cluster": cluster, "commits": commits, "setup": setup}
    shutil.rmtree(setup.base, ignore_errors=True)
    s3_server.delete_bucket(bucket)


def test_the_restore_by_hand_document_runs_as_written(world, s3_server, gpg_home,
                                                      make_pg_cluster, tmp_path) -> None:
    # one test, not two: the world (a cluster archiving to a bucket) is built once
    parts = sections(DOCUMENT.read_text())
    [settings] = parts["Settings"]
    env = s3_server.environ() | {"PATH": f"{Path(aws_cli()).parent}:{os.environ['PATH']}"}
    new_server = make_pg_cluster()
    hba = new_server.data_dir / "pg_hba.conf"
    hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    new_server.reload()
    common = {"BUCKET": world["bucket"], "PREFIX": "pg", "CLUSTER": "prod", "DATABASE": "app",
              "PGHOST": str(new_server.socket_dir), "PGPORT": str(new_server.port),
              "PGUSER": "postgres", "GNUPGHOME": str(gpg_home.path)}

    # a snapshot, globals first, onto a server that has none of the roles
    work = tmp_path / "snapshot"
    work.mkdir()
    said = run_script([with_settings(settings, common),
                       *parts["A snapshot, globals first"]], work, env)
    assert "dump.gpg: OK" in said and "globals.sql.gpg: OK" in said
    with psycopg.connect(f"host=127.0.0.1 port={new_server.port} dbname=app user=app "
                         f"password={APP_PASSWORD}") as conn:
        assert conn.execute("select count(*) from events").fetchone() == (0,)
        assert conn.execute("select tableowner from pg_tables where tablename = 'events'"
                            ).fetchone() == ("app",)
    assert new_server.scalar("select pg_get_userbyid(datdba) from pg_database where "
                             "datname = 'app'") == "app"

    # a point in time: the middle of the events, replayed from the base backup
    [pitr_settings, *pitr_blocks] = parts["A point in time"]
    middle = EVENTS // 2
    commits = world["commits"]
    target = commits[middle - 1] + (commits[middle] - commits[middle - 1]) / 2
    base = Path(tempfile.mkdtemp(prefix="hand", dir="/tmp"))  # short: a socket lives in it
    base.chmod(0o755)
    data = base / "data"
    port = free_port()
    work = tmp_path / "pitr"
    work.mkdir()
    try:
        said = run_script([with_settings(settings, common),
                           with_settings(pitr_settings, {"TARGET_TIME": target.isoformat(),
                                                         "DATA": str(data),
                                                         "PORT": str(port)}),
                           *pitr_blocks], work, env)
        assert "base.tar.zst.gpg: OK" in said
        assert "recovery stopping before commit" in said
        with psycopg.connect(f"host={data} port={port} dbname=app user=postgres") as conn:
            assert conn.execute("select count(*), max(n) from events").fetchone() == (
                middle, middle)
            assert conn.execute("select pg_is_in_recovery()").fetchone() == (False,)
            (location,) = conn.execute(
                "select pg_tablespace_location(oid) from pg_tablespace "
                "where spcname = 'events_space'").fetchone()
        assert Path(location).parent == Path(f"{data}.tablespaces")
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D",
                            str(data), "-m", "immediate", "stop"], capture_output=True,
                           timeout=60)
        subprocess.run(["gpgconf", "--homedir", f"{data}.gnupg", "--kill", "gpg-agent"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
