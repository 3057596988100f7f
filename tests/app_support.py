"""Build the app for tests: fixed clocks, fixed run ids, no cursor blink, test runbooks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tui.app.app import DrdeckApp
from tui.runbook.discovery import load_directory
from tui.runbook.loader import load_runbook

APP_RUNBOOKS = Path(__file__).parent / "data" / "app"
TERMINAL = (120, 36)
FROZEN_MONOTONIC = 1000.0


def app_runbook(name: str):
    return load_runbook(APP_RUNBOOKS / f"{name}.toml")


def frozen_app(**kwargs: Any) -> DrdeckApp:
    """Everything a snapshot shows is the same on every run."""
    kwargs.setdefault("runbooks", load_directory(APP_RUNBOOKS))
    return DrdeckApp(
        clock=lambda: FROZEN_MONOTONIC,
        wall_clock=lambda: "14:41:07",
        run_id="7f3a2c9e01bd",
        cursor_blink=False,
        **kwargs,
    )


def live_app(**kwargs: Any) -> DrdeckApp:
    """A real-clock app for flows (times are not asserted)."""
    kwargs.setdefault("runbooks", load_directory(APP_RUNBOOKS))
    return DrdeckApp(cursor_blink=False, **kwargs)


async def wait_for(pilot, predicate, timeout: float = 20.0, what: str = "the app") -> None:
    """Let the app work until `predicate()` holds (the engine runs real processes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await pilot.pause()


async def settled(pilot, quiet_s: float = 0.3, timeout: float = 20.0) -> None:
    """Wait until the screen stops changing: two pictures `quiet_s` apart are the same.

    A busy machine can leave a repaint (a footer recomposing for a new screen) pending
    past any fixed pause; a snapshot must not catch the screen halfway. A table sizes its
    columns to its rows when idle, and a tab's underline slides: both are waited for first,
    as a quiet screen can still have them pending."""
    from textual.widgets import DataTable

    deadline = time.monotonic() + timeout
    while any(table._require_update_dimensions for table in pilot.app.screen.query(DataTable)):
        if time.monotonic() > deadline:
            raise AssertionError("a table never sized its columns")
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()
    before = pilot.app.export_screenshot()
    while True:
        await pilot.pause(quiet_s)
        now = pilot.app.export_screenshot()
        if now == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the screen kept changing")
        before = now
