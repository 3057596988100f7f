"""Run the real `drdeck` command in a subprocess, as a user or a CI job would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def drdeck_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DRDECK_STATE_DIR": str(state_dir), "NO_COLOR": "1", **extra})
    return env


def drdeck(*args: str, state_dir: Path, cwd: Path | None = None, timeout: float = 120,
           **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env=drdeck_env(state_dir, **extra_env), stdin=subprocess.DEVNULL,
    )


def drdeck_in_background(*args: str, state_dir: Path, log: Path,
                         **extra_env: str) -> subprocess.Popen[str]:
    """`drdeck ARGS` started and left running; what it prints goes to `log` (a pipe nobody
    reads while it runs would stop it once full)."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "tui", *args], cwd=REPO,
                                env=drdeck_env(state_dir, **extra_env), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)


def stop(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """Ask a process to end; kill it when it has not within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def running_id(config, timeout: float = 20) -> str:
    """The id of the run a separate process has started, once the journal says it runs."""
    from tui.journal.follow import newest_running
    from tui.journal.store import open_journal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = open_journal(config)
        try:
            found = newest_running(journal)
        finally:
            journal.close()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the run never showed as running in the journal")
