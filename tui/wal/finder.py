"""The destructive events of a cluster's archived WAL, named, oldest first: what both
front ends show (`drdeck wal events`, the console's events list). It picks the source
whose WAL is read, scans it (tui.wal.scan) and names what it finds (tui.wal.naming)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tui.errors import InvalidInput
from tui.wal.naming import NamedEvent


@dataclass
class Found:
    source: Any
    events: list[NamedEvent] = field(default_factory=list)  # oldest first
    problems: list[str] = field(default_factory=list)
    segments: int = 0
    bytes: int = 0
    archived: int = 0  # segments in the archive: more than were read when bounded

    @property
    def where(self) -> str:
        """'drdeck's archive of cluster prod in /srv/backups/prod', 'stanza main', ..."""
        said = self.source.describe()
        return f"drdeck's archive {said}" if said.startswith("of ") else said


def find_events(config: Any, cluster: Any, *, kind: str | None = None, min_rows: int = 1000,
                since: datetime | None = None, until: datetime | None = None,
                progress: Callable[[int, int], None] = lambda done, total: None) -> Found:
    """Scan the cluster's WAL source (`kind`, or the only one it has) and name each event
    by the catalog maps, then the live server. `since` and `until` bound what is read
    (tui.wal.narrow), not what is found: the caller filters the events by their times."""
    from tui.sources.archive import ArchiveSource
    from tui.wal.naming import Namer, live_names
    from tui.wal.scan import scan, segments_by_timeline

    if min_rows < 1:
        raise InvalidInput("--min-rows must be 1 or more")
    # drdeck's archive: a source, and where the catalog maps are, whichever engine keeps
    # the WAL
    mine = ArchiveSource.configured(config, cluster)
    source = wal_source(config, cluster, kind, mine)
    found = Found(source)
    timelines = segments_by_timeline(source.recovery_picture())
    if not any(names for _, names in timelines):
        raise InvalidInput(f"{found.where} holds no WAL of cluster {cluster.name}")
    fetch = source.wal_fetcher()
    found.archived = sum(len(names) for _, names in timelines)
    if since is not None or until is not None:
        from tui.wal.narrow import segments_between

        timelines = [(timeline, segments_between(fetch, names, since, until))
                     for timeline, names in timelines]
        timelines = [(timeline, names) for timeline, names in timelines if names]
    result = scan(fetch, timelines, min_rows=min_rows, progress=progress)
    store = mine.store if mine is not None else None
    dsn = _dsn(cluster)
    namer = Namer(store, cluster.name, live_names(dsn) if dsn else None)
    found.events = [namer.name(event) for event in result.events]
    found.problems = [*result.problems, *namer.problems]
    found.segments, found.bytes = result.segments, result.bytes
    return found


def restore_before(item: NamedEvent, source: Any, cluster: str) -> dict[str, str]:
    """The restore runbook's parameters that stop just before the event, and check that
    what it took is back: before its commit (its xid), or before the LSN where it began
    undoably (a DROP DATABASE: tui.wal.events)."""
    target, kind = ((item.event.stop_lsn, "lsn") if item.event.stop_lsn
                    else (str(item.event.xid), "xid"))
    return {**source.restore_given(cluster), "target": target, "target_kind": kind,
            "inclusive": "false", "expect_back": item.expect_back()}


def wal_source(config: Any, cluster: Any, kind: str | None, mine: Any) -> Any:
    """The source whose archived WAL is read: `kind`, or the only one the cluster has
    (`mine`: drdeck's archive of it, or None)."""
    from tui.sources import source_classes, source_for, sources_for
    from tui.sources.base import Source

    if kind:
        source = mine if mine is not None and kind == mine.kind else source_for(
            config, cluster, kind)
        if source is None:
            raise InvalidInput(f"cluster {cluster.name} has no {kind} source")
        return source
    # the engines that keep WAL drdeck reads: an engine without a fetcher keeps none
    others = [s for s in sources_for(config, cluster)
              if type(s).wal_fetcher is not Source.wal_fetcher]
    found = ([mine] if mine is not None else []) + others
    if not found:
        keeping = [key for key, engine in source_classes().items()
                   if engine.wal_fetcher is not Source.wal_fetcher]
        raise InvalidInput(f"cluster {cluster.name} has no WAL archive: give it a repository "
                           f"or an engine that keeps WAL ({', '.join(keeping)})")
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
