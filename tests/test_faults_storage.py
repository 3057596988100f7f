"""Storage faults, for real: the S3-protocol server dying in the middle of a snapshot's
upload, a server that hangs mid-body, a manifest that does not match its dump, and the
local disk filling up under a fetch. moto on 127.0.0.1 behind a relay that breaks the way
servers and networks do (tests/fault_support.py); drdeck through its real CLI.

Already covered elsewhere, not repeated here: downloads cut once and for good
(test_snapshot_faults.py), a part failing under a running upload and the 403s
(test_storage_faults.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tui.catalog.layout import dump_key, manifest_key, snapshots_prefix
from tui.storage import S3Store, StorageError
from tui.units import format_bytes

from backup_support import seed_app
from fault_support import (
    CLUSTER,
    DATABASE,
    PREFIX,
    TARGET,
    FaultRelay,
    SnapshotDeck,
    failure,
    fast_runbooks,
    files_under,
    output_lines,
    s3_repository_toml,
    small_filesystem,
    steps_started,
    workdir_of,
)
from harness.gpg import GpgHome, scratch_gpg_home
from harness.postgres import ScratchCluster, scratch_cluster
from harness.s3 import S3Endpoint

MiB = 1 << 20

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_cluster() -> Iterator[ScratchCluster]:
    """The usual seed plus 12 MiB that does not compress: the dump spans two 8 MiB parts,
    so its upload is a real multipart upload."""
    with scratch_cluster() as cluster:
        seed_app(cluster)
        cluster.execute("""
            create table noise (n int primary key, bytes bytea);
            insert into noise
              select g, (select string_agg(decode(md5(random()::text || g || h), 'hex'), '')
                         from generate_series(1, 1024) h)
              from generate_series(1, 768) g;
        """, dbname=DATABASE)
        yield cluster


@pytest.fixture(scope="module")
def key() -> Iterator[GpgHome]:
    with scratch_gpg_home(email="backup@drdeck.invalid") as home:
        yield home


@pytest.fixture(scope="module")
def runbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fast copies, and snapshot-backup without its step retry: against a server that
    stays down, a second attempt fails the same way after the same botocore retries
    (about 10 s of backoff), and proves nothing more."""
    copies = fast_runbooks(tmp_path_factory.mktemp("runbooks"))
    path = copies["snapshot-backup"]
    text = path.read_text()
    assert "retries = 1\n" in text
    path.write_text(text.replace("retries = 1\n", "retries = 0\n", 1))
    return copies


@pytest.fixture
def relay(s3_server: S3Endpoint) -> Iterator[FaultRelay]:
    relay = FaultRelay(s3_server.url)
    yield relay
    relay.close()


@pytest.fixture
def deck(big_cluster, key, runbooks, relay, s3_server, s3_bucket, tmp_path) -> SnapshotDeck:
    deck = SnapshotDeck(tmp_path / "drdeck.toml", tmp_path / "state", s3_server.environ(),
                        cluster=big_cluster, repository=s3_repository_toml(relay.url, s3_bucket),
                        gpg_home=key.path, recipients=[key.fingerprint], runbooks=runbooks)
    deck.configure()
    return deck


def bucket_keys(endpoint: S3Endpoint, bucket: str) -> list[str]:
    listing = endpoint.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def multipart_uploads(endpoint: S3Endpoint, bucket: str) -> list[str]:
    listing = endpoint.client().list_multipart_uploads(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Uploads", []))


# --- the server stopped mid-upload ---------------------------------------------------------


def test_the_server_dying_mid_upload_leaves_no_snapshot_and_the_next_backup_works(
        deck: SnapshotDeck, relay: FaultRelay, s3_server: S3Endpoint, s3_bucket: str):
    relay.die_after_upload(3 * MiB)  # in the middle of the first 8 MiB part

    proc, events = deck.backup()

    assert relay.dead, "the upload never reached 3 MiB: the dump is too small for the test"
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    step, error, attempts = failure(events)
    assert step == "snapshot"
    assert attempts == 1
    # what failed, where, and why, in the operator's words
    where = f"s3://{s3_bucket}/{PREFIX}/{snapshots_prefix(CLUSTER, DATABASE)}"
    assert re.search(rf"upload (a part of )?{re.escape(where)}\S+\.dump\.gpg", error), error
    assert f"cannot reach the S3 endpoint {relay.url}" in error, error
    assert re.search(r"connection (refused|reset)|closed", error), error
    assert "Traceback" not in proc.stdout + proc.stderr
    # nothing is presented as a backup: no manifest, and no dump object
    stored = bucket_keys(s3_server, s3_bucket)
    assert not [k for k in stored if k.endswith(".json")], stored
    assert not [k for k in stored if ".dump" in k], stored
    # the server could not be told to abort: the upload is left incomplete, and says so
    pending = multipart_uploads(s3_server, s3_bucket)
    if pending:
        assert "could not abort the multipart upload" in error, error
        assert "it shows among the incomplete uploads" in error, error

    relay.come_back()
    seen = deck.inventory()
    assert not any(s["complete"] for s in seen["snapshots"])
    assert seen["rpo_state"] == "no snapshot"
    assert sorted(f"{PREFIX}/{u['key']}" for u in seen["incomplete_uploads"]) == pending
    for upload in seen["incomplete_uploads"]:
        assert upload["key"].startswith(snapshots_prefix(CLUSTER, DATABASE))
        assert upload["detail"].startswith("multipart upload")

    proc, events = deck.backup()  # the server is back: the next backup works

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    seen = deck.inventory()
    [good] = [s for s in seen["snapshots"] if s["complete"]]
    assert good["stored_size"] > 8 * MiB  # it did go in parts
    assert seen["rpo_state"] == "ok"
    assert not [s for s in seen["snapshots"] if not s["complete"]]


# --- a server that hangs ---------------------------------------------------------------------
#
# A repository's `timeout` (30 s unless drdeck.toml says otherwise) bounds each request.
# The first test goes through the CLI with the shortest one drdeck.toml accepts; the rest go
# through the store itself with a shorter one, to keep them quick. What the CLI does with the
# store's retries (the "download interrupted ... resuming" lines) is covered by
# test_snapshot_faults.py.

STALL_S = 3.0  # how long the relay hangs: far longer than the timeout below
READ_TIMEOUT_S = 0.5


@pytest.fixture
def stored(s3_env: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """1 MiB in the bucket, put there directly."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    data = os.urandom(MiB)
    s3_env.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/snap.dump", Body=data)
    return data


def slow_store(relay: FaultRelay, bucket: str, **options: Any) -> S3Store:
    return S3Store(bucket, prefix=PREFIX, endpoint_url=relay.url, region="us-east-1",
                   retry_base_delay=0.01, read_timeout=READ_TIMEOUT_S, **options)


def gets_of(key: str) -> Callable[[str], bool]:
    return lambda request: request.startswith("GET ") and key in request


def test_the_configured_timeout_bounds_how_long_a_hung_endpoint_holds_the_inventory(
        deck: SnapshotDeck, relay: FaultRelay, s3_bucket: str):
    deck.configure(repository=deck.repository + '\ntimeout = "1s"')
    relay.stall(lambda request: request.startswith("GET ") and "list-type=2" in request,
                after=None, seconds=STALL_S * 10, times=100)

    started = time.monotonic()
    proc = deck.run("inventory", "--json", timeout=120)
    took = time.monotonic() - started

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert cluster["rpo_state"] == "unreadable"
    assert cluster["error"].startswith(f"the S3 endpoint {relay.url} did not answer in time "
                                       f"to list s3://{s3_bucket}/{PREFIX}"), cluster["error"]
    # each attempt gave up after 1 s, not the 30 s default nor the 30 s stall: the operator
    # hears about a dead endpoint in seconds
    assert len(relay.stalled) >= 2, relay.requests
    # and once it did not answer, the rest of the picture (base backups, WAL) is not asked
    assert {request.split("prefix=")[1].split("&")[0] for request in relay.requests} == {
        f"{PREFIX}%2F{CLUSTER}%2Fsnapshots%2F"}
    assert took < STALL_S * 10, took


def test_a_download_that_hangs_mid_body_times_out_and_resumes(
        relay: FaultRelay, stored: bytes, s3_bucket: str):
    relay.stall(gets_of("snap.dump"), after=300_000, seconds=STALL_S)
    store = slow_store(relay, s3_bucket)
    received, arrivals, retries = bytearray(), [], []

    def on_retry(attempt: int, error: Exception, delay: float) -> None:
        retries.append((attempt, str(error), len(received), time.monotonic()))

    started = time.monotonic()
    for chunk in store.iter_chunks("snap.dump", chunk_size=64 * 1024, on_retry=on_retry):
        received += chunk
        arrivals.append((time.monotonic(), len(received)))

    assert bytes(received) == stored
    [(attempt, message, at, retried_at)] = retries
    assert attempt == 1
    assert message.startswith(f"s3://{s3_bucket}/{PREFIX}/snap.dump: no answer within the "
                              "read timeout ("), message
    assert message.endswith(f"received; resuming from byte {at:,})"), message
    assert 0 < at < len(stored)
    # the timeout fired (it did not wait for the server to wake up)...
    assert retried_at - started < STALL_S, retried_at - started
    # ...and the transfer went on from where it stopped, bytes arriving again
    assert relay.requests[-1] == f"GET /{s3_bucket}/{PREFIX}/snap.dump Range: bytes={at}-"
    assert [n for t, n in arrivals if t > retried_at][-1] == len(stored)
    assert len([n for t, n in arrivals if t > retried_at]) > 1


def test_a_download_that_always_hangs_fails_clearly(relay: FaultRelay, stored: bytes,
                                                     s3_bucket: str):
    relay.stall(gets_of("snap.dump"), after=None, seconds=STALL_S, times=100)
    store = slow_store(relay, s3_bucket, read_attempts=3)
    retries = []

    started = time.monotonic()
    with pytest.raises(StorageError) as failed:
        for _ in store.iter_chunks("snap.dump", on_retry=lambda *a: retries.append(a)):
            pass

    message = str(failed.value)
    assert message.startswith(f"cannot read s3://{s3_bucket}/{PREFIX}/snap.dump from "
                              f"{relay.url}: no answer within the read timeout "
                              "(3 attempts in a row received nothing"), message
    assert message.endswith("check the network and the endpoint, then try again")
    assert [attempt for attempt, _, _ in retries] == [1, 2]
    assert time.monotonic() - started < 3 * STALL_S  # each attempt gave up on its own


def test_an_upload_whose_answer_hangs_sends_the_part_again_and_completes(
        relay: FaultRelay, s3_env: S3Endpoint, s3_bucket: str,
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    relay.stall(lambda request: request.startswith("PUT ") and "partNumber=1" in request,
                after=0, seconds=STALL_S)
    store = slow_store(relay, s3_bucket, part_size=5 * MiB, max_in_flight=1)
    data = os.urandom(6 * MiB)

    with store.open_writer("big.dump") as writer:
        writer.write(data)
        stored = writer.commit()

    assert stored.size == len(data)
    assert relay.stalled and "partNumber=1" in relay.stalled[0]
    parts = [r for r in relay.requests if r.startswith("PUT ") and "partNumber=1" in r]
    assert len(parts) == 2, relay.requests  # botocore sent the part again
    body = s3_env.client().get_object(Bucket=s3_bucket, Key=f"{PREFIX}/big.dump")["Body"]
    assert body.read() == data
    assert store.incomplete_uploads() == []


# --- a manifest that does not match its dump ----------------------------------------------------


def test_a_manifest_whose_sha256_does_not_match_the_dump_is_refused_before_restore(
        deck: SnapshotDeck, s3_server: S3Endpoint, s3_bucket: str):
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    [snapshot] = deck.inventory()["snapshots"]
    stamp = snapshot["id"]
    key = f"{PREFIX}/{manifest_key(CLUSTER, DATABASE, stamp)}"
    client = s3_server.client()
    manifest = json.loads(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    recorded = manifest["sha256_stored"]
    manifest["sha256_stored"] = hashlib.sha256(b"another dump").hexdigest()
    client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(manifest).encode())

    try:
        proc, events = deck.restore()

        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        step, error, attempts = failure(events)
        assert (step, attempts) == ("fetch", 1)  # downloading it again cannot mend it
        where = f"s3://{s3_bucket}/{PREFIX}/{dump_key(CLUSTER, DATABASE, stamp, True)}"
        assert error == (f"{where} is corrupt: its sha256 is {recorded[:16]}…, the manifest "
                         f"says {manifest['sha256_stored'][:16]}…; it will not be restored")
        assert "restore" not in steps_started(events)
        assert not deck.target_exists()
        assert [p for p in files_under(workdir_of(events))
                if p.name.endswith((".dump", ".partial"))] == []
    finally:
        deck.cluster.execute(f"drop database if exists {TARGET} with (force)")


def test_a_manifest_whose_plaintext_sha256_does_not_match_the_decrypted_dump_is_refused(
        deck: SnapshotDeck, relay: FaultRelay, s3_server: S3Endpoint, s3_bucket: str):
    """The stored object is intact (its sha256 matches sha256_stored, gpg's check passes),
    but what it decrypts to is not what the manifest recorded: refused in the same pass."""
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    [snapshot] = deck.inventory()["snapshots"]
    stamp = snapshot["id"]
    key = f"{PREFIX}/{manifest_key(CLUSTER, DATABASE, stamp)}"
    client = s3_server.client()
    manifest = json.loads(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    recorded = manifest["sha256_plaintext"]
    manifest["sha256_plaintext"] = hashlib.sha256(b"another dump").hexdigest()
    client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(manifest).encode())
    dump = f"{PREFIX}/{dump_key(CLUSTER, DATABASE, stamp, True)}"
    relay.requests.clear()

    try:
        proc, events = deck.restore()

        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        step, error, attempts = failure(events)
        assert (step, attempts) == ("fetch", 1)  # downloading it again cannot mend it
        assert error.startswith(
            f"snapshot {stamp} of {DATABASE}: the decrypted dump's sha256 is {recorded[:16]}…, "
            f"the manifest's sha256_plaintext says {manifest['sha256_plaintext'][:16]}…"), error
        assert "it was not restored (and was removed)" in error, error
        assert "Run verify-backup on this snapshot" in error, error
        assert "restore another one (-p snapshot=ID" in error, error
        assert "Traceback" not in proc.stdout + proc.stderr
        # one download, hashed on both sides of gpg: no second read of anything
        assert [r for r in relay.requests if r.startswith("GET ") and dump in r] == [
            f"GET /{s3_bucket}/{dump}"], relay.requests
        assert "restore" not in steps_started(events)
        assert not deck.target_exists()
        assert [p for p in files_under(workdir_of(events))
                if p.name.endswith((".dump", ".partial"))] == []
    finally:
        deck.cluster.execute(f"drop database if exists {TARGET} with (force)")


# --- the disk filling up during the download ---------------------------------------------------
#
# The pre-flight (a disk already too small: refused before the download) is
# test_faults_servers.py's. Here the disk has room when the fetch starts and is filled by
# another writer while the download is held mid-body by the relay: the dump's own writes
# then meet ENOSPC from the kernel.


def fill(disk: Path) -> None:
    """Write a file on `disk` until the kernel says it is full."""
    block = b"\0" * (64 * 1024)
    with (disk / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(block)


def test_a_disk_filled_by_someone_else_during_the_fetch_says_what_it_needs(
        deck: SnapshotDeck, relay: FaultRelay, s3_bucket: str, tmp_path: Path):
    proc, _ = deck.backup()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    [snapshot] = deck.inventory()["snapshots"]
    plaintext = snapshot["plaintext_size"]
    dump = f"{PREFIX}/{dump_key(CLUSTER, DATABASE, snapshot['id'], True)}"
    # enough room for the dump when the fetch starts, so the pre-flight lets it through
    with small_filesystem(f"{(plaintext + 4 * MiB) // 1024}k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        # the run's work directory (where the dump is decrypted) on the small disk, the
        # journal elsewhere; deck.env is a whole environment, its DRDECK_STATE_DIR replaced
        state = disk / "state"
        small = SnapshotDeck(deck.config, state, {
            **deck.env, "DRDECK_STATE_DIR": str(state),
            "DRDECK_JOURNAL": str(tmp_path / "journal.sqlite")},
            cluster=deck.cluster, runbooks=deck.runbooks)
        # the body stops after 2 MiB for long enough to fill the disk under the fetch
        relay.stall(lambda request: request.startswith("GET ") and dump in request,
                    after=2 * MiB, seconds=STALL_S)

        def fill_once_the_dump_is_being_written() -> None:
            deadline = time.monotonic() + 120
            while not list(state.glob("runs/*/*.partial")):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
            fill(disk)

        filler = threading.Thread(target=fill_once_the_dump_is_being_written, daemon=True)
        filler.start()
        try:
            proc, events = small.restore()
        finally:
            filler.join(timeout=130)

        assert relay.stalled, relay.requests
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
        step, error, attempts = failure(events)
        assert (step, attempts) == ("fetch", 1)  # a full disk stays full: no automatic retry
        # the download had begun: this is the write failing, not the pre-flight
        assert any(line.startswith("fetching ") for line in output_lines(events, "fetch"))
        workdir = workdir_of(events)
        assert error.startswith(f"the disk holding {workdir} is too full for snapshot "
                                f"{snapshot['id']} of {DATABASE} (No space left on device): "
                                f"the decrypted dump needs {format_bytes(plaintext)} there "
                                "and "), error
        free = re.search(r"there and (\d+(?:\.\d)? (?:B|KiB|MiB)) is free\.", error)
        assert free, error
        assert "no partial dump is left" in error, error
        assert "set DRDECK_STATE_DIR to a directory on a disk with room" in error, error
        assert "Traceback" not in proc.stdout + proc.stderr
        assert "restore" not in steps_started(events)
        assert not deck.target_exists()
        assert files_under(workdir) == []  # the partial dump is gone, its space given back
        (disk / "filler").unlink()


def test_a_hung_store_holds_up_a_forecast_no_longer_than_its_bound(
        deck: SnapshotDeck, relay: FaultRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a restore its forecast asks the store what the run would move: a store that
    does not answer costs the operator that bound, and the forecast says why it is not
    scaled (the pre-flight then meets the same store, and says what is wrong)."""
    from tui.config import load_config
    from tui.engine.volumes import planned_volumes
    from tui.runbook.loader import load_runbook

    for name, value in deck.env.items():  # the store's credentials
        monkeypatch.setenv(name, value)
    relay.stall(lambda request: request.startswith("GET "), after=None, seconds=STALL_S * 10,
                times=100)
    book = load_runbook(deck.runbooks["snapshot-restore"])
    started = time.monotonic()
    planned = planned_volumes(load_config(deck.config), book, {"target_db": TARGET},
                              timeout_s=1)
    assert (planned.sizes, planned.problem) == ({}, "its source did not answer within 1s")
    assert time.monotonic() - started < STALL_S * 5
    assert relay.stalled  # it did ask, and was left waiting
