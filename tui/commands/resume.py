"""`drdeck resume RUN_ID`: continue an interrupted or failed run where it stopped."""

from __future__ import annotations

from argparse import Namespace

from tui.journal.resumable import load_resumable


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
