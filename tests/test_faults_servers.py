"""Servers and disks that fail under a restore, and an archive missing a timeline's history:
the PITR target port taken, PostgreSQL killed mid-recovery (then finished by hand), a base
backup that is not what its manifest says, pg_restore killed, a disk too small for the
dump (a disk filling up during the download: test_faults_storage.py). All through the real
CLI, on real clusters.

The PITR world (one per module and xdist worker) is a cluster archiving through
`drdeck wal push`, a base backup, commits on timeline 1, then a promotion (timeline 2,
with its 00000002.history archived) and commits on timeline 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tui.pitr.restore import SPOOL
from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import LocalCluster, free_port
from tui.units import format_bytes
from tui.wal.feeder import WANT
from tui.wal.names import is_segment

from cli_support import REPO, drdeck_env, json_events
from fault_support import (
    DATABASE,
    TARGET,
    SnapshotDeck,
    failure,
    fast_runbooks,
    files_under,
    local_repository_toml,
    small_filesystem,
    steps_started,
    workdir_of,
)
from harness.gpg import scratch_gpg_home
from harness.postgres import ScratchCluster, scratch_cluster
from pitr_support import (
    ArchivingSetup,
    archiving_setup,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)

pytestmark = pytest.mark.slow

ROWS_ON_1, ROWS_ON_2 = 8, 8
# WAL segments between the base backup and the first row: clearly more than a restore
# fetches ahead (16), so a test can hold recovery waiting for one (see the kill test)
SEGMENTS_BEFORE_ROWS = 30


# --- the PITR world ----------------------------------------------------------------------


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def in_recovery(cluster: LocalCluster) -> bool | None:
    try:
        return bool(cluster.scalar("select pg_is_in_recovery()"))
    except Exception:
        return None


def promote_to_a_new_timeline(cluster: ScratchCluster) -> None:
    """What a failover does: the cluster restarts as a standby of itself and is promoted,
    so its WAL goes on on the next timeline (and the archiver pushes the .history)."""
    cluster.stop("fast")
    signal_file = cluster.data_dir / "standby.signal"
    signal_file.touch()
    give_to_server(signal_file)
    cluster.start()
    wait_until(lambda: in_recovery(cluster) is True, "the standby")
    cluster.execute("select pg_promote()")
    wait_until(lambda: in_recovery(cluster) is False, "the promotion")


def commit_rows(cluster: ScratchCluster, numbers: range) -> list[datetime]:
    times = []
    for n in numbers:
        cluster.execute("insert into events values (%s, clock_timestamp())", (n,), dbname="app")
        times.append(cluster.scalar(
            "select pg_xact_commit_timestamp(xmin) from events where n = %s", (n,),
            dbname="app"))
        cluster.execute("update pgbench_accounts set abalance = abalance + 1 "
                        "where aid <= 2000", dbname="app")
    return times


def fill_segments(cluster: ScratchCluster, count: int) -> None:
    """`count` 1 MiB segments full of WAL, archived in the background.

    Real records, not pg_switch_wal(): recovery reads WAL ahead of replay by records,
    and would run through a switch-only segment long before replay reaches it."""
    cluster.execute("create table filler (v text)", dbname="app")
    start = cluster.scalar("select pg_current_wal_lsn()")
    while cluster.scalar("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                         (start,)) < count << 20:
        cluster.execute("insert into filler select md5(g::text) from generate_series(1, 10000) g",
                        dbname="app")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("state")
    with scratch_gpg_home() as gpg:
        give_to_server(gpg.path)
        setup = archiving_setup(state, recipients=[gpg.fingerprint], gpg_home=gpg.path)
        # recovery_min_apply_delay does nothing on a primary, but a base backup carries it,
        # as one taken from a delayed standby does: a restore must not wait an hour
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=setup.archive_command(),
                             track_commit_timestamp="on",
                             recovery_min_apply_delay="1h") as cluster:
            cluster.execute("create database app")
            subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn("app")],
                           check=True, capture_output=True)
            cluster.execute("create table events (n int primary key, at timestamptz)",
                            dbname="app")
            point_config_at(setup, cluster)
            wait_archived(cluster)
            backup = setup.deck.run("run", "base-backup", "--headless")
            assert backup.returncode == 0, backup.stdout + backup.stderr
            fill_segments(cluster, SEGMENTS_BEFORE_ROWS)
            commits = commit_rows(cluster, range(1, ROWS_ON_1 + 1))
            wait_archived(cluster)
            promote_to_a_new_timeline(cluster)
            commits += commit_rows(cluster, range(ROWS_ON_1 + 1, ROWS_ON_1 + ROWS_ON_2 + 1))
            wait_archived(cluster)
            history = setup.repo / "prod" / "wal" / "00000002.history.zst.gpg"
            assert history.exists(), sorted(p.name for p in history.parent.iterdir())
            try:
                yield {"setup": setup, "cluster": cluster, "commits": commits, "gpg": gpg,
                       "history": history}
            finally:
                shutil.rmtree(setup.base, ignore_errors=True)


def pitr(setup: ArchivingSetup, target: str, data_dir: Path, port: int,
         timeout: float = 90) -> tuple[Any, list[dict]]:
    """A PITR that must end by itself; a server it leaves running is stopped."""
    try:
        proc = setup.deck.run("run", "pitr-restore", "-p", f"target={target}",
                              "-p", f"data_dir={data_dir}", "-p", f"port={port}", "--yes",
                              "--json", timeout=timeout)
    finally:
        stop_restored(data_dir)
    return proc, json_events(proc.stdout)


# --- a base backup that is not the one its manifest describes ---------------------------------


def test_a_base_backup_whose_plaintext_does_not_match_its_manifest_is_not_used(
        world) -> None:
    setup = world["setup"]
    [manifest] = (setup.repo / "prod" / "base").glob("*/manifest.json")
    original = manifest.read_bytes()
    recorded = json.loads(original)
    # the stored object and its sha256 agree; what it decrypts to does not
    manifest.write_text(json.dumps({**recorded, "sha256_plaintext": "0" * 64}))
    data_dir = setup.base / "restored-mismatch"
    try:
        proc, events = pitr(setup, world["commits"][3].isoformat(), data_dir, free_port())
    finally:
        manifest.write_bytes(original)

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, _ = failure(events)
    assert step == "restore"
    assert f"the decrypted tar's sha256 is {recorded['sha256_plaintext'][:16]}…" in error, error
    assert "its manifest's sha256_plaintext says 0000000000000000…" in error, error
    assert "the data directory was emptied again" in error
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not data_dir.exists() or not any(data_dir.iterdir())


# --- the target port taken -------------------------------------------------------------------


def test_a_taken_port_is_refused_in_the_preflight_and_nothing_is_written(world) -> None:
    setup = world["setup"]
    data_dir = setup.base / "restored-port"
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]

        proc, events = pitr(setup, world["commits"][3].isoformat(), data_dir, port)

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, _ = failure(events)
    assert step == "preflight" and steps_started(events) == ["preflight"]
    assert f"port {port} is in use on 127.0.0.1: choose another port" in error
    assert not data_dir.exists()


# --- a disk too small for the restore ----------------------------------------------------------


def test_a_disk_too_small_for_the_data_directory_is_refused_before_anything_is_fetched(
        world) -> None:
    setup = world["setup"]
    [manifest] = [json.loads(p.read_text())
                  for p in (setup.repo / "prod" / "base").glob("*/manifest.json")]
    with small_filesystem("4m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        data_dir = disk / "restored"

        proc, events = pitr(setup, world["commits"][3].isoformat(), data_dir, free_port())

        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        step, error, attempts = failure(events)
        assert (step, attempts) == ("preflight", 1)
        # the base backup unpacked, and 16 segments of 1 MiB fed ahead
        need = manifest["plaintext_size"] + 16 * (1 << 20)
        assert error.startswith(f"the disk holding {disk} has "), error
        assert f"free, and the restore needs {format_bytes(need)} there: the data " \
               "directory and the WAL fed ahead" in error, error
        assert "Nothing was written" in error and "-p data_dir=" in error
        assert not data_dir.exists() and list(disk.iterdir()) == []


# --- a timeline's history missing from the archive ------------------------------------------------


@pytest.fixture
def history_missing(world, tmp_path: Path) -> Iterator[Path]:
    history = world["history"]
    hidden = tmp_path / history.name
    shutil.move(history, hidden)
    try:
        yield history
    finally:
        shutil.move(hidden, history)


@pytest.mark.parametrize("target", ["latest", "on timeline 2"])
def test_a_missing_history_file_is_reported_before_anything_is_restored(
        world, history_missing: Path, target: str) -> None:
    setup = world["setup"]
    data_dir = setup.base / f"restored-history-{target.replace(' ', '-')}"
    wanted = "latest" if target == "latest" else world["commits"][-2].isoformat()

    proc, events = pitr(setup, wanted, data_dir, free_port())

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, _ = failure(events)
    assert step == "preflight" and steps_started(events) == ["preflight"], error
    assert "00000002.history" in error, error
    assert "wal push" in error, error  # what to do: archive it from the promoted server
    assert not data_dir.exists()


# --- PostgreSQL killed during recovery ---------------------------------------------------------


def recovery_log(data_dir: Path) -> Path:
    return data_dir / "drdeck-recovery.log"


def test_postgres_killed_mid_recovery_fails_clearly_and_the_data_directory_can_finish(
        world, tmp_path: Path) -> None:
    setup = world["setup"]
    data_dir = setup.base / "restored-kill"
    port = free_port()
    target_row = ROWS_ON_1 + 3  # on timeline 2: recovery follows the promotion
    target = world["commits"][target_row - 1].isoformat()
    out = tmp_path / "events.jsonl"
    with out.open("wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-m", "tui", "--config", str(setup.config), "run", "pitr-restore",
             "-p", f"target={target}", "-p", f"data_dir={data_dir}", "-p", f"port={port}",
             "--yes", "--json"],
            cwd=REPO, env=drdeck_env(setup.deck.state), stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT)
    server = LocalCluster(data_dir, port, data_dir, recovery_log(data_dir))
    try:
        wait_until(lambda: "ready to accept read-only connections" in log_text(data_dir)
                   or run.poll() is not None, "the restored server to reach a consistent state")
        assert run.poll() is None, out.read_text()[-3000:]
        # drdeck stopped: the server replays what was fetched ahead, then waits for a
        # segment only drdeck can hand it. Recovery is held in progress, before the target
        os.kill(run.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: waited_for(data_dir), "recovery to wait for a segment")
            assert in_recovery(server) is True
            assert server.scalar("select count(*) from events", dbname="app") < target_row
            postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGKILL)
        finally:
            os.kill(run.pid, signal.SIGCONT)
        code = run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    try:
        events = json_events(out.read_text())
        assert code == 1, out.read_text()[-3000:]
        step, error, _ = failure(events)
        assert step == "restore"
        # the server's own last FATAL line when it wrote one (a backend saying the
        # postmaster exited), else drdeck's words: either way it is named as the cause
        assert ("the server stopped during recovery" in error
                or "the server failed during recovery: " in error), error
        assert str(recovery_log(data_dir)) in error, error  # where to look
        assert f"The data directory {data_dir} is left as it is" in error, error
        assert "restore_command now fetches WAL from the archive itself" in error, error
        assert f"Once it is promoted, remove {data_dir / SPOOL}" in error, error
        assert "Traceback" not in out.read_text()
        # left as it was for inspection: not emptied, not running, still to recover
        assert not server.is_running()
        assert (data_dir / "PG_VERSION").exists() and (data_dir / "recovery.signal").exists()

        # By hand, as the operator would: the command the message gives, with the settings
        # drdeck left. Recovery picks up where it was and reaches the target.
        by_hand = shlex.split(error.split("Finish the recovery by hand with: ", 1)[1])
        assert by_hand[-1] == "start" and str(data_dir) in by_hand, by_hand
        started = subprocess.run(by_hand, cwd=setup.base, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr + log_text(data_dir)
        wait_until(lambda: in_recovery(server) is False, "the recovery to finish", 90)
        rows = server.execute("select count(*), max(n) from events", dbname="app")
        assert rows == [(target_row, target_row)]
        assert "restored log file \"00000002.history\" from archive" in log_text(data_dir)
        # segments came through drdeck's prefetcher, not one Python start each
        settings = (data_dir / "postgresql.auto.conf").read_text()
        assert "wal fetch --cluster prod --spool" in settings.rsplit("restore_command", 1)[1]
    finally:
        stop_restored(data_dir)
        stop_prefetchers(data_dir)


def test_the_hand_over_names_what_the_server_account_cannot_read() -> None:
    """After a failed PITR, restore_command runs drdeck as the server's OS user: the
    message must say which of drdeck, its configuration and the keys it cannot read."""
    from tui.postgres.cluster import server_account

    if server_account() is None:
        pytest.skip("only as root does the server run as another OS user")
    # pytest's own temporary directories are 0700: one the server account can enter
    tmp_path = Path(tempfile.mkdtemp(prefix="drdeck-reach-"))
    tmp_path.chmod(0o755)
    try:
        check_what_the_server_account_reads(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def check_what_the_server_account_reads(tmp_path: Path) -> None:
    from tui.postgres.cluster import server_account, unreadable_for_server

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    hidden = private / "drdeck.toml"
    hidden.write_text("")
    closed = tmp_path / "closed.toml"
    closed.write_text("")
    closed.chmod(0o600)
    open_file = tmp_path / "open.toml"
    open_file.write_text("")
    open_file.chmod(0o644)
    account = server_account().name

    problems = unreadable_for_server([hidden, closed, open_file])

    assert problems == [
        f"the {account} OS user cannot reach {hidden}: {private} is mode 0700 owned by root:root",
        f"the {account} OS user cannot read {closed}: it is mode 0600 owned by root:root",
    ]


def stop_prefetchers(data_dir: Path) -> None:
    """The prefetcher a hand-started recovery spawned leaves by itself once idle; not wait."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"prefetch" in argv and any(bytes(data_dir) in a for a in argv):
                os.kill(int(proc.name), signal.SIGTERM)


def waited_for(data_dir: Path) -> bool:
    """Whether the server asks drdeck's spool for a WAL segment that is not there."""
    try:
        wanted = [e[len(WANT):] for e in os.listdir(data_dir / SPOOL) if e.startswith(WANT)]
    except FileNotFoundError:
        return False
    return any(is_segment(name) for name in wanted)


def log_text(data_dir: Path) -> str:
    try:
        return recovery_log(data_dir).read_text(errors="replace")
    except FileNotFoundError:
        return ""


# --- a snapshot restore: pg_restore killed, the disk full ---------------------------------------


@pytest.fixture(scope="module")
def snapshot_deck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnapshotDeck]:
    """A cluster big enough for pg_restore to be caught mid-way (pgbench scale 4), one
    encrypted snapshot of it in a local repository."""
    base = tmp_path_factory.mktemp("snapshot")
    with scratch_cluster() as cluster, scratch_gpg_home() as gpg:
        cluster.execute(f"create database {DATABASE}")
        subprocess.run([pg_bin("pgbench"), "-i", "-s", "4", "-q", "-n",
                        cluster.dsn(DATABASE)], check=True, capture_output=True)
        deck = SnapshotDeck(base / "drdeck.toml", base / "state", cluster=cluster,
                            repository=local_repository_toml(base / "repo"), gpg_home=gpg.path,
                            recipients=[gpg.fingerprint],
                            runbooks=fast_runbooks(base, ("snapshot-backup", "snapshot-restore")))
        deck.configure()
        proc, _ = deck.backup()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        yield deck


@pytest.fixture
def restore_deck(snapshot_deck: SnapshotDeck) -> Iterator[SnapshotDeck]:
    yield snapshot_deck
    snapshot_deck.cluster.execute(f"drop database if exists {TARGET} with (force)")


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command, ppid = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        if command == name and int(ppid.split()[1]) == parent:
            found.append(int(entry.name))
    return found


def test_pg_restore_killed_fails_clearly_and_leaves_nothing_under_the_target_name(
        restore_deck: SnapshotDeck, tmp_path: Path) -> None:
    deck = restore_deck
    out = tmp_path / "events.jsonl"
    with out.open("wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-m", "tui", "--config", str(deck.config), "run",
             str(deck.runbooks["snapshot-restore"]), "-p", f"target_db={TARGET}", "--yes",
             "--json"],
            cwd=REPO, env=drdeck_env(deck.state), stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT)
    try:
        # pg_restore is at work once it has finished its first items (the schema)
        wait_until(lambda: '"step": "restore", "done"' in out.read_text()
                   or run.poll() is not None, "pg_restore to make progress")
        restorers = children_named(run.pid, "pg_restore")
        assert len(restorers) == 1, out.read_text()[-3000:]
        os.kill(restorers[0], signal.SIGKILL)
        code = run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    events = json_events(out.read_text())
    assert code == 1, out.read_text()[-3000:]
    step, error, attempts = failure(events)
    assert (step, attempts) == ("restore", 1)
    assert "pg_restore" in error and "killed" in error, error
    assert "drdeck_restore_" in error and "partly restored" in error, error
    assert "Traceback" not in out.read_text()
    # restored under a staging name, and that is dropped: nothing half-written remains
    # under the target's name, nor anywhere else
    assert not deck.target_exists()
    assert deck.cluster.scalar("select count(*) from pg_database where datname like "
                               "'drdeck_restore_%'") == 0
    dropped = [e["line"] for e in events if e["event"] == "output" and e["step"] == "restore"
               and "dropped the staging database" in e["line"]]
    assert dropped, "the journal says what became of the staging database"
    assert "compare" not in steps_started(events)


def test_a_disk_too_small_for_the_dump_is_refused_before_the_download(
        restore_deck: SnapshotDeck, tmp_path: Path) -> None:
    """The pre-flight of the fetch; a disk that fills up in the middle of the download is
    test_faults_storage.py's (test_a_disk_filled_by_someone_else_during_the_fetch_...)."""

    deck = restore_deck
    [snapshot] = deck.inventory()["snapshots"]
    with small_filesystem("1m") as full:
        if full is None:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        # the run's work directory (where the dump is decrypted) on a 1 MiB disk; the
        # journal elsewhere, as a shared or bigger one would be
        small = SnapshotDeck(deck.config, full / "state", {"DRDECK_JOURNAL": str(
            tmp_path / "journal.sqlite")}, cluster=deck.cluster, runbooks=deck.runbooks)

        proc, events = small.restore()

        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        step, error, attempts = failure(events)
        assert (step, attempts) == ("fetch", 1)  # a disk stays small: no automatic retry
        # which disk, what the dump needs and what is free, and the knob that moves it
        assert snapshot["plaintext_size"] > 1 << 20
        assert error.startswith(
            f"the disk holding {workdir_of(events)} is too full for snapshot {snapshot['id']} "
            f"of {DATABASE} (No space left on device): the decrypted dump needs "
            f"{format_bytes(snapshot['plaintext_size'])} there and "), error
        free = error.split(" there and ", 1)[1].split(" is free.", 1)[0]
        assert free.endswith((" B", " KiB", "1.0 MiB")), error
        assert "set DRDECK_STATE_DIR to a directory on a disk with room" in error, error
        # refused before a byte was downloaded
        fetch_lines = [e["line"] for e in events
                       if e["event"] == "output" and e["step"] == "fetch"]
        assert not [line for line in fetch_lines if line.startswith("fetching ")], fetch_lines
        assert "Traceback" not in proc.stdout + proc.stderr
        assert "restore" not in steps_started(events)
        assert not deck.target_exists()
        # no partial dump left behind to fill the disk for good
        assert files_under(workdir_of(events)) == []
        assert sum(p.stat().st_size for p in files_under(full)) < 64 * 1024
