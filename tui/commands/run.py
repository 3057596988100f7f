"""`drdeck run`: load, resolve parameters, and run headless (the app comes through here too)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from argparse import Namespace

from tui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from tui.runbook.discovery import find_runbook
from tui.runbook.loader import load_runbook
from tui.runbook.params import (
    parse_assignments,
    refuse_secrets_on_the_command_line,
    resolve,
    with_secrets_from_environment,
)


def run_command(args: Namespace) -> int:
    from tui.config import load_config

    config = load_config(args.config)
    runbook = load_runbook(find_runbook(args.runbook, list(config.runbook_dirs)))
    assigned = parse_assignments(args.param)
    refuse_secrets_on_the_command_line(runbook, assigned)
    given = {**config.defaults_for(runbook.name), **assigned}
    given = with_secrets_from_environment(runbook, given, os.environ)
    given = {k: v for k, v in given.items() if k in runbook.params or k not in
             config.defaults_for(runbook.name)}
    mode = args.mode or ("incident" if args.incident else "drill")
    if _wants_app(args):
        from tui.commands.app import open_app

        return open_app(mode=mode, runbook=runbook, given=given, autostart=args.yes,
                        config=config)
    params = resolve(runbook, given)
    if args.dry_run and not args.json:
        _print_forecast(config, runbook, given)
    return run_headless(runbook, params, yes=args.yes, as_json=args.json,
                        dry_run=args.dry_run, mode=mode, keep_workdir=args.keep_workdir,
                        config=config)


def _print_forecast(config, runbook, given) -> None:
    """How long the run would take (tui.journal.forecast), before its steps are listed."""
    from tui.errors import DrdeckError
    from tui.journal.forecast import forecast_for

    try:
        print(forecast_for(config, runbook, given).line(), flush=True)
    except DrdeckError as exc:  # a dry run shows the steps even without a journal
        print(f"forecast: cannot read the journal ({exc})", flush=True)


def _wants_app(args: Namespace) -> bool:
    """The app when a person is at a terminal; headless for pipes, cron, CI and --json."""
    if args.headless or args.json or args.dry_run:
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_headless(runbook, params, *, yes: bool, as_json: bool, dry_run: bool, mode: str,
                 keep_workdir: bool = False, config=None, resume=None) -> int:
    from tui.engine.runner import Runner
    from tui.headless import HeadlessOperator, HumanPrinter, JsonPrinter

    runner = Runner(runbook, params, HeadlessOperator(yes=yes), mode=mode, dry_run=dry_run,
                    keep_workdir=keep_workdir, config=config,
                    run_id=resume.run.id if resume else None, resume=resume)
    journal = notifier = None
    if not dry_run:
        runner.check_environment()
        journal, notifier = record(runner, config, resume)
    try:
        runner.subscribe(JsonPrinter(sys.stdout) if as_json else HumanPrinter(sys.stdout))
        result = asyncio.run(_run_with_signals(runner))
    finally:
        if journal is not None:
            journal.close()
        if notifier is not None:
            notifier.wait()  # bounded: each webhook has a deadline, and they go at once
    if not as_json and result.workdir is not None and result.status != "succeeded":
        print(f"work directory kept for inspection: {result.workdir}", file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.status == "succeeded" else EXIT_FAILED


async def _run_with_signals(runner):
    """Ctrl-C or SIGTERM stops the current step cleanly and records the run as aborted."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.abort, "interrupted")
    try:
        return await runner.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def record(runner, config, resume=None):
    """Journal the run: its row and its lock first (refused if the target is taken); and
    notify its failure. The journal and the notifier."""
    from tui.journal.recorder import Recorder
    from tui.journal.store import open_journal
    from tui.notify import RunNotifier

    journal = open_journal(config)
    journal.mark_interrupted()
    recorder = Recorder(journal, runner, resumed=resume)
    try:
        # read before the row is written: an interrupted read leaves no run behind
        planned = recorder.read_volumes() if recorder.wants_volumes() else None
        recorder.begin(runner.lock_key(), planned)
    except BaseException:
        journal.close()
        raise
    runner.subscribe(recorder)
    notifier = RunNotifier(runner)
    runner.subscribe(notifier)
    return journal, notifier
