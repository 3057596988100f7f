"""A restore publishes only when whole: built under a staging name, renamed once checked.

Through the real CLI on a real cluster. A failed check stands for anything
that goes wrong after pg_restore: the row counts of the manifest are made to
disagree with the dump, so the copy is restored in full and then fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup_support import Deck, local_repository, seed_app, write_config
from cli_support import json_events


@pytest.fixture
def deck(pg_cluster, gpg_home, tmp_path: Path) -> Deck:
    seed_app(pg_cluster)
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=local_repository(tmp_path / "repo"),
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state")
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    deck.cluster = pg_cluster
    deck.repo = tmp_path / "repo"
    return deck


def spoil_the_row_counts(deck: Deck) -> None:
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "app").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["public.pgbench_branches"] += 1
    manifest_path.write_text(json.dumps(manifest))


def staging_databases(deck: Deck) -> list[str]:
    return [row[0] for row in deck.cluster.execute(
        "select datname from pg_database where datname like 'drdeck_%' order by 1")]


def lines_of(events: list[dict], step: str) -> str:
    return "\n".join(e["line"] for e in events if e["event"] == "output" and e["step"] == step)


def test_replace_swaps_the_old_database_out_only_after_the_checks_pass(deck: Deck) -> None:
    deck.cluster.execute("create database scratch")
    deck.cluster.execute("create table leftover (x int); insert into leftover values (42)",
                         dbname="scratch")
    spoil_the_row_counts(deck)
    proc = deck.run("run", "snapshot-restore", "-p", "target_db=scratch", "-p", "replace=true",
                    "--yes", "--json")
    events = json_events(proc.stdout)
    assert proc.returncode == 1, proc.stdout[-3000:]
    failed = next(e for e in events if e["event"] == "step_finished" and e["status"] ==
                  "failed")
    assert failed["step"] == "compare"
    # the old database is untouched, and the copy that failed its checks is gone
    assert deck.cluster.scalar("select x from leftover", dbname="scratch") == 42
    assert staging_databases(deck) == []
    assert "dropped the staging database drdeck_restore_" in lines_of(events, "restore")

    # the same restore with a snapshot that passes: now the old one is swapped out
    proc = deck.run("run", "snapshot-backup", "--headless")
    assert proc.returncode == 0
    proc = deck.run("run", "snapshot-restore", "-p", "target_db=scratch", "-p", "replace=true",
                    "--yes", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert deck.cluster.scalar("select to_regclass('leftover') is null", dbname="scratch")
    assert deck.cluster.scalar("select count(*) from pgbench_branches", dbname="scratch") == 1
    assert staging_databases(deck) == []


def test_keep_staging_keeps_the_copy_that_failed_under_its_staging_name(deck: Deck) -> None:
    spoil_the_row_counts(deck)
    proc = deck.run("run", "snapshot-restore", "-p", "target_db=shop", "-p",
                    "keep_staging=true", "--yes", "--json")
    events = json_events(proc.stdout)
    assert proc.returncode == 1, proc.stdout[-3000:]
    run_id = events[0]["run_id"]
    assert staging_databases(deck) == [f"drdeck_restore_{run_id}"]
    assert deck.cluster.scalar("select count(*) from pg_database where datname = 'shop'") == 0
    kept = lines_of(events, "restore")
    assert f"the staging database drdeck_restore_{run_id} is kept" in kept
    assert f"DROP DATABASE drdeck_restore_{run_id};" in kept

    # the journal says which, for whoever looks later
    report = deck.run("drills", "show", run_id)
    assert f"drdeck_restore_{run_id} is kept" in report.stdout, report.stdout[-2000:]


def test_a_published_restore_is_not_undone_by_a_later_failure(deck: Deck) -> None:
    """The hand-over needs a person: headless without --yes it fails after publishing."""
    proc = deck.run("run", "snapshot-restore", "-p", "target_db=shop", "--json")
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    failed = next(e for e in events if e["event"] == "step_finished" and e["status"] ==
                  "failed")
    assert failed["step"] == "switch"
    assert deck.cluster.scalar("select count(*) from pgbench_branches", dbname="shop") == 1
    assert staging_databases(deck) == []
    assert "dropped the staging" not in lines_of(events, "restore")


def test_a_restore_measures_the_snapshot_it_moved_and_the_next_forecast_is_scaled(
        deck: Deck) -> None:
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "app").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    proc = deck.run("run", "snapshot-restore", "-p", "target_db=copy", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    measured = {(e["step"], e["name"]): e["value"] for e in json_events(proc.stdout)
                if e["event"] == "measure"}
    # the fetch moved the snapshot as stored; pg_restore, the dump it decrypted to
    assert measured[("fetch", "snapshot_bytes")] == manifest["stored_size"]
    assert measured[("restore", "dump_bytes")] == manifest["plaintext_size"]
    assert measured[("fetch", "snapshot_s")] > 0 and measured[("restore", "dump_s")] > 0

    shown = deck.run("forecast", "snapshot-restore", "-p", "target_db=copy", "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["volumes"] == {"snapshot": manifest["stored_size"],
                                "dump": manifest["plaintext_size"]}
    basis = {step["id"]: step["basis"] for step in found["steps"]}
    assert basis["fetch"].startswith("median of 1 run, scaled to snapshot ")
    assert basis["restore"].startswith("median of 1 run, scaled to dump ")
    assert basis["compare"] == "median of 1 run"


async def test_the_run_screen_starts_with_the_forecast_scaled_to_the_snapshot(
        deck: Deck, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the console the source is read off the event loop before the first step; the
    run starts with, and the journal keeps, the forecast scaled to this snapshot."""
    from tui.app.screens.run import RunScreen
    from tui.config import load_config
    from tui.journal.store import Journal
    from tui.runbook.discovery import SHIPPED_DIR
    from tui.runbook.loader import load_runbook
    from tui.runbook.params import resolve

    from app_support import live_app, wait_for

    first = deck.run("run", "snapshot-restore", "-p", "target_db=copy", "--yes", "--headless")
    assert first.returncode == 0, first.stdout[-3000:]
    [manifest_path] = (deck.repo / "prod" / "snapshots" / "app").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    monkeypatch.setenv("DRDECK_STATE_DIR", str(deck.state))
    book = load_runbook(SHIPPED_DIR / "snapshot-restore.toml")
    app = live_app(config=load_config(deck.config), open_runbook=book,
                   autostart=resolve(book, {"target_db": "again"}))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen)
                       and app.screen.state.current == "switch", timeout=60,
                       what="the run to reach the hand-over")
        made = app.screen.state.forecast
        assert made.volumes == {"snapshot": manifest["stored_size"],
                                "dump": manifest["plaintext_size"]}
        fetch = next(step for step in made.steps if step.id == "fetch")
        assert fetch.basis.startswith("median of 1 run, scaled to snapshot ")
        run_id = app.screen.runner.run_id
    journal = Journal(deck.state / "journal.sqlite")
    try:
        kept = json.loads(journal.run(run_id).run.forecast_json)
    finally:
        journal.close()
    assert kept == made.to_json()
