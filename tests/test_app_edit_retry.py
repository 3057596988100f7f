"""A failure you can fix is fixable: edit the parameters and retry, without retyping the rest."""

from __future__ import annotations

from test_app_flows import flow, screen_text

from tui.app.screens.edit_params import EditParams
from tui.app.screens.run import RunScreen
from tui.journal.store import open_journal

from app_support import live_app, wait_for

SIZE = (120, 36)


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


async def _edit(pilot, app, field: str, value: str) -> None:
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, EditParams))
    box = app.screen.query_one(f"#param-{field}")
    box.focus()
    box.value = value
    await pilot.pause()
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: not isinstance(app.screen, EditParams))


async def test_a_mistyped_check_is_edited_and_only_its_step_runs_again(
        pg_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    pg_cluster.execute("create table orders(id int); insert into orders values (1), (2)")
    app = live_app(open_runbook=flow("edit-retry"), autostart={
        "dsn": pg_cluster.dsn(), "table": "orders", "check_query": "SELEC count(*) from orders",
        # in use, as a restored server's port is by the time its check fails: not refused
        # while unchanged
        "listen_port": pg_cluster.port})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        shown = screen_text(app)
        assert "Edit & retry (e)" in shown and "Skip… (s)" in shown
        assert screen.state.steps["prove"].status == "failed"  # ✗, not "waiting for you"
        await _edit(pilot, app, "check_query", "select count(*) from orders")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
        records = {r.id: r for r in screen.runner.records}
        assert records["find"].attempts == records["count"].attempts == 1, \
            "the steps the change does not touch ran once"
        assert records["prove"].attempts == 2
    journal = open_journal(app.config)
    try:
        detail = journal.run(screen.runner.run_id)
    finally:
        journal.close()
    edits = [c for c in detail.checks if c["name"] == "parameters edited"]
    assert len(edits) == 1 and "check_query: SELEC count(*) from orders → select count(*)" \
        in edits[0]["detail"], edits
    assert '"check_query": "select count(*) from orders"' in detail.run.params_json


async def test_a_wrong_value_that_an_earlier_step_used_runs_that_step_again(
        pg_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    pg_cluster.execute("create table orders(id int); insert into orders values (1)")
    pg_cluster.execute("create table empty_orders(id int)")
    app = live_app(open_runbook=flow("edit-retry"), autostart={
        "dsn": pg_cluster.dsn(), "table": "empty_orders"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        assert screen.state.steps["count"].status == "failed"
        await _edit(pilot, app, "table", "orders")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
        records = {r.id: r for r in screen.runner.records}
        assert records["find"].attempts == 2, "find used the table: it ran again"
        assert screen.runner.params["dsn"] == pg_cluster.dsn(), "the rest is kept"


async def test_skip_is_not_offered_where_a_later_step_needs_the_output(
        pg_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    pg_cluster.execute("create table orders(id int); insert into orders values (1)")
    app = live_app(open_runbook=flow("edit-retry"), autostart={
        "dsn": pg_cluster.dsn(), "table": "ordres"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        shown = screen_text(app)
        assert "Skip… (s)" not in shown
        assert "Skip is not offered: it cannot be skipped: “Count its rows” uses what it" \
            in " ".join(shown.split())
        await pilot.press("s")
        await pilot.pause()
        assert screen._waiting_for("failure"), "s does nothing where skip is refused"
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditParams))
        assert app.screen.query_one("#param-dsn").disabled, "the run's target stays"
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditParams))
        assert screen._waiting_for("failure"), "cancel leaves the question open"
        await _edit(pilot, app, "table", "orders")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"


async def test_after_an_abort_the_form_comes_back_with_the_values_typed(
        pg_cluster, tmp_path, monkeypatch) -> None:
    from tui.app.screens.briefing import BriefingScreen
    from tui.app.screens.summary import RunSummary

    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    runbook = flow("edit-retry")
    app = live_app(open_runbook=runbook, autostart={"dsn": pg_cluster.dsn(), "table": "ordres"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary))
        assert "e: edit the parameters and run again" in screen_text(app)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))

        def field(name: str) -> str:
            return app.screen.query_one(f"#param-{name}").value

        assert (field("dsn"), field("table")) == (pg_cluster.dsn(), "ordres")
        app.pop_screen()
        await pilot.pause()
        app.open_briefing(runbook)  # as Home does when the runbook is opened again
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        assert (field("dsn"), field("table")) == (pg_cluster.dsn(), "ordres")


async def test_a_long_output_line_wraps_on_w_and_its_connection_string_copies_on_c() -> None:
    dsn = ("host=/tmp/drdeck-demo-4f7a1c2e9b/sockets/restored-server port=54329 dbname=shop "
           "user=postgres")
    app = live_app(open_runbook=flow("long-line"), autostart={}, journal=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("manual"))
        await pilot.press("escape")  # out of any field: the keys go to the screen
        assert "user=postgres" not in screen_text(app), "one line each: cut at the edge"
        await pilot.press("w")
        await pilot.pause()
        shown = screen_text(app)
        assert "user=postgres" in shown and "wrapped" in shown
        assert "c copy connection" in " ".join(shown.split())
        await pilot.press("c")
        await pilot.pause()
        assert app.clipboard == dsn
