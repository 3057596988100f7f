"""Backup -> inventory -> verify -> restore -> compare, through the real CLI, on real services:
a PostgreSQL cluster, a GnuPG home, and an S3-protocol server or a local directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup_support import (
    Deck,
    content_of,
    local_repository,
    s3_repository,
    seed_app,
    write_config,
)


@pytest.fixture(params=["s3", "local"])
def deck(request, pg_cluster, gpg_home, tmp_path: Path) -> Deck:
    seed_app(pg_cluster)
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        repository, env = s3_repository(endpoint, bucket), endpoint.environ()
    else:
        repository, env = local_repository(tmp_path / "repo"), {}
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster, repository=repository,
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state", env)
    deck.kind = request.param
    deck.cluster = pg_cluster
    return deck


def only_snapshot(deck: Deck) -> dict:
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [cluster] = report["clusters"]
    [snapshot] = cluster["snapshots"]
    return {"cluster": cluster, **snapshot}


def test_backup_inventory_verify_restore_compare(deck: Deck) -> None:
    before = content_of(deck.cluster, "app")

    proc, events = deck.run_json("run", "snapshot-backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert events[-1]["status"] == "succeeded"

    snap = only_snapshot(deck)
    assert snap["complete"] and snap["encrypted"] and snap["problem"] is None
    assert snap["cluster"]["rpo_state"] == "ok"
    assert snap["tables"] == 6 and snap["rows"] == 100_000 + 1 + 10 + 0 + len(before["texts"])\
        + 250
    assert snap["verified"]["how"] == "list" and snap["verified"]["ok"] is True

    proc, events = deck.run_json("run", "verify-backup", "-p", "full=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    snap = only_snapshot(deck)
    assert snap["verified"]["how"] == "full" and snap["verified"]["ok"] is True
    assert "every table's row count matches" in snap["verified"]["detail"]
    assert deck.cluster.scalar("select count(*) from pg_database where datname like "
                               "'drdeck_verify%'") == 0

    incident = datetime.now(UTC)
    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app_restored",
                                 "-p", f"incident_time={incident.isoformat()}", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rpo = next(e for e in events if e["event"] == "measure" and e["name"] == "achieved_rpo")
    taken = datetime.fromisoformat(snap["taken_at"])
    assert rpo["value"] == pytest.approx((incident - taken).total_seconds(), abs=0.01)
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["every table's row count matches the snapshot"] is True
    progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    assert content_of(deck.cluster, "app_restored") == before
    assert events[-1]["rto_s"] is not None


def test_a_restore_refuses_an_existing_target_and_the_source(deck: Deck) -> None:
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    deck.cluster.execute("create database taken")

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=taken", "--yes")
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "database taken already exists" in error and "replace = true" in error
    assert [e["step"] for e in events if e["event"] == "step_started"] == ["preflight"]

    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=app",
                                 "-p", "replace=true", "--yes")
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "refusing to restore into app" in error
    assert deck.cluster.scalar("select count(*) from pgbench_accounts", dbname="app") == 100_000


def test_replace_drops_and_recreates_after_a_typed_confirmation(deck: Deck) -> None:
    assert deck.run("run", "snapshot-backup", "--headless").returncode == 0
    deck.cluster.execute("create database scratch")
    deck.cluster.execute("create table leftover(x int)", dbname="scratch")
    proc, events = deck.run_json("run", "snapshot-restore", "-p", "target_db=scratch",
                                 "-p", "replace=true")
    assert proc.returncode == 1, "without --yes nobody confirmed the drop"
    assert "asks for confirmation" in next(
        e for e in events if e["event"] == "step_finished" and e["status"] == "failed")["error"]
    assert deck.cluster.scalar("select count(*) from leftover", dbname="scratch") == 0

    proc, _ = deck.run_json("run", "snapshot-restore", "-p", "target_db=scratch",
                            "-p", "replace=true", "--yes")
    assert proc.returncode == 0, proc.stdout
    assert deck.cluster.scalar("select to_regclass('leftover') is null", dbname="scratch")
    assert deck.cluster.scalar("select count(*) from texts", dbname="scratch") == 7
