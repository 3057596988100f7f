"""`drdeck run pitr-barman` end to end: a real cluster archiving through
barman-cloud-wal-archive into moto's S3, a backup by barman-cloud-backup, a write load
with known commit times; then a restore to a moment in the middle of the load, a
target past a missing WAL object, and a truncated tarball."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tui.config import load_config
from tui.postgres.access import let_server_account_run_drdeck
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import LocalCluster, free_port, server_account
from tui.sources.barman_cloud import BarmanCloudSource

from backup_support import Deck
from barman_support import BarmanCloud, missing_reason
from harness.s3 import S3Endpoint
from pitr_support import (
    assert_moved_as_planned,
    events_config,
    in_one_transaction,
    stop_restored,
    wait_archived,
)

pytestmark = [
    pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason())),
    pytest.mark.slow,
]

ROWS = 12


@pytest.fixture(scope="module")
def world(s3_server: S3Endpoint) -> Iterator[dict]:
    """A Barman Cloud store with one backup and the WAL of ROWS events after it."""
    from harness.postgres import scratch_cluster

    let_server_account_run_drdeck()  # the server account runs barman-cloud's interpreter
    barman = BarmanCloud(s3_server, s3_server.create_bucket())
    base = Path(tempfile.mkdtemp(prefix="drdeck-barman-"))
    base.chmod(0o755)  # the restored servers' data directories go here, the server's
    try:
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on", archive_command="/bin/true",
                             track_commit_timestamp="on", autovacuum="off") as cluster:
            cluster.execute("create database app")
            subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn("app")],
                           check=True, capture_output=True)
            # the events live in a tablespace of their own: a restore must bring it back
            # somewhere new, never into the source's directory
            spot = base / "source-tablespace"
            spot.mkdir()
            owner = server_account()
            if owner is not None:
                os.chown(spot, owner.uid, owner.gid)
            cluster.execute(f"create tablespace events_space location '{spot}'")
            cluster.execute("create table events (n int primary key, at timestamptz) "
                            "tablespace events_space", dbname="app")
            wait_archived(cluster)
            barman.start_archiving(cluster)
            backup_id = barman.backup(cluster, "--gzip")
            commits = []
            for n in range(1, ROWS + 1):
                cluster.execute("insert into events values (%s, clock_timestamp())", (n,),
                                dbname="app")
                commits.append(cluster.scalar(
                    "select pg_xact_commit_timestamp(xmin) from events where n = %s", (n,),
                    dbname="app"))
                # WAL that replay must cross between the events
                cluster.execute("update pgbench_accounts set abalance = abalance + 1 "
                                "where aid <= 3000", dbname="app")
                if n % 4 == 0:
                    wait_archived(cluster)
            config = base / "drdeck.toml"
            config.write_text(_config(barman))
            yield {"barman": barman, "backup_id": backup_id, "commits": commits, "base": base,
                   "cluster": cluster,
                   "tablespace": spot,
                   "deck": Deck(config, base / "state", barman.endpoint.env())}
    finally:
        s3_server.delete_bucket(barman.bucket)
        shutil.rmtree(base, ignore_errors=True)


def _config(barman: BarmanCloud, name: str = "prod") -> str:
    """What a CloudNativePG user writes: their bucket, nothing of drdeck's."""
    return f"""
[clusters.{name}]
dsn = "host=/nonexistent dbname=app"

[clusters.{name}.barman_cloud]
destination = "{barman.destination}"
server_name = "{barman.server_name}"
endpoint_url = "{barman.endpoint.url}"
"""


def restore(world: dict, target: str, cluster: str = "prod", data_dir: Path | None = None):
    data_dir = data_dir or world["base"] / f"restored-{free_port()}"
    proc, events = world["deck"].run_json(
        "run", "pitr-barman", "-p", f"cluster={cluster}", "-p", f"target={target}",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "-p", "database=app",
        "-p", "check_query=select count(*) from events", "--yes")
    return proc, events, data_dir


def with_store(world: dict, store: BarmanCloud, name: str) -> None:
    """A second cluster in the configuration, backed by another copy of the store."""
    config = world["deck"].config
    if f"[clusters.{name}]" not in config.read_text():
        config.write_text(config.read_text() + _config(store, name))


def checks(events: list[dict]) -> dict[str, bool]:
    return {e["name"]: e["ok"] for e in events if e["event"] == "check"}


def step_error(events: list[dict]) -> str:
    return next(e for e in events if e["event"] == "step_finished" and e.get("error"))["error"]


def test_restore_to_a_time_in_the_middle_of_the_load(world: dict,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    commits = world["commits"]
    middle = ROWS // 2
    target = commits[middle - 1] + (commits[middle] - commits[middle - 1]) / 2
    proc, events, data_dir = restore(world, target.isoformat())
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        seen = checks(events)
        assert seen["Barman Cloud store readable"] is True
        assert seen["target inside the recoverable window"] is True
        assert seen["WAL continuous from the backup"] is True
        assert seen["out of recovery on a new timeline"] is True
        assert seen["the last replayed commit is at or before the target"] is True
        rpo = next(e for e in events if e["event"] == "measure" and e["name"] == "achieved_rpo")
        assert 0 <= rpo["value"] < 1.0
        # exactly the rows committed before the target
        lines = [e["line"] for e in events if e["event"] == "output" and e["step"] == "restore"]
        announced = next(line for line in lines if line.startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            assert conn.execute("select count(*), max(n) from events").fetchone() == \
                (middle, middle)
        check_lines = [e["line"] for e in events if e["event"] == "output"
                       and e["step"] == "check"]
        assert any(str(middle) in line for line in check_lines), check_lines
        progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
        tarball = [e for e in progress if e["unit"] == "bytes"]
        assert tarball and tarball[-1]["done"] == tarball[-1]["total"] > 0
        assert progress[-1]["unit"] == "bytes of WAL"
        assert progress[-1]["done"] == progress[-1]["total"]
        assert any(f"unpacking backup {world['backup_id']}" in line for line in lines)
        for name, value in world["deck"].env.items():  # the store's credentials
            monkeypatch.setenv(name, value)
        config = load_config(world["deck"].config)
        assert_moved_as_planned(events, BarmanCloudSource.configured(
            config, config.cluster("prod")), target.isoformat())
        # the tablespace came back beside the data directory, linked from pg_tblspc
        (link,) = (data_dir / "pg_tblspc").iterdir()
        home = data_dir.with_name(data_dir.name + ".tablespaces")
        assert link.is_symlink() and Path(os.readlink(link)) == home / link.name
        assert any((home / link.name).iterdir())
        assert any(f"tablespace events_space (oid {link.name}" in line for line in lines)
        restored = LocalCluster(data_dir, 1, data_dir, data_dir / "x.log")
        owner = server_account()
        if owner is not None:  # everything the tar held is the server's, not root's
            assert {p.stat().st_uid for p in data_dir.rglob("*")} == {owner.uid}
        # the restored server must never archive into the store it came from
        assert "archive_mode = 'off'" in (data_dir / "postgresql.auto.conf").read_text()
        assert restored.data_dir.joinpath("pg_wal").is_dir()
    finally:
        stop_restored(data_dir)


def test_a_missing_wal_object_is_a_gap_and_a_target_past_it_is_refused(world: dict) -> None:
    barman, commits = world["barman"], world["commits"]
    wal = sorted(k for k in barman.object_keys() if "/wals/" in k and k.endswith(".gz")
                 and ".backup" not in k and ".history" not in k)
    holed = barman.copy_as("pg-gap", leave_out=(wal[-2],))  # the next to last segment
    with_store(world, holed, "gapped")
    data_dir = world["base"] / f"never-{free_port()}"
    proc, events, _ = restore(world, commits[-1].isoformat(), cluster="gapped",
                              data_dir=data_dir)
    assert proc.returncode != 0
    error = step_error(events)
    assert "after the last archived commit" in error and "newest point you can reach" in error
    lines = [e["line"] for e in events if e["event"] == "output"]
    missing = wal[-2].rsplit("/", 1)[-1].removesuffix(".gz")
    assert any("WARNING: WAL gap" in line and missing in line for line in lines), lines
    assert not data_dir.exists()  # refused before anything was written
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_truncated_tarball_is_refused_and_leaves_no_data_directory_behind(
        world: dict) -> None:
    barman = world["barman"]
    (tarball,) = [k for k in barman.object_keys() if k.endswith("/data.tar.gz")]
    broken = barman.copy_as("pg-cut")
    broken.put(broken.prefix + tarball[len(barman.prefix):],
               barman.read(tarball)[: 200_000])
    with_store(world, broken, "cut")
    proc, events, data_dir = restore(world, "latest", cluster="cut")
    try:
        assert proc.returncode != 0
        error = step_error(events)
        assert "data.tar.gz" in error, error
        assert "truncated" in error or "tar could not unpack" in error, error
        assert data_dir.is_dir() and os.listdir(data_dir) == []  # nothing half-restored
        home = data_dir.with_name(data_dir.name + ".tablespaces")
        assert all(os.listdir(place) == [] for place in home.iterdir())
        assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        stop_restored(data_dir)


def test_wal_events_read_the_store_and_name_the_dropped_table(world: dict, tmp_path) -> None:
    """The scan through the Source protocol over a Barman Cloud store; named by a catalog
    map taken from the live server. Last in the module: it writes WAL after what the tests
    above read."""
    barman, cluster = world["barman"], world["cluster"]
    engine = (f'barman_cloud = {{ destination = "{barman.destination}", server_name = '
              f'"{barman.server_name}", endpoint_url = "{barman.endpoint.url}" }}')
    deck = Deck(events_config(tmp_path / "drdeck.toml", cluster, engine), tmp_path / "state",
                barman.endpoint.env())
    cluster.execute("create table doomed (id int primary key); "
                    "insert into doomed select generate_series(1, 50)", dbname="app")
    runbook = tmp_path / "map.toml"  # a runbook's step takes the map, as cron might
    runbook.write_text('[runbook]\nname = "map"\ntitle = "Map"\n\n[[steps]]\nid = "map"\n'
                       'title = "Catalog map"\naction = "catalog.map"\n')
    proc = deck.run("run", str(runbook), "--headless")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "catalog map of" in proc.stdout
    xid, at = in_one_transaction(cluster, "drop table doomed")
    wait_archived(cluster)
    proc = deck.run("wal", "events", "--source", "barman_cloud", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    drops = [e for e in json.loads(proc.stdout) if e["kind"] == "drop_table"]
    assert [(e["xid"], e["commit_time"], e["relations"][:1]) for e in drops] == [
        (xid, at.isoformat(), ["public.doomed"])], drops
    text = deck.run("wal", "events", "--source", "barman_cloud")
    assert text.returncode == 0, text.stderr
    assert "drdeck run pitr-barman -p cluster=prod" in text.stdout

