"""archive: drdeck's own archive against pgBackRest's, side by side on one cluster.

One cluster (PostgreSQL's default 16 MiB WAL segments, pgbench scale SCALE) archives
every segment into both at once: its archive_command is `drdeck wal push ... && pgbackrest
archive-push ...`. drdeck's repository is local, zstd level 3 (its default), without gpg;
pgBackRest's stanza is local too, compress-type=zst at level 3 (its own zst default),
process-max=1, no encryption: the same algorithm, level and work on both sides. Then:

- base backup: `drdeck run base-backup` and `pgbackrest backup --type=full`, alternating,
  RUNS each, timed whole (each waits for the WAL that makes it consistent to be
  archived); their stored bytes (drdeck's objects; pgBackRest's backup directory);
- WAL: the stored bytes of what LOAD (a fixed pgbench run) wrote, in each repository;
- PITR to the end of that WAL: `drdeck run pitr-restore -p target=latest` (pre-flight,
  fetch, unpack, replay through drdeck's feeder, promote), against `pgbackrest restore`
  followed by the same server start and replay (restore_command `pgbackrest archive-get`)
  until promotion; both into a new directory, timed whole;
- archive throughput: THROUGHPUT_SEGMENTS segments of 16 MiB pushed one after another
  into a new repository each run, as PostgreSQL's archiver does, from a pg_wal where
  each is .ready: `drdeck wal archive-command --spool`'s line (the pusher archiving
  ahead, two at a time, the shell taking its marks) against `pgbackrest archive-push`
  with archive-async on (process-max 2), and each without (one process per segment).
  The rate is the sustained one, from the first segment archived to the last: what a
  server archiving without pause sees. The cold start (until the first is archived:
  a pusher or an async process to start) is a note of its own.

The saturated write rate of this machine (every row of pgbench_accounts rewritten in
one statement, in 16 MiB segments per second) is a note: what an archiver has to keep
up with here.

The throughput rows call the archive commands directly, with no server's archiver
behind them, so they cannot show its lag. That is measured on its own: the cluster
archiving with drdeck wal push --spool alone, then with pgBackRest archive-async alone
(process-max 2), while FLAT_OUT runs and until the backlog is archived; pg_stat_archiver
is sampled every LAG_SAMPLE_S through drdeck's own reader (tui.postgres.archiver, as
`drdeck status` reads it) and the most segments seen waiting is a note for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchError, Note, Report, Row, Target, interleaved, reproduce
from bench.fixtures import CLUSTER, SERVER_SETTINGS, seed_pgbench, use_test_harness

NAME = "archive"
SCALE = 10
LOAD = ["-n", "-c", "2", "-j", "2", "-t", "5000"]  # a fixed load: the same WAL each run
# and rows rewritten in bulk, as a batch job or a migration does: WAL by the segment
BULK = "update pgbench_accounts set abalance = abalance + 1 where aid <= 400000"
FLAT_OUT = "update pgbench_accounts set abalance = abalance + 1"  # every row, one statement
LAG_SAMPLE_S = 0.2
RUNS = 2
THROUGHPUT_SEGMENTS = 24
ZSTD_LEVEL = 3
SIZE_TARGET = 1.1
TIME_TARGET = 1.0
PITR_TARGET = 1.1


def _stanza_config(stanza: Any, cluster: Any, extra: str = "") -> None:
    stanza.write_config(cluster)
    text = stanza.config.read_text()
    text = text.replace("compress-type=gz\ncompress-level=1",
                        f"compress-type=zst\ncompress-level={ZSTD_LEVEL}\nprocess-max=1{extra}")
    stanza.config.write_text(text)


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _newest(path: Path) -> Path:
    return max((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)


class World:
    def __init__(self, stack: contextlib.ExitStack) -> None:
        use_test_harness()
        from harness.postgres import scratch_cluster
        from pgbackrest_support import new_stanza, remove
        from pitr_support import archiving_setup, point_config_at, wait_archived

        self.wait_archived = wait_archived
        self.stack = stack
        base = Path(os.environ.get("TMPDIR", "/tmp"))
        self.setup = archiving_setup(base / f"drdeck-bench-archive-state-{os.getpid()}",
                                     recipients=[], gpg_home=None)
        stack.callback(shutil.rmtree, self.setup.base, True)
        stack.callback(shutil.rmtree, self.setup.deck.state, True)
        self.stanza = new_stanza()
        stack.callback(remove, self.stanza)
        self.cluster = stack.enter_context(scratch_cluster(
            archive_mode="on", archive_command="/bin/true", **SERVER_SETTINGS))
        _stanza_config(self.stanza, self.cluster)
        self.stanza.run("stanza-create")
        self.cluster.execute("alter system set archive_command = "
                             f"'{self.setup.archive_command()} && "
                             f"{self.stanza.archive_command()}'")
        self.cluster.execute("select pg_reload_conf()")
        seed_pgbench(self.cluster, "app", SCALE)
        point_config_at(self.setup, self.cluster)
        wait_archived(self.cluster, timeout=120)

    # --- base backups ----------------------------------------------------------------

    def drdeck_base_backup(self) -> float:
        started = time.perf_counter()
        proc = self.setup.deck.run("run", "base-backup", "--headless", timeout=600)
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise BenchError(f"drdeck base-backup failed: {proc.stdout[-1500:]}")
        return took

    def pgbackrest_base_backup(self) -> float:
        started = time.perf_counter()
        self.stanza.backup("full")
        return time.perf_counter() - started

    def stored_base_bytes(self) -> tuple[int, int]:
        drdeck = _tree_bytes(_newest(self.setup.repo / CLUSTER / "base"))
        pgbackrest = _tree_bytes(_newest(self.stanza.repo / "backup" / self.stanza.name))
        return drdeck, pgbackrest

    # --- WAL -------------------------------------------------------------------------

    def wal_bytes(self) -> tuple[int, int]:
        return (_tree_bytes(self.setup.repo / CLUSTER / "wal"),
                _tree_bytes(self.stanza.repo / "archive" / self.stanza.name))

    def load(self) -> tuple[int, int, int]:
        """The stored bytes of the WAL the load wrote, in each repository, and its
        segments."""
        from tui.postgres.binaries import pg_bin

        before = self.wal_bytes()
        first = self.cluster.scalar("select pg_current_wal_lsn()")
        subprocess.run([pg_bin("pgbench"), *LOAD, self.cluster.dsn("app")], check=True,
                       capture_output=True, timeout=600)
        self.cluster.execute(BULK, dbname="app")
        written = int(self.cluster.scalar(
            f"select pg_current_wal_lsn() - '{first}'::pg_lsn"))
        self.wait_archived(self.cluster, timeout=300)
        after = self.wal_bytes()
        return after[0] - before[0], after[1] - before[1], written

    # --- PITR ------------------------------------------------------------------------

    def drdeck_pitr(self) -> float:
        from tui.postgres.cluster import free_port

        from pitr_support import stop_restored

        data_dir = self.setup.base / f"pitr-drdeck-{free_port()}"
        started = time.perf_counter()
        proc = self.setup.deck.run("run", "pitr-restore", "-p", "target=latest", "-p",
                                   f"data_dir={data_dir}", "-p", f"port={free_port()}",
                                   "--yes", "--headless", timeout=900)
        took = time.perf_counter() - started
        stop_restored(data_dir)
        self._check_and_remove(data_dir, proc.returncode == 0, proc.stdout)
        shutil.rmtree(data_dir.with_name(data_dir.name + ".wal"), ignore_errors=True)
        return took

    def pgbackrest_pitr(self) -> float:
        from tui.postgres.cluster import LocalCluster, free_port

        data_dir = self.stanza.base / f"pitr-pgbackrest-{free_port()}"
        port = free_port()
        started = time.perf_counter()
        self.stanza.run("restore", f"--pg1-path={data_dir}", "--type=default",
                        "--archive-mode=off")
        with open(data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write(f"port = {port}\nunix_socket_directories = '{data_dir}'\n"
                       "listen_addresses = ''\n")
        restored = LocalCluster(data_dir, port, data_dir, data_dir / "recovery.log")
        restored.start()
        try:
            while restored.scalar("select pg_is_in_recovery()") is True:
                time.sleep(0.01)
            took = time.perf_counter() - started
        finally:
            restored.stop("immediate")
        self._check_and_remove(data_dir, True, "")
        return took

    def _check_and_remove(self, data_dir: Path, ok: bool, said: str) -> None:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(data_dir.with_name(data_dir.name + ".tablespaces"), ignore_errors=True)
        if not ok:
            raise BenchError(f"the restore into {data_dir} failed: {said[-1500:]}")

    # --- archive throughput ----------------------------------------------------------

    def plain_segments(self, count: int) -> Path:
        """`count` archived segments, as PostgreSQL wrote them, in the pg_wal of a copy
        of the cluster's directory holding only them, global/pg_control and an
        archive_status/<name>.ready for each: pgBackRest's archive-async looks there for
        the segments it may push ahead, and at pg_control for the server's identity."""
        from tui.postgres.access import give_to_server
        from tui.storage.local import LocalStore
        from tui.wal.archive import fetch_bytes

        store = LocalStore(self.setup.repo)
        from tui.wal.names import is_segment

        names = sorted({base for o in store.list(f"{CLUSTER}/wal/")
                        if is_segment(base := o.key.rsplit("/", 1)[-1]
                                      .removesuffix(".gpg").removesuffix(".zst"))})[-count:]
        self.pg_copy = self.setup.base / "segments"
        folder = self.pg_copy / "pg_wal"
        (folder / "archive_status").mkdir(parents=True)
        (self.pg_copy / "global").mkdir()
        shutil.copy(self.cluster.data_dir / "global" / "pg_control", self.pg_copy / "global")
        for name in names:
            data = fetch_bytes(store, CLUSTER, name)
            if data is None:
                raise BenchError(f"{name} is not in drdeck's archive")
            (folder / name).write_bytes(data)
            (folder / "archive_status" / f"{name}.ready").touch()
        give_to_server(self.pg_copy)
        self.segment_names = names
        return folder

    @staticmethod
    def archived(folder: Path, name: str) -> None:
        """What PostgreSQL does once archive_command succeeds: <name>.ready -> .done."""
        status = folder / "archive_status"
        (status / f"{name}.ready").rename(status / f"{name}.done")

    @staticmethod
    def all_ready(folder: Path) -> None:
        for done in (folder / "archive_status").glob("*.done"):
            done.rename(done.with_suffix(".ready"))

    def drdeck_push_all(self, folder: Path, ahead: bool) -> Pushed:
        """Each segment pushed as the archiver would, one call after another; `ahead`:
        with --spool, the pusher archiving the .ready ones ahead."""
        from bench.fixtures import drdeck_argv, drdeck_env

        repo = self.setup.base / f"push-{time.monotonic_ns()}"
        spool = repo.with_name(repo.name + ".spool")
        config = self.setup.base / f"{repo.name}.toml"
        config.write_text(self.setup.config.read_text().replace(str(self.setup.repo),
                                                                str(repo)))
        from tui.wal.restore_line import archive_spooled

        self.all_ready(folder)
        env = drdeck_env(self.setup.deck.state)
        line = archive_spooled(drdeck_argv(), config, CLUSTER, spool)
        started = time.perf_counter()
        first = None
        for name in self.segment_names:
            if ahead:  # the line `drdeck wal archive-command --spool` prints, as sh runs it
                command = ["sh", "-c", line.replace("%f", name).replace(
                    "%p", str(folder / name))]
            else:
                command = [*drdeck_argv(), "--config", str(config), "wal", "push",
                           "--cluster", CLUSTER, str(folder / name)]
            subprocess.run(command, check=True, capture_output=True, env=env, timeout=120)
            self.archived(folder, name)
            first = first or time.perf_counter() - started
        took = time.perf_counter() - started
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)
        return Pushed(first, took, len(self.segment_names))

    def pgbackrest_push_all(self, folder: Path, asynchronous: bool) -> Pushed:
        from pgbackrest_support import new_stanza, remove

        stanza = new_stanza()
        try:
            extra = ""
            if asynchronous:
                (stanza.base / "spool").mkdir()
                from tui.postgres.access import give_to_server

                give_to_server(stanza.base / "spool")
                extra = f"\narchive-async=y\nspool-path={stanza.base / 'spool'}"
            _stanza_config(stanza, self.cluster, extra)
            if asynchronous:  # archive-async pushes with process-max processes
                stanza.config.write_text(stanza.config.read_text().replace(
                    "process-max=1", "process-max=2"))
            stanza.run("stanza-create")
            stanza.config.write_text(stanza.config.read_text().replace(
                f"pg1-path={self.cluster.data_dir}", f"pg1-path={self.pg_copy}"))
            self.all_ready(folder)
            started = time.perf_counter()
            first = None
            for name in self.segment_names:
                stanza.run("archive-push", str(folder / name))
                self.archived(folder, name)
                first = first or time.perf_counter() - started
            return Pushed(first, time.perf_counter() - started, len(self.segment_names))
        finally:
            remove(stanza)

    # --- the archiver's lag, on the real server ---------------------------------------

    def _archive_with(self, command: str) -> None:
        self.cluster.configure(archive_command=command)
        self.cluster.reload()

    def most_waiting_segments(self) -> int:
        """The most segments pg_stat_archiver showed waiting while FLAT_OUT ran and its
        WAL was archived, with the archive_command set now."""
        from tui.postgres.archiver import ArchiverUnknown, read_stats

        self.wait_archived(self.cluster, timeout=300)  # from nothing waiting
        seen = [0]
        done = threading.Event()
        dsn = self.cluster.dsn()

        def sample() -> None:
            while not done.is_set():
                with contextlib.suppress(ArchiverUnknown):
                    waiting = asyncio.run(read_stats(dsn)).waiting_segments
                    if waiting is not None:  # unknown is not zero: left out
                        seen.append(waiting)
                done.wait(LAG_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            self.cluster.execute(FLAT_OUT, dbname="app")
            self.wait_archived(self.cluster, timeout=600)
        finally:
            done.set()
            sampler.join()
        return max(seen)

    def drdeck_spool_lag(self) -> int:
        from tui.postgres.access import give_to_server
        from tui.wal.push_ahead import LOCK
        from tui.wal.restore_line import archive_spooled
        from tui.wal.spool_lock import is_held

        spool = self.setup.base / "lag.spool"
        spool.mkdir(mode=0o700)
        give_to_server(spool)
        # as the server account runs it: the interpreter, as pitr_support's archive_command
        self._archive_with(archive_spooled([sys.executable, "-m", "tui"], self.setup.config,
                                           CLUSTER, spool))
        try:
            return self.most_waiting_segments()
        finally:
            deadline = time.monotonic() + 30  # the pusher leaves once idle (IDLE_S)
            while (spool / LOCK).exists() and is_held(spool / LOCK) \
                    and time.monotonic() < deadline:
                time.sleep(0.2)

    def pgbackrest_async_lag(self) -> int:
        from tui.postgres.access import give_to_server

        from pgbackrest_support import new_stanza, remove

        stanza = new_stanza()
        try:
            (stanza.base / "spool").mkdir()
            give_to_server(stanza.base / "spool")
            _stanza_config(stanza, self.cluster,
                           f"\narchive-async=y\nspool-path={stanza.base / 'spool'}")
            stanza.config.write_text(stanza.config.read_text().replace(
                "process-max=1", "process-max=2"))
            stanza.run("stanza-create")
            self._archive_with(stanza.archive_command())
            return self.most_waiting_segments()
        finally:
            self._archive_with("/bin/true")  # before the stanza goes
            remove(stanza)


@dataclass(frozen=True)
class Pushed:
    """One run of the archiver's calls over the segments: when the first call returned
    (the cold start: an async pusher or process to start) and the last."""

    first_s: float
    all_s: float
    count: int

    @property
    def sustained(self) -> float:
        """Segments per second once the first is archived: what a server archiving
        without pause sees, its pusher running."""
        return (self.count - 1) / (self.all_s - self.first_s)


def saturated_segments_per_s(world: World) -> float:
    """16 MiB segments per second this machine's server writes flat out: every row of
    pgbench_accounts rewritten in one statement (the archiver runs behind it)."""
    first = world.cluster.scalar("select pg_current_wal_lsn()")
    started = time.perf_counter()
    world.cluster.execute(FLAT_OUT, dbname="app")
    took = time.perf_counter() - started
    written = int(world.cluster.scalar(f"select pg_current_wal_lsn() - '{first}'::pg_lsn"))
    world.wait_archived(world.cluster, timeout=300)
    return written / (16 << 20) / took


def run() -> Report:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        world = World(stack)
        setup_s = time.perf_counter() - started
        base_times = interleaved({"drdeck": world.drdeck_base_backup,
                                  "pgbackrest": world.pgbackrest_base_backup},
                                 runs=RUNS, warmup=0)
        base_bytes = world.stored_base_bytes()
        wal_drdeck, wal_pgbackrest, written = world.load()
        pitr = interleaved({"drdeck": world.drdeck_pitr,
                            "pgbackrest": world.pgbackrest_pitr}, runs=RUNS, warmup=0)
        folder = world.plain_segments(THROUGHPUT_SEGMENTS)
        count = len(world.segment_names)
        runs: dict[str, list[Pushed]] = {"drdeck": [], "ahead": [], "async": [], "sync": []}

        def kept(how: str, push: Callable[[], Pushed]) -> Callable[[], float]:
            def once() -> float:
                runs[how].append(push())
                return runs[how][-1].sustained
            return once

        pushes = interleaved({
            "drdeck": kept("drdeck", lambda: world.drdeck_push_all(folder, False)),
            "ahead": kept("ahead", lambda: world.drdeck_push_all(folder, True)),
            "async": kept("async", lambda: world.pgbackrest_push_all(folder, True)),
            "sync": kept("sync", lambda: world.pgbackrest_push_all(folder, False)),
        }, runs=RUNS, warmup=0)
        cold = {how: statistics.median(r.first_s for r in done) for how, done in runs.items()}
        saturated = saturated_segments_per_s(world)
        lag = {"drdeck": world.drdeck_spool_lag(), "pgbackrest": world.pgbackrest_async_lag()}
    total_s = time.perf_counter() - started

    rows = []
    row = Row(f"{NAME}: base backup stored (drdeck, zstd 3)", "B",
              [float(base_bytes[0])], "pgbackrest backup, zst 3", [float(base_bytes[1])],
              reproduce(NAME))
    row.targets = [Target(f"<= {SIZE_TARGET:g}x pgBackRest zst", row.ratio <= SIZE_TARGET)]
    rows.append(row)
    row = Row(f"{NAME}: WAL of the load stored", "B", [float(wal_drdeck)],
              "pgbackrest archive-push, zst 3", [float(wal_pgbackrest)], reproduce(NAME))
    row.targets = [Target(f"<= {SIZE_TARGET:g}x pgBackRest zst", row.ratio <= SIZE_TARGET)]
    rows.append(row)
    row = Row(f"{NAME}: base backup time", "s", base_times["drdeck"],
              "pgbackrest backup --type=full, process-max 1", base_times["pgbackrest"],
              reproduce(NAME))
    row.targets = [Target(f"<= {TIME_TARGET:g}x pgBackRest", row.ratio <= TIME_TARGET)]
    rows.append(row)
    row = Row(f"{NAME}: PITR to the end of the WAL (pitr-restore)", "s", pitr["drdeck"],
              "pgbackrest restore + the same replay", pitr["pgbackrest"], reproduce(NAME))
    row.targets = [Target(f"<= {PITR_TARGET:g}x pgBackRest", row.ratio <= PITR_TARGET)]
    rows.append(row)
    row = Row(f"{NAME}: archive throughput, sustained (drdeck wal push --spool)",
              "segments/s",
              pushes["ahead"], "pgbackrest archive-push, archive-async, process-max 2",
              pushes["async"], reproduce(NAME))
    row.targets = [Target(">= pgBackRest archive-async", row.ratio <= 1.0)]
    rows.append(row)
    rows.append(Row(f"{NAME}: archive throughput, sustained (drdeck wal push)", "segments/s",
                    pushes["drdeck"], "pgbackrest archive-push, synchronous",
                    pushes["sync"], reproduce(NAME)))
    fastest_push = statistics.median(pushes["ahead"])
    notes = [
        Note(NAME, f"one cluster, pgbench scale {SCALE}, 16 MiB segments, archiving into "
                   f"both at once; the load is pgbench {' '.join(LOAD)} and {BULK!r} "
                   f"({written / (1 << 20):.0f} MiB of WAL); {RUNS} runs each, alternating, "
                   f"median; throughput over {count} segments of 16 MiB, sustained: from "
                   f"the first archived to the last; set-up "
                   f"{setup_s:.0f} s, whole benchmark {total_s:.0f} s"),
        Note(NAME, f"flat out (every row of pgbench_accounts rewritten in one statement) "
                   f"this server writes {saturated:.1f} segments/s of 16 MiB here; drdeck "
                   f"wal push --spool archives {fastest_push:.1f}/s: "
                   + ("it keeps up" if fastest_push >= saturated else
                                  "MISSED: it falls behind a server writing flat out"),
             ok=fastest_push >= saturated),
        Note(NAME, f"the cold start, until the first segment is archived: drdeck --spool "
                   f"{cold['ahead']:.2f} s (a pusher to start), pgBackRest archive-async "
                   f"{cold['async']:.2f} s; one process per segment: drdeck "
                   f"{cold['drdeck']:.2f} s, pgBackRest {cold['sync']:.2f} s"),
        Note(NAME, f"archiver lag on the server while it writes flat out and until its WAL "
                   f"is archived (pg_stat_archiver every {LAG_SAMPLE_S:g} s, as drdeck "
                   f"status counts it): drdeck wal push --spool at most {lag['drdeck']} "
                   f"segments waiting, pgBackRest archive-async (process-max 2) at most "
                   f"{lag['pgbackrest']}"),
    ]
    return Report(rows=rows, notes=notes)
