"""`drdeck wal events`: the destructive transactions in a cluster's archived WAL, newest
first, named; what to restore to just before."""

from __future__ import annotations

import json
import shlex
import sys
import time
from argparse import Namespace
from datetime import UTC, datetime
from typing import Any

from tui.errors import InvalidInput


def events_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.wal.finder import find_events, restore_before
    from tui.wal.scan import eta_line

    config = load_config(args.config)
    cluster = config.cluster(args.cluster)
    since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if sys.stderr.isatty() or now - last[0] >= 1 or done == total:
            last[0] = now
            print(f"\r{eta_line(done, total, started)}", end="" if sys.stderr.isatty()
                  else "\n", file=sys.stderr, flush=True)

    found = find_events(config, cluster, kind=args.source, min_rows=args.min_rows,
                        since=since, until=until, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    named = [n for n in found.events if _inside(n.event.commit_time, since, until)]
    if args.database:
        named = [n for n in named if n.database == args.database]
    named.reverse()  # newest first
    for problem in found.problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([n.to_json() for n in named], indent=2))
        return 0
    took = time.monotonic() - started
    of_all = f" of {found.archived}" if found.archived > found.segments else ""
    print(f"{found.segments}{of_all} WAL segments ({found.bytes / (1 << 20):,.0f} MiB) of "
          f"{found.where} read in {took:.1f} s: {len(named)} destructive "
          f"transaction{'s' if len(named) != 1 else ''}")
    for item in named:
        print(_line(item))
    if named and found.source.restore_runbook:
        given = restore_before(named[0], found.source, cluster.name)
        shown = " ".join(f"-p {shlex.quote(f'{key}={value}')}" for key, value in given.items()
                         if value)
        print(f"\nTo restore to just before the newest: drdeck run "
              f"{found.source.restore_runbook} {shown} -p data_dir=NEW_DIR -p port=PORT")
    return 0


def _line(item: Any) -> str:
    e = item.event
    when = (e.commit_time or "time unknown").replace("T", " ")[:19]
    what = ", ".join(item.relations[:3]) + (
        f" and {len(item.relations) - 3} more" if len(item.relations) > 3 else "")
    rows = f" {e.rows:,} rows" if e.rows is not None else ""
    unnamed = f"; {'; '.join(item.unnamed)}" if item.unnamed else ""
    return (f"{when}  xid {e.xid:<10} {item.what:<13} "
            f"{item.database}{': ' + what if what else ''}{rows}{unnamed}")


def _moment(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{option} {text!r} is not a time like "
                           "2026-12-04T09:30:00+00:00") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{option} {text!r} has no time zone: add +00:00 (or yours)")
    return moment.astimezone(UTC)


def _inside(commit_time: str | None, since: datetime | None, until: datetime | None) -> bool:
    if commit_time is None:
        return since is None and until is None
    moment = datetime.fromisoformat(commit_time)
    return (since is None or moment >= since) and (until is None or moment <= until)
