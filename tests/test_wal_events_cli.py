"""`drdeck wal events` over drdeck's own archive: a DROP TABLE and a big DELETE among small
ordinary transactions are found with their xid, commit time and names (from the catalog
map the base backup recorded); a table created after the last map is reported unnamed,
saying why; and a restore to just before the DROP brings the table back, every row."""

from __future__ import annotations

import json
import shutil

import psycopg

from tui.postgres.cluster import free_port

from pitr_support import archiving_setup, point_config_at, stop_restored, wait_archived


def _in_one_transaction(cluster, statement: str) -> tuple[int, object]:
    """Run `statement` in a transaction of its own; its xid and commit time."""
    with psycopg.connect(cluster.dsn("app")) as conn:
        xid = int(conn.execute("select pg_current_xact_id()::text").fetchone()[0])
        conn.execute(statement)
        conn.commit()
        when = conn.execute("select pg_xact_commit_timestamp(%s::text::xid)",
                            (str(xid),)).fetchone()[0]
    return xid, when


def test_events_are_found_named_and_restored_to_just_before(tmp_path) -> None:
    from harness.postgres import scratch_cluster

    setup = archiving_setup(tmp_path / "state", recipients=[], gpg_home=None)
    try:
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=setup.archive_command(),
                             track_commit_timestamp="on") as cluster:
            cluster.execute("create database app")
            cluster.execute("create table doomed (id int primary key, note text); "
                            "insert into doomed select g, 'row ' || g "
                            "from generate_series(1, 300) g; "
                            "create table ledger (id int primary key, amount int); "
                            "insert into ledger select g, g from generate_series(1, 8000) g",
                            dbname="app")
            point_config_at(setup, cluster)
            wait_archived(cluster)
            proc = setup.deck.run("run", "base-backup", "--headless")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            for n in range(20):  # ordinary traffic: never listed
                cluster.execute(f"update ledger set amount = amount + 1 where id = {n + 1}",
                                dbname="app")
            cluster.execute("create table late (id int)", dbname="app")  # after the map
            dropped_xid, dropped_at = _in_one_transaction(cluster, "drop table doomed")
            deleted_xid, _ = _in_one_transaction(cluster, "delete from ledger where id > 3000")
            late_xid, _ = _in_one_transaction(cluster, "drop table late")
            cluster.execute("update ledger set amount = 0 where id = 1", dbname="app")
            wait_archived(cluster)

            proc = setup.deck.run("wal", "events", "--json")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            events = json.loads(proc.stdout)
            assert [(e["kind"], e["xid"]) for e in events] == [
                ("drop_table", late_xid), ("delete", deleted_xid),
                ("drop_table", dropped_xid)], events  # newest first, nothing else
            late, deleted, dropped = events
            assert dropped["database"] == "app" and dropped["timeline"] == 1
            assert dropped["relations"][0] == "public.doomed"
            assert "public.doomed_pkey" in dropped["relations"] and dropped["unnamed"] == []
            assert dropped["rows"] is None
            assert dropped["commit_time"] == dropped_at.isoformat(), dropped
            assert (deleted["relations"], deleted["rows"]) == (["public.ledger"], 5000)
            assert late["relations"] == [] and late["unnamed"], late
            assert all("created after the last catalog map" in why for why in late["unnamed"])

            text = setup.deck.run("wal", "events")
            assert text.returncode == 0, text.stderr
            assert f"xid {dropped_xid}" in text.stdout and "DROP TABLE" in text.stdout
            assert "app: public.doomed" in text.stdout

            data_dir = setup.base / f"before-drop-{free_port()}"
            proc, run = setup.deck.run_json(
                "run", "pitr-restore", "-p", f"target={dropped_xid}", "-p", "target_kind=xid",
                "-p", "inclusive=false", "-p", f"data_dir={data_dir}",
                "-p", f"port={free_port()}", "--yes")
            try:
                assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
                lines = [e["line"] for e in run if e["event"] == "output"]
                announced = next(line for line in lines
                                 if line.startswith("recovered and promoted"))
                with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
                    assert conn.execute("select count(*), max(id) from doomed").fetchone() \
                        == (300, 300)
                    assert conn.execute("select count(*) from ledger").fetchone() == (8000,)
            finally:
                stop_restored(data_dir)
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)
