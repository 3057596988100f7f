"""Stopping always works: quit or abort at a manual step, in a confirmation, after a failure."""

from __future__ import annotations

import pytest

from tui.app.screens.confirm import AskYesNo, ConfirmStep
from tui.app.screens.run import RunScreen

from app_support import app_runbook, live_app, wait_for

SIZE = (120, 36)


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


async def _until_asked(pilot, app, kind: str) -> RunScreen:
    screen = run_screen(app)
    if kind == "confirm":
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStep))
    else:
        await wait_for(pilot, lambda: screen._waiting_for(kind))
    return screen


CASES = [("manual", "manual", {}), ("confirm", "confirm", {"target_db": "orders_restored"}),
         ("failing", "failure", {})]


@pytest.mark.parametrize(("runbook", "kind", "params"), CASES, ids=[c[1] for c in CASES])
async def test_quitting_while_the_run_waits_for_a_person_ends_the_app(
        runbook: str, kind: str, params: dict) -> None:
    app = live_app(open_runbook=app_runbook(runbook), autostart=params, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        await _until_asked(pilot, app, kind)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None or not app.is_running,
                       timeout=5, what="the app to exit")
    result = app.last_result
    assert result is not None and result.status == "aborted"
    errors = [s.error or "" for s in result.steps]
    assert not any("internal error" in e for e in errors), errors


@pytest.mark.parametrize(("runbook", "kind", "params"), CASES[:1] + CASES[2:],
                         ids=["manual", "failure"])
async def test_one_abort_stops_a_waiting_run_and_says_so_plainly(
        runbook: str, kind: str, params: dict) -> None:
    app = live_app(open_runbook=app_runbook(runbook), autostart=params, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _until_asked(pilot, app, kind)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.state.finished is not None, timeout=5)
        assert screen.state.finished.status == "aborted"
        failed = [s for s in screen.state.steps.values() if s.status == "failed"]
        assert failed and all("internal error" not in (s.error or "") for s in failed)


async def test_escape_in_a_confirmation_asks_before_it_ends_the_run() -> None:
    app = live_app(open_runbook=app_runbook("confirm"),
                   autostart={"target_db": "orders_restored"}, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _until_asked(pilot, app, "confirm")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        await pilot.press("n")  # keep going: the question is asked again
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStep))
        assert screen.running
        await pilot.press(*"orders_restored", "enter")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"


async def test_a_finished_run_offers_the_way_on_and_not_an_abort() -> None:
    from tui.app.screens.home import HomeScreen
    from tui.app.screens.summary import RunSummary

    app = live_app(open_runbook=app_runbook("manual"), autostart={}, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _until_asked(pilot, app, "manual")
        titles = [c.title for c in app.get_system_commands(screen)]
        assert "Abort the run" in titles and "Home" not in titles, titles
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary))
        await pilot.press("escape")  # the summary closes onto the finished run
        await wait_for(pilot, lambda: app.screen is screen)
        titles = [c.title for c in app.get_system_commands(screen)]
        assert "Abort the run" not in titles
        assert {"Home", "Inventory", "Runbook: manual", "Runbook: confirm"} <= set(titles)
        await pilot.press("escape")  # esc on a finished run goes back
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_enter_confirms_a_question_that_needs_no_typing() -> None:
    from test_app_flows import flow

    app = live_app(open_runbook=flow("plain-confirm"), autostart={}, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _until_asked(pilot, app, "confirm")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.state.finished is not None)
        assert screen.state.finished.status == "succeeded"


async def test_the_palettes_quit_asks_like_ctrl_q_during_a_run() -> None:
    app = live_app(open_runbook=app_runbook("manual"), autostart={}, journal=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _until_asked(pilot, app, "manual")
        quit_command = next(c for c in app.get_system_commands(screen) if c.title == "Quit")
        quit_command.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        await pilot.press("n")
        await pilot.pause()
        assert screen.running, "no answer yet: the run goes on"


async def test_the_palette_does_not_throw_away_a_filled_in_form_unasked() -> None:
    from tui.app.screens.briefing import BriefingScreen

    app = live_app(open_runbook=app_runbook("restore-drill"), journal=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        briefing = app.screen
        await pilot.press(*"2026-11-27 14:29:00+00")
        home = next(c for c in app.get_system_commands(briefing) if c.title == "Home")
        home.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        await pilot.press("n")  # keep editing
        await wait_for(pilot, lambda: app.screen is briefing)
        assert "2026-11-27 14:29:00+00" in str(briefing.form.raw_values())
