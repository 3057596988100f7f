"""The `drdeck` command: parse arguments, call the core, map errors to exit codes.

Kept light on purpose: `drdeck --help` imports nothing heavy, and every
subcommand imports what it needs when it runs. No traceback reaches a user;
DRDECK_DEBUG=1 shows one for a bug report.
"""

from __future__ import annotations

import argparse
import os
import sys

from tui import __version__
from tui.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, DrdeckError, RunbookInvalid

DESCRIPTION = """\
A terminal console for PostgreSQL disaster recovery.

Runbooks are TOML step lists (restore a snapshot, restore to a point in time,
take and verify backups). drdeck walks you through one with live output,
progress, checks and an RTO clock, or runs it headless from cron and CI.
"""

CONFIG_HELP = ("drdeck.toml to use (default: $DRDECK_CONFIG, ./drdeck.toml, then the user "
               "config directory)")

EPILOG = """\
examples:
  drdeck run health-check -p dsn=postgresql://app@db.internal/app
  drdeck run health-check -p dsn=... --json > run.jsonl
  drdeck run snapshot-restore --dry-run
  drdeck validate runbooks/*.toml

exit codes: 0 succeeded, 1 failed or aborted, 2 invalid input, 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2 with a hint, as argparse does
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"drdeck: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="drdeck",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"drdeck {__version__}")
    parser.add_argument("--incident", action="store_true",
                        help="open the app in INCIDENT mode (default: DRILL)")
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    # --config is accepted after the subcommand too; there it must not reset the value
    per_command = argparse.ArgumentParser(add_help=False)
    per_command.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                             help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run a runbook", description="Run a runbook, in the app or headless.",
        parents=[per_command],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Headless when --headless is given or stdin/stdout is not a terminal.",
    )
    run.add_argument("runbook", help="a runbook file, or a name found in ./runbooks/ or the "
                     "shipped runbooks")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="set a parameter (repeatable)")
    run.add_argument("--yes", action="store_true",
                     help="confirm steps and acknowledge manual steps without a person")
    run.add_argument("--json", action="store_true", help="JSON lines, one event per line")
    run.add_argument("--headless", action="store_true", help="never open the app")
    run.add_argument("--dry-run", action="store_true",
                     help="show every step with its rendered arguments; run nothing")
    run.add_argument("--mode", choices=("drill", "incident"), default=None,
                     help="recorded with the run (default: drill)")
    run.add_argument("--incident", action="store_true", help="same as --mode incident")
    run.add_argument("--keep-workdir", action="store_true",
                     help="keep the run's work directory after success")

    resume = sub.add_parser(
        "resume", parents=[per_command], help="continue an interrupted or failed run",
        description="Continue a run from its first unfinished step, with the same "
                    "parameters (secrets must be given again), as one run in the journal.")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a secret parameter, given again")
    resume.add_argument("--yes", action="store_true",
                        help="confirm steps and acknowledge manual steps without a person")
    resume.add_argument("--json", action="store_true", help="JSON lines, one event per line")
    resume.add_argument("--headless", action="store_true", help="never open the app")
    resume.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)

    validate = sub.add_parser("validate", help="check runbook files without running anything")
    validate.add_argument("paths", nargs="+", metavar="PATH")

    sub.add_parser("runbooks", help="list the runbooks drdeck can find", parents=[per_command])

    wal = sub.add_parser(
        "wal", help="archive_command and restore_command for the WAL archive",
        description="Push and fetch WAL files. In postgresql.conf:\n"
        "  archive_command = 'drdeck --config /etc/drdeck.toml wal push --cluster prod %p'\n"
        "  restore_command = 'drdeck --config /etc/drdeck.toml wal fetch --cluster prod %f %p'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    wal_sub = wal.add_subparsers(dest="wal_command", metavar="COMMAND", required=True)
    push = wal_sub.add_parser("push", parents=[per_command],
                              help="archive one WAL file (archive_command: %%p)")
    push.add_argument("--cluster", metavar="NAME", help="default: the only configured cluster")
    push.add_argument("-v", "--verbose", action="store_true", help="say what happened")
    push.add_argument("path", metavar="PATH", help="the file (%%p)")
    fetch = wal_sub.add_parser("fetch", parents=[per_command],
                               help="restore one WAL file (restore_command: %%f %%p)")
    fetch.add_argument("--cluster", metavar="NAME", help="default: the only configured cluster")
    fetch.add_argument("--spool", metavar="DIR",
                       help="prefetch the following segments into DIR, and look there first")
    fetch.add_argument("--prefetch", type=int, default=16, metavar="N",
                       help="segments to keep ready ahead, with --spool (default 16)")
    fetch.add_argument("name", metavar="NAME", help="the file wanted (%%f)")
    fetch.add_argument("dest", metavar="DEST", help="where to put it (%%p)")
    prefetch = wal_sub.add_parser("prefetch", parents=[per_command],
                                  help=argparse.SUPPRESS)
    prefetch.add_argument("--cluster", metavar="NAME")
    prefetch.add_argument("--spool", required=True)
    prefetch.add_argument("--after", required=True)
    prefetch.add_argument("--segment-size", type=int, required=True)
    prefetch.add_argument("--depth", type=int, default=16)

    inventory = sub.add_parser(
        "inventory", parents=[per_command],
        help="what snapshots exist, how old, verified or not",
        description="Every snapshot of each configured cluster, with its age against the "
                    "cluster's RPO. --json is a stable contract (docs/inventory-json.md).")
    inventory.add_argument("--cluster", metavar="NAME", help="one cluster (default: all)")
    inventory.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        # Nothing needs collecting on the way out; without this the interpreter's
        # last collection walks every object botocore loaded (0.1 s per command).
        import gc

        gc.freeze()


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from tui.commands.run import run_command

            return run_command(args)
        if args.command == "resume":
            from tui.commands.resume import resume_command

            return resume_command(args)
        if args.command == "validate":
            from tui.commands.validate import validate_command

            return validate_command(args.paths)
        if args.command == "runbooks":
            from tui.commands.validate import list_command

            return list_command(args.config)
        if args.command == "wal":
            from tui.commands import wal

            return {"push": wal.push_command, "fetch": wal.fetch_command,
                    "prefetch": wal.prefetch_command}[args.wal_command](args)
        if args.command == "inventory":
            from tui.commands.inventory import inventory_command

            return inventory_command(args)
        if args.command is None:
            from tui.commands.app import open_app

            return open_app(mode="incident" if args.incident else "drill",
                            config_path=args.config)
        parser.print_help()
        return 0
    except RunbookInvalid as exc:  # PATH:LINE:COL lines, as editors and `validate` print them
        print(exc, file=sys.stderr)
        return exc.exit_code
    except DrdeckError as exc:
        print(f"drdeck: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("drdeck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`drdeck ... | head`); say nothing more
        _silence_stdout()
        return EXIT_FAILED
    except Exception as exc:  # a bug: one clear line, the traceback only on request
        if os.environ.get("DRDECK_DEBUG"):
            raise
        from tui.redact import mask_credentials

        print(f"drdeck: internal error: {type(exc).__name__}: {mask_credentials(str(exc))}\n"
              "run again with DRDECK_DEBUG=1 to see the traceback, and please report it",
              file=sys.stderr)
        return EXIT_FAILED


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
