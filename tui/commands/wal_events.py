"""`drdeck wal events`: the destructive transactions in a cluster's archived WAL, newest
first, named; what to restore to just before."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from datetime import UTC, datetime
from typing import Any

from tui.errors import InvalidInput

KINDS_SHOWN = {"drop_table": "DROP TABLE", "drop_schema": "DROP SCHEMA", "truncate": "TRUNCATE",
               "drop_database": "DROP DATABASE", "rewrite": "rewrite", "delete": "DELETE",
               "update": "UPDATE"}


def events_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.wal.naming import Namer, live_names
    from tui.wal.scan import eta_line, scan, segments_by_timeline

    config = load_config(args.config)
    cluster = config.cluster(args.cluster)
    since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
    if args.min_rows < 1:
        raise InvalidInput("--min-rows must be 1 or more")
    source = _source(config, cluster, args.source)
    picture = source.recovery_picture()
    timelines = segments_by_timeline(picture)
    if not any(names for _, names in timelines):
        raise InvalidInput(f"{_where(source)} holds no WAL of cluster {cluster.name}")
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if sys.stderr.isatty() or now - last[0] >= 1 or done == total:
            last[0] = now
            print(f"\r{eta_line(done, total, started)}", end="" if sys.stderr.isatty()
                  else "\n", file=sys.stderr, flush=True)

    result = scan(source.wal_fetcher(), timelines, min_rows=args.min_rows, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    store = getattr(source, "store", None)
    if store is None:
        from tui.sources.archive import ArchiveSource

        mine = ArchiveSource.configured(config, cluster)  # drdeck's maps, when it has any
        store = mine.store if mine is not None else None
    dsn = _dsn(cluster)
    namer = Namer(store, cluster.name, live_names(dsn) if dsn else None)
    named = [namer.name(e) for e in result.events if _inside(e.commit_time, since, until)]
    if args.database:
        named = [n for n in named if n.database == args.database]
    named.reverse()  # newest first
    for problem in [*result.problems, *namer.problems]:
        print(f"WARNING: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([n.to_json() for n in named], indent=2))
        return 0
    took = time.monotonic() - started
    print(f"{result.segments} WAL segments ({result.bytes / (1 << 20):,.0f} MiB) of "
          f"{_where(source)} read in {took:.1f} s: {len(named)} destructive "
          f"transaction{'s' if len(named) != 1 else ''}")
    for item in named:
        print(_line(item))
    if named:
        print(f"\nTo restore to just before the newest: drdeck run pitr-restore "
              f"-p target={named[0].event.xid} -p target_kind=xid -p inclusive=false "
              "-p data_dir=NEW_DIR -p port=PORT")
    return 0


def _line(item: Any) -> str:
    e = item.event
    when = (e.commit_time or "time unknown").replace("T", " ")[:19]
    what = ", ".join(item.relations[:3]) + (
        f" and {len(item.relations) - 3} more" if len(item.relations) > 3 else "")
    rows = f" {e.rows:,} rows" if e.rows is not None else ""
    unnamed = f"; {'; '.join(item.unnamed)}" if item.unnamed else ""
    return (f"{when}  xid {e.xid:<10} {KINDS_SHOWN.get(e.kind, e.kind):<13} "
            f"{item.database}{': ' + what if what else ''}{rows}{unnamed}")


def _where(source: Any) -> str:
    """'drdeck's archive of cluster prod in /srv/backups/prod', 'stanza main', ..."""
    said = source.describe()
    return f"drdeck's archive {said}" if said.startswith("of ") else said


def _source(config: Any, cluster: Any, kind: str | None) -> Any:
    from tui.sources import source_for, sources_for
    from tui.sources.archive import ArchiveSource

    if kind:
        source = source_for(config, cluster, kind)
        if source is None:
            raise InvalidInput(f"cluster {cluster.name} has no {kind} source")
        return source
    from tui.sources.base import Source

    mine = ArchiveSource.configured(config, cluster)
    # the engines that keep WAL drdeck reads (a Neon branch keeps none to read)
    others = [s for s in sources_for(config, cluster)
              if type(s).wal_fetcher is not Source.wal_fetcher]
    found = ([mine] if mine is not None else []) + others
    if not found:
        raise InvalidInput(f"cluster {cluster.name} has no WAL archive: give it a repository "
                           "or an engine (pgbackrest, barman_cloud, barman)")
    if len(found) > 1:
        kinds = ", ".join(s.kind for s in found)
        raise InvalidInput(f"cluster {cluster.name} has several sources ({kinds}): pick one "
                           "with --source KIND")
    return found[0]


def _dsn(cluster: Any) -> str | None:
    try:
        return cluster.resolve_dsn()
    except InvalidInput:
        return None


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
