"""Whole flows in the app, driven with Pilot, against a real throwaway cluster."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from tui.app.screens.briefing import BriefingScreen
from tui.app.screens.confirm import ConfirmStep
from tui.app.screens.home import HomeScreen
from tui.app.screens.run import RunScreen
from tui.app.screens.summary import RunSummary
from tui.app.widgets.output import OutputPanel
from tui.runbook.discovery import SHIPPED_DIR, load_directory
from tui.runbook.loader import load_runbook

from app_support import app_runbook, live_app, wait_for

FLOWS = Path(__file__).parent / "data" / "flows"
SIZE = (120, 36)


def flow(name: str):
    return load_runbook(FLOWS / f"{name}.toml")


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


def screen_text(app) -> str:
    """What the terminal shows now, as plain text (read back from the SVG screenshot)."""
    svg = app.export_screenshot()
    lines: dict[int, list[str]] = {}
    for match in re.finditer(r'<text [^>]*clip-path="url\(#terminal-\d+-line-(\d+)\)">(.*?)</text>',
                             svg):
        lines.setdefault(int(match[1]), []).append(html.unescape(match[2]))
    return "\n".join("".join(parts).replace("\xa0", " ") for _, parts in sorted(lines.items()))


async def test_a_person_runs_health_check_from_home(make_pg_cluster) -> None:
    cluster = make_pg_cluster(archive=True, wal_segsize_mb=1, archive_timeout="60s")
    cluster.execute("create table probe(x int); insert into probe values (1)")
    cluster.execute("select pg_switch_wal()")
    deadline = time.monotonic() + 20
    while cluster.scalar("select archived_count from pg_stat_archiver") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    app = live_app(runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("slash", *"health", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        await pilot.press("ctrl+s")  # the DSN is required: refused, with the reason shown
        await pilot.pause()
        assert isinstance(app.screen, BriefingScreen)
        assert "fix 1 field to start" in str(app.screen.query_one("#form-status").render())
        await pilot.press(*cluster.dsn(), "ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary), what="the summary")
        state = run_screen(app).state
        assert state.finished.status == "succeeded"
        assert all(c.ok for c in state.all_checks) and len(state.all_checks) == 9
        assert "SUCCEEDED" in screen_text(app)
        await pilot.press("escape")  # back to the log, then home
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_a_failed_check_is_fixed_and_retried(pg_cluster) -> None:
    app = live_app(open_runbook=flow("orders"), autostart={"dsn": pg_cluster.dsn()})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"), what="the failure")
        assert 'relation "orders" does not exist' in screen._request.request.error
        text = screen_text(app)
        assert "Retry (r)" in text and "Skip" in text and "Abort run (a)" in text

        pg_cluster.execute("create table orders(id int); insert into orders values (1)")
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
        assert screen.state.steps["orders"].attempt == 2
        assert [c.ok for c in screen.state.steps["orders"].checks] == [True]


async def test_a_failed_step_is_skipped_with_a_reason(pg_cluster) -> None:
    app = live_app(open_runbook=flow("orders"), autostart={"dsn": pg_cluster.dsn()})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("enter")  # an empty reason is not accepted
        await pilot.pause()
        assert "a reason is required" in screen_text(app)
        await pilot.press(*"orders live on the replica", "enter")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        orders = screen.state.steps["orders"]
        assert (orders.status, orders.reason) == ("skipped", "orders live on the replica")
        assert screen.state.steps["after"].status == "succeeded"
        assert screen.state.finished.status == "succeeded"


async def test_abort_stops_the_running_query(pg_cluster) -> None:
    app = live_app(open_runbook=flow("slow"), autostart={"dsn": pg_cluster.dsn()})

    def sleeping() -> int:
        return pg_cluster.scalar(
            "select count(*) from pg_stat_activity "
            "where query like '%drdeck-slow-step%' and pid <> pg_backend_pid()")

    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen.state.current == "long" and sleeping() == 1)
        await pilot.press("a")
        await pilot.pause()
        assert "Abort this run?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "aborted"
        assert screen.state.steps["long"].error == "aborted by the operator"
        assert screen.state.steps["never"].status == "pending"
        await wait_for(pilot, lambda: sleeping() == 0, what="the server to cancel the query")


async def test_typed_confirmation_is_refused_then_accepted(pg_cluster) -> None:
    def exists() -> bool:
        return bool(pg_cluster.scalar(
            "select count(*) from pg_database where datname = 'orders_copy'"))

    app = live_app(open_runbook=flow("create-db"), autostart={
        "dsn": pg_cluster.dsn(), "target_db": "orders_copy"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStep))
        assert "Creates the database orders_copy" in screen_text(app)
        await pilot.press(*"orders_cop", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStep), "a wrong value must not confirm"
        assert app.screen.query_one("#confirm").disabled
        assert not exists()
        await pilot.press("y", "enter")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
        assert exists()


async def test_declining_a_confirmation_stops_the_run(pg_cluster) -> None:
    app = live_app(open_runbook=flow("create-db"), autostart={
        "dsn": pg_cluster.dsn(), "target_db": "orders_copy"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStep))
        await pilot.press("escape")
        await wait_for(pilot, lambda: "Stop the run here?" in screen_text(app))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "aborted"
        assert pg_cluster.scalar(
            "select count(*) from pg_database where datname = 'orders_copy'") == 0


async def test_quitting_during_a_run_asks_first(pg_cluster) -> None:
    app = live_app(open_runbook=flow("slow"), autostart={"dsn": pg_cluster.dsn()})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen.state.current == "long")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert "A run is in progress. Abort it and quit?" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert screen.running
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.finished is not None)
    assert app.last_result is not None and app.last_result.status == "aborted"


async def test_the_log_can_be_searched_and_unfollowed() -> None:
    app = live_app(open_runbook=app_runbook("manual"), autostart={})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("manual"))
        panel = screen.query_one(OutputPanel)
        await pilot.press("slash", *"1204332", "enter")
        await pilot.pause()
        assert panel.border_subtitle == "/1204332: 1 of 1  (n/N)"
        assert not panel.following, "a search result stays put"
        await pilot.press("escape", "f")
        assert panel.following
        await pilot.press("slash", *"no such text", "enter")
        await pilot.pause()
        assert panel.border_subtitle == "/no such text: no match"
        await pilot.press("escape", "enter")  # enter: the manual step is done
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
