"""`drdeck resume RUN_ID`: continue an interrupted or failed run where it stopped."""

from __future__ import annotations

import os
from argparse import Namespace

from tui.errors import InvalidInput

RESUMABLE = ("interrupted", "failed", "aborted")


def load_resumable(config, run_id: str, given: dict[str, str]):
    """The run's record, its runbook and its parameters (secrets given again: typed in
    the app, or in the environment)."""
    from tui.journal.store import open_journal
    from tui.runbook.discovery import find_runbook
    from tui.runbook.loader import load_runbook
    from tui.runbook.params import resolve, secret_variable, with_secrets_from_environment

    journal = open_journal(config)
    try:
        journal.mark_interrupted()
        detail = journal.run(run_id)
    finally:
        journal.close()
    run = detail.run
    if run.status not in RESUMABLE:
        raise InvalidInput(f"run {run.id} is {run.status}: only an interrupted, failed or "
                           "aborted run can be resumed")
    from pathlib import Path

    path = Path(run.runbook_path) if run.runbook_path else None
    if path is None or not path.is_file():
        path = find_runbook(run.runbook, list(config.runbook_dirs))
    runbook = load_runbook(path)
    if runbook.sha256 != run.runbook_sha256:
        raise InvalidInput(
            f"the runbook {run.runbook} has changed since run {run.id} started ({runbook.path}): "
            "resuming would not be the same run. Start a new run instead")
    stored = {name: value for name, value in run.params.items()
              if name in runbook.params and not runbook.params[name].is_secret}
    given = with_secrets_from_environment(runbook, given, os.environ)
    missing = [p.name for p in runbook.params.values() if p.is_secret and p.name not in given]
    if missing:
        raise InvalidInput("secrets are never stored: give them again in the environment, "
                           + " ".join(f"{secret_variable(name)}=..." for name in missing)
                           + ", or resume in the app, which asks for them")
    params = resolve(runbook, {**stored, **given})
    return detail, runbook, params


def resume_command(args: Namespace) -> int:
    from tui.commands.run import _wants_app, run_headless
    from tui.config import load_config
    from tui.runbook.params import parse_assignments, refuse_secrets_on_the_command_line

    config = load_config(args.config)
    given = parse_assignments(args.param)
    if _wants_app(args):
        from tui.commands.app import open_app

        return open_app(config=config, resume_run=args.run_id, given=given)
    detail, runbook, params = load_resumable(config, args.run_id, given)
    refuse_secrets_on_the_command_line(runbook, given)
    return run_headless(runbook, params, yes=args.yes, as_json=args.json, dry_run=False,
                        mode=detail.run.mode, config=config, resume=detail)
