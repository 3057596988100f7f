"""wal-events: `drdeck wal events`' scan against pg_waldump alone, over the same WAL.

Built once: a cluster with PostgreSQL's default 16 MiB segments (the size production
runs) archiving with `cp` into a plain directory, pgbench at SCALE, then rounds of
pgbench's small transactions and an UPDATE of every account until about SEGMENTS
segments (1 GiB) are archived, with a DROP TABLE and a
big DELETE in the middle. Each archived segment is pushed through drdeck's push (zstd,
as a repository's default; unencrypted, so both sides read the same bytes) into a
local repository.

Then, alternating:
- drdeck: tui.wal.scan.scan over drdeck's archive of the cluster (fetch ahead,
  decompress, pg_waldump in batches, the parser, the collector): what `drdeck wal
  events` does before it names the events;
- pg_waldump: pg_waldump over the plain segments, every record, written to /dev/null:
  the floor, what reading this WAL costs at all.

Targets (issue 17): drdeck reads at least half of pg_waldump's speed (ratio <= 2.0x),
and 1 GiB of WAL answers in under 30 s. Each scan must find the DROP TABLE and the
DELETE, or the benchmark fails.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import BenchError, Note, Report, Row, Target, interleaved, reproduce
from bench.fixtures import CLUSTER, SERVER_SETTINGS, seed_pgbench, use_test_harness

NAME = "wal-events"
SCALE = 10
SEGMENTS = 64  # of 16 MiB: 1 GiB
RUNS = 2
RATIO_TARGET = 2.0
GIB_TARGET_S = 30.0


def run() -> Report:
    use_test_harness()
    from tui import environment
    from tui.postgres.access import give_to_server
    from tui.postgres.binaries import pg_bin
    from tui.storage import LocalStore
    from tui.wal.archive import fetch_bytes, push
    from tui.wal.scan import scan

    from harness.postgres import scratch_cluster

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(_scratch()))
        plain = scratch / "archive"
        plain.mkdir()
        scratch.chmod(0o755)  # archive_command runs as the server's account
        give_to_server(plain)
        cluster = stack.enter_context(scratch_cluster(
            **SERVER_SETTINGS, archive_mode="on",
            archive_command=f"cp %p {plain}/%f"))
        seed_pgbench(cluster, "app", SCALE)
        cluster.execute("create table doomed as select g from generate_series(1, 1000) g",
                        dbname="app")
        cluster.execute("select pg_switch_wal()")
        first = _segments(plain)
        while len(_segments(plain)) - len(first) < SEGMENTS // 2:
            _load(cluster, pg_bin)
        cluster.execute("drop table doomed", dbname="app")
        cluster.execute("delete from pgbench_history", dbname="app")
        while len(_segments(plain)) - len(first) < SEGMENTS:
            _load(cluster, pg_bin)
        cluster.execute("select pg_switch_wal()")
        time.sleep(1)
        names = [n for n in _segments(plain) if n not in first][:SEGMENTS]
        store = LocalStore(scratch / "repo")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: push(store, CLUSTER, plain / n, compression="zstd"),
                          names))
        setup_s = time.perf_counter() - started
        size = (plain / names[0]).stat().st_size

        def drdeck() -> float:
            began = time.perf_counter()
            result = scan(lambda n: fetch_bytes(store, CLUSTER, n), [(1, names)],
                          min_rows=1000)
            took = time.perf_counter() - began
            kinds = sorted({e.kind for e in result.events})
            if "drop_table" not in kinds or "delete" not in kinds:
                raise BenchError(f"the scan found {kinds}, not the DROP TABLE and the "
                                 f"DELETE; problems: {result.problems}")
            return took

        def waldump() -> float:
            from tui.wal.names import Segment, format_lsn

            start = Segment.parse(names[0], size).start_lsn
            end = Segment.parse(names[-1], size).end_lsn
            began = time.perf_counter()
            subprocess.run([pg_bin("pg_waldump"), f"--path={plain}",
                            f"--start={format_lsn(start)}", f"--end={format_lsn(end)}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**environment.base(), "TZ": "UTC"}, check=False)
            return time.perf_counter() - began

        samples = interleaved({"drdeck": drdeck, "waldump": waldump}, runs=RUNS, warmup=0)
    gib = len(names) * size / (1 << 30)
    row = Row(f"{NAME}: scan of {len(names)} segments of {size >> 20} MiB", "s",
              samples["drdeck"], "pg_waldump > /dev/null", samples["waldump"],
              reproduce(NAME))
    row.targets = [Target(f"<= {RATIO_TARGET:g}x pg_waldump", row.ratio <= RATIO_TARGET),
                   Target(f"1 GiB < {GIB_TARGET_S:g} s", row.measured / gib < GIB_TARGET_S)]
    notes = [Note(NAME, f"pgbench scale {SCALE} and its load, {gib:.2f} GiB of WAL "
                        f"({len(names)} segments), a DROP TABLE and a DELETE among it, "
                        f"archived by drdeck (zstd, unencrypted) into a local repository; "
                        f"{RUNS} runs each, alternating, median; "
                        f"{row.measured / gib:.1f} s per GiB; set-up {setup_s:.0f} s")]
    return Report(rows=[row], notes=notes)


def _load(cluster, pg_bin) -> None:
    """Ordinary small transactions, then a big one: WAL by the segment, quickly."""
    subprocess.run([pg_bin("pgbench"), "-n", "-c", "2", "-j", "2", "-t", "500",
                    cluster.dsn("app")], check=True, capture_output=True, timeout=600)
    cluster.execute("update pgbench_accounts set abalance = abalance + 1", dbname="app")


def _segments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if len(p.name) == 24)


@contextlib.contextmanager
def _scratch():
    from bench.fixtures import scratch_directory

    with scratch_directory("drdeck-bench-events-") as path:
        yield path
