"""barman-wal: a recovery fed from a Barman Cloud store, by drdeck's feeder or by Barman's
own barman-cloud-wal-restore.

The cluster, base backup and archive are wal-fetch's (bench.wal_fetch.build), with
SEGMENTS segments of 1 MiB. The archive is also laid out in moto's S3 the way
`barman-cloud-wal-archive --gzip` writes it (<path>/<server>/wals/<timeline+log>/
<segment>.gz, gzip at Python's default level; tests/test_barman_cloud*.py read what the
real program writes). Then, alternating, a copy of the base backup recovers to the end of
the archive, timed from `pg_ctl start` to promotion and checked (every segment restored,
sum(abalance) as the source's), with as restore_command:

- barman-cloud-wal-restore: `barman-cloud-wal-restore --endpoint-url URL s3://BUCKET/cnpg
  pg %f %p`, Barman's own, one Python process and one S3 session per file: the baseline;
- feeder: what `pitr-barman` runs: the spool's shell line (tui.wal.feeder) while a
  WalFeeder in this process fills the spool 16 segments ahead, fetching and gunzipping
  with tui.sources.barman_cloud_restore.StoreWal.

The issue asks for whichever is faster; the target holds the feeder to at most the
baseline's time.
"""

from __future__ import annotations

import contextlib
import gzip
import shlex
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import Note, Report, Row, Target, interleaved, reproduce
from bench.wal_fetch import DEPTH, World, build, feeding, recovery

NAME = "barman-wal"
SEGMENTS = 40  # barman-cloud-wal-restore takes about a second a file here
RUNS = 3
SLOW_RUNS = 1
PATH, SERVER = "cnpg", "pg"
TARGET = 1.0


def barman_bin(program: str) -> str:
    from bench.fixtures import REPO

    return str(REPO / ".tools" / "barman" / "bin" / program)


def lay_out_as_barman(world: World) -> Any:
    """The archive's files in the bucket as barman-cloud-wal-archive --gzip puts them; the
    store drdeck reads them from."""
    from tui.sources.barman_cloud import open_object_store

    client = world.endpoint.client()
    for path in sorted(world.archive.iterdir()):
        name = path.name
        key = (f"{PATH}/{SERVER}/wals/{name}.gz" if name.endswith(".history")
               else f"{PATH}/{SERVER}/wals/{name[:16]}/{name}.gz")
        client.put_object(Bucket=world.bucket, Key=key, Body=gzip.compress(path.read_bytes()))
    return open_object_store(f"s3://{world.bucket}/{PATH}", world.endpoint.url)


def with_barman(world: World) -> float:
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in world.endpoint.env().items())
    command = (f"env {settings} {barman_bin('barman-cloud-wal-restore')} --endpoint-url "
               f"{world.endpoint.url} s3://{world.bucket}/{PATH} {SERVER} %f %p")
    with recovery(world) as run:
        run.configure(command)
        return run.run()


def with_feeder(world: World, store: Any) -> float:
    from tui.postgres.cluster import server_account
    from tui.sources.barman_cloud import list_store
    from tui.sources.barman_cloud_restore import StoreWal
    from tui.wal.feeder import WalFeeder, restore_command

    account = server_account()
    with recovery(world) as run:
        # listed before the clock starts, as pitr-barman's pre-flight has by then
        wal = StoreWal(store, SERVER, list_store(store, SERVER), 1 << 20)
        feeder = WalFeeder(store, "prod", run.spool, gpg_home=None, encrypted_first=False,
                           depth=DEPTH, owner=(account.uid, account.gid) if account else None,
                           fetch=wal.fetch)
        feeder.prepare()
        run.configure(restore_command(run.spool))
        with feeding(feeder) as trouble:
            return run.run(trouble)


def run() -> Report:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        world = build(stack, SEGMENTS)
        store = lay_out_as_barman(world)
        setup_s = time.perf_counter() - started
        fast: dict[str, Callable[[], float]] = {"feeder": lambda: with_feeder(world, store)}
        with_feeder(world, store)  # the first recovery after the set-up is slower
        samples = interleaved(fast, runs=RUNS, warmup=0)
        samples |= interleaved({"barman": lambda: with_barman(world)}, runs=SLOW_RUNS,
                               warmup=0)
    total_s = time.perf_counter() - started
    row = Row(f"{NAME} (pitr-barman's feeder from the store)", "s", samples["feeder"],
              "barman-cloud-wal-restore %f %p", samples["barman"], reproduce(NAME))
    row.targets = [Target(f"<= {TARGET:g}x barman-cloud-wal-restore", row.ratio <= TARGET)]
    segments = len(world.segments)
    per_file = statistics.median(samples["barman"]) / segments
    notes = [
        Note(NAME, f"{segments} segments of 1 MiB, gzip, in moto's S3 (its own process), "
                   f"replayed from pg_basebackup -X none to the end of the archive and "
                   f"promoted; feeder {RUNS} runs, barman-cloud-wal-restore {SLOW_RUNS} "
                   f"(about {per_file * 1000:.0f} ms a file: a Python start and an S3 session "
                   f"each); median; set-up {setup_s:.1f} s, whole benchmark {total_s:.1f} s"),
        Note(NAME, "pitr-barman feeds WAL with drdeck's feeder: "
                   + ("it measures faster" if row.met else "MISSED: it measures slower"),
             ok=bool(row.met)),
    ]
    return Report(rows=[row], notes=notes)
