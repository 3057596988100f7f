"""The shipped health-check runbook against real clusters."""

from __future__ import annotations

import time
from pathlib import Path

from tui.postgres.cluster import free_port

from cli_support import drdeck, json_events


def checks_of(events: list[dict]) -> dict[str, bool]:
    return {e["name"]: e["ok"] for e in events if e["event"] == "check"}


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.1)


def force_segment_switch(cluster) -> None:
    cluster.execute("create table if not exists health_probe(x int)")
    cluster.execute("insert into health_probe values (1)")
    cluster.execute("select pg_switch_wal()")


def test_a_healthy_archiving_cluster_passes_every_check(make_pg_cluster, tmp_path: Path) -> None:
    cluster = make_pg_cluster(archive=True, wal_segsize_mb=1, archive_timeout="60s")
    force_segment_switch(cluster)
    wait_until(lambda: cluster.scalar("select archived_count from pg_stat_archiver") > 0)

    proc = drdeck("run", "health-check", "-p", f"dsn={cluster.dsn()}", "--json",
                  state_dir=tmp_path)

    events = json_events(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = checks_of(events)
    assert checks == {
        "server is PostgreSQL 13 or newer": True,
        "transaction ID wraparound is far away": True,
        "archiving is on": True,
        "no failed archive attempt since the last success": True,
        "newest archived WAL is younger than the RPO": True,
        "archive_timeout is set and within the RPO": True,
        "every replica is streaming": True,
        "replica replay lag is within the limit": True,
        "no inactive replication slot holds WAL": True,
    }
    disk_lines = [e["line"] for e in events if e["event"] == "output" and e["step"] == "disk"]
    assert any("data directory file system:" in line and "% used" in line
               for line in disk_lines)
    connect = [e["line"] for e in events if e["event"] == "output" and e["step"] == "connect"]
    assert connect[0].split(" | ")[0].strip() == "version"
    assert "primary" in connect[2]


def test_a_cluster_without_archiving_fails_with_named_checks(pg_cluster, tmp_path: Path) -> None:
    proc = drdeck("run", "health-check", "-p", f"dsn={pg_cluster.dsn()}", state_dir=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    assert "✗ check archiving is on: got false, expected true" in out
    assert "✗ archiving  failed" in out
    # on_failure = "continue": the other steps still ran and reported
    assert "✓ replication  succeeded" in out
    assert "✓ disk  succeeded" in out
    assert "FAILED" in out and "4 succeeded, 1 failed" in out


def test_a_failing_archive_command_is_caught(make_pg_cluster, tmp_path: Path) -> None:
    cluster = make_pg_cluster(wal_segsize_mb=1, archive_mode="on", archive_command="false",
                              archive_timeout="60s")
    force_segment_switch(cluster)
    wait_until(lambda: cluster.scalar("select failed_count from pg_stat_archiver") > 0)

    proc = drdeck("run", "health-check", "-p", f"dsn={cluster.dsn()}", "--json",
                  state_dir=tmp_path)

    assert proc.returncode == 1
    checks = checks_of(json_events(proc.stdout))
    assert checks["archiving is on"] is True
    assert checks["no failed archive attempt since the last success"] is False
    assert checks["newest archived WAL is younger than the RPO"] is False


def test_an_unreachable_server_is_retried_then_reported(tmp_path: Path) -> None:
    # the password comes as libpq takes it from a job's environment: -p refuses one
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=2"
    proc = drdeck("run", "health-check", "-p", f"dsn={dsn}", "--json", state_dir=tmp_path,
                  PGPASSWORD="not-shown-9z")
    assert proc.returncode == 1
    events = json_events(proc.stdout)
    attempts = [e for e in events if e["event"] == "step_started"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    finished = next(e for e in events if e["event"] == "step_finished")
    assert finished["status"] == "failed"
    assert finished["error"].startswith("cannot connect:")
    assert "not-shown-9z" not in proc.stdout + proc.stderr
    assert events[-1]["status"] == "failed"
