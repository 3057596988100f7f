"""`drdeck report --month YYYY-MM`: every drill and backup verification of a month."""

from __future__ import annotations

import sys
from argparse import Namespace
from datetime import UTC, datetime

from tui.errors import EXIT_OK


def report_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.journal.report import month_markdown, month_report, parse_month
    from tui.journal.store import open_journal

    month = datetime.now(UTC).strftime("%Y-%m") if args.month is None else args.month
    parse_month(month)  # a bad month is refused before anything is opened
    config = load_config(args.config)
    journal = open_journal(config)
    try:
        journal.mark_interrupted()
        report = month_report(journal, month, config)
    finally:
        journal.close()
    if args.format == "json":
        from tui.redact import json_text

        sys.stdout.write(json_text(report, indent=2) + "\n")
    else:
        sys.stdout.write(month_markdown(report))
    return EXIT_OK
