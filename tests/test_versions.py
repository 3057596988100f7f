"""drdeck on each PostgreSQL major it supports, not only the distribution's.

`make pg-binaries` installs PostgreSQL 17 and 18 beside Debian's 15; the pg_major
fixture points $DRDECK_PG_BIN at one major's programs, so the clusters a test makes and
the drdeck it runs use them. The rest of the suite covers the distribution's major; here,
on 17 and 18: a snapshot backed up to S3 and restored, a point-in-time recovery that
brings back exactly the rows committed by the target, and pg_waldump reading each
major's own WAL (on 15 too: it is cheap).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tui.errors import DrdeckError
from tui.pitr.window import commit_times
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import free_port
from tui.snapshots.dump_compression import ZSTD_SINCE

from backup_support import (
    Deck,
    content_of,
    local_repository,
    s3_repository,
    seed_app,
    write_config,
)
from harness.postgres import SETUP_MAJORS, majors_to_test, pg_bin_dir_for
from pitr_support import (
    archiving_setup,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)

pytestmark = pytest.mark.slow

on_the_setup_majors = pytest.mark.parametrize(
    "pg_major", [pytest.param(major, id=f"pg{major}") for major in SETUP_MAJORS], indirect=True)
NEWEST = max(SETUP_MAJORS)

# the first two bytes of each major's WAL segments (XLOG_PAGE_MAGIC)
WAL_PAGE_MAGIC = {15: 0xD110, 16: 0xD113, 17: 0xD116, 18: 0xD118}


def major_of(cluster) -> int:
    return int(cluster.scalar("show server_version_num")) // 10000


# --- a snapshot ---------------------------------------------------------------------------


@on_the_setup_majors
def test_a_snapshot_backs_up_to_s3_and_restores(pg_major, pg_cluster, gpg_home, s3_server,
                                                s3_bucket, tmp_path: Path) -> None:
    assert major_of(pg_cluster) == pg_major
    seed_app(pg_cluster)
    before = content_of(pg_cluster, "app")
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=s3_repository(s3_server, s3_bucket),
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state", s3_server.environ())

    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    assert events[-1]["status"] == "succeeded"

    inventory = deck.run("inventory", "--json")
    assert inventory.returncode == 0, inventory.stderr
    [cluster] = json.loads(inventory.stdout)["clusters"]
    [snapshot] = cluster["snapshots"]
    assert snapshot["complete"] and snapshot["encrypted"] and snapshot["problem"] is None
    assert snapshot["server_version"].split(".")[0] == str(pg_major)
    assert snapshot["tables"] == 6
    assert snapshot["rows"] == 100_000 + 1 + 10 + len(before["texts"]) + 250

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app_restored",
                                 "--yes")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["every table's row count matches the snapshot"] is True
    assert content_of(pg_cluster, "app_restored") == before


@pytest.mark.parametrize("pg_major", [pytest.param(17, id="pg17")], indirect=True)
def test_a_snapshot_on_17_is_zstd_at_the_repositorys_level_and_restores_exactly(
        pg_major, pg_cluster, gpg_home, tmp_path: Path) -> None:
    seed_app(pg_cluster)
    before = content_of(pg_cluster, "app")
    repo = tmp_path / "repo"
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=local_repository(repo) + "\ncompression_level = 7",
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state")

    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    assert "pg_dump compresses with zstd:7" in [e["line"] for e in events
                                                if e["event"] == "output"]
    [path] = (repo / "prod" / "snapshots" / "app").glob("*.json")
    manifest = json.loads(path.read_text())
    assert manifest["compression"] == "zstd:7"
    dump = tmp_path / "app.dump"
    subprocess.run(["gpg", "--homedir", str(gpg_home.path), "--batch", "--quiet", "--decrypt",
                    "--output", str(dump), str(repo / manifest["object"])], check=True)
    listed = subprocess.run([pg_bin("pg_restore"), "--list", str(dump)], capture_output=True,
                            text=True, check=True).stdout
    assert ";     Compression: zstd\n" in listed  # the archive's own header

    # a pg_restore that cannot read zstd is refused before anything is fetched, naming the fix
    older = next(major for major in majors_to_test() if major < ZSTD_SINCE)
    older_bin = pg_bin_dir_for(older)
    with_older = Deck(config, tmp_path / "state", {"DRDECK_PG_BIN": str(older_bin)})
    for runbook, params in (("snapshot-restore", ["-p", "target_db=app_restored", "--yes"]),
                            ("verify-backup", ["-p", "full=true"])):
        proc, events = with_older.run_json("run", runbook, *params)
        assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr
        [failed] = [e for e in events if e["event"] == "step_finished"]
        assert f"(dumped by pg_dump {manifest['pg_dump_version']}, compressed with zstd:7) " \
            f"needs pg_restore from PostgreSQL {pg_major} or newer, but the one in " \
            f"$DRDECK_PG_BIN={older_bin} is PostgreSQL {older}. To use it, " in failed["error"]
        assert not [e for e in events if e["event"] == "step_started"
                    and e["step"] in ("fetch", "restore")]
    assert len(list(path.with_suffix(".verified").glob("*.json"))) == 1, \
        "the backup's own verification, and no failure recorded for the old pg_restore"
    assert pg_cluster.scalar("select count(*) from pg_database where datname like "
                             "'app_restored%'") == 0

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app_restored",
                                 "--yes")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["every table's row count matches the snapshot"] is True
    assert content_of(pg_cluster, "app_restored") == before


# --- point in time ------------------------------------------------------------------------

EVENTS, TARGET_AFTER = 12, 7  # rows committed; the target falls between row 7 and row 8


@on_the_setup_majors
def test_a_point_in_time_recovery_brings_back_the_rows_committed_by_the_target(
        pg_major, make_pg_cluster, gpg_home, tmp_path: Path) -> None:
    give_to_server(gpg_home.path)  # archive_command encrypts as the postgres OS user
    setup = archiving_setup(tmp_path / "state", recipients=[gpg_home.fingerprint],
                            gpg_home=gpg_home.path)
    data_dir = setup.base / "restored"
    try:
        # no autovacuum: its ANALYZE would commit after the last row, and the window's end
        # is checked against that row's commit
        cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on",
                                  archive_command=setup.archive_command(),
                                  track_commit_timestamp="on", autovacuum="off")
        assert major_of(cluster) == pg_major
        cluster.execute("create database app")
        cluster.execute("create table events (n int primary key, at timestamptz)",
                        dbname="app")
        point_config_at(setup, cluster)
        wait_archived(cluster)
        backup = setup.deck.run("run", "base-backup", "--headless")
        assert backup.returncode == 0, backup.stdout[-4000:] + backup.stderr

        commits = []
        for n in range(1, EVENTS + 1):
            cluster.execute("insert into events values (%s, clock_timestamp())", (n,),
                            dbname="app")
            commits.append(cluster.scalar(
                "select pg_xact_commit_timestamp(xmin) from events where n = %s", (n,),
                dbname="app"))
            if n == TARGET_AFTER:
                wait_archived(cluster)  # the target's commit and the next in two segments
        wait_archived(cluster)

        # the recoverable window ends at the last commit, as this major's pg_waldump reads it
        inventory = setup.deck.run("inventory", "--json")
        assert inventory.returncode == 0, inventory.stderr
        [listed] = json.loads(inventory.stdout)["clusters"]
        assert listed["pitr"]["gaps"] == [] and listed["pitr"]["problems"] == []
        assert datetime.fromisoformat(listed["pitr"]["window"]["end"]) == commits[-1]

        target = commits[TARGET_AFTER - 1] + (commits[TARGET_AFTER] -
                                              commits[TARGET_AFTER - 1]) / 2
        proc, events = setup.deck.run_json(
            "run", "pitr-restore", "-p", f"target={target.isoformat()}",
            "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
        assert checks["out of recovery on a new timeline"] is True
        assert checks["the last replayed commit is at or before the target"] is True
        announced = next(e["line"] for e in events if e["event"] == "output"
                         and e["line"].startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            version = int(conn.execute("show server_version_num").fetchone()[0])
            rows = conn.execute("select count(*), max(n) from events").fetchone()
        assert version // 10000 == pg_major
        assert rows == (TARGET_AFTER, TARGET_AFTER)
        assert (data_dir / "PG_VERSION").read_text().strip() == str(pg_major)
    finally:
        stop_restored(data_dir)
        shutil.rmtree(setup.base, ignore_errors=True)


# --- pg_waldump ---------------------------------------------------------------------------


def test_pg_waldump_reads_the_commit_times_of_its_own_major(pg_major, make_pg_cluster) -> None:
    cluster = make_pg_cluster(wal_segsize_mb=1, track_commit_timestamp="on",
                              autovacuum="off")
    assert major_of(cluster) == pg_major
    cluster.execute("create table t (n int)")
    segment = cluster.scalar("select pg_walfile_name(pg_current_wal_insert_lsn())")
    ours = []
    for n in range(5):
        cluster.execute("insert into t values (%s)", (n,))
        ours.append(cluster.scalar("select pg_xact_commit_timestamp(xmin) from t "
                                   "where n = %s", (n,)))
    cluster.execute("select pg_switch_wal()")
    assert cluster.scalar("select pg_walfile_name(pg_current_wal_insert_lsn())") != segment
    raw = (cluster.data_dir / "pg_wal" / segment).read_bytes()
    assert int.from_bytes(raw[:2], "little") == WAL_PAGE_MAGIC[pg_major]

    found = commit_times(raw, segment)

    assert set(ours) <= set(found), (ours, found)
    assert max(found) == ours[-1]


# --- a data directory of another major ----------------------------------------------------


@on_the_setup_majors
def test_a_data_directory_is_refused_by_another_majors_programs(
        pg_major, make_pg_cluster, monkeypatch) -> None:
    cluster = make_pg_cluster()
    cluster.stop()
    other = next(major for major in majors_to_test() if major != pg_major)
    other_bin = pg_bin_dir_for(other)
    monkeypatch.setenv("DRDECK_PG_BIN", str(other_bin))

    with pytest.raises(DrdeckError) as refused:
        cluster.start()

    assert str(refused.value).startswith(
        f"{cluster.data_dir} is a PostgreSQL {pg_major} data directory, but the server "
        f"programs in $DRDECK_PG_BIN={other_bin} are PostgreSQL {other}")
    assert not cluster.is_running()


@pytest.mark.parametrize("pg_major", [pytest.param(NEWEST, id=f"pg{NEWEST}")], indirect=True)
def test_programs_older_than_the_server_or_the_dump_are_refused_saying_what_to_set(
        pg_major, pg_cluster, tmp_path: Path) -> None:
    pg_cluster.execute("create database app")
    pg_cluster.execute("create table t as select generate_series(1, 10) n", dbname="app")
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=local_repository(tmp_path / "repo"), gpg_home=None,
                          recipients=[])
    older = next(major for major in majors_to_test() if major < pg_major)
    older_bin = pg_bin_dir_for(older)
    with_older = Deck(config, tmp_path / "state", {"DRDECK_PG_BIN": str(older_bin)})
    debian = Path(f"/usr/lib/postgresql/{pg_major}/bin")
    remedy = (f"To use it, set DRDECK_PG_BIN={debian} (PostgreSQL {pg_major} is installed "
              f"there)" if (debian / "postgres").is_file() else
              f"To use it, install PostgreSQL {pg_major}'s server programs (on Debian "
              f"'apt-get install postgresql-{pg_major}', which puts them in {debian}) and "
              f"set DRDECK_PG_BIN to their directory")

    proc, events = with_older.run_json("run", "snapshot-backup", "-p", "encrypt=false")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr
    [failed] = [e for e in events if e["event"] == "step_finished"]
    version = pg_cluster.scalar("show server_version")
    assert failed["error"] == (
        f"the server of app (PostgreSQL {version}) needs pg_dump from PostgreSQL {pg_major} "
        f"or newer, but the one in $DRDECK_PG_BIN={older_bin} is PostgreSQL {older}. {remedy}")
    assert failed["attempts"] == 1, "not retried: the same programs would fail the same way"

    deck = Deck(config, tmp_path / "state")  # the test's own major: it backs up
    proc, _ = deck.run_json("run", "snapshot-backup", "-p", "encrypt=false")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr

    proc, events = with_older.run_json("run", "snapshot-restore", "-p", "target_db=back",
                                       "--yes")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr
    [failed] = [e for e in events if e["event"] == "step_finished"]
    assert failed["step"] == "preflight"
    assert failed["error"].endswith(
        f"needs pg_restore from PostgreSQL {pg_major} or newer, but the one in "
        f"$DRDECK_PG_BIN={older_bin} is PostgreSQL {older}. {remedy}")
    assert f"(dumped by pg_dump {version}" in failed["error"]
    assert pg_cluster.scalar("select count(*) from pg_database where datname like 'back%'") == 0
