"""snapshot-restore: drdeck's restore of an encrypted S3 snapshot against two by-hand ways.

One database (pgbench's tables at scale SCALE, md5 filler: see bench.fixtures)
is backed up once with `drdeck run snapshot-backup` into moto's S3 server
(run in its own process), encrypted for a scratch GnuPG key. For the wiki, the
same database is also dumped once as `pg_dump | gzip | gpg --encrypt` (plain
SQL) and uploaded beside it. Then, round-robin with the order rotated every
round, each restores into a new database on the same server:

- drdeck: `drdeck run snapshot-restore -p target_db=... --yes --headless --json`
  (pre-flight, fetch: S3 -> sha256 -> gpg -d -> file in one pass, create the
  database, pg_restore -j 2, compare every table's row count, connect, the
  manual step acknowledged by --yes), timed from spawn to exit;
- drdeck API: the same pipeline in this process through the Python API
  (read_cluster -> fetch_snapshot -> create_database -> restore_dump ->
  compare_counts): no interpreter start-up, runner or pre-flight;
- hand: the best pipeline an operator can type: a boto3 one-liner
  (`python -c`, `download_file` with its default parallel ranged GETs; lighter
  than `aws s3 cp`) to a file, `gpg --decrypt` to a file, `createdb`,
  `pg_restore -j 2`. Commands, like drdeck's CLI, so both pay a start-up;
- hand in process: the same with the download in this process, boto3 already
  imported and a session made: the strictest baseline, set against the API;
- wiki: the same download command for the SQL object, `gpg --decrypt` to a
  file, gunzip to a file, `createdb`, `psql -f`: serial, as recovery wikis write it.

One untimed restore by hand goes first: the first restore after the set-up
is slower whoever runs it. Every restore is checked (drdeck's own row-count
comparison; for the others, pgbench_accounts' row count and its primary key)
and its database is dropped, a checkpoint taken and the page cache synced,
outside the timed region.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BenchError, Note, Report, Row, Target, reproduce
from bench.fixtures import (
    CLUSTER,
    SETTINGS_TEXT,
    NullReporter,
    bench_cluster,
    drdeck_argv,
    drdeck_env,
    environment_variables,
    gpg_home,
    mib,
    moto_server,
    s3_bucket,
    s3_repository,
    scratch_directory,
    seed_pgbench,
    write_config,
)

NAME = "snapshot-restore"
SCALE = 25  # 2.5 M accounts: a 60 MB dump, a restore of about 4 s on 2 cores
DATABASE = "app"
RUNS = 3
WARMUP = 0  # rounds; one untimed restore by hand warms the server up instead (cheaper)
JOBS = 2
TARGET_HAND = 1.15
TARGET_WIKI = 1.0
TIMEOUT_S = 600
WIKI_KEY = "wiki/app.sql.gz.gpg"
MATCHED = "every table's row count matches the snapshot"


@dataclass
class World:
    """Everything the subjects share: set up once, read by every run."""

    cluster: Any
    endpoint: Any
    bucket: str
    home: Any  # GpgHome
    config: Path
    scratch: Path
    dump_key: str  # the snapshot's key in the bucket
    manifest: Any
    accounts: int
    env: dict[str, str] = field(default_factory=dict)  # for drdeck subprocesses

    def run_dir(self, target: str) -> Path:
        path = self.scratch / "runs" / target
        path.mkdir(parents=True, exist_ok=True)
        return path

    def server_dsn(self) -> str:
        return self.cluster.dsn("postgres")

    def cleanup(self, target: str) -> None:
        """Outside the timed region: drop the database, remove files, settle the disk."""
        self.cluster.execute(f'drop database if exists "{target}" with (force)')
        for path in sorted(self.run_dir(target).glob("*")):
            path.unlink(missing_ok=True)
        self.run_dir(target).rmdir()
        # the next run must not pay for this one's dirty buffers and page cache
        self.cluster.execute("checkpoint")
        os.sync()

    def check_restored(self, target: str) -> None:
        rows = self.cluster.scalar("select count(*) from pgbench_accounts", dbname=target)
        if rows != self.accounts:
            raise BenchError(f"{target}: pgbench_accounts has {rows} rows, expected "
                             f"{self.accounts}")
        keys = self.cluster.scalar(
            "select count(*) from pg_constraint where contype = 'p' "
            "and conrelid = 'pgbench_accounts'::regclass", dbname=target)
        if keys != 1:
            raise BenchError(f"{target}: pgbench_accounts has no primary key after the restore")


def run_checked(argv: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            check=False, timeout=TIMEOUT_S, **kwargs)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()[-400:]
        raise BenchError(f"{what} exited {result.returncode}: {message}")
    return result


class Subject:
    """One restore per call into a new database; returns its seconds, keeps its phases."""

    key = "subject"

    def __init__(self, world: World):
        self.world = world
        self.phases: dict[str, list[float]] = defaultdict(list)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        target = f"bench_{self.key}_{self.calls}"
        try:
            elapsed = self.restore(target, self.world.run_dir(target))
            self.check(target)
        finally:
            self.world.cleanup(target)
        return elapsed

    def restore(self, target: str, workdir: Path) -> float:
        raise NotImplementedError

    def check(self, target: str) -> None:
        self.world.check_restored(target)

    def phase(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.phases[name].append(now - started)
        return now


class DrdeckCli(Subject):
    key = "cli"

    def argv(self, target: str) -> list[str]:
        return [*drdeck_argv(), "--config", str(self.world.config), "run", "snapshot-restore",
                "-p", f"target_db={target}", "-p", f"jobs={JOBS}", "--yes", "--headless",
                "--json"]

    def restore(self, target: str, workdir: Path) -> float:
        spawned = time.time()  # wall clock, to compare with the events' timestamps
        started = time.perf_counter()
        result = subprocess.run(self.argv(target), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, env=self.world.env, cwd=workdir,
                                check=False, timeout=TIMEOUT_S)
        elapsed = time.perf_counter() - started
        events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        finished = [e for e in events if e["event"] == "run_finished"]
        if result.returncode != 0 or not finished or finished[-1]["status"] != "succeeded":
            failed = [e.get("error") for e in events if e["event"] == "step_finished"
                      and e.get("status") == "failed"]
            raise BenchError(f"drdeck run snapshot-restore exited {result.returncode}: "
                             f"{failed or result.stderr.strip()[-400:]}")
        checks = {e["name"]: e["ok"] for e in events if e["event"] == "check"}
        if checks.get(MATCHED) is not True:
            raise BenchError(f"drdeck did not confirm the row counts: {checks}")
        for event in events:
            if event["event"] == "step_finished":
                self.phases[event["step"]].append(event["duration_s"])
        began = datetime.fromisoformat(events[0]["ts"].replace("Z", "+00:00")).timestamp()
        self.phases["process start-up"].append(began - spawned)
        self.phases["process exit"].append(elapsed - (began - spawned)
                                           - finished[-1]["duration_s"])
        return elapsed


class DrdeckApi(Subject):
    key = "api"

    def restore(self, target: str, workdir: Path) -> float:
        with environment_variables(self.world.endpoint.env()):
            return asyncio.run(self._restore(target, workdir))

    async def _restore(self, target: str, workdir: Path) -> float:
        from tui.catalog.inventory import read_cluster
        from tui.config import load_config_file
        from tui.postgres.restore import create_database, database_dsn, restore_dump
        from tui.snapshots.compare import compare_counts
        from tui.snapshots.fetch import fetch_snapshot
        from tui.snapshots.targets import resolve

        reporter = NullReporter()
        started = time.perf_counter()
        place = resolve(load_config_file(self.world.config), CLUSTER, DATABASE)
        inventory = await asyncio.to_thread(read_cluster, place.store, CLUSTER)
        manifest = inventory.find(DATABASE, "latest").manifest
        now = self.phase("config and inventory", started)
        dump = await fetch_snapshot(manifest, place.store, workdir / "app.dump", reporter,
                                    place.gpg_home)
        now = self.phase("fetch (download, sha256, decrypt)", now)
        server = self.world.server_dsn()
        await create_database(server, target)
        now = self.phase("create database", now)
        await restore_dump(dump, database_dsn(server, target), jobs=JOBS, reporter=reporter,
                           env=dict(os.environ))
        now = self.phase(f"pg_restore -j {JOBS} (with its --list)", now)
        differences = await compare_counts(database_dsn(server, target), manifest)
        now = self.phase("compare row counts", now)
        dump.unlink()  # as the CLI's run removes its work directory
        self.phase("remove the dump", now)
        if differences:
            raise BenchError(f"the API restore differs: {differences[:3]}")
        return time.perf_counter() - started


class ByHand(Subject):
    """What the by-hand procedures share: a boto3 download, gpg -d, createdb."""

    in_process = False  # the download as a command an operator types, or in this process

    def download(self, key: str, path: Path) -> None:
        if self.in_process:
            client = self.world.endpoint.client()  # from a shared session: about 5 ms
            client.download_file(self.world.bucket, key, str(path))
            return
        run_checked([sys.executable, "-c", download_script(self.world, key, path)],
                    "python -c 'boto3 ... download_file'")

    def decrypt(self, source: Path, output: Path) -> None:
        run_checked(["gpg", "--batch", "--quiet", "--homedir", str(self.world.home.path),
                     "--decrypt", "--output", str(output), str(source)], "gpg --decrypt")

    def createdb(self, target: str) -> None:
        from tui.postgres.binaries import pg_bin

        run_checked([pg_bin("createdb"), f"--maintenance-db={self.world.server_dsn()}",
                     "--template=template0", target], "createdb")


class Hand(ByHand):
    key = "hand"

    def restore(self, target: str, workdir: Path) -> float:
        from tui.postgres.binaries import pg_bin

        encrypted, dump = workdir / "app.dump.gpg", workdir / "app.dump"
        started = time.perf_counter()
        self.download(self.world.dump_key, encrypted)
        now = self.phase("download", started)
        self.decrypt(encrypted, dump)
        now = self.phase("gpg --decrypt to a file", now)
        self.createdb(target)
        now = self.phase("createdb", now)
        run_checked([pg_bin("pg_restore"), f"--jobs={JOBS}",
                     f"--dbname={self.world.cluster.dsn(target)}", str(dump)], "pg_restore")
        self.phase(f"pg_restore -j {JOBS}", now)
        return time.perf_counter() - started


class HandInProcess(Hand):
    key = "hand in process"
    in_process = True


class Wiki(ByHand):
    key = "wiki"

    def restore(self, target: str, workdir: Path) -> float:
        from tui.postgres.binaries import pg_bin

        encrypted, compressed = workdir / "app.sql.gz.gpg", workdir / "app.sql.gz"
        started = time.perf_counter()
        self.download(WIKI_KEY, encrypted)
        now = self.phase("download", started)
        self.decrypt(encrypted, compressed)
        now = self.phase("gpg --decrypt to a file", now)
        self.createdb(target)
        now = self.phase("createdb", now)
        # the wiki: download to a file, decrypt to a file, gunzip, restore
        run_checked(["gunzip", "--force", str(compressed)], "gunzip")
        now = self.phase("gunzip to a file", now)
        run_checked([pg_bin("psql"), "--quiet", "--no-psqlrc", "--set=ON_ERROR_STOP=1",
                     f"--dbname={self.world.cluster.dsn(target)}",
                     f"--file={workdir / 'app.sql'}", "--output=/dev/null"], "psql -f")
        self.phase("psql -f", now)
        (workdir / "app.sql").unlink(missing_ok=True)
        return time.perf_counter() - started


def rotated(subjects: dict[str, Callable[[], float]], runs: int,
            warmup: int = 0) -> dict[str, list[float]]:
    """Round-robin like common.interleaved, but each round starts one subject later.

    A restore leaves work behind it (autovacuum of the new tables, writeback) that
    the settling in World.cleanup reduces but cannot end; rotating the order makes
    every subject follow every other one alike.
    """
    names = list(subjects)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = subjects[name]()
            if round_ >= warmup:
                samples[name].append(elapsed)
    return samples


def backup(world: World, state: Path) -> dict[str, float]:
    """`drdeck run snapshot-backup` once; returns its step durations and the total."""
    argv = [*drdeck_argv(), "--config", str(world.config), "run", "snapshot-backup",
            "--headless", "--json"]
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=world.env, cwd=state, check=False, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - started
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not events or events[-1].get("status") != "succeeded":
        raise BenchError(f"drdeck run snapshot-backup failed ({result.returncode}): "
                         f"{result.stderr.strip()[-300:] or events[-3:]}")
    steps = {e["step"]: e["duration_s"] for e in events if e["event"] == "step_finished"}
    return {**steps, "total": elapsed}


def prepare_wiki_object(world: World, path: Path) -> int:
    """`pg_dump | gzip | gpg --encrypt` of the same database, uploaded; returns its size."""
    from tui.postgres.binaries import pg_bin

    gpg = shlex.join(["gpg", "--batch", "--quiet", "--homedir", str(world.home.path),
                      "--trust-model", "always", "--recipient", world.home.fingerprint,
                      # like drdeck's: gpg cannot squeeze gzip's output any further
                      "--compress-algo", "none", "--encrypt", "--output", str(path)])
    dump = shlex.join([pg_bin("pg_dump"), f"--dbname={world.cluster.dsn(DATABASE)}"])
    run_checked(["bash", "-o", "pipefail", "-c", f"{dump} | gzip | {gpg}"],
                "pg_dump | gzip | gpg --encrypt")
    world.endpoint.client().upload_file(str(path), world.bucket, WIKI_KEY)
    size = path.stat().st_size
    path.unlink()
    return size


def latest_manifest(world: World) -> tuple[Any, str]:
    from tui.catalog.inventory import read_cluster
    from tui.config import load_config_file
    from tui.snapshots.targets import resolve

    with environment_variables(world.endpoint.env()):
        place = resolve(load_config_file(world.config), CLUSTER, DATABASE)
        snapshot = read_cluster(place.store, CLUSTER).latest(DATABASE)
    if snapshot is None or snapshot.manifest is None:
        raise BenchError("drdeck's backup left no complete snapshot in the bucket")
    return snapshot.manifest, place.store.full_key(snapshot.manifest.object)


def download_script(world: World, key: str, path: Path) -> str:
    """A boto3 one-liner that downloads `key` to `path`, as an operator would type it."""
    endpoint = world.endpoint
    return ("import boto3; boto3.session.Session().client('s3', endpoint_url="
            f"{endpoint.url!r}, region_name={endpoint.region!r}, aws_access_key_id="
            f"{endpoint.access_key_id!r}, aws_secret_access_key="
            f"{endpoint.secret_access_key!r}).download_file({world.bucket!r}, {key!r}, "
            f"{str(path)!r})")


def run() -> Report:
    started = time.perf_counter()
    with scratch_directory() as scratch, gpg_home() as home, moto_server() as endpoint, \
            s3_bucket(endpoint) as bucket, bench_cluster() as cluster:
        seed_started = time.perf_counter()
        rows = seed_pgbench(cluster, DATABASE, SCALE)
        cluster.execute("checkpoint")  # its WAL segments become the restores' recycled ones
        seed_s = time.perf_counter() - seed_started
        config = write_config(scratch / "drdeck.toml", dsn=cluster.dsn(DATABASE),
                              repository=s3_repository(endpoint, bucket), gpg_home=home.path,
                              recipients=[home.fingerprint], databases=[DATABASE])
        state = scratch / "state"
        state.mkdir()
        world = World(cluster, endpoint, bucket, home, config, scratch, "", None, 0,
                      env=drdeck_env(state, endpoint.env()))
        backed_up = backup(world, state)
        world.manifest, world.dump_key = latest_manifest(world)
        world.accounts = world.manifest.tables["public.pgbench_accounts"]
        wiki_size = prepare_wiki_object(world, scratch / "wiki.sql.gz.gpg")
        subjects = {"cli": DrdeckCli(world), "api": DrdeckApi(world), "hand": Hand(world),
                    "hand in process": HandInProcess(world), "wiki": Wiki(world)}
        # the first restore after the set-up runs slower whoever does it: not timed
        HandInProcess(world).restore("bench_warmup", world.run_dir("bench_warmup"))
        world.cleanup("bench_warmup")
        timed_started = time.perf_counter()
        samples = rotated(subjects, runs=RUNS, warmup=WARMUP)
        timed_s = time.perf_counter() - timed_started
        manifest = world.manifest
    total_s = time.perf_counter() - started

    command = reproduce(NAME)
    hand_label = "hand: boto3 one-liner, gpg -d, pg_restore"
    wiki_label = "wiki: ... gunzip, psql -f"
    in_process_label = "hand, download in this process"
    vs_hand = Row(NAME, "s", samples["cli"], hand_label, samples["hand"], command)
    vs_hand.targets = [Target(f"<= {TARGET_HAND:g}x hand", vs_hand.ratio <= TARGET_HAND)]
    vs_wiki = Row(f"{NAME} (vs wiki)", "s", samples["cli"], wiki_label, samples["wiki"],
                  command)
    vs_wiki.targets = [Target(f"< {TARGET_WIKI:g}x wiki", vs_wiki.ratio < TARGET_WIKI)]
    api_hand = Row(f"{NAME} (API)", "s", samples["api"], in_process_label,
                   samples["hand in process"], command)
    api_wiki = Row(f"{NAME} (API vs wiki)", "s", samples["api"], wiki_label, samples["wiki"],
                   command)

    notes = [
        Note(NAME, f"pgbench scale {SCALE} ({rows:,} rows, md5 filler), logged tables; dump "
                   f"{mib(manifest.plaintext_size)} (-Fc), stored {mib(manifest.stored_size)} "
                   f"encrypted; the wiki's pg_dump | gzip | gpg object {mib(wiki_size)}; "
                   f"{RUNS} runs each, rotated round-robin, median; pg_restore -j {JOBS}; "
                   f"moto's S3 server in its own process; server: {SETTINGS_TEXT}"),
        Note(NAME, f"set-up: data {seed_s:.1f} s, drdeck run snapshot-backup "
                   f"{backed_up['total']:.1f} s ({_steps(backed_up)}); timed runs "
                   f"{timed_s:.1f} s; whole benchmark {total_s:.1f} s"),
    ]
    for key, subject in subjects.items():
        notes.append(Note(NAME, f"{key} phases, median: {_phases(subject.phases)}"))
    paired = [c / h for c, h in zip(samples["cli"], samples["hand"], strict=True)]
    notes.append(Note(NAME, "drdeck / hand per round (the two ran back to back): "
                            + ", ".join(f"{r:.2f}x" for r in paired)
                            + f"; all runs in seconds: {_samples(samples)}"))
    cli_phases = subjects["cli"].phases

    def cli(phase: str) -> float:
        return statistics.median(cli_phases[phase])

    glue = statistics.median(a - b for a, b in zip(samples["cli"], samples["api"],
                                                   strict=True))
    notes.append(Note(NAME, f"the CLI over the API: {glue:+.2f} s median (process start-up "
                            f"{cli('process start-up'):.2f} s and exit "
                            f"{cli('process exit'):.2f} s, pre-flight {cli('preflight'):.2f} s, "
                            f"the connect step {cli('connect'):.2f} s)"))
    return Report(rows=[vs_hand, vs_wiki, api_hand, api_wiki], notes=notes)


def _steps(durations: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in durations.items()
                     if name != "total")


def _samples(samples: dict[str, list[float]]) -> str:
    return "; ".join(f"{name} " + " ".join(f"{s:.2f}" for s in values)
                     for name, values in samples.items())


def _phases(phases: dict[str, list[float]]) -> str:
    return ", ".join(f"{name} {statistics.median(values):.2f} s"
                     for name, values in phases.items())
