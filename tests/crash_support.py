"""Helpers for tests that kill drdeck or watch its processes: what runs, and what it shows `ps`.

Every process of the machine is visible in /proc: its command line (what `ps` shows) and,
for the tests' own user, its environment. Tests read them to prove a secret never reaches
a command line, and to wait for the children a SIGKILLed drdeck left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def processes() -> dict[int, tuple[bytes, bytes]]:
    """Every process: its command line as `ps` shows it (arguments joined by NUL, where
    PostgreSQL's backends put their titles) and its name as `top` shows it (comm)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            found[int(entry.name)] = ((entry / "cmdline").read_bytes(),
                                      (entry / "comm").read_bytes())
    return found


def command_lines() -> dict[int, bytes]:
    """Every process's command line as `ps` sees it."""
    return {pid: line for pid, (line, _) in processes().items()}


def processes_mentioning(needle: str) -> list[int]:
    """Processes whose command line contains `needle`."""
    raw = needle.encode()
    return [pid for pid, line in command_lines().items() if raw in line and pid != os.getpid()]


def wait_gone(needle: str, timeout: float = 10.0) -> None:
    """Wait until no process mentions `needle` (children a killed drdeck left running)."""
    deadline = time.monotonic() + timeout
    while processes_mentioning(needle):
        if time.monotonic() > deadline:
            for pid in processes_mentioning(needle):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"processes mentioning {needle!r} outlived {timeout} s")
        time.sleep(0.01)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """JSON events printed by a process that may have died mid-line: the torn tail is dropped."""
    events = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            assert index == len(lines) - 1, f"a torn line that is not the last: {line!r}"
    return events


@contextlib.contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The process is killed and waited for, whatever the test does with it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
