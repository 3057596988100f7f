"""Run the real `drdeck` command in a subprocess, as a user or a CI job would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
