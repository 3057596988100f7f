"""The parameter form: a value a run would refuse is refused here, next to its field, and
nothing is recorded until every field is right; typing in it is safe."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.app.screens.briefing import BriefingScreen
from tui.app.screens.confirm import AskYesNo
from tui.app.screens.help import HelpScreen
from tui.app.screens.home import HomeScreen
from tui.app.widgets.param_form import ParamField
from tui.config import load_config_text
from tui.journal.store import open_journal
from tui.runbook.discovery import SHIPPED_DIR, load_directory
from tui.runbook.loader import load_runbook
from tui.storage import LocalStore

from app_support import TERMINAL, live_app, wait_for
from repo_support import fake_base_backup

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def briefing_app(runbook: str, config=None, **given: str):
    return live_app(config=config, runbooks=load_directory(SHIPPED_DIR),
                    open_runbook=load_runbook(SHIPPED_DIR / f"{runbook}.toml"), params=given)


def field(app, name: str) -> ParamField:
    return next(f for f in app.screen.query(ParamField) if f.param.name == name)


def shown(app, selector: str) -> str:
    widget = app.screen.query_one(selector)
    return str(widget.render()) if widget.display else ""


def error_of(app, name: str) -> str:
    return shown(app, f"#error-{name}") if field(app, name).query_one(
        f"#error-{name}").has_class("visible") else ""


def status(app) -> str:
    return shown(app, "#form-status")


async def type_into(pilot, name: str, text: str) -> None:
    """Replace what a field holds with `text`, as a person would (select it, type)."""
    widget = field(pilot.app, name).query_one(f"#param-{name}")
    widget.focus()
    widget.value = ""
    await pilot.press(*text)
    await pilot.pause()


def recorded_runs(app) -> list:
    journal = open_journal(app.config)
    try:
        return journal.runs()
    finally:
        journal.close()


async def start_is_refused(pilot) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()
    assert isinstance(pilot.app.screen, BriefingScreen), "a run was started"
    assert recorded_runs(pilot.app) == [], "a refused form must leave no run in the journal"


async def test_a_bad_port_or_one_in_use_is_refused_and_no_run_is_created(tmp_path) -> None:
    app = briefing_app("pitr-restore", target="latest", data_dir=str(tmp_path / "new"))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await type_into(pilot, "port", "99999")
        assert error_of(app, "port") == "✗ 99999 is not a port: ports run from 1 to 65535"
        await start_is_refused(pilot)
        assert status(app) == "✗ fix 1 field to start"

        with socket.create_server(("127.0.0.1", 0)) as squatter:
            taken = squatter.getsockname()[1]
            await type_into(pilot, "port", str(taken))
            assert error_of(app, "port").startswith(f"✗ port {taken} is in use")
            await start_is_refused(pilot)


async def test_a_data_directory_that_holds_files_is_refused(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    for name in ("PG_VERSION", "base", "global"):
        (occupied / name).write_text("")
    app = briefing_app("pitr-restore", target="latest", port="99999")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await type_into(pilot, "data_dir", str(occupied))
        assert error_of(app, "data_dir") == f"✗ {occupied} is not empty (it holds 3 entries)"
        await type_into(pilot, "data_dir", "restored")
        assert "is not an absolute path" in error_of(app, "data_dir")
        await type_into(pilot, "data_dir", str(occupied / "new"))
        assert error_of(app, "data_dir") == ""
        await start_is_refused(pilot)  # the port is still wrong


async def test_a_time_that_is_no_time_is_refused_not_taken_for_a_restore_point() -> None:
    app = briefing_app("pitr-restore")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await type_into(pilot, "target", "2026-12-02 14:61:00+00")
        assert "is not a timestamp" in error_of(app, "target")
        assert "minute must be in 0..59" in error_of(app, "target")
        await type_into(pilot, "target", "before_the_migration")
        assert error_of(app, "target") == ""  # a restore point's name
        await start_is_refused(pilot)


async def test_the_summary_line_follows_the_fields_as_they_are_fixed(tmp_path: Path) -> None:
    app = briefing_app("pitr-restore")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await start_is_refused(pilot)
        assert status(app) == "✗ fix 3 fields to start"
        await type_into(pilot, "target", "latest")
        assert status(app) == "✗ fix 2 fields to start"
        await type_into(pilot, "data_dir", str(tmp_path / "new"))
        assert status(app) == "✗ fix 1 field to start"
        await type_into(pilot, "port", "99999")
        assert status(app) == "✗ fix 1 field to start"
        with socket.socket() as probe:  # a port nobody listens on, as the kernel gives it
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        await type_into(pilot, "port", str(free))
        assert status(app) == "✓ every field is right: ctrl+s starts the run"
        await type_into(pilot, "target", "2026-12-02 14:61")
        assert status(app) == "✗ fix 1 field to start"


async def test_typing_a_question_mark_keeps_the_value_and_f1_opens_help() -> None:
    app = briefing_app("pitr-restore", target="latest")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        target = field(app, "target").query_one("#param-target")
        assert app.focused is target  # the first required field
        assert target.selection.is_empty
        await pilot.press("question_mark")
        assert target.value == "latest?"  # added at the end, not put in its place
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        field(app, "inclusive").focus_input()  # a switch takes no text: ? is help
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_esc_after_edits_asks_and_keep_editing_keeps_the_values() -> None:
    app = briefing_app("pitr-restore", target="latest")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await pilot.press("end", "space")  # an edit
        await type_into(pilot, "port", "5433")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AskYesNo))
        assert "Throw away your changes" in app.screen.question
        await pilot.press("n")  # keep editing
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        assert field(app, "port").raw == "5433"
        assert field(app, "target").raw == "latest "
        await pilot.press("escape", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_esc_without_edits_goes_back_at_once() -> None:
    app = briefing_app("pitr-restore", target="latest")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_the_replace_switch_says_it_drops_the_database() -> None:
    app = briefing_app("snapshot-restore")
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.pause()
        replace = field(app, "replace")
        assert shown(app, "#state-replace") == "OFF"
        assert not replace.query_one("#warning-replace").has_class("visible")
        replace.focus_input()
        await pilot.press("space")
        await pilot.pause()
        assert shown(app, "#state-replace") == "ON"
        warning = replace.query_one("#warning-replace")
        assert warning.has_class("visible") and warning.display
        assert "the restore DROPS the existing database" in str(warning.render())
        await pilot.press("space")
        await pilot.pause()
        assert shown(app, "#state-replace") == "OFF" and not warning.has_class("visible")


@pytest.fixture
def archive_config(tmp_path: Path):
    repo = tmp_path / "repo"
    fake_base_backup(LocalStore(repo), "prod", NOW - timedelta(days=2), segments=4)
    return load_config_text(f"""
[repositories.nearby]
type = "local"
path = "{repo}"

[clusters.prod]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app"]
""")


async def test_the_target_shows_the_window_and_a_time_before_it_is_refused(
        archive_config) -> None:
    app = briefing_app("pitr-restore", config=archive_config)
    async with app.run_test(size=TERMINAL) as pilot:
        await wait_for(pilot, lambda: "recoverable" in shown(app, "#note-target"),
                       what="the recoverable window")
        start = (NOW - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert shown(app, "#note-target").startswith(f"recoverable (prod): {start} to ")
        too_early = (NOW - timedelta(days=3)).isoformat(sep=" ")
        await type_into(pilot, "target", too_early)
        assert f"the earliest point you can reach is {start}" in error_of(app, "target")
        await start_is_refused(pilot)
        # the fake WAL holds no commit: the window ends where it starts
        too_late = (NOW - timedelta(days=1)).isoformat(sep=" ")
        await type_into(pilot, "target", too_late)
        assert f"the newest point you can reach is {start}" in error_of(app, "target")
        await type_into(pilot, "target", "latest")
        assert error_of(app, "target") == ""
