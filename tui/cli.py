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

    forecast = sub.add_parser(
        "forecast", parents=[per_command], help="how long a run should take, against the RTO",
        description="Each step's expected duration: the median of the journal's earlier "
                    "successful runs of the runbook on the same cluster, with their spread, "
                    "and the total against the runbook's RTO target.")
    forecast.add_argument("runbook", help="a runbook file or name, as for run")
    forecast.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a parameter of the run (the cluster, say; repeatable)")
    forecast.add_argument("--json", action="store_true", help="machine-readable output")

    watch = sub.add_parser(
        "watch", parents=[per_command], help="follow a run another process executes, read only",
        description="Open a read-only run screen on a run that another process is executing, "
                    "on this machine or another, through the journal: its steps, checks, "
                    "output, RTO clock and forecast. No key acts on the run.")
    watch.add_argument("run_id", nargs="?", metavar="RUN_ID",
                       help="the run's id or its first characters (default: the newest "
                            "running one)")

    serve = sub.add_parser(
        "serve", parents=[per_command], help="the journal as a read-only web page, live",
        description="Serve a read-only web page of the journal (the runs in progress and the "
                    "recent ones; a run's steps, checks, clock, forecast and live output) and "
                    "its JSON API. Every request needs the token: $DRDECK_SERVE_TOKEN, or one "
                    "made and printed at start.")
    serve.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                       help="where to listen (default 127.0.0.1:8765; 0.0.0.0:8765 for every "
                            "address; port 0 for any free one)")

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

    demo = sub.add_parser(
        "demo", help="a sandbox to drill on: a cluster with data, backups and WAL archiving",
        description="Build a throwaway sandbox (a PostgreSQL cluster with live writes, "
                    "encrypted snapshots, a base backup and WAL archiving) and open drdeck on "
                    "it; everything is removed on exit.")
    demo.add_argument("--dir", metavar="DIR", help="build it here (default: a new temporary "
                      "directory)")
    demo.add_argument("--keep", action="store_true", help="keep the sandbox on exit")
    demo.add_argument("--headless", action="store_true",
                      help="run a snapshot-restore and a PITR drill, print the journal, exit")

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
    push.add_argument("--spool", metavar="DIR",
                      help="archive ahead: a background pusher archives every ready file, "
                           "two at a time, and marks it in DIR (private to the postgres "
                           "account); this call waits for its file's mark")
    push.add_argument("path", metavar="PATH", help="the file (%%p)")
    archive_line = wal_sub.add_parser(
        "archive-command", parents=[per_command],
        help="print the archive_command line, archiving ahead with --spool",
        description="Print an archive_command for this configuration. With --spool, a "
        "background pusher archives every ready WAL file two at a time, and the shell "
        "takes its mark for each file without starting drdeck.")
    archive_line.add_argument("--cluster", metavar="NAME",
                              help="default: the only configured cluster")
    archive_line.add_argument("--spool", metavar="DIR",
                              help="a directory private to the postgres account")
    ahead = wal_sub.add_parser("push-ahead", parents=[per_command], help=argparse.SUPPRESS)
    ahead.add_argument("--cluster", metavar="NAME")
    ahead.add_argument("--spool", required=True)
    ahead.add_argument("wal_dir")
    fetch = wal_sub.add_parser("fetch", parents=[per_command],
                               help="restore one WAL file (restore_command: %%f %%p)")
    fetch.add_argument("--cluster", metavar="NAME", help="default: the only configured cluster")
    fetch.add_argument("--spool", metavar="DIR",
                       help="prefetch the following segments into DIR, and look there first")
    fetch.add_argument("--prefetch", type=int, default=16, metavar="N",
                       help="segments to keep ready ahead, with --spool (default 16)")
    fetch.add_argument("name", metavar="NAME", help="the file wanted (%%f)")
    fetch.add_argument("dest", metavar="DEST", help="where to put it (%%p)")
    line = wal_sub.add_parser(
        "restore-command", parents=[per_command],
        help="print the restore_command line for a standby or a recovery set up by hand",
        description="Print a restore_command for this configuration. With --spool, segments "
        "are prefetched into DIR in the background and the shell moves each one into place "
        "without starting drdeck: replay at about the speed of a local cp.")
    line.add_argument("--cluster", metavar="NAME", help="default: the only configured cluster")
    line.add_argument("--spool", metavar="DIR",
                      help="a directory the postgres account can write (e.g. beside pg_wal)")
    line.add_argument("--prefetch", type=int, default=16, metavar="N",
                      help="segments to keep ready ahead, with --spool (default 16)")
    catalog_map = wal_sub.add_parser(
        "catalog-map", parents=[per_command],
        help="record which relation each relfilenode is now, to name WAL events by",
        description="Read every database's relations (oid, relfilenode, schema, name, "
        "kind) from the live server into the repository. drdeck takes one with every "
        "base backup; run this from cron too (hourly, say) when another engine takes the "
        "backups: WAL written after a map is named by it.")
    catalog_map.add_argument("--cluster", metavar="NAME",
                             help="default: the only configured cluster")
    events = wal_sub.add_parser(
        "events", parents=[per_command],
        help="find destructive transactions in the archived WAL (DROP, TRUNCATE, big DELETE)",
        description="Read the cluster's archived WAL (drdeck's archive, or that of an engine "
        "it is backed up by) with pg_waldump and list DROP TABLE, TRUNCATE, DROP DATABASE, table "
        "rewrites and DELETEs or UPDATEs of many rows, newest first, named by the catalog "
        "maps: what to restore to just before (pitr-restore -p target=XID -p "
        "target_kind=xid -p inclusive=false).")
    events.add_argument("--cluster", metavar="NAME", help="default: the only configured cluster")
    events.add_argument("--source", metavar="KIND",
                        help="pitr (drdeck's archive) or the key of an engine's table in "
                             "the cluster: when the cluster has several")
    events.add_argument("--since", metavar="TIME",
                        help="only events committed at or after; the WAL is read from 10 "
                             "minutes before it")
    events.add_argument("--until", metavar="TIME",
                        help="only events committed at or before; the WAL is read up to it")
    events.add_argument("--database", metavar="NAME", help="only events in this database")
    events.add_argument("--min-rows", type=int, default=1000, metavar="N",
                        help="a DELETE or UPDATE is listed from N rows in one transaction "
                             "(default 1000)")
    events.add_argument("--json", action="store_true", help="a JSON array, newest first")
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

    from tui.commands.status import THRESHOLDS_HELP

    status = sub.add_parser(
        "status", parents=[per_command], help="is every cluster restorable within its targets?",
        description="Per cluster: the newest snapshot's age and the WAL archive lag against\n"
                    "the RPO, the last verification, the last drill and its RTO against the\n"
                    "target, the next drill due; each ok, warning or critical.",
        epilog=THRESHOLDS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--cluster", metavar="NAME", help="one cluster (default: all)")
    status_format = status.add_mutually_exclusive_group()
    status_format.add_argument("--json", action="store_true", help="machine-readable output")
    status_format.add_argument("--prometheus", action="store_true",
                               help="Prometheus text format, for a textfile collector")
    status.add_argument("--notify", action="store_true",
                        help="post rpo_breach and drill_overdue to the [notify] webhooks")

    init = sub.add_parser(
        "init", help="write a commented drdeck.toml and a backup schedule",
        description="Write a commented drdeck.toml and the schedule for snapshot-backup and\n"
                    "verify-backup: a crontab file (default), systemd units (--systemd) or a\n"
                    "GitHub Actions workflow (--github). Asks in a terminal for what the flags\n"
                    "do not say; never overwrites a file without --force.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  drdeck init --cluster prod --dsn-env DATABASE_URL --database app "
               "--repository-type s3 --bucket backups --recipient backup@example.com --github")
    init.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                      help="where to write drdeck.toml (default: ./drdeck.toml)")
    init.add_argument("--schedule", choices=("hourly", "daily"),
                      help="how often snapshot-backup runs (default: daily); verify-backup "
                           "runs daily")
    init.add_argument("--systemd", action="store_true",
                      help="write systemd service and timer units instead of a crontab file")
    init.add_argument("--github", action="store_true",
                      help="write .github/workflows/database-backup.yml")
    init.add_argument("--cluster", metavar="NAME", help="the cluster's name (default: prod)")
    init_dsn = init.add_mutually_exclusive_group()
    init_dsn.add_argument("--dsn", metavar="DSN", help="connection string, without a password")
    init_dsn.add_argument("--dsn-env", metavar="VAR",
                          help="read the connection string from this variable at run time "
                               "(default: DATABASE_URL)")
    init.add_argument("--database", action="append", metavar="NAME",
                      help="a database to back up (repeatable; default: the DSN's)")
    init.add_argument("--repository-type", choices=("local", "s3"),
                      help="where backups go (default: s3 with --bucket, else local)")
    init.add_argument("--path", metavar="DIR", help="local repository directory")
    init.add_argument("--bucket", metavar="BUCKET", help="S3 bucket")
    init.add_argument("--endpoint-url", metavar="URL",
                      help="S3-compatible endpoint (R2, MinIO, ...; default: AWS)")
    init.add_argument("--region", metavar="REGION", help="S3 region")
    init.add_argument("--recipient", action="append", metavar="KEY",
                      help="GnuPG recipient (email or fingerprint; repeatable; none: "
                           "unencrypted snapshots)")
    init.add_argument("--force", action="store_true", help="replace existing files")

    drills = sub.add_parser(
        "drills", parents=[per_command], help="the journal's runs: results, RTO and RPO",
        description="Every recorded run, newest first, with its result and its RTO and RPO "
                    "against the runbook's targets. `drills show RUN_ID` prints one run's "
                    "report.")
    drills.add_argument("--runbook", metavar="NAME", help="only this runbook's runs")
    drills.add_argument("--json", action="store_true", help="machine-readable output")
    drills.add_argument("--limit", type=int, default=None, metavar="N",
                        help="the N newest runs (default 50; 0: all)")
    drills_sub = drills.add_subparsers(dest="drills_command", metavar="COMMAND")
    show = drills_sub.add_parser(
        "show", parents=[per_command], help="one run's report, for an auditor",
        description="Who ran it, when, what, each step's timing, the checks, and the RTO and "
                    "RPO against the runbook's targets.")
    show.add_argument("run_id", metavar="RUN_ID", help="the run's id, or its first characters")
    show.add_argument("--format", choices=("md", "json"), default="md",
                      help="Markdown (default) or JSON")

    report = sub.add_parser(
        "report", parents=[per_command], help="a month's drills and backup verifications",
        description="Every drill and backup verification of a month, with targets met or "
                    "missed.")
    report.add_argument("--month", metavar="YYYY-MM", help="default: the current month (UTC)")
    report.add_argument("--format", choices=("md", "json"), default="md",
                        help="Markdown (default) or JSON")

    docs = sub.add_parser(
        "docs", parents=[per_command], help="write the backup policy and the recovery runbook",
        description="Write backup-policy.md and recovery-runbook.md from the configuration, "
                    "the runbooks and the journal. Existing files are replaced.")
    docs.add_argument("--out", metavar="DIR", help="where to write (default: ./docs/generated)")
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
        if args.command == "watch":
            from tui.commands.watch import watch_command

            return watch_command(args)
        if args.command == "serve":
            from tui.commands.serve import serve_command

            return serve_command(args)
        if args.command == "forecast":
            from tui.commands.forecast import forecast_command

            return forecast_command(args)
        if args.command == "demo":
            from tui.commands.demo import demo_command

            return demo_command(args)
        if args.command == "validate":
            from tui.commands.validate import validate_command

            return validate_command(args.paths)
        if args.command == "runbooks":
            from tui.commands.validate import list_command

            return list_command(args.config)
        if args.command == "wal":
            from tui.commands import wal

            return {"push": wal.push_command, "push-ahead": wal.push_ahead_command,
                    "archive-command": wal.archive_command_line,
                    "fetch": wal.fetch_command,
                    "prefetch": wal.prefetch_command,
                    "restore-command": wal.restore_command_line,
                    "catalog-map": wal.catalog_map_command,
                    "events": _wal_events}[args.wal_command](args)
        if args.command == "inventory":
            from tui.commands.inventory import inventory_command

            return inventory_command(args)
        if args.command == "status":
            from tui.commands.status import status_command

            return status_command(args)
        if args.command == "init":
            from tui.commands.init import init_command

            return init_command(args)
        if args.command == "drills":
            from tui.commands.drills import drills_command

            return drills_command(args)
        if args.command == "report":
            from tui.commands.report import report_command

            return report_command(args)
        if args.command == "docs":
            from tui.commands.docs import docs_command

            return docs_command(args)
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


def _wal_events(args: argparse.Namespace) -> int:
    from tui.commands.wal_events import events_command

    return events_command(args)
