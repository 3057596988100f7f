"""snapshot-compression: a snapshot as drdeck compresses it against pg_dump's default gzip.

One database (pgbench's tables at scale SCALE, md5 filler: see bench.fixtures) on a
PostgreSQL MAJOR cluster, the first major whose pg_dump writes zstd that `make
pg-binaries` installs (or $DRDECK_PG_BIN's, when it is set and 16 or later), is
snapshotted through drdeck's own code, `create_snapshot` (the snapshot.create
action's: row counts and globals in the dump's exported snapshot, pg_dump -Fc ->
gpg --encrypt -> a local repository, the manifest last), RUNS times each,
alternating:

- drdeck: the repository's default, compression = "zstd" at level 3, so
  `pg_dump --compress=zstd:3`;
- gzip: the same snapshot with pg_dump's own default, gzip at level 6 (what every
  snapshot was before drdeck chose).

Each is measured by its stored bytes and its time. Then, as a restore pays for
the compression too, each dump is fetched (untimed) and restored with
`pg_restore -j 2` into a new database, twice each, alternating, dropped after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Note,
    Report,
    Row,
    Target,
    children_cpu,
    interleaved,
    reproduce,
)
from bench.fixtures import (
    CLUSTER,
    SETTINGS_TEXT,
    NullReporter,
    bench_cluster,
    environment_variables,
    gpg_home,
    mib,
    scratch_directory,
    seed_pgbench,
    use_test_harness,
)

NAME = "snapshot-compression"
MAJOR = 17
SCALE = 10  # 1 M accounts: a 96 MiB dump uncompressed, about 3 s with gzip
DATABASE = "app"
RUNS = 3
RESTORES = 2
LEVEL = 3  # the repository's default compression_level
JOBS = 2
TIMEOUT_S = 600


def _pg_bin_dir() -> str:
    """A bin directory whose pg_dump writes zstd: $DRDECK_PG_BIN's, or MAJOR's."""
    from tui.postgres.binaries import PG_BIN_ENV, pg_bin, server_major_version
    from tui.snapshots.dump_compression import ZSTD_SINCE

    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        if server_major_version() < ZSTD_SINCE:
            raise BenchError(f"${PG_BIN_ENV}={configured} is PostgreSQL "
                             f"{server_major_version()}: its pg_dump cannot write zstd "
                             f"({ZSTD_SINCE} or later can); unset it or point it at a newer one")
        return str(Path(pg_bin("pg_dump")).parent)
    use_test_harness()
    from harness.postgres import MissingBinaries, pg_bin_dir_for

    try:
        return str(pg_bin_dir_for(MAJOR))
    except MissingBinaries as exc:
        raise BenchError(str(exc)) from None


class Snapshots:
    """One snapshot per call with one compression; keeps each manifest and its CPU."""

    def __init__(self, cluster: Any, home: Any, root: Path, compression: str) -> None:
        from tui.snapshots.create import SnapshotPlan
        from tui.storage import LocalStore

        self.cluster, self.home, self.root = cluster, home, root
        self.plan = SnapshotPlan(CLUSTER, DATABASE, cluster.dsn(DATABASE), True,
                                 (home.fingerprint,), str(home.path),
                                 compression=compression, compression_level=LEVEL)
        self.store = LocalStore(root)
        self.manifests: list[Any] = []
        self.cpu: list[float] = []  # pg_dump's and gpg's, not the server's

    def __call__(self) -> float:
        from tui.snapshots.create import create_snapshot

        shutil.rmtree(self.root, ignore_errors=True)  # the last one's bytes: not kept
        cpu = children_cpu()
        started = time.perf_counter()
        manifest = asyncio.run(create_snapshot(self.plan, self.store, NullReporter(),
                                               dict(os.environ)))
        elapsed = time.perf_counter() - started
        self.cpu.append(children_cpu() - cpu)
        if manifest.tables.get("public.pgbench_accounts") != SCALE * 100_000:
            raise BenchError(f"the snapshot counted {manifest.tables} accounts")
        self.manifests.append(manifest)
        return elapsed

    def fetch(self, dest: Path) -> Path:
        from tui.snapshots.fetch import fetch_snapshot

        return asyncio.run(fetch_snapshot(self.manifests[-1], self.store, dest,
                                          NullReporter(), str(self.home.path)))


class Restore:
    """pg_restore -j JOBS of one dump into a new database per call, dropped after."""

    def __init__(self, cluster: Any, dump: Path, key: str) -> None:
        self.cluster, self.dump, self.key, self.calls = cluster, dump, key, 0

    def __call__(self) -> float:
        from tui.postgres.binaries import pg_bin

        self.calls += 1
        target = f"bench_{self.key}_{self.calls}"
        self.cluster.execute(f'create database "{target}"')
        try:
            started = time.perf_counter()
            result = subprocess.run(
                [pg_bin("pg_restore"), f"--jobs={JOBS}", "--exit-on-error",
                 f"--dbname={self.cluster.dsn(target)}", str(self.dump)],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                timeout=TIMEOUT_S)
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                raise BenchError(f"pg_restore of the {self.key} dump exited "
                                 f"{result.returncode}: {result.stderr.strip()[-300:]}")
            rows = self.cluster.scalar("select count(*) from pgbench_accounts", dbname=target)
            if rows != SCALE * 100_000:
                raise BenchError(f"the {self.key} dump restored {rows} accounts")
        finally:
            self.cluster.execute(f'drop database if exists "{target}" with (force)')
            self.cluster.execute("checkpoint")  # the next one must not pay for this one
        return elapsed


def run() -> Report:
    started = time.perf_counter()
    with environment_variables({"DRDECK_PG_BIN": _pg_bin_dir()}), scratch_directory() as \
            scratch, gpg_home() as home, bench_cluster() as cluster:
        seed_started = time.perf_counter()
        rows = seed_pgbench(cluster, DATABASE, SCALE)
        cluster.execute("checkpoint")
        seed_s = time.perf_counter() - seed_started
        version = cluster.scalar("show server_version")
        subjects = {"drdeck": Snapshots(cluster, home, scratch / "zstd", "zstd"),
                    "gzip": Snapshots(cluster, home, scratch / "gzip", "gzip")}
        taken = interleaved(subjects, runs=RUNS)
        dumps = {key: subject.fetch(scratch / f"{key}.dump")
                 for key, subject in subjects.items()}
        restored = interleaved({key: Restore(cluster, dump, key)
                                for key, dump in dumps.items()}, runs=RESTORES, warmup=0)
    total_s = time.perf_counter() - started

    ours, theirs = subjects["drdeck"], subjects["gzip"]
    ours_taken, theirs_taken = ours.manifests[-RUNS:], theirs.manifests[-RUNS:]  # no warm-up
    chosen = ours.manifests[-1].compression
    if chosen != f"zstd:{LEVEL}" or theirs.manifests[-1].compression != "gzip":
        raise BenchError(f"the snapshots recorded {chosen} and "
                         f"{theirs.manifests[-1].compression}, not zstd:{LEVEL} and gzip")
    command = reproduce(NAME)
    label = "pg_dump's default, gzip 6"
    stored = Row(f"{NAME}: stored (drdeck, {chosen}, PostgreSQL {MAJOR})", "B",
                 [float(m.stored_size) for m in ours_taken], label,
                 [float(m.stored_size) for m in theirs_taken], command)
    stored.targets = [Target("<= 1x gzip", stored.ratio <= 1)]
    timed = Row(f"{NAME}: snapshot time", "s", taken["drdeck"], label, taken["gzip"],
                command)
    timed.targets = [Target("< 1x gzip", timed.ratio < 1)]
    restore = Row(f"{NAME}: pg_restore -j {JOBS}", "s", restored["drdeck"], label,
                  restored["gzip"], command)
    notes = [
        Note(NAME, f"pgbench scale {SCALE} ({rows:,} rows, md5 filler) on PostgreSQL {version}; "
                   f"dump {mib(ours.manifests[-1].plaintext_size)} with {chosen}, "
                   f"{mib(theirs.manifests[-1].plaintext_size)} with gzip, encrypted with "
                   f"gpg --compress-algo none into a local repository; {RUNS} snapshots each "
                   f"and {RESTORES} restores each, alternating, median; server: "
                   f"{SETTINGS_TEXT}"),
        Note(NAME, f"CPU of the programs a snapshot runs (pg_dump, gpg), median: {chosen} "
                   f"{statistics.median(ours.cpu[-RUNS:]):.2f} s, gzip "
                   f"{statistics.median(theirs.cpu[-RUNS:]):.2f} s (the server's COPY not "
                   f"counted); set-up {seed_s:.1f} s, whole benchmark {total_s:.1f} s"),
    ]
    return Report(rows=[stored, timed, restore], notes=notes)
