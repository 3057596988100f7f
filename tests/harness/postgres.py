"""Throwaway PostgreSQL clusters for tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tui.postgres.cluster import LocalCluster, PortInUse, free_port

# free_port() cannot reserve a port: another xdist worker (or anything else)
# may bind it before the server does. A few retries make that a non-event.
START_ATTEMPTS = 5


class ScratchCluster(LocalCluster):
    """A LocalCluster in its own temporary directory, with an optional WAL archive."""

    @property
    def base_dir(self) -> Path:
        return self.data_dir.parent

    @property
    def archive_dir(self) -> Path:
        """Where archive_command copies WAL segments (exists only with archive=True)."""
        return self.base_dir / "archive"


@contextlib.contextmanager
def scratch_cluster(
    *,
    archive: bool = False,
    wal_segsize_mb: int | None = None,
    start: bool = True,
    **settings: str | int | float | bool,
) -> Iterator[ScratchCluster]:
    """A freshly initdb'd cluster, running unless ``start=False``; gone afterwards.

    ``archive`` turns on WAL archiving into ``cluster.archive_dir``;
    ``settings`` are server parameters (``max_connections=20``...).
    """
    cluster = ScratchCluster.in_temp_directory(prefix="pg")
    try:
        # --no-sync: nothing here must survive a power cut, and fsyncing a
        # fresh cluster is most of initdb's time on some disks.
        cluster.init(wal_segsize_mb=wal_segsize_mb, no_sync=True)
        if archive:
            cluster.enable_archiving(cluster.archive_dir)
        cluster.configure(**settings)
        if start:
            start_on_a_free_port(cluster)
        yield cluster
    finally:
        try:
            # Immediate: no shutdown checkpoint for a cluster about to be deleted.
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)


def start_on_a_free_port(cluster: LocalCluster) -> None:
    """Start ``cluster``, moving it to another free port if its port was taken."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            cluster.start()
            return
        except PortInUse:
            if attempt == START_ATTEMPTS:
                raise
            cluster.port = free_port()
