"""The neon-pitr runbook through the real CLI, against the Neon API stand-in.

The stand-in (tests/neon_standin.py) implements the documented Neon API v2
contract on 127.0.0.1; the connection URI it hands out points at a real
throwaway PostgreSQL cluster that requires the URI's password, so the checks
after the restore really connect.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tui.errors import PermanentFailure
from tui.sources.neon import (
    PLAN_HISTORY_CAP,
    NeonApiError,
    NeonClient,
    NeonPermanentError,
    Retry,
    restore_window,
)
from tui.sources.neon_actions import parse_target, rfc3339

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


def restore_only(tmp_path: Path, timeout: str = "1m") -> str:
    """A runbook of the restore step alone: for runs that end once Neon's operations do."""
    given = {"project_id": "${project_id}", "branch_id": "${branch_id}",
             "timestamp": "${target}", "preserve_under_name": "kept", "database": "neondb",
             "role": "neondb_owner", "poll_interval": "20ms"}
    inline = ", ".join(f'{key} = "{value}"' for key, value in given.items())
    path = tmp_path / "neon-restore-only.toml"
    path.write_text(f"""
[runbook]
name = "neon-restore-only"
title = "Restore a Neon branch, nothing after"

[params.project_id]
type = "string"

[params.branch_id]
type = "string"

[params.target]
type = "timestamp"

[[steps]]
id = "restore"
title = "Restore the branch and wait for Neon's operations"
action = "neon.restore_branch"
capture = true
timeout = "{timeout}"
with = {{ {inline} }}
""")
    return str(path)


def run_restore_only(scene: Scene, tmp_path: Path, timeout: str = "1m"
                     ) -> subprocess.CompletedProcess[str]:
    target = datetime.now(UTC) - timedelta(minutes=30)
    values = {"project_id": scene.project.id, "branch_id": scene.branch.id,
              "target": target.isoformat()}
    args = [arg for name, value in values.items() for arg in ("-p", f"{name}={value}")]
    return drdeck("run", restore_only(tmp_path, timeout), *args, "--yes", "--json",
                  state_dir=tmp_path, NEON_API_URL=scene.standin.url, NEON_API_KEY=API_KEY)


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

    assert any("Neon's plan can still refuse a target inside this window" in line
               for line in lines_of(events, "preflight"))
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


def test_a_restore_neon_did_not_take_is_sent_again_after_retry_after(
        neon: Scene, tmp_path: Path) -> None:
    neon.standin.throttle(times=1, retry_after=0, on="/restore", status=429)
    proc = run(neon, tmp_path, preserve_under_name="prod_before_the_bad_migration")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert neon.standin.count("POST", "/restore") == 2
    retried = [line for line in lines_of(json_events(proc.stdout), "restore")
               if "HTTP 429" in line]
    # Retry-After: 0 is honoured (drdeck's own backoff would wait 1 s)
    assert len(retried) == 1 and "trying again in 0 s (attempt 2 of 5)" in retried[0]
    assert f"request_id {neon.standin.error_request_ids[0]}" in retried[0]
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
    request_id = neon_api_only.standin.error_request_ids[-1]
    assert step_error(events, "preflight") == (
        f"NEON_API_KEY was rejected (HTTP 401, request_id {request_id}): check the key")
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


def test_an_operation_in_error_is_followed_until_it_finishes(neon_api_only: Scene,
                                                             tmp_path: Path) -> None:
    standin = neon_api_only.standin
    standin.script_next_operation("create_timeline", ["running", "skipped"])
    standin.script_next_operation("start_compute", ["running", "error", "error", "running",
                                                    "finished"], error="compute failed to start")
    proc = run_restore_only(neon_api_only, tmp_path)
    events = json_events(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    compute = next(o for o in standin.operations.values() if o.action == "start_compute")
    assert compute.status == "finished" and compute.failures_count == 2
    progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
    assert progress[-1]["done"] == 2 and progress[-1]["total"] == 2  # skipped counts as done
    assert progress[-1]["detail"] == "create_timeline skipped, start_compute finished"
    lines = lines_of(events, "restore")
    in_error = [line for line in lines if "is in status error" in line]
    assert len(in_error) == 2, lines
    assert in_error[0].startswith(f"Neon operation start_compute {compute.id} is in status "
                                  "error (failures_count 1, retry_at 20")
    assert in_error[1].startswith(f"Neon operation start_compute {compute.id} is in status "
                                  "error (failures_count 2, retry_at 20")
    assert in_error[0].endswith("): compute failed to start. Neon retries it: drdeck follows "
                                "it until it finishes, fails or is cancelled, within the "
                                "step's timeout")
    assert any(f"start_compute {compute.id}: running -> error" in line for line in lines)
    assert any(f"start_compute {compute.id}: error -> running" in line for line in lines)
    assert any("is restored; connect with postgresql://neondb_owner:***@" in line
               for line in lines)
    assert_no_secret(proc, tmp_path, API_KEY, neon_api_only.password)


def test_a_cancelled_operation_fails_the_step_after_cancelling(neon_api_only: Scene,
                                                               tmp_path: Path) -> None:
    standin = neon_api_only.standin
    standin.script_next_operation("start_compute", ["running", "cancelling", "cancelled"])
    proc = run_restore_only(neon_api_only, tmp_path)
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    compute = next(o for o in standin.operations.values() if o.action == "start_compute")
    assert any(f"start_compute {compute.id}: running -> cancelling" in line
               for line in lines_of(events, "restore"))
    error = step_error(events, "restore")
    assert error.startswith(f"Neon operation start_compute {compute.id} cancelled. The "
                            "branch's state before the restore is kept as branch 'kept'")
    assert standin.count("POST", "/restore") == 1


def test_an_operation_that_stays_in_error_is_stopped_by_the_steps_timeout(
        neon_api_only: Scene, tmp_path: Path) -> None:
    neon_api_only.standin.script_next_operation("start_compute", ["running", "error"],
                                                error="no capacity in the region")
    proc = run_restore_only(neon_api_only, tmp_path, timeout="400ms")
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    assert step_error(events, "restore") == "timed out after 0.40s"
    in_error = [line for line in lines_of(events, "restore") if "is in status error" in line]
    # Neon kept failing it and drdeck kept saying so, each time with the new count
    assert len(in_error) >= 2 and "(failures_count 1, retry_at " in in_error[0]
    assert "(failures_count 2, retry_at " in in_error[1]
    assert all(line.count("no capacity in the region") == 1 for line in in_error)


def test_a_restore_into_a_locked_project_is_sent_again_once_the_lock_ended(
        neon_api_only: Scene, tmp_path: Path) -> None:
    standin, project = neon_api_only.standin, neon_api_only.project
    lock = standin.lock_project(project, listings=1)  # over by the time drdeck looks
    proc = run_restore_only(neon_api_only, tmp_path)
    events = json_events(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert lock.status == "finished" and standin.count("POST", "/restore") == 2
    request_id = standin.error_request_ids[0]
    told = [line for line in lines_of(events, "restore") if "HTTP 423" in line]
    assert told == [
        f"Neon is busy with another operation on this project (the restore, HTTP 423, "
        f"request_id {request_id}): project already has running conflicting operations, "
        f"scheduling of new ones is prohibited; no operation of project {project.id} is "
        "running now: sending the restore again"]
    assert_no_secret(proc, tmp_path, API_KEY, neon_api_only.password)


def test_neons_refusal_is_shown_and_not_retried(neon_api_only: Scene, tmp_path: Path) -> None:
    # inside the history window the project says, but the plan's cap kept only an hour
    neon_api_only.project.history_kept = timedelta(hours=1)
    proc = run(neon_api_only, tmp_path, target=datetime.now(UTC) - timedelta(hours=2))
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    error = step_error(events, "restore")
    assert error.startswith("Neon refused the restore: timestamp ")
    request_id = neon_api_only.standin.error_request_ids[-1]
    assert "precedes the branch's history" in error
    assert error.endswith(f"(HTTP 422, request_id {request_id})")
    assert neon_api_only.standin.count("POST", "/restore") == 1
    assert not [e for e in events if e["event"] == "attempt_failed"]


def test_a_target_outside_the_history_window_is_refused_in_preflight(
        neon_api_only: Scene, tmp_path: Path) -> None:
    # a branch older than the project's history window (a day): the window is the bound
    neon_api_only.branch.created_at = datetime.now(UTC) - timedelta(days=3)
    proc = run(neon_api_only, tmp_path, target=datetime.now(UTC) - timedelta(days=2))
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    error = step_error(events, "preflight")
    assert "older than project" in error and "the earliest point you can reach is" in error
    assert neon_api_only.standin.count("POST", "/restore") == 0


def test_a_target_before_the_source_branch_existed_is_refused_in_preflight(
        neon_api_only: Scene, tmp_path: Path) -> None:
    # inside the project's history window (a day), but the branch is six hours old
    proc = run(neon_api_only, tmp_path, target=datetime.now(UTC) - timedelta(hours=8))
    events = json_events(proc.stdout)
    assert proc.returncode == 1
    created = neon_api_only.branch.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert step_error(events, "preflight").endswith(
        f"is before branch {neon_api_only.branch.id} (production) existed (it was created "
        f"{created}, and has no history from before): the earliest point you can reach is "
        f"{created}")
    assert neon_api_only.standin.count("POST", "/restore") == 0


def test_an_unknown_branch_is_named(neon_api_only: Scene, tmp_path: Path) -> None:
    proc = drdeck("run", RUNBOOK, *params(neon_api_only), "-p", "branch_id=br-no-such-000000",
                  "--yes", "--json", state_dir=tmp_path, NEON_API_URL=neon_api_only.standin.url,
                  NEON_API_KEY=API_KEY)
    assert proc.returncode == 1
    error = step_error(json_events(proc.stdout), "preflight")
    request_id = neon_api_only.standin.error_request_ids[-1]
    assert error.startswith(f"branch br-no-such-000000 not found in project "
                            f"{neon_api_only.project.id} (HTTP 404, request_id {request_id})")


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
    standin.throttle(times=1, retry_after=0, on="/branches/", status=500)
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


async def test_a_locked_project_is_waited_for_until_its_operations_end(
        neon_api_only: Scene) -> None:
    standin, project, branch = neon_api_only.standin, neon_api_only.project, neon_api_only.branch
    lock = standin.lock_project(project, action="apply_config", listings=3)
    told: list[str] = []
    client = NeonClient(API_KEY, standin.url, on_retry=told.append, poll_interval=0.01)
    stamp = rfc3339(datetime.now(UTC) - timedelta(minutes=5))
    answer = await client.restore_branch(project.id, branch.id, branch.id,
                                         source_timestamp=stamp, preserve_under_name="kept")
    assert [op["action"] for op in answer["operations"]] == ["create_timeline", "start_compute"]
    assert standin.count("POST", "/restore") == 2
    assert standin.count("GET", f"/projects/{project.id}/operations") == 3
    request_id = standin.error_request_ids[0]
    assert told == [
        f"Neon is busy with another operation on this project (the restore, HTTP 423, "
        f"request_id {request_id}): project already has running conflicting operations, "
        f"scheduling of new ones is prohibited; waiting for operation apply_config {lock.id} "
        "(running) to end (asking Neon every 0.01 s; the step's timeout bounds the wait)",
        f"the operations that locked project {project.id} ended: sending the restore again",
    ]


async def test_a_lock_with_nothing_running_is_tried_a_few_times_then_given_up(
        neon_api_only: Scene) -> None:
    standin, project, branch = neon_api_only.standin, neon_api_only.project, neon_api_only.branch
    standin.throttle(times=10, retry_after=None, on="/restore", status=423)
    told: list[str] = []
    client = NeonClient(API_KEY, standin.url, retry=Retry(attempts=3, first_wait=0.01),
                        on_retry=told.append, poll_interval=0.01)
    stamp = rfc3339(datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(NeonApiError, match="kept answering 423 \\(4 times\\) and no operation "
                       f"of project {project.id} is running now: try again later") as why:
        await client.restore_branch(project.id, branch.id, branch.id, source_timestamp=stamp,
                                    preserve_under_name="kept")
    assert f"request_id {standin.error_request_ids[-1]}" in str(why.value)
    assert standin.count("POST", "/restore") == 4
    # at once (a lock that just ended), then with backoff
    assert [line.rsplit(": ", 1)[1] for line in told] == [
        "sending the restore again", "sending the restore again in 0.01 s",
        "sending the restore again in 0.02 s"]
    assert all(f"no operation of project {project.id} is running now" in line for line in told)
    assert API_KEY not in str(why.value) + "".join(told)


async def test_neons_request_id_is_shown_from_its_header_too() -> None:
    with NeonStandin(API_KEY, postgres_port=1, request_id_in="header") as standin:
        project, _ = standin.add_project()
        client = NeonClient(API_KEY, standin.url)
        with pytest.raises(NeonPermanentError) as why:
            await client.get_branch(project.id, "br-no-such-000000")
    request_id = standin.error_request_ids[-1]
    assert str(why.value) == (f"branch br-no-such-000000 not found in project {project.id} "
                              f"(HTTP 404, request_id {request_id}): branch br-no-such-000000 "
                              "not found")
    assert why.value.request_id == request_id


async def test_the_restore_window_is_bounded_by_the_source_branchs_creation(
        neon_api_only: Scene) -> None:
    standin, project, branch = neon_api_only.standin, neon_api_only.project, neon_api_only.branch
    client = NeonClient(API_KEY, standin.url)
    now = datetime.now(UTC)
    answer = await client.get_project(project.id)  # keeps a day; the branch is 6 hours old
    window = restore_window(answer, await client.get_branch(project.id, branch.id), now)
    assert window.earliest == branch.created_at.replace(microsecond=0)
    window.refuse_if_outside(now - timedelta(hours=5))  # inside: nothing said
    with pytest.raises(PermanentFailure) as why:
        window.refuse_if_outside(now - timedelta(hours=8))
    created = branch.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert str(why.value).endswith(
        f"is before branch {branch.id} (production) existed (it was created {created}, and "
        f"has no history from before): the earliest point you can reach is {created}")

    # a source branch older than the history window: the window is the bound
    old = standin.add_branch(project, "archive", age=timedelta(days=3))
    window = restore_window(answer, await client.get_branch(project.id, old.id), now)
    assert window.earliest == now - timedelta(days=1)
    with pytest.raises(PermanentFailure, match=f"is older than project {project.id}'s history "
                       r"window \(1d\): the earliest point you can reach is "):
        window.refuse_if_outside(now - timedelta(days=2))
    assert "plan can still refuse a target inside this window" in PLAN_HISTORY_CAP
    assert "1 GB of history" in PLAN_HISTORY_CAP


async def test_the_standin_answers_with_the_fields_the_spec_requires(
        neon_api_only: Scene) -> None:
    standin, project, branch = neon_api_only.standin, neon_api_only.project, neon_api_only.branch
    client = NeonClient(API_KEY, standin.url)
    assert set(await client.get_project(project.id)) >= {  # Project, in ProjectResponse
        "consumption_period_end", "consumption_period_start", "active_time_seconds",
        "compute_time_seconds", "written_data_bytes", "data_transfer_bytes",
        "data_storage_bytes_hour", "id", "platform_id", "region_id", "name", "pg_version",
        "proxy_host", "branch_logical_size_limit", "branch_logical_size_limit_bytes",
        "store_passwords", "cpu_used_sec", "provisioner", "creation_source",
        "history_retention_seconds", "created_at", "updated_at", "owner_id"}
    assert set(await client.get_branch(project.id, branch.id)) >= {  # Branch
        "id", "project_id", "name", "current_state", "creation_source", "created_at",
        "updated_at", "primary", "default", "protected", "cpu_used_sec", "active_time_seconds",
        "compute_time_seconds", "written_data_bytes", "data_transfer_bytes"}
    lock = standin.lock_project(project, listings=1)
    listed = await client.list_operations(project.id, limit=1)
    assert [op["id"] for op in listed] == [lock.id]
    assert set(listed[0]) >= {"id", "project_id", "action", "status", "failures_count",
                              "created_at", "updated_at", "total_duration_ms"}  # Operation


def test_a_cluster_on_neon_has_an_inventory_and_a_status_with_its_history_window(
        neon_api_only: Scene, tmp_path: Path) -> None:
    """`[clusters.X] neon = {...}`: the branch's history window is what can be restored,
    read through the API, with the key from the environment and never shown."""
    scene = neon_api_only
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[clusters.shop]
dsn = "host=/nonexistent dbname=neondb"
rpo = "5m"

[clusters.shop.neon]
project_id = "{scene.project.id}"
branch_id = "{scene.branch.id}"
""")
    env = {"NEON_API_URL": scene.standin.url, "NEON_API_KEY": API_KEY}
    before = datetime.now(UTC)
    proc = drdeck("--config", str(config), "inventory", "--json", state_dir=tmp_path, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    report = cluster["neon"]
    assert "error" not in report
    assert (report["project_id"], report["branch_id"]) == (scene.project.id, scene.branch.id)
    assert report["branch_name"] == "production"
    # the branch is 6 hours old and the project keeps a day: the branch's birth bounds it
    assert datetime.fromisoformat(report["window"]["start"]) == \
        scene.branch.created_at.replace(microsecond=0)  # Neon speaks in whole seconds
    assert datetime.fromisoformat(report["window"]["end"]) >= before
    assert report["plan_history_cap"] == PLAN_HISTORY_CAP

    human = drdeck("--config", str(config), "inventory", state_dir=tmp_path, **env)
    assert "shop  no drdeck repository: backed up by Neon" in human.stdout
    assert f"Neon branch {scene.branch.id} of project {scene.project.id}:" in human.stdout
    status = drdeck("--config", str(config), "status", "--json", state_dir=tmp_path, **env)
    items = {i["check"]: i for i in json.loads(status.stdout)["clusters"][0]["items"]}
    assert items["wal"]["state"] == "ok", items["wal"]
    assert "run one (neon-pitr)" in items["drill"]["reason"]
    for shown in (proc, human, status):
        assert API_KEY not in shown.stdout + shown.stderr

    # without the key: the report says what to do, and status is critical
    del env["NEON_API_KEY"]
    proc = drdeck("--config", str(config), "inventory", state_dir=tmp_path, **env)
    assert "cannot read it: NEON_API_KEY is not set" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    status = drdeck("--config", str(config), "status", "--json", state_dir=tmp_path, **env)
    items = {i["check"]: i for i in json.loads(status.stdout)["clusters"][0]["items"]}
    assert items["wal"]["state"] == "critical"
