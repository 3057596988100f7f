"""An 80x24 window (over SSH, at 3 a.m.) is enough: what each screen must show there.

The pictures are the screens as they are drawn; the pilot tests read the screen back as
text, cell by cell, and look for what an operator needs to see whole."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from test_app_history import NOW, SELECTED, fill_journal, open_history, showing

from tui.app.screens.briefing import BriefingScreen
from tui.app.screens.history import HistoryScreen
from tui.app.screens.home import HomeScreen
from tui.app.screens.inventory import InventoryScreen
from tui.app.screens.run import RunScreen
from tui.config import load_config_text
from tui.runbook.discovery import SHIPPED_DIR, load_directory
from tui.runbook.loader import load_runbook
from tui.storage import LocalStore

from app_support import APP_RUNBOOKS, app_runbook, frozen_app, live_app, settled, wait_for
from repo_support import fake_snapshot

SMALL = (80, 24)
LARGE = (140, 42)
PREFLIGHT = Path(__file__).parent / "data" / "small" / "preflight.toml"
# the error of PREFLIGHT's failed step: two checks with long names
PREFLIGHT_ERROR = ("check failed: the snapshot and the target server run the same "
                   "PostgreSQL major version, the target database does not exist yet, or "
                   "replace is on")


def screen_lines(app) -> list[str]:
    """The terminal's rows as text, one character per cell (what a person reads)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()[:height]


def text_in(app, widget) -> str:
    """What `widget` shows inside its border now (clipped as the terminal clips it), its
    rows joined by spaces."""
    region = app.screen.find_widget(widget).visible_region.intersection(
        widget.content_region)
    rows = screen_lines(app)[region.y:region.bottom]
    return " ".join(" ".join(row[region.x:region.right].split()) for row in rows)


def whole_on_screen(app, widget) -> bool:
    """Drawn, and not cut by the terminal's edge or by a panel too small for it."""
    if not widget.display or not widget.is_mounted:
        return False
    geometry = app.screen.find_widget(widget)
    return geometry.region.area > 0 and geometry.visible_region == geometry.region


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


def inventory_config(tmp_path: Path):
    """One cluster with a few snapshots in a local repository."""
    repo = tmp_path / "repo"
    store = LocalStore(repo)
    for days, verified in ((0, ("full", True)), (1, ("list", True)), (2, None)):
        fake_snapshot(store, "prod", "app", NOW - timedelta(days=days, hours=12),
                      verified=verified)
    fake_snapshot(store, "prod", "billing", NOW - timedelta(days=1, hours=1),
                  encrypted=False, tables={"public.invoices": 5_120})
    return load_config_text(f"""
[repositories.nearby]
type = "local"
path = "{repo}"

[clusters.prod]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app", "billing"]
rpo = "1h"
""")


def inventory(pilot) -> InventoryScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, InventoryScreen))


# --- the run screen ---------------------------------------------------------------------


async def test_a_failure_shows_its_whole_error_and_every_choice_at_80x24() -> None:
    for size in (SMALL, LARGE):
        app = live_app(open_runbook=load_runbook(PREFLIGHT),
                       autostart={"target_db": "shop_restored"})
        async with app.run_test(size=size) as pilot:
            screen = run_screen(app)
            await wait_for(pilot, lambda s=screen: s._waiting_for("failure"),
                           what="the failure")
            await settled(pilot)
            panel = screen.query_one("#failure")
            shown = text_in(app, panel)
            assert PREFLIGHT_ERROR in shown, shown
            assert "✗ Pre-flight: snapshot and target fit together failed" in shown
            for label in ("Retry (r)", "Edit & retry (e)", "Skip… (s)", "Abort run (a)"):
                button = next(b for b in panel.query("Button") if str(b.label) == label)
                assert whole_on_screen(app, button), (size, label)
                assert label in shown
            footer = screen_lines(app)[-1].rstrip()  # its last key whole
            assert footer.endswith("? help" if size == SMALL else "^p palette"), footer


async def test_a_manual_step_shows_its_instructions_and_buttons_at_80x24() -> None:
    app = live_app(open_runbook=app_runbook("manual"), autostart={})
    async with app.run_test(size=SMALL) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen._waiting_for("manual"), what="the manual step")
        await settled(pilot)
        panel = screen.query_one("#manual")
        shown = text_in(app, panel)
        assert "◐ Point the application at the new database" in shown
        assert "Watch the error rate for five minutes." in shown
        for button in panel.query("Button"):
            assert whole_on_screen(app, button), button.label
            assert str(button.label) in shown
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.running, what="the end of the run")


# --- Home, the inventory, History -------------------------------------------------------


async def test_home_lists_every_runbook_with_its_last_run_and_next_drill_at_80x24() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=SMALL) as pilot:
        home = app.screen
        assert isinstance(home, HomeScreen)
        await wait_for(pilot, lambda: home.journal_read is not None)
        await settled(pilot)
        table = home.query_one("#home-table")
        shown = screen_lines(app)
        header = next(line for line in shown if "Last run" in line)
        assert "Runbook" in header and "Next drill" in header
        runbooks = sorted(path.stem for path in APP_RUNBOOKS.glob("*.toml"))
        assert table.row_count == len(runbooks) == 7
        text = text_in(app, table)
        for found in home.found:
            title = found.runbook.title if found.runbook else found.path.name
            assert title[:20] in text, title
        restore = next(line for line in shown if "Restore the orders" in line)
        assert "2026-11-20 ✗" in restore and "OVERDUE" in restore
        assert whole_on_screen(app, table)


async def test_j_k_g_and_G_move_in_homes_table() -> None:
    app = live_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#home-table")
        last = table.row_count - 1
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == last
        await pilot.press("g")
        assert table.cursor_row == 0
        # the description follows the cursor, as with the arrow keys
        await pilot.press("j")
        await pilot.pause()
        assert "Replace a database" in text_in(app, app.screen.query_one("#home-preview"))


async def test_j_k_g_and_G_move_in_history(tmp_path: Path) -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_history(pilot)
        table = screen.query_one("#runs")
        await pilot.press("j", "j", "j", "j")
        await wait_for(pilot, lambda: showing(pilot, SELECTED))
        await pilot.press("k")
        assert table.cursor_row == 3
        await pilot.press("G")
        assert table.cursor_row == len(screen.matching) - 1
        await pilot.press("g")
        assert table.cursor_row == 0


async def test_the_inventory_footer_fits_80_columns(tmp_path: Path) -> None:
    app = live_app(config=inventory_config(tmp_path), utc_now=lambda: NOW,
                   runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        await settled(pilot)
        footer = screen_lines(app)[-1].rstrip()
        assert footer.endswith("? help"), footer
        assert "v verify" in footer and "R restore" in footer and "p point in time" in footer
        for key in app.screen.query("FooterKey"):
            if key.display:
                assert whole_on_screen(app, key), key.description
        # the keys that made way still work: r reloads
        await pilot.press("r")
        await wait_for(pilot, lambda: "RPO" in text_in(app, app.screen.query_one("#rpo-line")))


async def test_history_time_line_labels_do_not_run_together_at_80x24() -> None:
    fill_journal()
    app = live_app(utc_now=lambda: NOW)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_history(pilot)
        await pilot.press("down", "down", "down", "down")
        await wait_for(pilot, lambda: showing(pilot, SELECTED))
        await settled(pilot)
        detail = text_in(app, screen.query_one("#run-detail"))
        assert re.search(r"0:00 0:51:33 ✓ Fetch the snapshot", detail), detail
        assert not re.search(r"\d:\d\d\d", detail), detail  # no two clocks glued together
        assert isinstance(app.screen, HistoryScreen)
        chart = text_in(app, screen.query_one("#rto-chart"))
        assert not re.search(r"\d{4}-\d\d-\d\d\d", chart), chart


# --- the form ---------------------------------------------------------------------------


async def test_a_long_value_shows_its_start_when_not_typed_in() -> None:
    data_dir = "/srv/restore/prod-2026-12-02-0340/pgdata-from-the-nightly-base-backup"
    target = "2026-12-02T03:40:15.123456+00:00"
    runbook = load_runbook(SHIPPED_DIR / "pitr-restore.toml")
    app = live_app(open_runbook=runbook,
                   params={"cluster": "prod", "target": target, "data_dir": data_dir})
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        await settled(pilot)
        fields = list(app.screen.query("DeckInput"))
        cluster, target_field, dir_field = (next(f for f in fields if f.value == value)
                                            for value in ("prod", target, data_dir))
        # the form opens on the target: a value given, not typed, shows from its start
        assert target_field.has_focus
        assert text_in(app, target_field).startswith(target[:12]), text_in(app, target_field)
        cluster.focus()
        await settled(pilot)
        assert text_in(app, target_field).startswith(target[:12]), text_in(app, target_field)
        dir_field.scroll_visible(animate=False, immediate=True)
        await settled(pilot)
        assert text_in(app, dir_field).startswith("/srv/restore/"), text_in(app, dir_field)
        # typed in, a field follows its cursor to the end of its value
        dir_field.focus()
        await pilot.press("end")
        await settled(pilot)
        assert text_in(app, dir_field).endswith("base-backup"), text_in(app, dir_field)
        # left for the next field, it shows its start again
        app.screen.focus_next()
        await settled(pilot)
        assert not dir_field.has_focus
        assert text_in(app, dir_field).startswith("/srv/restore/"), text_in(app, dir_field)


# --- pictures at 80x24 ------------------------------------------------------------------


def test_home_at_80x24(snap_compare) -> None:
    """Every runbook with its last run and next drill; the description below."""
    fill_journal()

    async def until_read(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.journal_read is not None)
        await settled(pilot)

    app = frozen_app(utc_now=lambda: NOW)
    assert snap_compare(app, terminal_size=SMALL, run_before=until_read)


def test_briefing_at_80x24(snap_compare) -> None:
    async def opened(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BriefingScreen))
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("restore-drill"))
    assert snap_compare(app, terminal_size=SMALL, run_before=opened)


def test_failed_step_at_80x24(snap_compare) -> None:
    """The steps column narrows: the whole error, four choices on two rows, the footer."""

    async def until_failed(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot.app)._waiting_for("failure"))
        await settled(pilot)

    app = frozen_app(open_runbook=load_runbook(PREFLIGHT),
                     autostart={"target_db": "shop_restored"})
    assert snap_compare(app, terminal_size=SMALL, run_before=until_failed)


def test_manual_step_at_80x24(snap_compare) -> None:
    async def until_manual(pilot) -> None:
        await wait_for(pilot, lambda: run_screen(pilot.app)._waiting_for("manual"))
        await settled(pilot)

    app = frozen_app(open_runbook=app_runbook("manual"), autostart={})
    assert snap_compare(app, terminal_size=SMALL, run_before=until_manual)


def test_inventory_at_80x24(snap_compare, tmp_path: Path) -> None:
    async def open_inventory(pilot) -> None:
        await pilot.pause()
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        await settled(pilot)

    app = frozen_app(config=inventory_config(tmp_path), utc_now=lambda: NOW,
                     runbooks=load_directory(SHIPPED_DIR))
    assert snap_compare(app, terminal_size=SMALL, run_before=open_inventory)
