"""drdeck's own archive as a source: its base backups and WAL in the cluster's repository.

The archive is configured by the cluster's `repository` (not by an engine table), and
its report is the `pitr` block of `drdeck inventory --json`, which predates the other
engines' blocks; so it is found with `source_for`, not through the engine registry.
Everything else about it is the protocol's: the picture a point-in-time recovery
plans against, its WAL by name, and its base backups laid down in a data directory.
What drdeck's repository holds besides (pg_dump snapshots, verification records) is
read by tui.catalog.inventory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tui.errors import DrdeckError
from tui.sources.base import Line, Source, shown_time


class ArchiveSource(Source):
    kind = "pitr"
    title = "drdeck's archive"
    example = 'repository = "NAME"'
    restore_runbook = "pitr-restore"

    def __init__(self, store: Any, cluster: str, gpg_home: str | None = None,
                 signing: Any = None, encrypted_only: bool = False) -> None:
        """`signing` (tui.catalog.signatures.Signing) and `encrypted_only` decide which base
        backups count (tui.pitr.basebackup.read_base_backups)."""
        self.store, self.cluster, self.gpg_home = store, cluster, gpg_home
        self.signing, self.encrypted_only = signing, encrypted_only

    @classmethod
    def configured(cls, config: Any, cluster: Any) -> ArchiveSource | None:
        """The archive in the cluster's repository; None when it names none. Raises
        InvalidInput when it names one the configuration lacks, or one that cannot be
        opened (tui.storage.open_store says why)."""
        if cluster.repository is None:
            return None
        from tui.catalog.signatures import signing_for
        from tui.snapshots.targets import store_for

        return cls(store_for(config.repository_for(cluster)), cluster.name,
                   str(config.gpg_home) if config.gpg_home else None,
                   signing_for(config, cluster), bool(cluster.gpg_recipients))

    @classmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> ArchiveSource:
        raise NotImplementedError("drdeck's archive is configured by the cluster's "
                                  "repository, not by a table of its own")

    def describe(self) -> str:
        from tui.pitr.basebackup import base_prefix

        # a store locates objects, not folders: the folder is where one of its keys lives
        inside = self.store.location(base_prefix(self.cluster) + "-")
        return f"of cluster {self.cluster} in {inside.removesuffix('/base/-')}"

    def holds_anything(self) -> bool:
        """Whether the repository holds a base backup or WAL of the cluster at all."""
        from tui.pitr.basebackup import base_prefix
        from tui.wal.archive import wal_prefix

        return any(any(True for _ in self.store.list(prefix))
                   for prefix in (base_prefix(self.cluster), wal_prefix(self.cluster)))

    def recovery_picture(self, read_commit_times: bool = True) -> Any:
        from tui.catalog.signatures import UNSIGNED
        from tui.pitr.window import picture

        return picture(self.store, self.cluster, self.gpg_home, read_commit_times,
                       self.signing or UNSIGNED, self.encrypted_only)

    def base_bytes(self, backup: Any, picture: Any) -> int | None:
        from tui.pitr.basebackup import base_chain

        # an incremental backup is laid down with every backup it builds on
        chain = base_chain(picture.base_backups, backup) if backup.parent else [backup]
        return sum(base.total_stored_size for base in chain)

    def picture_or_none(self) -> Any:
        """The recovery picture when the repository holds base backups or WAL; None when it
        holds neither or cannot be read (the inventory then shows no archive)."""
        try:
            return self.recovery_picture() if self.holds_anything() else None
        except DrdeckError:
            return None

    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        return picture_dict(self.recovery_picture(read_commit_times))

    def wal_fetcher(self) -> Callable[[str], bytes | None]:
        from tui.wal.archive import fetch_bytes

        store, cluster, gpg_home = self.store, self.cluster, self.gpg_home
        encrypted_first = self.encrypted_only

        def fetch(name: str) -> bytes | None:
            return fetch_bytes(store, cluster, name, gpg_home, encrypted_first)

        return fetch

    async def unpack_base_backup(self, backup: Any, data_dir: Path, reporter: Any,
                                 places: dict[int, Path] | None = None) -> None:
        from tui.pitr.restore import unpack_base

        if backup.parent is None:
            await unpack_base(backup, self.store, data_dir, reporter, self.gpg_home, places)
            return
        from tui.catalog.signatures import UNSIGNED
        from tui.pitr.basebackup import base_chain, read_base_backups
        from tui.pitr.incremental import restore_chain
        from tui.pitr.tablespaces import tablespace_places

        # read again, as the chain stands now: a link may have gone since the pre-flight
        backups = await asyncio.to_thread(read_base_backups, self.store, self.cluster,
                                          self.signing or UNSIGNED, self.encrypted_only)
        chain = base_chain(backups, backup)
        if places is None:
            places = tablespace_places(backup.tablespaces, data_dir)
        await restore_chain(chain, self.store, data_dir, reporter, self.gpg_home, places)

    def summary(self, report: dict[str, Any]) -> list[Line]:
        # its gaps are described by their segments (the JSON's format predates the protocol)
        from tui.pitr.window import Gap

        gaps = [g if isinstance(g, str) else Gap(**g).describe() for g in report.get("gaps", [])]
        return super().summary({**report, "gaps": gaps})

    def backup_line(self, backup: dict[str, Any]) -> str:
        state = "complete" if backup.get("complete") else f"not usable: {backup.get('problem')}"
        return (f"base backup {backup.get('id')}: ended {shown_time(backup.get('stopped_at'))}"
                f", timeline {backup.get('timeline')}, {state}")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def picture_dict(picture: Any) -> dict[str, Any]:
    """The `pitr` block of the inventory JSON (docs/inventory-json.md): base backups, WAL
    per timeline, windows, gaps; with the keys every source's report has."""
    archive = picture.archive
    timelines = {}
    for timeline in archive.timelines:
        numbers = sorted(archive.segments.get(timeline, ()))
        timelines[str(timeline)] = {
            "segments": len(numbers),
            "first": archive.names.get((timeline, numbers[0])) if numbers else None,
            "last": archive.names.get((timeline, numbers[-1])) if numbers else None,
            "history": timeline in archive.histories,
        }
    backups = [{
        "id": stamp, "complete": not problem, "problem": problem or None,
        "started_at": m.started_at if m else None, "stopped_at": m.stopped_at if m else None,
        "start_lsn": m.start_lsn if m else None, "stop_lsn": m.stop_lsn if m else None,
        "timeline": m.timeline if m else None,
        "stored_size": m.total_stored_size if m else None,
        "encrypted": m.encrypted if m else None, "compression": m.compression if m else None,
        "tablespaces": [{"oid": t.oid, "name": t.name, "location": t.location,
                         "stored_size": t.stored_size} for t in m.tablespaces] if m else None,
        "kind": ("incremental" if m.parent else "full") if m else None,
        "parent": m.parent if m else None,
    } for m, stamp, problem in picture.base_backups]
    gaps = [{"timeline": g.timeline, "missing_from": g.missing_from,
             "missing_to": g.missing_to, "resumes_at": g.resumes_at} for g in picture.gaps]
    return {
        "kind": ArchiveSource.kind,
        "windows": [{
            "start": _iso(w.start), "end": _iso(w.end),
            "timeline": w.timeline, "base_backup": w.base.stamp,
            "base_backups": [b.stamp for b in w.bases], "last_segment": w.last_segment,
        } for w in picture.windows],
        "base_backups": backups,
        "backups": backups,
        "window": ({"start": _iso(picture.earliest), "end": _iso(picture.latest)}
                   if picture.windows else None),
        "wal": {"timelines": timelines},
        "gaps": gaps,
        "problems": picture.problems,
    }
