"""A journal run that can go on: its record, its runbook (unchanged) and its parameters.

Both the command line (`drdeck resume`) and the app's Home screen resume runs, so this
lives below both of them."""

from __future__ import annotations

import os
from pathlib import Path

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
    path = Path(run.runbook_path) if run.runbook_path else None
    if path is None or not path.is_file():
        path = find_runbook(run.runbook, list(config.runbook_dirs))
    runbook = load_runbook(path)
    if runbook.sha256 != run.runbook_sha256:
        raise InvalidInput(
            f"the runbook {run.runbook} has changed since run {run.id} started ({runbook.path}): "
            "resuming would not be the same run. Start a new run instead")
    masked = masked_params(run.params, runbook)
    stored = {name: value for name, value in run.params.items()
              if name in runbook.params and not runbook.params[name].is_secret
              and name not in masked}
    given = with_secrets_from_environment(runbook, given, os.environ)
    missing = [p.name for p in runbook.params.values() if p.is_secret and p.name not in given]
    if missing:
        raise InvalidInput("secrets are never stored: give them again in the environment, "
                           + " ".join(f"{secret_variable(name)}=..." for name in missing)
                           + ", or resume in the app, which asks for them")
    unknown = [name for name in masked if name not in given]
    if unknown:
        raise InvalidInput(
            f"run {run.id} connected with a password in {', '.join(unknown)}, and passwords "
            "are never stored: resume in the app, which asks for it, or give the connection "
            "string again without its password (-p NAME=...) with the password in "
            "~/.pgpass")
    params = resolve(runbook, {**stored, **given})
    return detail, runbook, params


def masked_params(stored: dict[str, str], runbook) -> list[str]:
    """Connection strings recorded with their password masked: a resume must be given
    them again, or it would connect with *** as the password."""
    return [name for name, value in stored.items()
            if name in runbook.params and runbook.params[name].type == "dsn"
            and "***" in str(value)]
