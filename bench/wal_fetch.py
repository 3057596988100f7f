"""wal-fetch: replaying the same archived WAL with drdeck's restore_commands against `cp`.

Built once: a cluster with 1 MiB WAL segments archiving with `cp` into a plain
directory; a base backup (`pg_basebackup -X none` to a directory) taken after
`pgbench -i -s 2`; then a write load (pgbench_accounts updated in commits of
20,000 rows, full-page writes on) until about SEGMENTS segments lie between the
backup's start and the end of the archive. The same archived files are then pushed,
unencrypted (so every variant replays the same bytes), through drdeck's push
(`tui.wal.archive.push`, what `drdeck wal push` runs, in this process to keep the
set-up short) into a local repository and into moto's S3 server (its own process).

Then, alternating, a copy of the base backup recovers to the end of the load
(recovery.signal, recovery_target_timeline latest, recovery_target_action promote,
archive_mode off), timed from `pg_ctl start` to the first `pg_is_in_recovery()` that
says false (polled every 10 ms), with as restore_command:

- cp:     `cp ARCHIVE/%f %p`, the baseline;
- fetch:  `drdeck wal fetch --cluster prod %f %p` on the local repository: one Python
          process per file, the restore_command `drdeck wal --help` documents;
- feeder: what a guided PITR (`pitr-restore`) uses: the shell line of
          `tui.wal.feeder.restore_command` (moves a file out of a spool) while a
          `WalFeeder` in this process fills the spool from the local repository,
          16 segments ahead, as the pitr.restore action runs it;
- feeder S3: the same against the S3 repository;
- line, line S3: the line `drdeck wal restore-command --spool DIR` prints, for a standby
          or a recovery set up by hand: the shell moves a segment already in the spool,
          and only a miss runs `drdeck wal fetch --spool`, which starts the background
          prefetcher that keeps 16 segments ahead.

Every recovery is checked: each segment from the backup's start to the end of the
archive was restored (the server's `restored log file` lines) and the promoted
server's sum(abalance) equals the source's.

Each recovery runs to the end of the archive, as `target = "latest"` does: past the last
segment PostgreSQL asks for the next one (not found), then, after "redo done", for the
last one again; both paths must answer (TO_THE_END = False stops instead at a
recovery_target_lsn just before the archive's end, to compare with a targeted recovery).

Why 1 MiB segments and not PostgreSQL's default 16 MiB: 200 segments of 16 MiB are
3.2 GiB of WAL per recovery, about a minute of replay each on this machine (20 ms per
MiB measured here), so the eleven recoveries the comparison needs would take far more
than the two minutes a benchmark may; and moto keeps every object in memory. With
1 MiB segments each one carries 16 times less replay, so whatever a restore_command
costs per file weighs 16 times more than in production: the strict case for drdeck.
A note works out what the measured per-file cost would come to at 16 MiB.

After one untimed recovery with cp (the first after the set-up is slower, whoever
runs it), the three variants without a Python start per file run RUNS times each,
round-robin; the two that start Python per file take about 7x longer, so they run
SLOW_RUNS times, after the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchError, Note, Report, Row, Target, interleaved, reproduce
from bench.fixtures import (
    CLUSTER,
    drdeck_argv,
    environment_variables,
    moto_server,
    s3_bucket,
    s3_repository,
    scratch_directory,
    use_test_harness,
)
from tui.wal import restore_line

NAME = "wal-fetch"
SEGMENT_MB = 1
SEGMENTS = 200
SCALE = 2  # pgbench scale of the data the load updates: 200,000 accounts
ROWS_PER_COMMIT = 20_000
RUNS = 3
WARMUP = 0  # rounds; one untimed recovery with cp warms the page cache and the disk instead
SLOW_RUNS = 1
DEPTH = 16
TARGET_LOCAL = 1.25
TARGET_S3 = 2.0
RECOVERY_TIMEOUT_S = 300
POLL_S = 0.01
DATABASE = "app"
TO_THE_END = True
READ_AHEAD = 640 * 1024  # > wal_decode_buffer_size (512 kB): WAL after the target

# The source cluster only has to produce WAL quickly; what it writes into the WAL (heap
# updates, full-page images after each checkpoint) is what a real one writes.
SOURCE_SETTINGS: dict[str, str | int | float | bool] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "autovacuum": "off",
    "checkpoint_timeout": "30min",
    "max_wal_size": "1GB",
}
# Every restored server: no fsync (the page cache holds everything, and fsync would
# only add the disk's noise to every variant alike), no autovacuum after promotion.
RESTORED_SETTINGS: dict[str, str | int | float | bool] = {
    "recovery_target_action": "promote",
    "recovery_target_timeline": "latest",
    "archive_mode": "off",
    "hot_standby": "on",
    "fsync": "off",
    "autovacuum": "off",
}
RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')


@dataclass
class World:
    scratch: Path
    archive: Path  # the plain directory `cp` reads
    base: Path  # the base backup, as pg_basebackup wrote it
    local_config: Path
    s3_config: Path
    local_store: Any
    s3_store: Any
    segments: list[str]  # what recovery must restore, from the backup's start to the end
    expected_sum: int
    wal_bytes: int
    target_lsn: str  # just after the load's last commit
    setup_phases: dict[str, float] = field(default_factory=dict)
    spool_leftovers: list[int] = field(default_factory=list)  # the spooled-line runs
    feeder_waits: dict[str, list[int]] = field(default_factory=dict)  # requests via .want
    feeder_crashes: list[str] = field(default_factory=list)
    endpoint: Any = None  # moto's S3Endpoint, and the bucket the S3 repository is in
    bucket: str = ""


# --- the world ---------------------------------------------------------------------------


def build(stack: contextlib.ExitStack, segments_wanted: int = SEGMENTS) -> World:
    use_test_harness()
    from tui.config import load_config_file
    from tui.postgres.binaries import pg_bin
    from tui.storage import LocalStore, open_store

    from harness.postgres import scratch_cluster
    from pitr_support import give_to_server, let_the_server_account_run_drdeck, wait_archived

    phases: dict[str, float] = {}
    started = time.perf_counter()
    scratch = stack.enter_context(scratch_directory("drdeck-walbench-"))
    scratch.chmod(0o755)  # the restored servers (postgres) read the configs in it
    let_the_server_account_run_drdeck()
    endpoint = stack.enter_context(moto_server())
    bucket = stack.enter_context(s3_bucket(endpoint))
    # every server started from here on inherits these: `wal fetch` against S3 needs them
    stack.enter_context(environment_variables(endpoint.env()))
    cluster = stack.enter_context(scratch_cluster(archive=True, wal_segsize_mb=SEGMENT_MB,
                                                  **SOURCE_SETTINGS))
    cluster.execute(f"create database {DATABASE}")
    _run([pg_bin("pgbench"), "-i", "-q", "-n", "-s", str(SCALE), cluster.dsn(DATABASE)],
         "pgbench -i")
    cluster.execute("checkpoint")
    base = scratch / "base"
    _run([pg_bin("pg_basebackup"), "--dbname", cluster.dsn(), "--pgdata", str(base),
          "--wal-method=none", "--checkpoint=fast", "--no-sync"], "pg_basebackup")
    start_lsn = re.search(r"START WAL LOCATION: (\S+)", (base / "backup_label").read_text())[1]
    phases["cluster, pgbench -i, base backup"] = time.perf_counter() - started

    now = time.perf_counter()
    wanted = (segments_wanted - 1) * SEGMENT_MB * 2**20
    accounts = SCALE * 100_000
    first = 1
    with cluster.connect(DATABASE) as conn:
        while conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                           (start_lsn,)).fetchone()[0] < wanted:
            last = min(first + ROWS_PER_COMMIT - 1, accounts)
            conn.execute("update pgbench_accounts set abalance = abalance + 1 "
                         "where aid between %s and %s", (first, last))
            first = 1 if last == accounts else last + 1
        expected_sum = conn.execute("select sum(abalance) from pgbench_accounts").fetchone()[0]
        target_lsn = _target_inside_a_segment(conn)
    last_segment = wait_archived(cluster, timeout=120)
    phases["write load and archiving (cp)"] = time.perf_counter() - now

    now = time.perf_counter()
    archive = cluster.archive_dir
    first_segment = re.search(r"\(file ([0-9A-F]{24})\)",
                              (base / "backup_label").read_text())[1]
    files = sorted(p.name for p in archive.iterdir())
    segments = [f for f in files if re.fullmatch(r"[0-9A-F]{24}", f)
                and first_segment <= f <= last_segment]
    repo = scratch / "repo"
    local_config = scratch / "local.toml"
    s3_config = scratch / "s3.toml"
    cluster_toml = (f'\n[clusters.{CLUSTER}]\ndsn = "{cluster.dsn(DATABASE)}"\n'
                    f'repository = "backups"\n')
    local_config.write_text(f'[repositories.backups]\ntype = "local"\npath = "{repo}"\n'
                            + cluster_toml)
    s3_config.write_text(s3_repository(endpoint, bucket) + "\n" + cluster_toml)
    for config in (local_config, s3_config):
        config.chmod(0o644)
    local_store = LocalStore(repo)
    s3_store = open_store(load_config_file(s3_config).repository_for(CLUSTER))
    _push_all(local_store, archive, files)
    give_to_server(repo)  # the per-file `wal fetch` runs as postgres
    phases["drdeck push into the local repository"] = time.perf_counter() - now
    now = time.perf_counter()
    _push_all(s3_store, archive, files, threads=4)
    phases["drdeck push into S3"] = time.perf_counter() - now
    wal_bytes = sum((archive / name).stat().st_size for name in segments)
    # the source's work is done: nothing of it must compete with the timed recoveries
    cluster.stop("fast")
    return World(scratch, archive, base, local_config, s3_config, local_store, s3_store,
                 segments, expected_sum, wal_bytes, target_lsn, phases, endpoint=endpoint,
                 bucket=bucket)


def _target_inside_a_segment(conn: Any) -> str:
    """An LSN at the start of a new segment with READ_AHEAD bytes of WAL after it.

    Recovery decodes WAL ahead of what it applies; stopping with READ_AHEAD of WAL
    still ahead in the same segment keeps the reader inside it (see the module's doc).
    """
    conn.execute("create table bench_marks (n int)")
    conn.execute("select pg_switch_wal()")
    conn.execute("insert into bench_marks values (0)")
    target, segment = conn.execute("select pg_current_wal_insert_lsn(), "
                                   "pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()
    while conn.execute("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)",
                       (target,)).fetchone()[0] < READ_AHEAD:
        conn.execute("insert into bench_marks select generate_series(1, 1000)")
    now = conn.execute("select pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]
    if now != segment:
        raise BenchError(f"the WAL after the recovery target left its segment ({segment})")
    return str(target)


def _push_all(store: Any, archive: Path, files: list[str], threads: int = 1) -> None:
    from tui.wal.archive import push

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: push(store, CLUSTER, archive / name), files))


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            check=False, timeout=300)
    if result.returncode != 0:
        raise BenchError(f"{what} exited {result.returncode}: {result.stderr.strip()[-300:]}")


# --- one recovery --------------------------------------------------------------------------


class Recovery:
    """A copy of the base backup, set to recover with `command`; run() times it."""

    def __init__(self, world: World):
        from tui.postgres.cluster import LocalCluster

        self.world = world
        self.node = LocalCluster.in_temp_directory(prefix="drdeck-walrun-")
        shutil.copytree(world.base, self.node.data_dir, symlinks=True)
        self.spool = self.node.data_dir / "drdeck.spool"

    def configure(self, command: str) -> None:
        from tui.postgres.cluster import server_account

        target = {} if TO_THE_END else {"recovery_target_lsn": self.world.target_lsn}
        self.node.configure(restore_command=command, **RESTORED_SETTINGS, **target)
        (self.node.data_dir / "recovery.signal").touch()
        self.node.give_data_dir_to_server()
        account = server_account()
        if account is not None and self.spool.exists():
            os.chown(self.spool, account.uid, account.gid)

    def run(self, trouble: Callable[[], str | None] = lambda: None) -> float:
        """Seconds from `pg_ctl start` to promotion; `trouble` says why to give up early."""
        import psycopg

        started = time.perf_counter()
        self.node.start(wait=False)
        deadline = started + RECOVERY_TIMEOUT_S
        conn = None
        try:
            while True:
                if conn is None:
                    with contextlib.suppress(psycopg.OperationalError):
                        conn = psycopg.connect(self.node.dsn(DATABASE), autocommit=True,
                                               connect_timeout=5)
                if conn is not None and \
                        conn.execute("select pg_is_in_recovery()").fetchone()[0] is False:
                    elapsed = time.perf_counter() - started
                    break
                problem = trouble()
                if problem is not None:
                    raise BenchError(f"{problem}; the server's log:\n{self.log()[-800:]}")
                if time.perf_counter() > deadline:
                    raise BenchError(f"no promotion within {RECOVERY_TIMEOUT_S} s; log:\n"
                                     f"{self.log()[-1500:]}")
                if conn is None and not (self.node.data_dir / "postmaster.pid").exists() \
                        and time.perf_counter() - started > 5:
                    raise BenchError(f"the restored server stopped; log:\n{self.log()[-1500:]}")
                time.sleep(POLL_S)
            total = conn.execute("select sum(abalance) from pgbench_accounts").fetchone()[0]
        finally:
            if conn is not None:
                conn.close()
        self.check(total)
        return elapsed

    def check(self, total: int) -> None:
        restored = set(RESTORED.findall(self.log()))
        missing = [s for s in self.world.segments if s not in restored]
        if missing:
            raise BenchError(f"{len(missing)} segments were never restored (first {missing[0]})"
                             f"; log:\n{self.log()[-1500:]}")
        if total != self.world.expected_sum:
            raise BenchError(f"the recovered sum(abalance) is {total}, the source's "
                             f"{self.world.expected_sum}")

    def log(self) -> str:
        try:
            return self.node.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.node.stop("immediate")
        shutil.rmtree(self.node.data_dir.parent, ignore_errors=True)


@contextlib.contextmanager
def recovery(world: World) -> Iterator[Recovery]:
    made = Recovery(world)
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def feeding(feeder: Any) -> Iterator[Callable[[], str | None]]:
    """Run `feeder` on an event loop of its own, in a thread, as the PITR action awaits it.

    Yields a callable: None while the feeder serves, else how it stopped.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task: dict[str, asyncio.Task[None]] = {}
    stopped: list[str] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        task["run"] = loop.create_task(feeder.run())
        ready.set()
        try:
            loop.run_until_complete(task["run"])
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the product's: reported, not printed as a traceback
            stopped.append(f"the WalFeeder stopped serving: {type(exc).__name__}: {exc}")
        loop.run_until_complete(feeder.close())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    thread = threading.Thread(target=serve, name="wal-feeder", daemon=True)
    thread.start()
    ready.wait()
    try:
        yield lambda: stopped[0] if stopped else None
    finally:
        loop.call_soon_threadsafe(task["run"].cancel)
        thread.join(60)


# --- the subjects ---------------------------------------------------------------------------


def with_cp(world: World) -> float:
    archive = restore_line.quoted(str(world.archive))
    with recovery(world) as run:
        run.configure(f"cp {archive}/%f %p")
        return run.run()


def with_fetch(world: World) -> float:
    with recovery(world) as run:
        run.configure(restore_line.direct(drdeck_argv(), world.local_config, CLUSTER))
        return run.run()


def with_feeder(world: World, store: Any, key: str) -> float:
    from tui.postgres.cluster import server_account
    from tui.wal.feeder import WalFeeder, restore_command

    account = server_account()
    with recovery(world) as run:
        feeder = WalFeeder(store, CLUSTER, run.spool, gpg_home=None, encrypted_first=False,
                           depth=DEPTH, owner=(account.uid, account.gid) if account else None)
        feeder.prepare()
        run.configure(restore_command(run.spool))
        with feeding(feeder) as trouble:
            elapsed = run.run(trouble)
            # after promotion the server still asks for a timeline history or two
            time.sleep(0.2)
            if trouble() is not None:
                world.feeder_crashes.append(f"{key}: {trouble()} (after the promotion)")
        world.feeder_waits.setdefault(key, []).append(feeder.served)
        return elapsed


def with_line(world: World, config: Path) -> float:
    with recovery(world) as run:
        run.configure(restore_line.spooled(drdeck_argv(), config, CLUSTER, run.spool, DEPTH))
        try:
            return run.run()
        finally:
            world.spool_leftovers.append(_stop_prefetcher(run.spool))


def _stop_prefetcher(spool: Path) -> int:
    """Stop the prefetcher this recovery started, if it still runs; the files it left."""
    lock = spool / ".prefetch.lock"
    with contextlib.suppress(OSError, ValueError):
        for line in lock.read_text().split():
            pid = int(line)
            # only that prefetcher: a pid of one that has left may belong to another process
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"prefetch" in argv and bytes(spool) in argv:
                    os.kill(pid, 15)
    if not spool.is_dir():
        return 0
    return len([p for p in spool.iterdir() if not p.name.startswith(".")])


# --- start-up against replay ----------------------------------------------------------------


def startup_seconds(world: World, runs: int = 5) -> tuple[float, float]:
    """Median wall seconds of `drdeck --help` and of one `drdeck wal fetch` (local)."""
    dest = world.scratch / "RECOVERYXLOG"
    commands = {
        "help": [*drdeck_argv(), "--help"],
        "fetch": [*drdeck_argv(), "--config", str(world.local_config), "wal", "fetch",
                  "--cluster", CLUSTER, world.segments[len(world.segments) // 2], str(dest)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            _run(argv, f"drdeck {name}")
            times[name].append(time.perf_counter() - started)
    dest.unlink(missing_ok=True)
    return statistics.median(times["help"]), statistics.median(times["fetch"])


# --- the report ------------------------------------------------------------------------------


def run() -> Report:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        world = build(stack)
        setup_s = time.perf_counter() - started
        fast: dict[str, Callable[[], float]] = {
            "cp": lambda: with_cp(world),
            "feeder": lambda: with_feeder(world, world.local_store, "feeder"),
            "feeder S3": lambda: with_feeder(world, world.s3_store, "feeder S3"),
        }
        with_cp(world)  # the first recovery after the set-up is slower, whoever runs it
        samples = interleaved(fast, runs=RUNS, warmup=WARMUP)
        slow = {"fetch": lambda: with_fetch(world),
                "line": lambda: with_line(world, world.local_config),
                "line S3": lambda: with_line(world, world.s3_config)}
        samples |= interleaved(slow, runs=SLOW_RUNS, warmup=0)
        help_s, fetch_s = startup_seconds(world)
    total_s = time.perf_counter() - started

    command = reproduce(NAME)
    baseline = "cp %f %p"
    rows = []
    labels = {
        "feeder": ("feeder, local: pitr-restore's spool + WalFeeder", TARGET_LOCAL),
        # the plain line, a Python start per file: shown, not held to the target the
        # spooled line is for
        "fetch": ("wal fetch per file, local", None),
        "feeder S3": ("feeder, S3", TARGET_S3),
        # a recovery set up by hand: the targets are for the guided one (feeder)
        "line": ("restore-command --spool, local", None),
        "line S3": ("restore-command --spool, S3", None),
    }
    for key, (label, target) in labels.items():
        row = Row(f"{NAME} ({label})", "s", samples[key], baseline, samples["cp"], command)
        if target is not None:
            row.targets = [Target(f"<= {target:g}x cp", row.ratio <= target)]
        rows.append(row)
    by_key = dict(zip(labels, rows, strict=True))

    segments = len(world.segments)
    per_segment = statistics.median(samples["cp"]) / segments
    mib = world.wal_bytes / 2**20
    notes = [
        Note(NAME, f"{segments} segments of {SEGMENT_MB} MiB ({mib:,.0f} MiB of WAL: "
                   f"pgbench_accounts (scale {SCALE}) updated in commits of "
                   f"{ROWS_PER_COMMIT:,} rows, full-page writes on), replayed from "
                   f"pg_basebackup -X none to "
                   + ("the end of the archive" if TO_THE_END else
                      f"the load's end (recovery_target_lsn {world.target_lsn}, 640 kB before "
                      f"the archive's end)")
                   + "; and promoted; "
                   f"timed from pg_ctl start to pg_is_in_recovery() = false; "
                   f"{RUNS} runs each, round-robin after one untimed cp recovery (cp, feeder, "
                   f"feeder S3), "
                   f"{SLOW_RUNS} for the per-file Python variants; median; restored servers "
                   f"with fsync and autovacuum off; moto in its own process; every recovery "
                   f"checked (all segments restored, sum(abalance) as the source's)"),
        Note(NAME, f"set-up {setup_s:.1f} s ("
                   + ", ".join(f"{k} {v:.1f} s" for k, v in world.setup_phases.items())
                   + f"); whole benchmark {total_s:.1f} s"),
        Note(NAME, "all runs in seconds: " + "; ".join(
            f"{key} " + " ".join(f"{s:.2f}" for s in values) for key, values in samples.items())),
    ]
    local_met = [k for k in ("feeder",) if by_key[k].met]
    s3_met = [k for k in ("feeder S3",) if by_key[k].met]
    notes.append(Note(
        NAME, f"issue target, local archive <= {TARGET_LOCAL:g}x cp: "
              + (f"met by {' and '.join(local_met)}" if local_met else "MISSED")
              + f" (feeder {by_key['feeder'].ratio:.2f}x, restore-command --spool "
              f"{by_key['line'].ratio:.2f}x; the plain per-file fetch "
              f"{by_key['fetch'].ratio:.2f}x)", ok=bool(local_met)))
    notes.append(Note(
        NAME, f"issue target, S3 with prefetch <= {TARGET_S3:g}x cp: "
              + (f"met by {' and '.join(s3_met)}" if s3_met else "MISSED")
              + f" (feeder S3 {by_key['feeder S3'].ratio:.2f}x, restore-command --spool "
              f"{by_key['line S3'].ratio:.2f}x)", ok=bool(s3_met)))
    fetch_per_segment = statistics.median(samples["fetch"]) / segments
    at_16 = 16 * per_segment
    notes.append(Note(
        NAME, f"why the plain per-file command misses: `drdeck --help` starts in "
              f"{help_s * 1000:.0f} ms and one `drdeck wal fetch` (local) takes "
              f"{fetch_s * 1000:.0f} ms, against {per_segment * 1000:.1f} ms per "
              f"{SEGMENT_MB} MiB segment for cp + replay; in the recovery, "
              f"{fetch_per_segment * 1000:.0f} ms per segment. A Python start per file is "
              f"what the feeder and the spooled line remove. At 16 MiB segments (about "
              f"{at_16 * 1000:.0f} ms of replay each, if replay scales with bytes) the "
              f"per-file command would come to about "
              f"{(at_16 + fetch_per_segment - per_segment) / at_16:.2f}x cp"))
    waits = "; ".join(f"{key} {statistics.median(v):.0f}" for key, v in world.feeder_waits.items())
    notes.append(Note(NAME, f"feeder: segments not in the spool yet when the server asked for "
                            f"them (restore_command then polls every 50 ms), median per "
                            f"recovery: {waits}; the timeline history files the server asks for "
                            f"(none in the archive, 2-3 per recovery) always wait that way"))
    for crash in world.feeder_crashes:
        notes.append(Note(NAME, f"{crash}: a product bug (see tests/test_wal_archive.py::"
                                f"test_the_feeder_survives_the_server_taking_a_file_before_it_"
                                f"is_handed_over)", ok=False))
    if any(world.spool_leftovers):
        notes.append(Note(
            NAME, f"restore-command --spool: {', '.join(map(str, world.spool_leftovers))} "
                  f"segment(s) left in the spool after a recovery that took every one "
                  f"(downloaded by the prefetcher after recovery had fetched them itself: "
                  f"a product bug)", ok=False))
    return Report(rows=rows, notes=notes)
