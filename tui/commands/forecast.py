"""`drdeck forecast RUNBOOK`: how long a run should take, from the journal's earlier
successful runs of it on the same cluster (tui.journal.forecast), against its RTO."""

from __future__ import annotations

import json
from argparse import Namespace

from tui.durations import format_duration


def forecast_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.journal.forecast import forecast_for
    from tui.runbook.discovery import find_runbook
    from tui.runbook.loader import load_runbook
    from tui.runbook.params import parse_assignments

    config = load_config(args.config)
    runbook = load_runbook(find_runbook(args.runbook, list(config.runbook_dirs)))
    given = {**config.defaults_for(runbook.name), **parse_assignments(args.param)}
    found = forecast_for(config, runbook, given)
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
        return 0
    print(f"{runbook.name} on {found.cluster or 'the default cluster'}: {found.line()}")
    for step in found.steps:
        if step.forecast_s is None:
            print(f"  {step.id:<16} {'no history':<26} {step.title}")
            continue
        spread = f"({format_duration(step.low_s)}..{format_duration(step.high_s)})"
        print(f"  {step.id:<16} {format_duration(step.forecast_s):>8} {spread:<17} "
              f"{step.title} [{step.basis}]")
    return 0
