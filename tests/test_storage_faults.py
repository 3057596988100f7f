"""The S3 store when the network or the credentials fail, for real.

Downloads go through a TCP relay on 127.0.0.1 in front of moto that cuts
responses short, so botocore sees what it sees when a link drops mid-body. Bad
credentials go to a second moto server (its own process) that checks signatures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tui.storage import S3Store, StorageError

from harness.relay import CuttingRelay
from harness.s3 import S3Endpoint

MiB = 1 << 20


@pytest.fixture
def aws_env(s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_env


@pytest.fixture
def stored(aws_env: S3Endpoint, s3_bucket: str) -> tuple[str, bytes]:
    """A 1 MiB object in the bucket, put there directly (not through any relay)."""
    data = os.urandom(MiB)
    aws_env.client().put_object(Bucket=s3_bucket, Key="pg/snap.dump", Body=data)
    return s3_bucket, data


@pytest.fixture
def relay(aws_env: S3Endpoint, request: pytest.FixtureRequest) -> Iterator[CuttingRelay]:
    cut_at, cuts = request.param
    relay = CuttingRelay(aws_env.url, cut_at=cut_at, cuts=cuts)
    yield relay
    relay.close()


def relayed_store(relay: CuttingRelay, bucket: str, **options: Any) -> S3Store:
    return S3Store(bucket, prefix="pg", endpoint_url=relay.url, region="us-east-1",
                   retry_base_delay=0.01, **options)


@pytest.mark.parametrize("relay", [(300_000, 1)], indirect=True)
def test_a_dropped_download_resumes_from_the_last_byte(relay: CuttingRelay,
                                                       stored: tuple[str, bytes]):
    bucket, data = stored
    store = relayed_store(relay, bucket)
    received, retries = bytearray(), []

    def on_retry(attempt: int, error: Exception, delay: float) -> None:
        retries.append((attempt, str(error), delay, len(received)))

    for chunk in store.iter_chunks("snap.dump", chunk_size=64 * 1024, on_retry=on_retry):
        received += chunk

    assert bytes(received) == data
    ((attempt, message, delay, at),) = retries
    assert (attempt, delay) == (1, 0.01)
    assert 0 < at < len(data)
    assert message.startswith(f"s3://{bucket}/pg/snap.dump: the connection closed")
    assert message.endswith(f"received; resuming from byte {at:,})")
    # The second GET asked for exactly the bytes not yet received.
    assert relay.requests == [
        f"GET /{bucket}/pg/snap.dump",
        f"GET /{bucket}/pg/snap.dump Range: bytes={at}-",
    ]


@pytest.mark.parametrize("relay", [(None, 1000)], indirect=True)
def test_a_download_that_never_progresses_fails_clearly(relay: CuttingRelay,
                                                        stored: tuple[str, bytes]):
    bucket, _ = stored
    store = relayed_store(relay, bucket, read_attempts=5)
    retries = []
    with pytest.raises(StorageError) as failure:
        for _ in store.iter_chunks("snap.dump", on_retry=lambda *args: retries.append(args)):
            pass
    message = str(failure.value)
    assert message.startswith(f"cannot read s3://{bucket}/pg/snap.dump from {relay.url}: ")
    assert "5 attempts in a row received nothing" in message
    assert [(attempt, delay) for attempt, _, delay in retries] == [
        (1, 0.01), (2, 0.02), (3, 0.04), (4, 0.08)]
    assert len(relay.requests) == 5


@pytest.mark.parametrize("relay", [(300_000, 1)], indirect=True)
def test_the_server_gone_mid_download_is_retried_then_reported(relay: CuttingRelay,
                                                               stored: tuple[str, bytes]):
    bucket, _ = stored
    store = relayed_store(relay, bucket, read_attempts=3)
    retries = []

    def on_retry(attempt: int, error: Exception, delay: float) -> None:
        retries.append(attempt)
        relay.stop_listening()

    received = 0
    with pytest.raises(StorageError) as failure:
        for chunk in store.iter_chunks("snap.dump", on_retry=on_retry):
            received += len(chunk)
    assert 0 < received < MiB
    assert retries == [1, 2, 3]  # after the cut, then after two refusals; the third ends it
    assert str(failure.value).startswith(
        f"cannot read s3://{bucket}/pg/snap.dump from {relay.url}: connection refused")


def test_a_failed_part_fails_the_upload_and_cleans_up(aws_env: S3Endpoint, s3_bucket: str):
    """Someone aborts the upload (say, a clean-up of incomplete uploads) while it runs."""
    store = S3Store(s3_bucket, prefix="pg", endpoint_url=aws_env.url, region=aws_env.region,
                    part_size=5 * MiB, max_in_flight=1)
    writer = store.open_writer("snap.dump")
    writer.write(os.urandom(5 * MiB + 1))
    (upload,) = store.incomplete_uploads()
    store.abort_incomplete(upload)

    with pytest.raises(StorageError) as failure:
        for _ in range(3):  # the failure surfaces at the next write or, at the latest, commit
            writer.write(os.urandom(5 * MiB))
        writer.commit()
    # Real S3 answers NoSuchUpload here; moto 5.2 fails with a 500 (a KeyError inside).
    assert f"upload a part of s3://{s3_bucket}/pg/snap.dump" in str(failure.value)
    with pytest.raises(StorageError, match="already aborted"):
        writer.write(b"more")
    assert list(store.list()) == []
    assert store.incomplete_uploads() == []


# --- credentials ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def checking_s3() -> Iterator[dict[str, str]]:
    """A moto server (its own process) that checks credentials, with a bucket and a user.

    moto accepts any credentials unless INITIAL_NO_AUTH_ACTION_COUNT is set when
    it starts: it then lets that many requests in unsigned (to set things up)
    and checks every later one against its IAM users.
    """
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, "moto server exited"
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        import boto3

        setup = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup",
                                      region_name="us-east-1")
        setup.client("s3", endpoint_url=url).create_bucket(Bucket="locked")
        iam = setup.client("iam", endpoint_url=url)
        iam.create_user(UserName="backup")
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        yield {"url": url, "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        server.terminate()
        server.wait(timeout=10)


def use_credentials(monkeypatch: pytest.MonkeyPatch, key_id: str, secret: str) -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize(
    ("which", "why"),
    [
        ("unknown key", "the endpoint does not know the access key ID"),
        ("wrong secret", "the secret access key does not match the access key ID"),
        ("no permission", "the credentials are not allowed to do this"),
    ],
)
def test_bad_credentials_are_access_denied(checking_s3: dict[str, str], which: str, why: str,
                                           monkeypatch: pytest.MonkeyPatch):
    key_id, secret = {
        "unknown key": ("AKIAUNKNOWNUNKNOWN00", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "wrong secret": (checking_s3["key_id"], "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "no permission": (checking_s3["key_id"], checking_s3["secret"]),
    }[which]
    use_credentials(monkeypatch, key_id, secret)
    store = S3Store("locked", prefix="pg", endpoint_url=checking_s3["url"], region="us-east-1")
    attempts = {
        "list": lambda: list(store.list()),
        "stat": lambda: store.stat("x"),
        "read": lambda: store.read_bytes("x"),
        "write": lambda: store.write_bytes("x", b"1"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(StorageError) as failure:
            attempt()
        message = str(failure.value)
        assert message.startswith(f"access denied to bucket locked at {checking_s3['url']} "
                                  "(credentials come from the AWS environment variables or "
                                  "profile)"), name
        # A HEAD answer (stat) has no body, so no error code: only "403".
        expected = "the credentials are not allowed to do this" if name == "stat" else why
        assert message.endswith(expected), (name, message)
        assert secret not in message
        assert key_id not in message
