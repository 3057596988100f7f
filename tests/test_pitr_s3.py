"""Point-in-time recovery with the repository in an S3-protocol server (moto, 127.0.0.1):
base backups and WAL in the bucket, the WAL pushed there by the cluster's own
archive_command (`drdeck wal push`, run by the server as the postgres OS user), then a
guided restore to a moment in the middle of a write load.

The archiver is a child of the postmaster, so it sees the environment the server was
started with: the endpoint's AWS_* variables are given to this server alone (server_env),
as a service manager would set them in production; drdeck's own environment never
reaches a server it starts.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import pytest

from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import LocalCluster, free_port

from backup_support import s3_repository
from pitr_support import (
    archiving_setup,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)

pytestmark = pytest.mark.slow

ROWS = 20
ARCHIVE_EVERY = 5  # events: then the load waits for the archive (S3 pushes take a while)
PREFIX = "pg"  # backup_support.s3_repository's key prefix


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_server):
    """A cluster archiving into a bucket, a base backup there, and every event's commit time."""
    from harness.gpg import scratch_gpg_home
    from harness.postgres import scratch_cluster, start_on_a_free_port

    state = tmp_path_factory.mktemp("state")
    bucket = s3_server.create_bucket("drdeck-pitr")
    with contextlib.ExitStack() as stack:
        stack.callback(s3_server.delete_bucket, bucket)
        gpg = stack.enter_context(scratch_gpg_home())
        give_to_server(gpg.path)  # archive_command encrypts as the postgres OS user
        setup = archiving_setup(state, recipients=[gpg.fingerprint], gpg_home=gpg.path,
                                env=s3_server.env(),
                                repository=s3_repository(s3_server, bucket))
        stack.callback(shutil.rmtree, setup.base, ignore_errors=True)
        cluster = stack.enter_context(scratch_cluster(
            wal_segsize_mb=1, archive_mode="on", archive_command=setup.archive_command(),
            track_commit_timestamp="on", start=False))
        cluster.server_env = s3_server.env()
        start_on_a_free_port(cluster)
        cluster.execute("create database app")
        subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn("app")],
                       check=True, capture_output=True)
        cluster.execute("create table events (n int primary key, at timestamptz)",
                        dbname="app")
        point_config_at(setup, cluster)
        wait_archived(cluster, timeout=90)
        backup = setup.deck.run("run", "base-backup", "--headless")
        assert backup.returncode == 0, backup.stdout + backup.stderr
        commits = []
        for n in range(1, ROWS + 1):
            cluster.execute("insert into events values (%s, clock_timestamp())", (n,),
                            dbname="app")
            commits.append(cluster.scalar(
                "select pg_xact_commit_timestamp(xmin) from events where n = %s", (n,),
                dbname="app"))
            # pgbench writes between the events: WAL that replay must cross
            cluster.execute("update pgbench_accounts set abalance = abalance + 1 "
                            "where aid <= 2000", dbname="app")
            if n % ARCHIVE_EVERY == 0:
                wait_archived(cluster, timeout=90)
        last = wait_archived(cluster, timeout=90)
        yield {"setup": setup, "cluster": cluster, "commits": commits, "last": last,
               "bucket": bucket, "client": s3_server.client()}


def keys(world, folder: str) -> list[str]:
    prefix = f"{PREFIX}/prod/{folder}/"
    pages = world["client"].get_paginator("list_objects_v2").paginate(
        Bucket=world["bucket"], Prefix=prefix)
    return [item["Key"][len(prefix):] for page in pages for item in page.get("Contents", ())]


def test_restore_to_a_time_in_the_middle_of_the_load(world) -> None:
    import psycopg

    # one test, not several: under xdist each would build the module's world again
    wal = keys(world, "wal")
    assert f"{world['last']}.zst.gpg" in wal
    # compressed, then encrypted by archive_command
    assert all(name.endswith(".zst.gpg") for name in wal), wal
    base = keys(world, "base")
    assert any(k.endswith("/manifest.json") for k in base) and \
        any(k.endswith("/base.tar.zst.gpg") for k in base), base
    assert not any(world["setup"].repo.iterdir())  # nothing went to the local directory
    commits = world["commits"]
    # the achieved RPO can be no smaller than the gap before the target: take a gap with
    # no wait for the archive in it (event `middle` is not a multiple of ARCHIVE_EVERY)
    middle = ROWS // 2 + 1
    assert middle % ARCHIVE_EVERY
    target = commits[middle - 1] + (commits[middle] - commits[middle - 1]) / 2
    data_dir = world["setup"].base / f"restored-{free_port()}"
    proc, events = world["setup"].deck.run_json(
        "run", "pitr-restore", "-p", f"target={target.isoformat()}",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes")
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
        assert checks["target inside the recoverable window"] is True
        assert checks["out of recovery on a new timeline"] is True
        assert checks["the last replayed commit is at or before the target"] is True
        rpo = next(e for e in events
                   if e["event"] == "measure" and e["name"] == "achieved_rpo")
        assert 0 <= rpo["value"] < 1.0
        # the last commit replayed is event `middle` or the load's update right after it
        assert rpo["value"] <= (target - commits[middle - 1]).total_seconds() + 0.001
        announced = next(e["line"] for e in events
                         if e["event"] == "output" and e["step"] == "restore"
                         and e["line"].startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            count = conn.execute("select count(*), max(n) from events").fetchone()
            in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()[0]
        assert count == (middle, middle)
        assert in_recovery is False
    finally:
        stop_restored(data_dir)
    restored = LocalCluster(data_dir, 1, data_dir.parent, data_dir / "x.log")
    assert not restored.is_running()
    assert not (data_dir / "postmaster.pid").exists()
