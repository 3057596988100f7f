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


async def _type_confirmation(pilot, app, value: str) -> None:
    from tui.app.screens.confirm import ConfirmStep

    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStep))
    assert app.screen.request.expected_input == value
    await pilot.press(*value, "enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmStep))


async def test_an_edited_value_is_confirmed_again_before_it_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    app = live_app(open_runbook=flow("edit-confirm"), autostart={"target_db": "staging_copy"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await _type_confirmation(pilot, app, "staging_copy")
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        await _edit(pilot, app, "target_db", "good_copy")
        # the typed confirmation names the new target: it is asked again, not carried over
        await _type_confirmation(pilot, app, "good_copy")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
    journal = open_journal(app.config)
    try:
        run = journal.run(screen.runner.run_id).run
    finally:
        journal.close()
    assert run.lock_key == "good_copy", "the run's lock followed its new target"


async def test_an_edit_onto_a_target_another_run_holds_is_not_taken(
        tmp_path, monkeypatch) -> None:
    import json
    import os

    from tui.journal.store import RunRow, now_iso

    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    app = live_app(open_runbook=flow("edit-confirm"), autostart={"target_db": "staging_copy"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await _type_confirmation(pilot, app, "staging_copy")
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        other = open_journal(app.config)
        try:  # a colleague's run, alive in this very process, works on good_copy
            other.insert_run(RunRow(
                id="0ther0run000", runbook="edit-confirm", runbook_sha256="", title="",
                scenario="other", mode="drill", operator="colleague@host", host=os.uname()[1],
                pid=os.getpid(), started_at=now_iso(), heartbeat_at=now_iso(),
                status="running", params_json=json.dumps({})))
            other.acquire_lock("good_copy", "0ther0run000")
        finally:
            other.close()
        await _edit(pilot, app, "target_db", "good_copy")
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        assert "the edit was not taken: another run works on the same target (good_copy)" \
            in " ".join(screen_text(app).split())
        assert screen.runner.params["target_db"] == "staging_copy"


async def test_a_resumed_run_edited_after_a_failure_runs_the_changed_step_again(
        pg_cluster, tmp_path, monkeypatch) -> None:
    from tui.journal.resumable import load_resumable

    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path))
    pg_cluster.execute("create table orders(id int); insert into orders values (1)")
    pg_cluster.execute("create table empty_orders(id int)")
    app = live_app(open_runbook=flow("edit-retry"), autostart={
        "dsn": pg_cluster.dsn(), "table": "empty_orders"})
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        run_id = screen.runner.run_id

    # as `drdeck resume RUN_ID` opens it: the run goes on as the app starts
    resumed = live_app(runbooks=[], resume=load_resumable(app.config, run_id, {}))
    async with resumed.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(isinstance(s, RunScreen)
                                          for s in resumed.screen_stack))
        screen = run_screen(resumed)
        await wait_for(pilot, lambda: screen._waiting_for("failure"))
        await _edit(pilot, resumed, "table", "orders")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"
        find = next(r for r in screen.runner.records if r.id == "find")
        assert find.attempts >= 1 and screen.runner.lookup("steps.find.output") == "orders", \
            "find ran again with the new table, not replayed from the journal"


async def test_search_finds_text_across_a_wrapped_line() -> None:
    from tui.app.widgets.output import OutputPanel

    app = live_app(open_runbook=flow("long-line"), autostart={}, journal=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("manual"))
        panel = screen.query_one(OutputPanel)
        await pilot.press("escape", "w")
        await pilot.pause()
        for needle in ("port=54329 dbname=shop user=postgres", "restored-server"):
            panel.find(needle)
            assert panel.border_subtitle.endswith("1 of 1  (n/N)"), (needle,
                                                                     panel.border_subtitle)
