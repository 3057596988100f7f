"""Faults on the snapshot path, as an operator meets them: through the real `drdeck` CLI,
against a real PostgreSQL cluster, real GnuPG, and a local repository or moto's S3 server
on 127.0.0.1 (for the network faults, behind a relay that drops downloads for real).

The runbooks run from copies of the shipped ones in which only `retry_delay` is shortened:
the step-level retries still happen, without the 10-30 s pauses between them that suit an
incident and not a test suite. Everything else (steps, actions, parameters) is the shipped
runbook's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tui.catalog.layout import dump_key, manifest_key
from tui.postgres.binaries import pg_bin

from backup_support import Deck, content_of, seed_app, write_config
from cli_support import REPO, drdeck_env
from harness.gpg import GpgHome, scratch_gpg_home
from harness.postgres import ScratchCluster, scratch_cluster
from harness.relay import CuttingRelay

CLUSTER, DATABASE, TARGET = "prod", "app", "restored"
PREFIX = "pg"  # the S3 repositories' prefix

pytestmark = pytest.mark.slow


# --- the repository, seen from outside drdeck ------------------------------------------


@dataclass
class Repository:
    """A local directory or an S3 bucket, reached directly (files, boto3), not through drdeck:
    what a test uses to damage a repository the way the world does."""

    kind: str
    root: Path | None = None
    endpoint: Any = None  # S3Endpoint
    bucket: str | None = None

    def toml(self, endpoint_url: str | None = None) -> str:
        if self.kind == "local":
            return f'[repositories.backups]\ntype = "local"\npath = "{self.root}"'
        return (f'[repositories.backups]\ntype = "s3"\nbucket = "{self.bucket}"\n'
                f'prefix = "{PREFIX}"\nendpoint_url = "{endpoint_url or self.endpoint.url}"\n'
                f'region = "{self.endpoint.region}"')

    def env(self) -> dict[str, str]:
        return self.endpoint.environ() if self.kind == "s3" else {}

    def where(self, key: str) -> str:
        """How drdeck names the object in its messages."""
        if self.kind == "local":
            return str(self.root / key)
        return f"s3://{self.bucket}/{PREFIX}/{key}"

    def read(self, key: str) -> bytes:
        if self.kind == "local":
            return (self.root / key).read_bytes()
        return self.endpoint.client().get_object(Bucket=self.bucket,
                                                 Key=f"{PREFIX}/{key}")["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        if self.kind == "local":
            (self.root / key).write_bytes(data)
        else:
            self.endpoint.client().put_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}",
                                              Body=data)

    def delete(self, key: str) -> None:
        if self.kind == "local":
            (self.root / key).unlink()
        else:
            self.endpoint.client().delete_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")


@dataclass
class FaultDeck(Deck):
    """A seeded cluster, its drdeck.toml, a GnuPG home and a repository, and ways to
    rewrite the config (another key, another endpoint) as a restore machine would have it."""

    cluster: Any = None
    repo: Repository | None = None
    gpg: Any = None  # GpgHome
    runbooks: dict[str, Path] = field(default_factory=dict)

    def configure(self, *, gpg_home: Path | str | None = "same",
                  recipients: list[str] | None = None, endpoint_url: str | None = None) -> None:
        write_config(self.config, cluster=self.cluster,
                     repository=self.repo.toml(endpoint_url),
                     gpg_home=self.gpg.path if gpg_home == "same" else gpg_home,
                     recipients=[self.gpg.fingerprint] if recipients is None else recipients)

    def backup(self, *params: str) -> tuple[Any, list[dict]]:
        return self.run_json("run", str(self.runbooks["snapshot-backup"]), *params)

    def restore(self, *params: str) -> tuple[Any, list[dict]]:
        return self.run_json("run", str(self.runbooks["snapshot-restore"]),
                             "-p", f"target_db={TARGET}", *params, "--yes")

    def inventory(self) -> dict:
        proc = self.run("inventory", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [cluster] = json.loads(proc.stdout)["clusters"]
        return cluster

    def only_stamp(self) -> str:
        [snapshot] = self.inventory()["snapshots"]
        return snapshot["id"]

    def target_exists(self) -> bool:
        return bool(self.cluster.scalar("select count(*) from pg_database where datname = %s",
                                        (TARGET,)))


@pytest.fixture(scope="session")
def fast_runbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped snapshot runbooks with every retry_delay cut to 0.1 s (nothing else)."""
    folder = tmp_path_factory.mktemp("runbooks")
    copies = {}
    for name in ("snapshot-backup", "snapshot-restore"):
        text, count = re.subn(r'retry_delay = "[^"]*"', 'retry_delay = "0.1s"',
                              (REPO / "runbooks" / f"{name}.toml").read_text())
        assert count, f"runbooks/{name}.toml has no retry_delay to shorten any more"
        copies[name] = folder / f"{name}.toml"
        copies[name].write_text(text)
    return copies


def make_repository(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    if kind == "local":
        return Repository("local", root=tmp_path / "repo")
    return Repository("s3", endpoint=request.getfixturevalue("s3_server"),
                      bucket=request.getfixturevalue("s3_bucket"))


@pytest.fixture(scope="module")
def seeded_cluster() -> Iterator[ScratchCluster]:
    """One seeded cluster per module (and xdist worker): the faults never touch `app`, and
    each test's restore target is dropped after it."""
    with scratch_cluster() as cluster:
        seed_app(cluster)
        yield cluster


@pytest.fixture(scope="module")
def backup_key() -> Iterator[GpgHome]:
    with scratch_gpg_home(email="backup@drdeck.invalid") as home:
        yield home


def make_deck(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultDeck]:
    cluster = request.getfixturevalue("seeded_cluster")
    repo = make_repository(kind, request, tmp_path)
    deck = FaultDeck(tmp_path / "drdeck.toml", tmp_path / "state", repo.env(), cluster=cluster,
                     repo=repo, gpg=request.getfixturevalue("backup_key"),
                     runbooks=request.getfixturevalue("fast_runbooks"))
    deck.configure()
    yield deck
    cluster.execute(f"drop database if exists {TARGET} with (force)")


@pytest.fixture(params=["s3", "local"])
def deck(request, tmp_path: Path) -> Iterator[FaultDeck]:
    """A deck on the seeded cluster and a new, empty repository of each kind."""
    yield from make_deck(request.param, request, tmp_path)


@pytest.fixture
def local_deck(request, tmp_path: Path) -> Iterator[FaultDeck]:
    yield from make_deck("local", request, tmp_path)


@pytest.fixture
def s3_deck(request, tmp_path: Path) -> Iterator[FaultDeck]:
    yield from make_deck("s3", request, tmp_path)


# --- reading a run's events ----------------------------------------------------------


def backed_up(deck: FaultDeck) -> str:
    """Take one snapshot; its stamp."""
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return deck.only_stamp()


def failure(events: list[dict]) -> tuple[str, str, int]:
    """(step, error, attempts) of the step that failed the run."""
    [failed] = [e for e in events if e["event"] == "step_finished" and e["status"] == "failed"]
    return failed["step"], failed["error"], failed["attempts"]


def steps_started(events: list[dict]) -> list[str]:
    return list(dict.fromkeys(e["step"] for e in events if e["event"] == "step_started"))


def output_lines(events: list[dict], step: str) -> list[str]:
    return [e["line"] for e in events if e["event"] == "output" and e["step"] == step]


def leftovers(events: list[dict]) -> list[Path]:
    """Decrypted or half-written dumps in the run's work directory (kept after a failure)."""
    [started] = [e for e in events if e["event"] == "run_started"]
    workdir = Path(started["workdir"])
    if not workdir.exists():
        return []
    return [p for p in workdir.rglob("*") if p.name.endswith((".dump", ".partial"))]


def step_retries(runbook: Path, step: str) -> int:
    [spec] = [s for s in tomllib.loads(runbook.read_text())["steps"] if s["id"] == step]
    return spec.get("retries", 0)


def assert_nothing_restored(deck: FaultDeck, events: list[dict]) -> None:
    assert "restore" not in steps_started(events)
    assert not deck.target_exists(), f"database {TARGET} was created"
    assert leftovers(events) == []


# --- keys ----------------------------------------------------------------------------


def test_a_wrong_key_fails_the_fetch_and_leaves_nothing(deck: FaultDeck, make_gpg_home):
    stamp = backed_up(deck)
    # The restore machine's GnuPG home holds a secret key, just not the one the
    # snapshot was encrypted for.
    other = make_gpg_home(email="someone-else@drdeck.invalid")
    deck.configure(gpg_home=other.path)

    proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, attempts = failure(events)
    # reported as itself (not as an "internal error"), and not tried again: no retry finds a key
    assert (step, attempts) == ("fetch", 1)
    assert error.startswith(deck.repo.where(dump_key(CLUSTER, DATABASE, stamp, True)))
    assert f"no secret key to decrypt this snapshot in GnuPG home {other.path}" in error
    assert "import the private key it was encrypted for" in error
    assert_nothing_restored(deck, events)


# --- damaged objects -------------------------------------------------------------------


def test_a_flipped_byte_is_caught_before_anything_is_restored(deck: FaultDeck):
    stamp = backed_up(deck)
    key = dump_key(CLUSTER, DATABASE, stamp, True)
    data = bytearray(deck.repo.read(key))
    data[len(data) // 2] ^= 0x20
    deck.repo.write(key, bytes(data))

    proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, attempts = failure(events)
    assert (step, attempts) == ("fetch", 1)  # downloading it again cannot mend it
    assert error.startswith(deck.repo.where(key))
    assert error.endswith("it will not be restored")
    assert_nothing_restored(deck, events)


def test_a_flipped_byte_is_called_corrupt(local_deck: FaultDeck):
    deck = local_deck
    stamp = backed_up(deck)
    key = dump_key(CLUSTER, DATABASE, stamp, True)
    data = bytearray(deck.repo.read(key))
    data[len(data) // 2] ^= 0x20
    deck.repo.write(key, bytes(data))

    proc, events = deck.restore()

    assert proc.returncode == 1
    _, error, _ = failure(events)
    assert "corrupt" in error, error


def test_a_truncated_object_is_refused_before_download(deck: FaultDeck):
    stamp = backed_up(deck)
    key = dump_key(CLUSTER, DATABASE, stamp, True)
    data = deck.repo.read(key)
    deck.repo.write(key, data[: len(data) // 2])
    sizes = (f"{len(data) // 2:,}", f"{len(data):,}")

    [snapshot] = deck.inventory()["snapshots"]
    assert snapshot["complete"] is False
    assert snapshot["problem"] == f"the dump is {sizes[0]} bytes, the manifest says {sizes[1]}"

    proc, events = deck.restore("-p", f"snapshot={stamp}")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, _ = failure(events)
    assert step == "preflight"
    assert steps_started(events) == ["preflight"]  # nothing was downloaded
    assert f"snapshot {stamp} of {DATABASE} is not usable" in error
    assert f"the dump is {sizes[0]} bytes, the manifest says {sizes[1]}" in error
    assert not deck.target_exists()


def test_latest_says_why_the_newest_snapshot_is_unusable(local_deck: FaultDeck):
    deck = local_deck
    stamp = backed_up(deck)
    key = dump_key(CLUSTER, DATABASE, stamp, True)
    data = deck.repo.read(key)
    deck.repo.write(key, data[: len(data) // 2])

    proc, events = deck.restore()

    assert proc.returncode == 1
    step, error, _ = failure(events)
    assert step == "preflight"
    assert stamp in error
    assert f"the dump is {len(data) // 2:,} bytes, the manifest says {len(data):,}" in error


def test_a_missing_manifest_makes_the_snapshot_incomplete(deck: FaultDeck):
    stamp = backed_up(deck)
    deck.repo.delete(manifest_key(CLUSTER, DATABASE, stamp))

    cluster = deck.inventory()
    [snapshot] = cluster["snapshots"]
    assert snapshot["id"] == stamp and snapshot["complete"] is False
    assert "manifest" in snapshot["problem"]
    assert cluster["rpo_state"] == "no snapshot"

    proc, events = deck.restore()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, _ = failure(events)
    assert step == "preflight"
    assert f"no complete snapshot of {DATABASE} in cluster {CLUSTER}" in error

    proc, events = deck.restore("-p", f"snapshot={stamp}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, _ = failure(events)
    assert step == "preflight"
    assert f"snapshot {stamp} of {DATABASE} is not usable: no manifest" in error
    assert steps_started(events) == ["preflight"]
    assert not deck.target_exists()


# --- the network -------------------------------------------------------------------------


def dump_gets(request: str) -> bool:
    """The relay cuts only downloads of dumps: listings, HEADs and manifests pass."""
    method, _, path = request.partition(" ")
    return method == "GET" and path.split(" ")[0].endswith((".dump.gpg", ".dump"))


@pytest.fixture
def relay(s3_server) -> Iterator[CuttingRelay]:
    relay = CuttingRelay(s3_server.url, cut_at=None, cuts=0, cut_when=dump_gets)
    yield relay
    relay.close()


def test_a_download_broken_once_resumes_and_restores(s3_deck: FaultDeck, relay: CuttingRelay):
    deck = s3_deck
    before = content_of(deck.cluster, DATABASE)
    stamp = backed_up(deck)
    stored = deck.inventory()["snapshots"][0]["stored_size"]
    deck.configure(endpoint_url=relay.url)
    relay.cut_at = 100_000  # mid-body: the object is several times larger
    relay.arm(1)

    proc, events = deck.restore()

    assert proc.returncode == 0, proc.stdout + proc.stderr
    interrupted = [line for line in output_lines(events, "fetch")
                   if line.startswith("download interrupted")]
    assert len(interrupted) == 1, output_lines(events, "fetch")
    where = deck.repo.where(dump_key(CLUSTER, DATABASE, stamp, True))
    assert where in interrupted[0] and "resuming" in interrupted[0]
    gets = [r for r in relay.requests if dump_gets(r)]
    assert len(gets) == 2 and re.fullmatch(r".* Range: bytes=\d+-", gets[1]), gets
    resumed_at = int(gets[1].rsplit("=", 1)[1].rstrip("-"))
    assert 0 < resumed_at < stored
    assert content_of(deck.cluster, TARGET) == before


def test_a_download_that_keeps_breaking_fails_clearly(s3_deck: FaultDeck, relay: CuttingRelay):
    deck = s3_deck
    stamp = backed_up(deck)
    deck.configure(endpoint_url=relay.url)
    relay.arm(10_000)  # every response to a GET of the dump: its headers, then nothing

    proc, events = deck.restore()

    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, attempts = failure(events)
    assert step == "fetch"
    where = deck.repo.where(dump_key(CLUSTER, DATABASE, stamp, True))
    assert f"cannot read {where} from {relay.url}" in error
    assert "attempts in a row received nothing" in error
    assert "check the network and the endpoint" in error
    # the store's own retries inside each attempt, then the runbook's retries of the step
    assert attempts == 1 + step_retries(deck.runbooks["snapshot-restore"], "fetch") > 1
    retries = [line for line in output_lines(events, "fetch")
               if line.startswith("download interrupted")]
    assert retries and all(where in line for line in retries)
    assert_nothing_restored(deck, events)


# --- unencrypted snapshots ------------------------------------------------------------


def test_an_unencrypted_snapshot_is_explicit_visible_and_restorable(deck: FaultDeck):
    before = content_of(deck.cluster, DATABASE)
    deck.configure(gpg_home=None, recipients=[])

    proc, events = deck.backup()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    step, error, _ = failure(events)
    assert step == "snapshot" and "has no gpg_recipients" in error
    assert deck.inventory()["snapshots"] == []

    proc, events = deck.backup("-p", "encrypt=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("NOT encrypted" in line for line in output_lines(events, "snapshot"))

    [snapshot] = deck.inventory()["snapshots"]
    assert snapshot["complete"] is True and snapshot["encrypted"] is False
    assert snapshot["object"] == dump_key(CLUSTER, DATABASE, snapshot["id"], False)
    human = deck.run("inventory")
    assert human.returncode == 0, human.stderr
    [line] = [ln for ln in human.stdout.splitlines() if re.match(r"\s+\d{4}-\d\d-\d\d ", ln)]
    assert re.search(r"NO!|not encrypted|unencrypted", line, re.IGNORECASE), human.stdout

    proc, events = deck.restore()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("NOT ENCRYPTED" in line for line in output_lines(events, "preflight"))
    assert content_of(deck.cluster, TARGET) == before


def test_no_recipients_says_how_to_back_up(local_deck: FaultDeck):
    local_deck.configure(gpg_home=None, recipients=[])
    proc, events = local_deck.backup()
    assert proc.returncode == 1
    _, error, _ = failure(events)
    assert "gpg_recipients" in error and "encrypt = false" in error


# --- a backup killed mid-way ------------------------------------------------------------------


def test_a_killed_backup_is_never_listed_as_a_snapshot(make_pg_cluster, gpg_home,
                                                        tmp_path: Path, fast_runbooks):
    # A bigger database of its own, so the dump lasts long enough to be caught mid-way.
    cluster = make_pg_cluster()
    cluster.execute(f"create database {DATABASE}")
    subprocess.run([pg_bin("pgbench"), "-i", "-s", "5", "-q", "-n", cluster.dsn(DATABASE)],
                   check=True, capture_output=True)
    deck = FaultDeck(tmp_path / "drdeck.toml", tmp_path / "state", cluster=cluster,
                     repo=Repository("local", root=tmp_path / "repo"), gpg=gpg_home,
                     runbooks=fast_runbooks)
    deck.configure()
    folder = deck.repo.root / CLUSTER / "snapshots" / DATABASE
    backup = subprocess.Popen(
        [sys.executable, "-m", "tui", "--config", str(deck.config), "run",
         str(deck.runbooks["snapshot-backup"]), "--json"],
        cwd=REPO, env=drdeck_env(deck.state), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in folder.glob(".*.partial-*")
                      if p.exists()):
            assert backup.poll() is None, "the backup ended before it could be killed"
            assert time.monotonic() < deadline, "no partial dump appeared"
            time.sleep(0.01)
        os.kill(backup.pid, signal.SIGKILL)
    finally:
        backup.kill()
        backup.wait(timeout=10)

    assert list(folder.glob("*.json")) == []  # no manifest
    cluster = deck.inventory()
    assert not any(s["complete"] for s in cluster["snapshots"])
    assert cluster["rpo_state"] == "no snapshot"
    [upload] = cluster["incomplete_uploads"]
    assert re.fullmatch(rf"{CLUSTER}/snapshots/{DATABASE}/\d{{8}}T\d{{6}}Z\.dump\.gpg",
                        upload["key"])
    assert upload["detail"].startswith("partial file")

    proc, events = deck.restore()
    assert proc.returncode == 1
    assert "no complete snapshot" in failure(events)[1]
