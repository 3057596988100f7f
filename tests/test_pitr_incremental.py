"""Incremental base backups on PostgreSQL 17 and 18: a full backup, two incremental ones on
it, WAL after the last; a restore to a point after the last incremental combines the
chain and replays to exactly the rows committed by then. On 15 the option is refused."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from tui.postgres.cluster import free_port
from tui.wal.names import Segment, parse_lsn

from pitr_support import (
    app_with_events_in_a_tablespace,
    archiving_setup,
    base_backups_listed,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)


def _insert(cluster, first: int, last: int) -> None:
    for n in range(first, last + 1):
        cluster.execute("insert into events values (%s, clock_timestamp())", (n,),
                        dbname="app")
    # blocks that change between the backups: an incremental backup carries only these
    cluster.execute("update pgbench_accounts set abalance = abalance + 1 where aid <= 2000",
                    dbname="app")


@pytest.mark.parametrize("pg_major", [17, 18], indirect=True)
def test_an_incremental_chain_restores_to_a_point_after_its_last_backup(
        pg_major, gpg_home, tmp_path) -> None:
    from harness.postgres import scratch_cluster

    give_to_server(gpg_home.path)
    setup = archiving_setup(tmp_path / "state", recipients=[gpg_home.fingerprint],
                            gpg_home=gpg_home.path)
    try:
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=setup.archive_command(), summarize_wal="on",
                             track_commit_timestamp="on") as cluster:
            assert cluster.scalar("show server_version_num").startswith(str(pg_major))
            app_with_events_in_a_tablespace(cluster, setup.base)
            point_config_at(setup, cluster)
            wait_archived(cluster)
            said = []
            for first, incremental in ((1, "false"), (11, "true"), (21, "true")):
                _insert(cluster, first, first + 9)
                wait_archived(cluster)
                proc = setup.deck.run("run", "base-backup", "--headless", "-p",
                                      f"incremental={incremental}")
                assert proc.returncode == 0, proc.stdout + proc.stderr
                said.append(proc.stdout)
            _insert(cluster, 31, 35)
            target = cluster.scalar("select pg_xact_commit_timestamp(xmin) from events "
                                    "where n = 35", dbname="app")
            _insert(cluster, 36, 40)
            wait_archived(cluster)

            full, first_inc, second_inc = sorted(base_backups_listed(setup.deck),
                                                 key=lambda b: b["id"])
            assert full["parent"] is None and full["kind"] == "full"
            assert first_inc["parent"] == full["id"] and first_inc["kind"] == "incremental"
            assert second_inc["parent"] == first_inc["id"]
            assert all(b["complete"] for b in (full, first_inc, second_inc))
            # only the changed blocks: a fraction of the full backup
            assert second_inc["stored_size"] * 2 < full["stored_size"], (full, second_inc)
            assert f"incremental on base backup {first_inc['id']}" in said[2]
            # each backup records the relations as they were, to name its WAL's events by
            assert all("catalog map of " in out and " relations recorded: " in out
                       for out in said), said
            assert len(list((setup.repo / "prod" / "catalog").iterdir())) == 3

            data_dir = setup.base / f"restored=a-{free_port()}"  # "=" reaches -T escaped
            proc, events = setup.deck.run_json(
                "run", "pitr-restore", "-p", f"target={target.isoformat()}", "-p",
                f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes")
            try:
                assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
                lines = [e["line"] for e in events if e["event"] == "output"]
                assert any(line.startswith(f"incremental chain: full backup {full['id']}, "
                                           f"then {first_inc['id']}, {second_inc['id']}")
                           for line in lines), lines
                announced = next(line for line in lines
                                 if line.startswith("recovered and promoted"))
                with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
                    assert conn.execute("select count(*), max(n) from events").fetchone() \
                        == (35, 35)
                    assert conn.execute("select sum(abalance) from pgbench_accounts "
                                        "where aid <= 2000").fetchone() == (3 * 2000,)
                    (location,) = conn.execute(
                        "select pg_tablespace_location(oid) from pg_tablespace "
                        "where spcname = 'events_space'").fetchone()
                assert location.startswith(f"{data_dir}.tablespaces/")
                # the staging directories are gone
                assert not data_dir.with_name(data_dir.name + ".chain").exists()
            finally:
                stop_restored(data_dir)

            # a staging directory left by someone (a killed run): refused, and kept
            occupied = setup.base / f"busy-{free_port()}"
            left = occupied.with_name(occupied.name + ".chain")
            left.mkdir()
            (left / "keep-me").write_text("an operator's")
            proc, events = setup.deck.run_json(
                "run", "pitr-restore", "-p", "target=latest", "-p", f"data_dir={occupied}",
                "-p", f"port={free_port()}", "--yes")
            assert proc.returncode == 1
            error = next(e for e in events if e["event"] == "step_finished")["error"]
            assert f"{left} is not empty" in error, error
            assert (left / "keep-me").read_text() == "an operator's"
            assert not occupied.exists()

            # with another major's programs it is refused before anything is fetched
            other = setup.base / f"never-{free_port()}"
            debian = "/usr/lib/postgresql/15/bin"
            setup.deck.env["DRDECK_PG_BIN"] = debian
            try:
                proc, events = setup.deck.run_json(
                    "run", "pitr-restore", "-p", "target=latest", "-p",
                    f"data_dir={other}", "-p", f"port={free_port()}", "--yes")
            finally:
                del setup.deck.env["DRDECK_PG_BIN"]
            assert proc.returncode == 1
            lines = [e["line"] for e in events if e["event"] == "output"]
            # its WAL is PostgreSQL 17's: the window's end cannot be read with 15's
            # pg_waldump, and it says so rather than give a wrong end
            assert any(line.startswith("WARNING: WAL segment ") and
                       f"was written by PostgreSQL {pg_major}" in line for line in lines), lines
            error = next(e for e in events if e["event"] == "step_finished")["error"]
            assert f"is of PostgreSQL {pg_major}, but the server programs in " \
                   f"$DRDECK_PG_BIN={debian} are PostgreSQL 15" in error, error
            assert f"postgresql-{pg_major}" in error
            assert not other.exists()

            # without its parent, an incremental backup is no backup: named, not used
            victim = setup.repo / "prod" / "base" / first_inc["id"] / "manifest.json"
            hidden = tmp_path / "manifest.json"
            shutil.move(victim, hidden)
            try:
                by_id = {b["id"]: b for b in base_backups_listed(setup.deck)}
                assert by_id[full["id"]]["complete"] is True
                assert by_id[second_inc["id"]]["complete"] is False
                assert f"incremental on base backup {first_inc['id']}, which is not " \
                       "usable" in by_id[second_inc["id"]]["problem"]
            finally:
                shutil.move(hidden, victim)

            _a_second_chain_and_retention_that_keeps_one(cluster, setup,
                                                         [full, first_inc, second_inc])
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)


def _a_second_chain_and_retention_that_keeps_one(cluster, setup, old: list[dict]) -> None:
    """A chain at its max_chain gets a full backup, and an incremental on it; `full = 1`
    keeps that chain, deletes the old one child first, and the WAL only it needed."""
    said = []
    for first in (41, 51):
        _insert(cluster, first, first + 4)
        wait_archived(cluster)
        proc = setup.deck.run("run", "base-backup", "--headless", "-p", "incremental=true",
                              "-p", "max_chain=2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        said.append(proc.stdout)
    assert f"the chain of base backup {old[2]['id']} holds 2 incremental backups already " \
           "(max_chain = 2): taking a full backup" in said[0], said[0]
    new_full, new_inc = sorted((b for b in base_backups_listed(setup.deck)
                                if b["id"] not in {o["id"] for o in old}),
                               key=lambda b: b["id"])
    assert new_full["parent"] is None and new_inc["parent"] == new_full["id"]
    setup.config.write_text(setup.config.read_text() + "base_retention = { full = 1 }\n")
    wal_dir = setup.repo / "prod" / "wal"
    before = {p.name.split(".")[0] for p in wal_dir.iterdir()}
    first_needed = Segment.of_lsn(1, parse_lsn(new_full["start_lsn"]), 1 << 20).number

    proc, events = setup.deck.run_json("run", "prune-base-backups")
    assert proc.returncode == 1, "the deleting step waits for a confirmation"
    assert {p.name.split(".")[0] for p in wal_dir.iterdir()} == before
    assert len(base_backups_listed(setup.deck)) == 5

    proc, events = setup.deck.run_json("run", "prune-base-backups", "--yes")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    lines = [e["line"] for e in events if e["event"] == "output" and e["step"] == "plan"]
    assert "5 base backups: keep 2, delete 3." in lines, lines
    assert f"keep    {new_full['id']} full  full backup 1 of 1, parent of {new_inc['id']}" \
        in lines, lines
    assert f"keep    {new_inc['id']} incremental  incremental on {new_full['id']}, newest" \
        in lines, lines
    assert [line.split()[2] for line in lines if line.startswith("would delete")] == \
        [old[2]["id"], old[1]["id"], old[0]["id"]], lines

    assert {b["id"] for b in base_backups_listed(setup.deck)} == {new_full["id"],
                                                                   new_inc["id"]}
    assert {p.name for p in (setup.repo / "prod" / "base").iterdir()} == {
        new_full["id"], new_inc["id"]}
    after = {p.name.split(".")[0] for p in wal_dir.iterdir()}
    numbers = {name: Segment.parse(name, 1 << 20).number for name in before}
    assert after == {n for n in before if numbers[n] >= first_needed}, (before, after)
    assert after < before, "the old chain's WAL is gone"
    # what is left still restores to its end: the window starts at the kept full backup
    proc = setup.deck.run("inventory", "--json")
    [listed] = json.loads(proc.stdout)["clusters"]
    assert listed["pitr"]["window"]["start"] == new_full["stopped_at"], listed["pitr"]


def test_an_incremental_backup_on_postgresql_15_is_refused_saying_why(
        pg_cluster, tmp_path) -> None:
    if int(pg_cluster.scalar("show server_version_num")) >= 170000:
        pytest.fail("the distribution's PostgreSQL is meant to be 15 here")
    setup = archiving_setup(tmp_path / "state", recipients=[], gpg_home=None)
    try:
        pg_cluster.execute("create database app")
        point_config_at(setup, pg_cluster)
        proc = setup.deck.run("run", "base-backup", "--headless", "-p", "incremental=true")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "an incremental base backup needs PostgreSQL 17 or later" in out
        assert "Take a full base backup" in out
        assert "Traceback" not in out
        assert not list((setup.repo / "prod").glob("base/*"))
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)
