"""The neon-pitr runbook through the real CLI, against the Neon API stand-in.

The stand-in (tests/neon_standin.py) implements the documented Neon API v2
contract on 127.0.0.1; the connection URI it hands out points at a real
throwaway PostgreSQL cluster that requires the URI's password, so the checks
after the restore really connect.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tui.engine.actions.neon import parse_target, rfc3339
from tui.errors import PermanentFailure
from tui.neon import NeonApiError, NeonClient, NeonPermanentError, Retry

from cli_support import REPO, drdeck, drdeck_env, json_events
from neon_standin import Branch, NeonStandin, Project

API_KEY = "napi_" + secrets.token_hex(30)
RUNBOOK = str(REPO / "runbooks" / "neon-pitr.toml")


@dataclass
class Scene:
    standin: NeonStandin
    project: Project
    branch: Branch
    password: str


@pytest.fixture
def neon_postgres(pg_cluster: Any) -> tuple[Any, str]:
    """A real cluster with Neon's default database and role, the role behind a password."""
    password = "npg_" + secrets.token_urlsafe(12)
    pg_cluster.execute(f"create role neondb_owner login password '{password}'")
    pg_cluster.execute("create database neondb owner neondb_owner")
    hba = pg_cluster.data_dir / "pg_hba.conf"
    hba.write_text("host all neondb_owner 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    pg_cluster.execute("select pg_reload_conf()")
    return pg_cluster, password


@pytest.fixture
def neon(neon_postgres: tuple[Any, str]) -> Iterator[Scene]:
    cluster, password = neon_postgres
    with NeonStandin(API_KEY, postgres_port=cluster.port) as standin:
        project, branch = standin.add_project(password=password)
        yield Scene(standin, project, branch, password)


@pytest.fixture
def neon_api_only() -> Iterator[Scene]:
    """The API alone: for runs that must stop before anything connects to PostgreSQL."""
    password = "npg_" + secrets.token_urlsafe(12)
    with NeonStandin(API_KEY, postgres_port=1) as standin:
        project, branch = standin.add_project(password=password)
        yield Scene(standin, project, branch, password)


def params(scene: Scene, target: datetime | None = None, **extra: str) -> list[str]:
    target = target or datetime.now(UTC) - timedelta(minutes=30)
    values = {"project_id": scene.project.id, "branch_id": scene.branch.id,
              "target": target.isoformat(), "poll_interval": "50ms", **extra}
    return [arg for name, value in values.items() for arg in ("-p", f"{name}={value}")]


def run(scene: Scene, tmp_path: Path, *args: str, key: str = API_KEY,
        target: datetime | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return drdeck("run", RUNBOOK, *params(scene, target, **extra), "--yes", "--json", *args,
                  state_dir=tmp_path, NEON_API_URL=scene.standin.url, NEON_API_KEY=key)


def step_error(events: list[dict], step: str) -> str:
    finished = [e for e in events if e["event"] == "step_finished" and e["step"] == step]
    assert finished, f"step {step} did not finish: {[e['event'] for e in events]}"
    return finished[-1]["error"] or ""


def lines_of(events: list[dict], step: str) -> list[str]:
    return [e["line"] for e in events if e["event"] == "output" and e["step"] == step]


def assert_no_secret(proc: subprocess.CompletedProcess[str], state_dir: Path,
                     *secrets_: str) -> None:
    """Not on stdout, stderr, or in any file drdeck wrote (journal, logs, run directories)."""
    written = [p.read_bytes() for p in state_dir.rglob("*") if p.is_file()]
    for secret in secrets_:
        assert secret not in proc.stdout and secret not in proc.stderr
        assert not any(secret.encode() in blob for blob in written)


# --- the whole runbook -------------------------------------------------------------------


def test_the_runbook_restores_the_branch_end_to_end(neon: Scene, tmp_path: Path) -> None:
    target = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    proc = run(neon, tmp_path, target=target)
    events = json_events(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr

    progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
    assert progress and {e["unit"] for e in progress} == {"operations"}
    assert progress[0]["done"] == 0 and progress[0]["total"] == 2
    assert progress[-1]["done"] == 2 and progress[-1]["total"] == 2
    assert "create_timeline finished, start_compute finished" in progress[-1]["detail"]
    restore_lines = lines_of(events, "restore")
    assert any("create_timeline" in line and "running -> finished" in line
               for line in restore_lines)
    assert any("start_compute" in line and "scheduling -> running" in line
               for line in restore_lines)
    assert any("connect with postgresql://neondb_owner:***@127.0.0.1" in line
               for line in restore_lines)

    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks == {
        "the target lies in the project's history window": True,
        f"branch {neon.branch.id} and database neondb (role neondb_owner) exist": True,
        "your check query answers true": True,
    }
    connect = lines_of(events, "connect")
    assert "neondb" in connect[2] and "neondb_owner" in connect[2]
    milestones = [e["name"] for e in events if e["event"] == "milestone"]
    assert milestones == ["service-restored"]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"

    # what Neon was asked, and what it did
    assert neon.standin.count("POST", "/restore") == 1
    branches = neon.project.branches.values()
    kept = [b for b in branches if b.name.startswith("production_before_restore_")]
    assert len(kept) == 1 and neon.branch.parent_id == kept[0].id
    assert neon.branch.parent_timestamp == target
    assert neon.branch.current_state == "ready"

    assert_no_secret(proc, tmp_path, API_KEY, neon.password)


@pytest.mark.parametrize("status", [429, 423])
def test_a_restore_neon_did_not_take_is_sent_again_after_retry_after(
        neon: Scene, tmp_path: Path, status: int) -> None:
    neon.standin.throttle(times=1, retry_after=1, on="/restore", status=status)
    proc = run(neon, tmp_path, preserve_under_name="prod_before_the_bad_migration")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert neon.standin.count("POST", "/restore") == 2
    retried = [line for line in lines_of(json_events(proc.stdout), "restore")
               if f"HTTP {status}" in line]
    assert len(retried) == 1 and "trying again in 1 s (attempt 2 of 5)" in retried[0]
    assert any(b.name == "prod_before_the_bad_migration"
               for b in neon.project.branches.values())
    assert_no_secret(proc, tmp_path, API_KEY, neon.password)


def test_the_operators_check_query_can_fail_the_run(neon: Scene, tmp_path: Path) -> None:
    proc = run(neon, tmp_path, check_query="select count(*) > 0 from pg_class "
               "where relname = 'orders'")
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
    assert checks["your check query answers true"] is False
    assert "check failed: your check query answers true" in step_error(events, "checks")
    assert not [e for e in events if e["event"] == "milestone"]


# --- refusals and failures ---------------------------------------------------------------


def test_a_wrong_key_is_refused_before_anything_happens(neon_api_only: Scene,
                                                        tmp_path: Path) -> None:
    wrong = "napi_" + secrets.token_hex(30)
    proc = run(neon_api_only, tmp_path, key=wrong)
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    assert step_error(events, "preflight") == "NEON_API_KEY was rejected (HTTP 401): check the key"
    assert neon_api_only.standin.count("POST", "/restore") == 0
    assert_no_secret(proc, tmp_path, wrong, API_KEY)


def test_an_unset_key_is_refused_with_what_to_do(neon_api_only: Scene, tmp_path: Path) -> None:
    env = drdeck_env(tmp_path, NEON_API_URL=neon_api_only.standin.url)
    env.pop("NEON_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "run", RUNBOOK, *params(neon_api_only), "--yes"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "NEON_API_KEY is not set: export NEON_API_KEY=" in proc.stdout
    assert neon_api_only.standin.requests == []


def test_a_failed_operation_fails_the_step_and_names_it(neon_api_only: Scene,
                                                        tmp_path: Path) -> None:
    neon_api_only.standin.fail_next_operation("start_compute", "compute failed to start")
    proc = run(neon_api_only, tmp_path)
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    failed = next(o for o in neon_api_only.standin.operations.values()
                  if o.action == "start_compute")
    error = step_error(events, "restore")
    assert f"Neon operation start_compute {failed.id} failed: compute failed to start" in error
    assert "_before_restore_" in error  # where the old state is
    assert neon_api_only.standin.count("POST", "/restore") == 1
    assert not lines_of(events, "connect")


def test_neons_refusal_is_shown_and_not_retried(neon_api_only: Scene, tmp_path: Path) -> None:
    # inside the project's history window, but before this branch's history begins
    target = datetime.now(UTC) - timedelta(hours=8)
    proc = run(neon_api_only, tmp_path, target=target)
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    error = step_error(events, "restore")
    assert error.startswith("Neon refused the restore: timestamp ")
    assert "precedes the branch's history" in error and error.endswith("(HTTP 422)")
    assert neon_api_only.standin.count("POST", "/restore") == 1
    assert not [e for e in events if e["event"] == "attempt_failed"]


def test_a_target_outside_the_history_window_is_refused_in_preflight(
        neon_api_only: Scene, tmp_path: Path) -> None:
    proc = run(neon_api_only, tmp_path, target=datetime.now(UTC) - timedelta(days=2))
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    error = step_error(events, "preflight")
    assert "older than project" in error and "the earliest point you can reach is" in error
    assert neon_api_only.standin.count("POST", "/restore") == 0


def test_an_unknown_branch_is_named(neon_api_only: Scene, tmp_path: Path) -> None:
    proc = drdeck("run", RUNBOOK, *params(neon_api_only), "-p", "branch_id=br-no-such-000000",
                  "--yes", "--json", state_dir=tmp_path, NEON_API_URL=neon_api_only.standin.url,
                  NEON_API_KEY=API_KEY)
    assert proc.returncode == 1
    error = step_error(json_events(proc.stdout), "preflight")
    assert error.startswith(f"branch br-no-such-000000 not found in project "
                            f"{neon_api_only.project.id} (HTTP 404)")


def test_the_runbook_validates_and_dry_runs_without_the_key(neon_api_only: Scene,
                                                            tmp_path: Path) -> None:
    assert drdeck("validate", RUNBOOK, state_dir=tmp_path).returncode == 0
    proc = drdeck("run", RUNBOOK, *params(neon_api_only), "--dry-run", state_dir=tmp_path,
                  NEON_API_KEY=API_KEY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"POST /projects/{neon_api_only.project.id}/branches/" in proc.stdout
    assert API_KEY not in proc.stdout + proc.stderr
    assert neon_api_only.standin.requests == []


# --- the pieces ----------------------------------------------------------------------------


def test_targets_need_a_time_zone_and_are_sent_as_utc() -> None:
    with pytest.raises(PermanentFailure, match="has no time zone"):
        parse_target("2026-11-27 14:29:59")
    assert rfc3339(parse_target("2026-11-27 16:29:59+02:00")) == "2026-11-27T14:29:59Z"
    assert rfc3339(parse_target("2026-11-27T14:29:59.250Z")) == "2026-11-27T14:29:59.25Z"


def test_the_key_never_travels_over_plain_http_to_another_host() -> None:
    with pytest.raises(PermanentFailure, match="must use https://"):
        NeonClient(API_KEY, "http://neon.example.com/api/v2")
    client = NeonClient(API_KEY, "http://127.0.0.1:9/api/v2")
    assert API_KEY not in repr(client)


async def test_an_ambiguous_failure_of_the_restore_is_never_sent_again(
        neon_api_only: Scene) -> None:
    standin, project, branch = neon_api_only.standin, neon_api_only.project, neon_api_only.branch
    client = NeonClient(API_KEY, standin.url, retry=Retry(first_wait=0.01))
    standin.throttle(times=1, on="/branches/", status=500)
    assert (await client.get_branch(project.id, branch.id))["id"] == branch.id  # a GET: again

    standin.throttle(times=1, on="/restore", status=500)
    stamp = rfc3339(datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(NeonPermanentError, match="may or may not have been applied"):
        await client.restore_branch(project.id, branch.id, branch.id, source_timestamp=stamp,
                                    preserve_under_name="kept")
    assert standin.count("POST", "/restore") == 1


async def test_a_retry_after_beyond_reason_is_not_waited_out(neon_api_only: Scene) -> None:
    standin = neon_api_only.standin
    client = NeonClient(API_KEY, standin.url, retry=Retry(max_wait=5))
    standin.throttle(times=1, retry_after=120, on="/projects/")
    with pytest.raises(NeonApiError, match="asks to wait 120 s") as failure:
        await client.get_project(neon_api_only.project.id)
    assert failure.value.retryable and API_KEY not in str(failure.value)
    assert standin.count("GET", "/projects/") == 1
