"""Snapshots of the screens an operator meets. Update with `pytest --snapshot-update`."""

from __future__ import annotations

from tui.app.screens.run import RunScreen
from tui.app.screens.summary import RunSummary

from app_support import TERMINAL, app_runbook, frozen_app, settled, wait_for


def run_screen(pilot) -> RunScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, RunScreen))


def test_home(snap_compare) -> None:
    """Runbooks in a table, the selected one described, an invalid one marked."""
    assert snap_compare(frozen_app(), terminal_size=TERMINAL)


def test_briefing_with_a_form_error(snap_compare) -> None:
    """A timestamp without a time zone is refused next to its field; Start says why."""

    async def fill_badly(pilot) -> None:
        await pilot.pause()
        await pilot.press(*"2026-11-27 14:29")
        await pilot.press("ctrl+s")
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("restore-drill"))
    assert snap_compare(app, terminal_size=TERMINAL, run_before=fill_badly)


def test_run_in_progress(snap_compare) -> None:
    """A step running with progress; the one before it succeeded with its check."""

    async def until_progress(pilot) -> None:
        await wait_for(pilot, lambda: (run_screen(pilot).state.current == "copy"
                                       and run_screen(pilot).state.steps["copy"].progress))

    app = frozen_app(open_runbook=app_runbook("in-progress"), autostart={})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=until_progress)


def test_failed_step_with_its_choices(snap_compare) -> None:
    """The error, the last output, and retry / skip / abort."""

    async def until_failed(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot)._waiting_for("failure"))
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("failing"), autostart={})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=until_failed)


def test_typed_confirmation(snap_compare) -> None:
    """What will run, against what, and the value to type; a wrong value keeps it locked."""

    async def type_wrong(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot)._waiting_for("confirm"))
        await pilot.press(*"orders_")
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("confirm"), autostart={"target_db":
                                                                     "orders_restored"})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=type_wrong)


def test_manual_step(snap_compare) -> None:
    """The instructions, a clear done action, and the time spent waiting on the person."""

    async def until_manual(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot)._waiting_for("manual"))
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("manual"), autostart={})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=until_manual)


def test_finish_summary(snap_compare) -> None:
    """Result, total time, RTO against target, each step, checks and milestones."""

    async def until_finished(pilot) -> None:
        # the summary opens over the run screen once the run has finished; both drawn
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunSummary))
        # the screen behind the modal is drawn whole once more: on a busy machine its last
        # paint could come from before the log's scrollbars were laid out
        run_screen(pilot).refresh(layout=True)
        await pilot.wait_for_scheduled_animations()
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("finish"), autostart={})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=until_finished)


def test_help_on_the_run_screen(snap_compare) -> None:
    """The keys of the screen below, and what the glyphs mean."""

    async def open_help(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot)._waiting_for("manual"))
        await pilot.press("question_mark")
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("manual"), autostart={})
    assert snap_compare(app, terminal_size=TERMINAL, run_before=open_help)
