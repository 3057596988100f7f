"""Finding the bad transaction over drdeck's own archive, as a user does it: a DROP TABLE
and a big DELETE among small ordinary transactions are found by `drdeck wal events` with
their xid, commit time and names (from the catalog map the base backup recorded); a table
created after the last map is reported unnamed, saying why. A restore to just before the
DROP brings the table back, every row, and its check says so; a check of what is not
there fails. In the console, the inventory marks the events on the window, the list
shows them, and enter opens the restore with the event's xid filled in."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from tui.config import load_config
from tui.postgres.cluster import free_port
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


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    from harness.postgres import scratch_cluster

    setup = archiving_setup(tmp_path_factory.mktemp("state"), recipients=[], gpg_home=None)
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
            dropped = in_one_transaction(cluster, "drop table doomed")
            deleted = in_one_transaction(cluster, "delete from ledger where id > 3000")
            late = in_one_transaction(cluster, "drop table late")
            cluster.execute("update ledger set amount = 0 where id = 1", dbname="app")
            wait_archived(cluster)
            yield {"setup": setup, "cluster": cluster, "dropped": dropped,
                   "deleted": deleted, "late": late}
    finally:
        shutil.rmtree(setup.base, ignore_errors=True)


def _events(world: dict) -> list[dict]:
    proc = world["setup"].deck.run("wal", "events", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_events_are_listed_newest_first_with_xid_time_and_names(world: dict) -> None:
    (dropped_xid, dropped_at), (deleted_xid, _), (late_xid, _) = (
        world["dropped"], world["deleted"], world["late"])
    events = _events(world)
    assert [(e["kind"], e["xid"]) for e in events] == [
        ("drop_table", late_xid), ("delete", deleted_xid),
        ("drop_table", dropped_xid)], events  # newest first, nothing else
    late, deleted, dropped = events
    assert dropped["database"] == "app" and dropped["timeline"] == 1
    assert dropped["relations"][0] == "public.doomed"
    assert "public.doomed_pkey" in dropped["relations"] and dropped["unnamed"] == []
    assert dropped["rows"] is None
    assert dropped["commit_time"] == dropped_at.isoformat(), dropped
    assert dropped["expect_back"] == 'database "app"; table "app"."public"."doomed"'
    assert (deleted["relations"], deleted["rows"]) == (["public.ledger"], 5000)
    assert deleted["expect_back"] == ('database "app"; table "app"."public"."ledger"; '
                                      'rows >= 5000')
    assert late["relations"] == [] and late["unnamed"], late
    assert all("created after the last catalog map" in why for why in late["unnamed"])

    text = world["setup"].deck.run("wal", "events")
    assert text.returncode == 0, text.stderr
    assert f"xid {dropped_xid}" in text.stdout and "DROP TABLE" in text.stdout
    assert "app: public.doomed" in text.stdout
    # the way back from the newest, ready to paste
    assert (f"drdeck run pitr-restore -p cluster=prod -p target={late_xid} "
            "-p target_kind=xid -p inclusive=false") in text.stdout


def test_a_restore_to_just_before_the_drop_brings_the_table_back_and_checks_it(
        world: dict) -> None:
    setup = world["setup"]
    dropped = next(e for e in _events(world) if e["xid"] == world["dropped"][0])
    data_dir = setup.base / f"before-drop-{free_port()}"
    proc, run = setup.deck.run_json(
        "run", "pitr-restore", "-p", f"target={dropped['xid']}", "-p", "target_kind=xid",
        "-p", "inclusive=false", "-p", f"expect_back={dropped['expect_back']}",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "--yes")
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        checks = {e["name"]: (e["ok"], e["detail"]) for e in run if e["event"] == "check"}
        assert checks["database app is back"][0] is True
        assert checks["table public.doomed is back"] == (True, "in app, 300 rows")
        lines = [e["line"] for e in run if e["event"] == "output"]
        announced = next(line for line in lines if line.startswith("recovered and promoted"))
        dsn = announced.split("connect with ", 1)[1]
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select count(*), max(id) from doomed").fetchone() == (300, 300)
            assert conn.execute("select count(*) from ledger").fetchone() == (8000,)

        # what is not there fails the check, and says what it found
        runbook = setup.base / "look.toml"
        runbook.write_text('[runbook]\nname = "look"\ntitle = "Look"\n\n'
                           '[params.dsn]\ntype = "dsn"\n\n[params.expect]\ntype = "expect_back"\n\n'
                           '[[steps]]\nid = "back"\ntitle = "Back?"\naction = "pitr.check_back"\n'
                           'with = { dsn = "${dsn}", expect = "${expect}" }\n')
        proc, run = setup.deck.run_json(
            "run", str(runbook), "-p", f"dsn={dsn}",
            "-p", 'expect=table "app"."public"."doomed"; rows >= 301')
        assert proc.returncode != 0
        checks = {e["name"]: (e["ok"], e["detail"]) for e in run if e["event"] == "check"}
        assert checks["the 301 rows the event took are back"] == (False, "the table holds "
                                                                  "300 rows")
        proc, run = setup.deck.run_json("run", str(runbook), "-p", f"dsn={dsn}",
                                        "-p", 'expect=table "app"."public"."never"')
        assert proc.returncode != 0
        assert [(e["name"], e["ok"]) for e in run if e["event"] == "check"] == [
            ("table public.never is back", False)]
    finally:
        stop_restored(data_dir)


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
        assert "3 destructive transactions" in status
        assert [item.event.xid for item in events._shown] == [
            world["late"][0], world["deleted"][0], world["dropped"][0]]

        await pilot.press("slash", *"doomed", "enter")  # the filter keeps one
        assert [item.event.xid for item in events._shown] == [world["dropped"][0]]
        detail = str(events.query_one("#event-detail-body").render())
        assert "DROP TABLE in app" in detail and "public.doomed_pkey" in detail
        assert f"xid        {world['dropped'][0]}" in detail

        await pilot.press("escape", "escape")  # the filter cleared, then back: the marks
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        window = str(app.screen.query_one("#window-line").render())
        assert window.count("╳") >= 1 and "3 destructive transactions" in window

        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, WalEventsScreen))
        await pilot.press("down", "enter")  # the DELETE: restore to just before it
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        given = app.screen.given
        assert app.screen.runbook.name == "pitr-restore"
        assert (given["target"], given["target_kind"], given["inclusive"]) == (
            str(world["deleted"][0]), "xid", "false")
        assert given["expect_back"] == ('database "app"; table "app"."public"."ledger"; '
                                        'rows >= 5000')
        assert given["cluster"] == "prod"
