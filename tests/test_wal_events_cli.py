"""Finding the bad transaction over drdeck's own archive, as a user does it. Among steady
small transactions, a DROP TABLE, a TRUNCATE, a DELETE of 5,000 rows without WHERE and a
DROP DATABASE are found by `drdeck wal events` with their xid, commit time and names (from
the catalog map the base backup recorded); a table created after the last map is reported
unnamed, saying why. A restore to just before each brings back exactly what was committed
before it, and its check says what it took is back; a check of what is not there fails.
In the console, the inventory marks the events on the window, the list shows them, and
enter opens the restore with the event's xid filled in."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from tui.config import load_config
from tui.postgres.cluster import free_port
from tui.postgres.dsn import with_database
from tui.runbook.discovery import SHIPPED_DIR, load_directory

from app_support import live_app, wait_for
from pitr_support import (
    archiving_setup,
    in_one_transaction,
    point_config_at,
    stop_restored,
    wait_archived,
)

pytestmark = pytest.mark.slow

MARKS_BETWEEN = 5  # small transactions between the destructive ones


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    from harness.postgres import scratch_cluster

    setup = archiving_setup(tmp_path_factory.mktemp("state"), recipients=[], gpg_home=None)
    try:
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=setup.archive_command(),
                             track_commit_timestamp="on") as cluster:
            cluster.execute("create database app")
            cluster.execute("create database gone")
            cluster.execute("create table kept (id int)", dbname="gone")
            cluster.execute("insert into kept select generate_series(1, 70)", dbname="gone")
            cluster.execute(
                "create table doomed (id int primary key, note text); "
                "insert into doomed select g, 'row ' || g from generate_series(1, 300) g; "
                "create table emptied (id int primary key); "
                "insert into emptied select generate_series(1, 500); "
                "create table purged (id int primary key); "
                "insert into purged select generate_series(1, 5000); "
                "create table marks (n int primary key); "
                "create table ledger (id int primary key, amount int); "
                "insert into ledger select g, g from generate_series(1, 100) g", dbname="app")
            point_config_at(setup, cluster)
            wait_archived(cluster)
            proc = setup.deck.run("run", "base-backup", "--headless")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            marks = [0]

            def traffic() -> int:
                """Ordinary small transactions, never listed; how many marks are in."""
                for _ in range(MARKS_BETWEEN):
                    marks[0] += 1
                    cluster.execute(f"insert into marks values ({marks[0]}); update ledger "
                                    f"set amount = amount + 1 where id = {marks[0] % 100 + 1}",
                                    dbname="app")
                return marks[0]

            before = {}
            before["drop_table"] = traffic()
            dropped = in_one_transaction(cluster, "drop table doomed")
            before["truncate"] = traffic()
            truncated = in_one_transaction(cluster, "truncate emptied")
            before["delete"] = traffic()
            deleted = in_one_transaction(cluster, "delete from purged")
            cluster.execute("create table late (id int)", dbname="app")  # after the map
            late = in_one_transaction(cluster, "drop table late")
            before["drop_database"] = traffic()
            cluster.execute("drop database gone")  # no transaction block: its xid after
            gone = (cluster.scalar("select xid::text::bigint from pg_last_committed_xact()"),
                    cluster.scalar("select timestamp from pg_last_committed_xact()"))
            traffic()
            wait_archived(cluster)
            yield {"setup": setup, "cluster": cluster, "dropped": dropped,
                   "truncated": truncated, "deleted": deleted, "late": late, "gone": gone,
                   "marks before": before}
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)


def _events(world: dict) -> list[dict]:
    proc = world["setup"].deck.run("wal", "events", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_events_are_listed_newest_first_with_xid_time_and_names(world: dict) -> None:
    events = _events(world)
    assert [(e["kind"], e["xid"]) for e in events] == [
        ("drop_database", world["gone"][0]), ("drop_table", world["late"][0]),
        ("delete", world["deleted"][0]), ("truncate", world["truncated"][0]),
        ("drop_table", world["dropped"][0])], events  # newest first, nothing else
    gone, late, deleted, truncated, dropped = events
    for event, what in ((gone, "gone"), (deleted, "deleted"), (truncated, "truncated"),
                        (dropped, "dropped")):
        assert event["commit_time"] == world[what][1].isoformat(), event
        assert event["timeline"] == 1
    assert gone["database"] == "gone" and gone["expect_back"] == 'database "gone"'
    assert dropped["database"] == "app"
    assert dropped["relations"][0] == "public.doomed"
    assert "public.doomed_pkey" in dropped["relations"] and dropped["unnamed"] == []
    assert dropped["rows"] is None
    assert dropped["expect_back"] == 'database "app"; table "app"."public"."doomed"'
    assert truncated["relations"][0] == "public.emptied" and truncated["rows"] is None
    assert (deleted["relations"], deleted["rows"]) == (["public.purged"], 5000)
    assert deleted["expect_back"] == ('database "app"; table "app"."public"."purged"; '
                                      'rows >= 5000')
    assert late["relations"] == [] and late["unnamed"], late
    assert all("created after the last catalog map" in why for why in late["unnamed"])

    text = world["setup"].deck.run("wal", "events")
    assert text.returncode == 0, text.stderr
    assert f"xid {world['dropped'][0]}" in text.stdout and "DROP TABLE" in text.stdout
    assert "app: public.doomed" in text.stdout and "DROP DATABASE gone" in text.stdout
    # the way back from the newest, ready to paste
    # a DROP DATABASE removes its files before it commits: the restore stops before it began
    assert gone["stop_lsn"] and gone["stop_lsn"] < gone["commit_lsn"]
    assert [e["stop_lsn"] for e in events[1:]] == [None] * 4
    assert (f"drdeck run pitr-restore -p cluster=prod -p target={gone['stop_lsn']} "
            "-p target_kind=lsn -p inclusive=false") in text.stdout
    # a bound narrows the list to what committed inside it
    proc = world["setup"].deck.run("wal", "events", "--json", "--since",
                                   world["deleted"][1].isoformat(), "--until",
                                   world["late"][1].isoformat())
    assert [e["kind"] for e in json.loads(proc.stdout)] == ["drop_table", "delete"]


# what each event took, as a query of the restored server and what it must answer
TAKEN = {
    "dropped": ("app", "select count(*), max(id) from doomed", (300, 300)),
    "truncated": ("app", "select count(*) from emptied", (500,)),
    "deleted": ("app", "select count(*) from purged", (5000,)),
    "gone": ("gone", "select count(*) from kept", (70,)),
}
KIND = {"dropped": "drop_table", "truncated": "truncate", "deleted": "delete",
        "gone": "drop_database"}


@pytest.mark.parametrize("what", list(TAKEN))
def test_a_restore_to_just_before_an_event_brings_back_what_was_committed_before_it(
        world: dict, what: str) -> None:
    setup = world["setup"]
    event = next(e for e in _events(world) if e["xid"] == world[what][0])
    data_dir = setup.base / f"before-{what}-{free_port()}"
    target = ("target={stop_lsn}", "target_kind=lsn") if event["stop_lsn"] else (
        "target={xid}", "target_kind=xid")
    proc, run = setup.deck.run_json(
        "run", "pitr-restore", "-p", target[0].format(**event), "-p", target[1],
        "-p", "inclusive=false", "-p", f"expect_back={event['expect_back']}",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes")
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        checks = {e["name"]: (e["ok"], e["detail"]) for e in run if e["event"] == "check"}
        database, query, answer = TAKEN[what]
        assert checks[f"database {database} is back"][0] is True
        if what != "gone":
            table = event["relations"][0]
            assert checks[f"table {table} is back"] == (
                True, f"in app, {answer[0]:,} rows"), checks
        if what == "deleted":
            assert checks["the 5,000 rows the event took are back"][0] is True
        lines = [e["line"] for e in run if e["event"] == "output"]
        announced = next(line for line in lines if line.startswith("recovered and promoted"))
        dsn = announced.split("connect with ", 1)[1]
        with psycopg.connect(with_database(dsn, database)) as conn:
            assert conn.execute(query).fetchone() == answer
        with psycopg.connect(with_database(dsn, "app")) as conn:  # and nothing after it
            assert conn.execute("select count(*), max(n) from marks").fetchone() == (
                world["marks before"][KIND[what]],) * 2
    finally:
        stop_restored(data_dir)


def test_a_check_of_what_is_not_there_fails_saying_what_it_found(world: dict) -> None:
    setup = world["setup"]
    runbook = setup.base / "look.toml"
    runbook.write_text('[runbook]\nname = "look"\ntitle = "Look"\n\n'
                       '[params.dsn]\ntype = "dsn"\n\n[params.expect]\ntype = "expect_back"\n\n'
                       '[[steps]]\nid = "back"\ntitle = "Back?"\naction = "pitr.check_back"\n'
                       'with = { dsn = "${dsn}", expect = "${expect}" }\n')
    dsn = world["cluster"].dsn("app")  # the live server: purged is empty, doomed gone
    proc, run = setup.deck.run_json("run", str(runbook), "-p", f"dsn={dsn}",
                                    "-p", 'expect=table "app"."public"."purged"; rows >= 1')
    assert proc.returncode != 0
    checks = {e["name"]: (e["ok"], e["detail"]) for e in run if e["event"] == "check"}
    assert checks["the 1 rows the event took are back"] == (False, "the table holds 0 rows")
    proc, run = setup.deck.run_json("run", str(runbook), "-p", f"dsn={dsn}",
                                    "-p", 'expect=database "gone"; table "gone"."public"."kept"')
    assert proc.returncode != 0
    assert [(e["name"], e["ok"]) for e in run if e["event"] == "check"] == [
        ("database gone is back", False)]
    proc, _ = setup.deck.run_json("run", str(runbook), "-p", f"dsn={dsn}",
                                  "-p", 'expect=table "app"."public"')
    assert proc.returncode != 0 and "is not `database NAME`" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


async def test_the_console_marks_lists_and_restores_to_just_before(world: dict) -> None:
    from tui.app.screens.briefing import BriefingScreen
    from tui.app.screens.inventory import InventoryScreen
    from tui.app.screens.wal_events import WalEventsScreen

    config = load_config(world["setup"].config)
    app = live_app(config=config, runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen)
                       and app.screen.inventories, timeout=30)
        window = str(app.screen.query_one("#window-line").render())
        assert "e: find destructive transactions" in window and "╳" not in window
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, WalEventsScreen)
                       and app.screen.found is not None, timeout=60, what="the WAL scan")
        events = app.screen
        status = str(events.query_one("#events-status").render())
        assert "5 destructive transactions" in status
        assert [item.event.xid for item in events._shown] == [
            world[what][0] for what in ("gone", "late", "deleted", "truncated", "dropped")]

        await pilot.press("slash", *"doomed", "enter")  # the filter keeps one
        assert [item.event.xid for item in events._shown] == [world["dropped"][0]]
        detail = str(events.query_one("#event-detail-body").render())
        assert "DROP TABLE in app" in detail and "public.doomed_pkey" in detail
        assert f"xid        {world['dropped'][0]}" in detail

        await pilot.press("escape", "escape")  # the filter cleared, then back: the marks
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        window = str(app.screen.query_one("#window-line").render())
        assert window.count("╳") >= 1 and "5 destructive transactions" in window

        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, WalEventsScreen))
        await pilot.press("down", "down", "enter")  # the DELETE: restore to just before it
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        given = app.screen.given
        assert app.screen.runbook.name == "pitr-restore"
        assert (given["target"], given["target_kind"], given["inclusive"]) == (
            str(world["deleted"][0]), "xid", "false")
        assert given["expect_back"] == ('database "app"; table "app"."public"."purged"; '
                                        'rows >= 5000')
        assert given["cluster"] == "prod"
