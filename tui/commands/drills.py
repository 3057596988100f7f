"""`drdeck drills`: the journal's runs, newest first. `drdeck drills show RUN_ID`: one run."""

from __future__ import annotations

import json
import sys
from argparse import Namespace

from tui.errors import EXIT_OK, InvalidInput

DEFAULT_LIMIT = 50


def drills_command(args: Namespace) -> int:
    if getattr(args, "drills_command", None) == "show":
        return show_command(args)
    from tui.journal.report import FORMAT, run_summary

    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if limit < 0:
        raise InvalidInput("--limit must be 0 (all runs) or more")
    journal = _journal(args)
    try:
        rows = journal.runs(runbook=args.runbook, limit=limit + 1 if limit else None)
        where = journal.where
    finally:
        journal.close()
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    runs = [run_summary(r) for r in rows]
    if args.json:
        json.dump({"format": FORMAT, "journal": where, "runs": runs, "more": more},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not runs:
        which = f" of {args.runbook}" if args.runbook else ""
        print(f"no runs{which} in the journal at {where}")
        return EXIT_OK
    _print_table(runs)
    if more:
        print(f"(the {limit} newest; --limit 0 shows all)")
    return EXIT_OK


def show_command(args: Namespace) -> int:
    from tui.journal.report import run_markdown, run_report

    journal = _journal(args)
    try:
        report = run_report(journal.run(args.run_id))
    finally:
        journal.close()
    if args.format == "json":
        from tui.redact import json_text

        sys.stdout.write(json_text(report, indent=2) + "\n")
    else:
        sys.stdout.write(run_markdown(report))
    return EXIT_OK


def _journal(args: Namespace):
    from tui.config import load_config
    from tui.journal.store import open_journal

    journal = open_journal(load_config(getattr(args, "config", None)))
    journal.mark_interrupted()  # a run whose process died shows as interrupted, not running
    return journal


def _print_table(runs: list[dict]) -> None:
    from tui.journal.report import measured_text, share_text, utc_text
    from tui.redact import escape_controls

    header = ("DATE (UTC)", "RUN", "RUNBOOK", "MODE", "RESULT", "RTO", "% TARGET", "RPO")
    rows = []
    for run in runs:
        rto, rpo = run["rto"], run["rpo"]
        result = run["status"]
        if run["dry_run"]:
            result += " (dry run)"
        if rto["verdict"] == "missed":
            result += ", RTO MISSED"
        if rpo["verdict"] == "missed":
            result += ", RPO MISSED"
        rows.append((
            utc_text(run["started_at"], short=True), run["id"], run["runbook"],
            run["mode"].upper(), result, measured_text(rto["measured_s"]), share_text(rto),
            measured_text(rpo["measured_s"]),
        ))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    right = {5, 6, 7}

    def line(cells) -> str:
        return "  ".join(f"{c:>{w}}" if i in right else f"{c:<{w}}"
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(header))
    for run, row in zip(runs, rows, strict=True):
        text = line(row)
        if run["resume_hint"]:
            text += f"  → {run['resume_hint']}"
        print(escape_controls(text))  # a shared journal is written by other machines too
