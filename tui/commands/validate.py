"""`drdeck validate` and `drdeck runbooks`."""

from __future__ import annotations

import sys

from tui.errors import EXIT_INVALID, RunbookInvalid
from tui.runbook.discovery import discover
from tui.runbook.loader import load_runbook


def validate_command(paths: list[str]) -> int:
    status = 0
    for path in paths:
        try:
            runbook = load_runbook(path)
        except RunbookInvalid as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = EXIT_INVALID
            continue
        count = len(runbook.steps)
        print(f"ok: {path} ({count} step{'s' if count != 1 else ''})")
    return status


def list_command(config_path: str | None = None) -> int:
    from tui.config import load_config

    found = discover(list(load_config(config_path).runbook_dirs))
    if not found:
        print("no runbooks found")
        return 0
    width = max(len(f.path.stem) for f in found)
    for item in found:
        if item.runbook is None:
            print(f"{item.path.stem:<{width}}  INVALID  {item.path} (drdeck validate {item.path})")
            continue
        rb = item.runbook
        print(f"{rb.name:<{width}}  {rb.scenario:<8}  {len(rb.steps):>2} steps  {rb.title}")
    return 0
