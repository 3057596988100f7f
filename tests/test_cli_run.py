"""`drdeck run` as a user meets it: exit codes, human and JSON output, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_support import REPO, drdeck, drdeck_env, json_events

RUNBOOK = """
[runbook]
name = "cli-test"
title = "CLI test"
rto = "1h"

[params.who]
type = "string"
help = "Who to greet"

[params.token]
type = "secret"

[[steps]]
id = "greet"
title = "Greet"
action = "shell"
with = { command = ["echo", "hello ${who}"] }

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }
"""


def write(tmp_path: Path, text: str, name: str = "cli-test.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_json_output_follows_the_contract(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK)
    proc = drdeck("run", str(path), "-p", "who=ops", "--json", state_dir=tmp_path,
                  DRDECK_SECRET_TOKEN="t0ken-xyz")
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc.stdout)
    kinds = [e["event"] for e in events]
    assert kinds == ["run_started", "step_started", "output", "step_finished", "step_started",
                     "milestone", "step_finished", "run_finished"]
    started = events[0]
    assert {"run_id", "runbook", "ts"} <= started.keys() and started["runbook"] == "cli-test"
    assert events[1].keys() >= {"step", "title", "attempt"}
    assert events[2] == {**events[2], "step": "greet", "stream": "stdout", "line": "hello ops"}
    assert events[3].keys() >= {"status", "duration_s", "error"}
    assert events[5].keys() >= {"name", "elapsed_s"}
    finished = events[-1]
    assert finished["status"] == "succeeded" and finished["rto_s"] <= finished["duration_s"]
    assert all(e["ts"].endswith("Z") for e in events)
    assert "t0ken-xyz" not in proc.stdout + proc.stderr


def test_human_output_shows_steps_and_the_rto_verdict(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK)
    proc = drdeck("run", str(path), "-p", "who=ops", state_dir=tmp_path,
                  DRDECK_SECRET_TOKEN="x")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "▶ greet  Greet" in out
    assert "│ hello ops" in out
    assert "✓ greet  succeeded" in out
    assert "SUCCEEDED in" in out and "2 succeeded, 0 failed, 0 skipped" in out
    assert "of 1:00:00 target" in out and "met)" in out


def test_missing_parameters_exit_2_and_are_all_listed(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK)
    proc = drdeck("run", str(path), state_dir=tmp_path)
    assert proc.returncode == 2
    assert "missing required parameters" in proc.stderr
    assert "-p who=...   string: Who to greet" in proc.stderr
    assert "DRDECK_SECRET_TOKEN=... in the environment   secret" in proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_a_secret_comes_from_the_environment_not_the_command_line(tmp_path: Path) -> None:
    """`-p token=...` would be readable in ps: refused; $DRDECK_SECRET_TOKEN is not."""
    text = RUNBOOK.replace('with = { command = ["echo", "hello ${who}"] }',
                           'with = { command = "echo hello ${who}; echo length $${#TOKEN}", '
                           'env = { TOKEN = "${token}" } }')
    path = write(tmp_path, text)
    proc = drdeck("run", str(path), "-p", "who=ops", "--headless", state_dir=tmp_path,
                  DRDECK_SECRET_TOKEN="hunter2-hunter2")
    assert proc.returncode == 0, proc.stderr
    assert "length 15" in proc.stdout  # it reached the step, through the environment
    assert "params: who=ops  token=***" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr

    typed = drdeck("run", str(path), "-p", "who=ops", "-p", "token=hunter2-hunter2",
                   "--headless", state_dir=tmp_path)
    assert typed.returncode == 2
    assert typed.stderr.strip() == (
        "drdeck: token: a secret is not taken with -p, where every user of this machine can "
        "read it (ps) and the shell history keeps it; give it in the environment instead, "
        "DRDECK_SECRET_TOKEN=..., or type it in the app")
    assert typed.stdout == "" and "hunter2" not in typed.stderr


def test_bad_parameter_values_and_names_exit_2(tmp_path: Path) -> None:
    text = RUNBOOK.replace('[params.who]\ntype = "string"', '[params.who]\ntype = "int"')
    path = write(tmp_path, text)
    proc = drdeck("run", str(path), "-p", "who=many", "-p", "colour=red", state_dir=tmp_path,
                  DRDECK_SECRET_TOKEN="x")
    assert proc.returncode == 2
    assert "parameter who: 'many' is not a whole number" in proc.stderr
    assert "unknown parameter 'colour'" in proc.stderr


def test_a_runbook_is_found_by_name_in_the_shipped_set(tmp_path: Path) -> None:
    proc = drdeck("run", "health-check", "-p", "dsn=host=/nonexistent", "--dry-run",
                  state_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "health-check · Check a cluster before you trust it" in proc.stdout
    assert "DRY RUN" in proc.stdout


def test_an_unknown_runbook_name_lists_what_exists(tmp_path: Path) -> None:
    proc = drdeck("run", "no-such-runbook", state_dir=tmp_path)
    assert proc.returncode == 2
    assert "no runbook named 'no-such-runbook'" in proc.stderr
    assert "health-check" in proc.stderr


def test_an_invalid_runbook_exits_2_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace('action = "shell"', 'action = "shel"'))
    proc = drdeck("run", str(path), state_dir=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:17:1: unknown action")
    assert f"{path}:17:1: unknown action 'shel'" in proc.stderr


def test_a_failed_run_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace('["echo", "hello ${who}"]', '"exit 7"'))
    proc = drdeck("run", str(path), "-p", "who=x", state_dir=tmp_path, DRDECK_SECRET_TOKEN="x")
    assert proc.returncode == 1
    assert "error: command exited with code 7" in proc.stdout
    assert "FAILED" in proc.stdout


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, RUNBOOK.replace('["echo", "hello ${who}"]', f'"touch {marker}"'))
    proc = drdeck("run", str(path), "-p", "who=x", "--dry-run", "--json", state_dir=tmp_path,
                  DRDECK_SECRET_TOKEN="x")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    kinds = [e["event"] for e in json_events(proc.stdout)]
    assert kinds == ["run_started", "step_planned", "step_planned", "run_finished"]


def test_ctrl_c_stops_the_step_records_the_run_and_exits_130(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace('["echo", "hello ${who}"]',
                                           '"echo started; sleep 60"'))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "run", str(path), "-p", "who=x", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=drdeck_env(tmp_path, DRDECK_SECRET_TOKEN="x"), stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["event"] == "output":
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, stderr
    events = json_events(rest)
    assert events[-2]["event"] == "step_finished" and events[-2]["status"] == "failed"
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "aborted"
    assert events[-1]["error"] == "interrupted"
    assert "Traceback" not in stderr


def test_help_and_version(tmp_path: Path) -> None:
    proc = drdeck("--help", state_dir=tmp_path)
    assert proc.returncode == 0
    assert "run" in proc.stdout and "validate" in proc.stdout and "exit codes" in proc.stdout
    assert drdeck("--version", state_dir=tmp_path).stdout.startswith("drdeck ")
    assert drdeck("run", state_dir=tmp_path).returncode == 2
