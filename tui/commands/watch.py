"""`drdeck watch [RUN_ID]`: follow a run another process executes, read only, through the
journal (this machine's, or the shared PostgreSQL one)."""

from __future__ import annotations

from argparse import Namespace

from tui.errors import InvalidInput


def watch_command(args: Namespace) -> int:
    from tui.commands.app import open_app
    from tui.config import load_config
    from tui.journal.follow import newest_running
    from tui.journal.store import open_journal

    config = load_config(args.config)
    journal = open_journal(config)
    try:
        run_id = args.run_id or newest_running(journal)
        if run_id is None:
            raise InvalidInput(f"no run is running in the journal at {journal.where}: give "
                               "a RUN_ID (drdeck drills lists them)")
        run_id = journal.run(run_id).run.id  # RunNotFound says so for an unknown one
    finally:
        journal.close()
    return open_app(config=config, watch=run_id)
