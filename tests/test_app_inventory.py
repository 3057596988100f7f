"""The Inventory screen: snapshots at a glance, and restore or verify from there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.app.screens.briefing import BriefingScreen, ParamField
from tui.app.screens.inventory import InventoryScreen
from tui.config import load_config_text
from tui.runbook.discovery import SHIPPED_DIR, load_directory
from tui.storage import LocalStore

from app_support import TERMINAL, frozen_app, live_app, settled, wait_for
from repo_support import fake_snapshot

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path):
    repo = tmp_path / "repo"
    store = LocalStore(repo)
    for days, verified in ((0, ("full", True)), (1, ("list", True)), (2, None),
                           (3, ("full", False))):
        fake_snapshot(store, "prod", "app", NOW - timedelta(days=days, hours=12),
                      verified=verified)
    fake_snapshot(store, "prod", "app", NOW - timedelta(hours=2), manifest=False)
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


def test_inventory_screen(snap_compare, config) -> None:
    """RPO state, snapshots newest first (one incomplete, one unencrypted), the manifest."""

    async def open_inventory(pilot) -> None:
        await pilot.pause()
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        # the rows are in, and the table has sized its columns to them (it does so when
        # idle: on a busy machine the picture could otherwise show them cut short)
        table = inventory(pilot).query_one("#snapshots")
        await wait_for(pilot, lambda: table.row_count and not table._require_update_dimensions)
        # every column as wide as its widest cell: a busy machine can draw them too narrow
        taken = next(iter(table.columns.values()))
        await wait_for(pilot, lambda: taken.content_width >= len("2026-11-27 13:00:00"),
                       what="the columns to widen to their cells")
        # the tab bar's underline slides to the active tab: a busy machine can catch it midway
        await pilot.wait_for_scheduled_animations()
        await settled(pilot)  # and a busy one can draw the rows before their columns widen

    app = frozen_app(config=config, utc_now=lambda: NOW,
                     runbooks=load_directory(SHIPPED_DIR))
    assert snap_compare(app, terminal_size=TERMINAL, run_before=open_inventory)


async def test_restore_and_verify_open_with_the_snapshot_filled_in(config) -> None:
    app = live_app(config=config, utc_now=lambda: NOW, runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        screen = inventory(pilot)
        assert "RPO BREACHED" in str(screen.query_one("#rpo-line").render())
        stamps = [s.stamp for s in screen._shown]
        assert len(stamps) == 6 and stamps == sorted(stamps, reverse=True)

        await pilot.press("down", "R")  # the second row: app, this morning (the first is
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))  # incomplete)
        assert app.screen.runbook.name == "snapshot-restore"
        fields = {f.param.name: f for f in app.screen.query(ParamField)}
        assert fields["snapshot"].raw == stamps[1] == "20261127T030000Z"
        assert (fields["cluster"].raw, fields["database"].raw) == ("prod", "app")

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        assert app.screen.runbook.name == "verify-backup"

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        await pilot.press("up", "R")  # the incomplete one is refused
        await pilot.pause()
        assert isinstance(app.screen, InventoryScreen)


async def test_a_snapshot_is_restored_from_the_inventory(pg_cluster, gpg_home,
                                                         tmp_path: Path) -> None:
    from tui.app.screens.run import RunScreen
    from tui.app.screens.summary import RunSummary
    from tui.config import load_config

    from backup_support import Deck, content_of, local_repository, seed_app, write_config

    seed_app(pg_cluster)
    path = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                        repository=local_repository(tmp_path / "repo"),
                        gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(path, tmp_path / "state")
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    before = content_of(pg_cluster, "app")

    app = live_app(config=load_config(str(path)), runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        fields = {f.param.name: f for f in app.screen.query(ParamField)}
        fields["target_db"].focus_input()
        await pilot.press(*"app_from_the_app", "ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run._waiting_for("manual"), timeout=60,
                       what="the manual switch-over step")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunSummary))
        assert run.state.finished.status == "succeeded"
        checks = {c.name: c.ok for c in run.state.all_checks}
        assert checks["every table's row count matches the snapshot"] is True
        assert run.state.steps["restore"].progress is not None
    assert content_of(pg_cluster, "app_from_the_app") == before


async def test_the_point_in_time_side_and_restore_to_a_point(config, tmp_path: Path) -> None:
    from repo_support import fake_base_backup

    store = LocalStore(config.repositories["nearby"].path)
    stamp = fake_base_backup(store, "prod", NOW - timedelta(days=2), segments=8, gap_at=5)
    app = live_app(config=config, utc_now=lambda: NOW, runbooks=load_directory(SHIPPED_DIR))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: inventory(pilot).inventories)
        screen = inventory(pilot)
        line = str(screen.query_one("#window-line").render())
        assert "Recoverable" in line and "1 gap" in line
        wal = str(screen.query_one("#wal-body").render())
        assert "WAL gap on timeline 1: 000000010000000000000007 missing" in wal
        bases = screen.query_one("#bases")
        assert bases.row_count == 1 and str(bases.get_row_at(0)[0]) == stamp
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        assert app.screen.runbook.name == "pitr-restore"
        fields = {f.param.name: f for f in app.screen.query(ParamField)}
        assert fields["cluster"].raw == "prod"
        assert fields["target"].raw.startswith((NOW - timedelta(days=2)).date().isoformat())
