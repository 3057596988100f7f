"""The storage layer against real stores: a local directory and moto's S3 server over HTTP.

Behaviour both stores share is tested once, parametrised over both; what only
one of them has (file modes, multipart uploads, pages) is tested on its own.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from tui.storage import (
    IncompleteUpload,
    LocalStore,
    ObjectNotFound,
    S3Store,
    StorageError,
    Store,
    StoredObject,
    open_store,
)

from harness.s3 import S3Endpoint

MiB = 1 << 20
T = TypeVar("T")
PREFIX = "team/pg"  # every S3 store here lives under a prefix, as real ones do


@pytest.fixture
def aws_env(s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """Credentials for moto through the AWS chain (the only way S3Store takes them)."""
    # No instance-metadata probe (a 1-2 s timeout) when a test removes the keys.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_env


def make_s3_store(endpoint: S3Endpoint, bucket: str, **options: Any) -> S3Store:
    return S3Store(bucket, prefix=PREFIX, endpoint_url=endpoint.url, region=endpoint.region,
                   **options)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "repository")
    endpoint = request.getfixturevalue("aws_env")
    return make_s3_store(endpoint, request.getfixturevalue("s3_bucket"), part_size=5 * MiB)


@pytest.fixture
def s3_store(aws_env: S3Endpoint, s3_bucket: str) -> S3Store:
    return make_s3_store(aws_env, s3_bucket, part_size=5 * MiB)


class Concurrency:
    """How many calls of one S3 operation a store had in flight at most, and the Range
    each asked for, counted by botocore's events around each call."""

    def __init__(self, store: S3Store, operation: str) -> None:
        self.most, self.ranges = 0, []
        self._now, self._lock = 0, threading.Lock()
        store.client.meta.events.register(f"before-call.s3.{operation}", self._started)
        store.client.meta.events.register(f"after-call.s3.{operation}", self._finished)

    def _started(self, params: dict, **_: Any) -> None:
        with self._lock:
            self.ranges.append(params["headers"].get("Range"))
            self._now += 1
            self.most = max(self.most, self._now)

    def _finished(self, **_: Any) -> None:
        with self._lock:
            self._now -= 1


def keys(store: Store, prefix: str = "") -> list[str]:
    return [item.key for item in store.list(prefix)]


def wait_for(get: Callable[[], T], until: Callable[[T], bool], timeout: float = 10) -> T:
    """get() once until(result) holds: for work a writer does in its own threads."""
    deadline = time.monotonic() + timeout
    while not until(result := get()):
        assert time.monotonic() < deadline, f"still {result!r} after {timeout} s"
        time.sleep(0.02)
    return result


# --- shared behaviour ----------------------------------------------------------------


def test_write_list_stat_and_read_back(store: Store):
    before = datetime.now(UTC) - timedelta(seconds=5)
    written = store.write_bytes("prod/snapshots/app/20240101T000000Z.json", b'{"v": 1}')
    store.write_bytes("prod/snapshots/app/20240102T000000Z.json", b'{"v": 2}')
    store.write_bytes("prod/wal/000000010000000000000001", b"w" * 100)

    assert written.key == "prod/snapshots/app/20240101T000000Z.json"
    assert written.size == 8
    assert written.modified.tzinfo is not None and written.modified.utcoffset() == timedelta(0)
    assert before <= written.modified <= datetime.now(UTC) + timedelta(seconds=5)

    listed = list(store.list())
    assert [item.key for item in listed] == [
        "prod/snapshots/app/20240101T000000Z.json",
        "prod/snapshots/app/20240102T000000Z.json",
        "prod/wal/000000010000000000000001",
    ]
    assert [item.size for item in listed] == [8, 8, 100]
    assert all(item.modified.utcoffset() == timedelta(0) for item in listed)
    assert keys(store, "prod/snapshots/") == keys(store, "prod/snap")[:2]

    if isinstance(store, S3Store):
        assert store.location("prod/wal/1") == f"s3://{store.bucket}/{PREFIX}/prod/wal/1"
    else:
        assert store.location("prod/wal/1") == str(store.root / "prod/wal/1")
    stat_ = store.stat("prod/wal/000000010000000000000001")
    assert stat_ is not None and stat_.size == 100
    assert store.stat("prod/wal/missing") is None
    assert store.read_bytes("prod/snapshots/app/20240102T000000Z.json") == b'{"v": 2}'


def test_keys_sort_as_strings_and_prefixes_are_not_folders(store: Store):
    for key in ["a/b", "a-b", "a/c/d", "b", "ab"]:
        store.write_bytes(key, key.encode())
    # "-" sorts before "/": the order S3 lists in, whatever the folders on disk.
    assert keys(store) == ["a-b", "a/b", "a/c/d", "ab", "b"]
    assert keys(store, "a") == ["a-b", "a/b", "a/c/d", "ab"]
    assert keys(store, "a/") == ["a/b", "a/c/d"]
    assert keys(store, "a/c/d") == ["a/c/d"]
    assert keys(store, "nothing/here/") == []


def test_overwrite_replaces_the_object(store: Store):
    store.write_bytes("k", b"first")
    store.write_bytes("k", b"second, longer")
    assert store.read_bytes("k") == b"second, longer"
    assert keys(store) == ["k"]


def test_streamed_write_is_invisible_until_commit(store: Store):
    with store.open_writer("snap/big.dump") as writer:
        for i in range(10):
            writer.write(bytes([i]) * 1000)
        assert writer.bytes_written == 10_000
        assert keys(store) == []
        assert store.stat("snap/big.dump") is None
        stored = writer.commit()
    assert isinstance(stored, StoredObject)
    assert (stored.key, stored.size) == ("snap/big.dump", 10_000)
    assert store.read_bytes("snap/big.dump") == b"".join(bytes([i]) * 1000 for i in range(10))


def test_empty_object(store: Store):
    stored = store.write_bytes("empty", b"")
    assert stored.size == 0
    assert store.read_bytes("empty") == b""
    assert list(store.iter_chunks("empty")) == []


def test_abort_leaves_no_object_and_no_incomplete_upload(store: Store):
    writer = store.open_writer("snap/x.dump")
    writer.write(os.urandom(5 * MiB + 1))  # S3: one part already uploaded
    writer.abort()
    writer.abort()  # idempotent
    assert keys(store) == []
    assert store.incomplete_uploads() == []
    with pytest.raises(StorageError, match="already aborted"):
        writer.write(b"more")
    with pytest.raises(StorageError, match="already aborted"):
        writer.commit()


def test_exception_inside_the_writer_block_aborts(store: Store):
    with pytest.raises(RuntimeError, match="pg_dump died"), store.open_writer("x.dump") as writer:
        writer.write(b"some of a dump")
        raise RuntimeError("pg_dump died")
    assert keys(store) == []
    assert store.incomplete_uploads() == []


def test_leaving_the_block_without_commit_aborts(store: Store):
    with store.open_writer("x.dump") as writer:
        writer.write(b"forgotten")
    assert keys(store) == []
    assert store.incomplete_uploads() == []


def test_abort_after_commit_keeps_the_object(store: Store):
    with store.open_writer("kept") as writer:
        writer.write(b"data")
        writer.commit()
        writer.abort()
    assert store.read_bytes("kept") == b"data"


def test_iter_chunks_from_an_offset(store: Store):
    data = bytes(range(256)) * 40  # 10 KiB
    store.write_bytes("blob", data)
    chunks = list(store.iter_chunks("blob", chunk_size=1000))
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 1000
    assert b"".join(store.iter_chunks("blob", start=7777, chunk_size=512)) == data[7777:]
    assert list(store.iter_chunks("blob", start=len(data))) == []
    with pytest.raises(StorageError, match=r"from byte 10,241: it has only 10,240 bytes"):
        list(store.iter_chunks("blob", start=len(data) + 1))


def test_delete(store: Store):
    store.write_bytes("a/1", b"1")
    store.write_bytes("a/2", b"2")
    store.delete("a/1")
    store.delete("a/1")  # already gone: still fine (a retried prune must not fail)
    assert keys(store) == ["a/2"]


def test_missing_object_is_object_not_found(store: Store):
    with pytest.raises(ObjectNotFound, match=r"missing\.json"):
        store.read_bytes("prod/missing.json")
    with pytest.raises(ObjectNotFound, match=r"missing\.dump"):
        list(store.iter_chunks("prod/missing.dump"))
    with pytest.raises(ObjectNotFound, match=r"missing\.dump"):
        store.set_storage_class("prod/missing.dump", "GLACIER_IR")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "folder/", "./a", "a\\b"])
def test_invalid_keys_are_refused(store: Store, key: str):
    with pytest.raises(StorageError, match="invalid object key"):
        store.write_bytes(key, b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.stat(key)


def test_incomplete_uploads_are_listed_and_aborted(store: Store):
    done = store.write_bytes("prod/snapshots/app/1.dump", b"complete")
    writer = store.open_writer("prod/snapshots/app/2.dump")
    writer.write(os.urandom(5 * MiB + 1))  # S3: the first 5 MiB part goes up in the background

    found = wait_for(lambda: store.incomplete_uploads("prod/snapshots/"),
                     until=lambda found: "0 parts" not in found[0].detail)
    assert [upload.key for upload in found] == ["prod/snapshots/app/2.dump"]
    (upload,) = found
    assert upload.started is not None and upload.started.utcoffset() == timedelta(0)
    if isinstance(store, S3Store):
        assert upload.detail == "multipart upload, 1 part, 5.0 MiB"
    else:
        assert upload.detail.startswith("partial file, ")
    assert store.incomplete_uploads("prod/snapshots/app/2") == found
    assert store.incomplete_uploads("prod/wal/") == []
    assert keys(store) == [done.key]  # an incomplete object is never listed

    store.abort_incomplete(upload)
    store.abort_incomplete(upload)  # idempotent
    assert store.incomplete_uploads() == []
    writer.abort()  # the writer's own clean-up finds nothing left, and does not mind
    assert keys(store) == [done.key]


def test_open_store_builds_either_kind(tmp_path: Path, aws_env: S3Endpoint, s3_bucket: str):
    local = open_store(SimpleNamespace(type="local", path=tmp_path / "r", name="nearby"))
    assert isinstance(local, LocalStore)
    assert local.description == str(tmp_path / "r")

    s3 = open_store(SimpleNamespace(type="s3", bucket=s3_bucket, prefix="pg/",
                                    endpoint_url=aws_env.url, region=aws_env.region,
                                    storage_class=None, path=None))
    assert isinstance(s3, S3Store)
    assert s3.description == f"s3://{s3_bucket}/pg ({aws_env.url})"
    s3.write_bytes("x", b"1")
    assert [item.key for item in s3.list()] == ["x"]

    with pytest.raises(StorageError, match=r"repository 'odd' has type 'ftp'.*\"s3\""):
        open_store(SimpleNamespace(type="ftp", name="odd"))
    with pytest.raises(StorageError, match="no bucket"):
        open_store(SimpleNamespace(type="s3", bucket=None, name="offsite"))


def test_importing_storage_does_not_load_boto3():
    code = ("import sys, tui.storage; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# --- local directory -----------------------------------------------------------------


def test_a_local_folder_emptied_by_a_delete_goes_and_a_folder_still_in_use_stays(
        tmp_path: Path):
    root = tmp_path / "repository"
    store = LocalStore(root)
    for key in ("prod/base/1/manifest.json", "prod/base/1/base.tar", "prod/base/2/base.tar"):
        store.write_bytes(key, b"x")
    store.delete("prod/base/1/manifest.json")
    assert (root / "prod/base/1").is_dir(), "base.tar is still in it"
    store.delete("prod/base/1/base.tar")
    assert not (root / "prod/base/1").exists()
    assert keys(store) == ["prod/base/2/base.tar"]
    # a folder that is a link somewhere else is refused, never removed, nor its target
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "prod/base/3").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="symbolic link"):
        store.delete("prod/base/3/base.tar")
    assert (root / "prod/base/3").is_symlink() and elsewhere.is_dir()
    store.delete("top")  # an object at the root: the root stays
    assert root.is_dir()


def test_local_files_are_private(tmp_path: Path):
    root = tmp_path / "new" / "repository"
    store = LocalStore(root)
    writer = store.open_writer("prod/snapshots/app/1.dump")
    (partial,) = [path for path in root.rglob("*") if path.is_file()]
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    writer.write(b"x")
    writer.commit()

    for folder in [tmp_path / "new", root, root / "prod", root / "prod/snapshots/app"]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((root / "prod/snapshots/app/1.dump").stat().st_mode) == 0o600


def test_local_missing_root_lists_nothing_and_is_created_on_write(tmp_path: Path):
    store = LocalStore(tmp_path / "not-yet")
    assert keys(store) == []
    assert store.incomplete_uploads() == []
    assert store.stat("a") is None
    assert not (tmp_path / "not-yet").exists()
    store.write_bytes("a", b"1")
    assert keys(store) == ["a"]


def test_local_partial_files_are_hidden_and_recognised(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.write_bytes("db/1.dump", b"done")
    writer = store.open_writer("db/2.dump")
    writer.write(b"x" * 100_000)  # more than the file buffer: on disk now
    (partial,) = (tmp_path / "db").glob(".2.dump.partial-*")
    assert keys(store) == ["db/1.dump"]
    (upload,) = store.incomplete_uploads()
    assert (upload.key, upload.upload_id) == ("db/2.dump", f"db/{partial.name}")
    assert upload.detail == "partial file, 97.7 KiB"
    writer.commit()
    assert not partial.exists()
    assert keys(store) == ["db/1.dump", "db/2.dump"]


def test_local_abort_incomplete_refuses_a_finished_object(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.write_bytes("db/1.dump", b"done")
    forged = IncompleteUpload("db/1.dump", None, "partial file", upload_id="db/1.dump")
    with pytest.raises(StorageError, match="not a partial file"):
        store.abort_incomplete(forged)
    assert store.read_bytes("db/1.dump") == b"done"


def test_local_set_storage_class_is_accepted_and_changes_nothing(tmp_path: Path):
    store = LocalStore(tmp_path)
    store.write_bytes("k", b"v")
    before = store.stat("k")
    store.set_storage_class("k", "GLACIER_IR")
    assert store.stat("k") == before
    assert before is not None and before.storage_class is None


def test_local_root_that_is_a_file(tmp_path: Path):
    (tmp_path / "file").write_text("not a directory")
    store = LocalStore(tmp_path / "file")
    with pytest.raises(StorageError, match="not a directory"):
        list(store.list())
    with pytest.raises(StorageError, match="file"):
        store.write_bytes("a", b"1")


# --- S3 -----------------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3_store: S3Store, s3_client: Any, s3_bucket: str):
    s3_store.write_bytes("a.json", b"{}")
    s3_client.put_object(Bucket=s3_bucket, Key="team/pg-old/not-ours", Body=b"x")
    s3_client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/folder/", Body=b"")  # console marker
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert f"{PREFIX}/a.json" in [item["Key"] for item in listed]
    assert keys(s3_store) == ["a.json"]
    assert s3_store.description == f"s3://{s3_bucket}/{PREFIX} ({s3_store.endpoint})"


def test_s3_list_is_paginated_lazily(aws_env: S3Endpoint, s3_bucket: str):
    store = make_s3_store(aws_env, s3_bucket, page_size=2)
    names = [f"wal/{i:04d}" for i in range(15)]
    for name in names:
        store.write_bytes(name, name.encode())
    requests = []
    store.client.meta.events.register("provide-client-params.s3.ListObjectsV2",
                                      lambda **kwargs: requests.append(kwargs["params"]))

    listing = store.list("wal/")
    first_three = [next(listing).key for _ in range(3)]
    assert first_three == names[:3]
    assert len(requests) == 2  # pages are fetched as the caller reaches them
    assert first_three + [item.key for item in listing] == names
    assert len(requests) == 8
    assert all(params["MaxKeys"] == 2 for params in requests)
    assert all(item.storage_class == "STANDARD" for item in store.list("wal/"))


def test_s3_multipart_upload_streams_20_mib(aws_env: S3Endpoint, s3_bucket: str,
                                            s3_client: Any):
    store = make_s3_store(aws_env, s3_bucket, part_size=5 * MiB, max_in_flight=2)
    parts = Concurrency(store, "UploadPart")

    data = os.urandom(20 * MiB + 12345)
    with store.open_writer("prod/big.dump", storage_class="STANDARD_IA") as writer:
        for offset in range(0, len(data), MiB):
            writer.write(data[offset:offset + MiB])
        # Parts are on the server, but nothing is visible under the key yet.
        uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        assert [upload["Key"] for upload in uploads] == [f"{PREFIX}/prod/big.dump"]
        assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
        stored = writer.commit()

    assert stored.size == len(data) == writer.bytes_written
    assert stored.storage_class == "STANDARD_IA"
    assert 1 <= parts.most <= 2
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/prod/big.dump")
    assert head["ETag"].strip('"').endswith("-5")  # a multipart ETag: 4 full parts + the rest
    assert "Uploads" not in s3_client.list_multipart_uploads(Bucket=s3_bucket)
    digest = hashlib.sha256()
    for chunk in store.iter_chunks("prod/big.dump", chunk_size=MiB):
        digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()


def test_s3_a_large_object_is_read_ahead_in_parallel_ranges_in_order(
        aws_env: S3Endpoint, s3_bucket: str, s3_client: Any):
    store = make_s3_store(aws_env, s3_bucket, part_size=5 * MiB, max_in_flight=3)
    data = os.urandom(17 * MiB + 4321)
    s3_client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/prod/base.tar", Body=data)
    gets = Concurrency(store, "GetObject")
    read = b"".join(store.iter_chunks("prod/base.tar", chunk_size=MiB))
    assert read == data
    part = 5 * MiB
    # the first GET learns the size while it reads the first part; the rest in ranges
    ranges = gets.ranges
    assert ranges[0] is None
    assert sorted(ranges[1:], key=lambda r: int(r[6:].split("-")[0])) == [
        f"bytes={a}-{min(a + part, len(data)) - 1}" for a in range(part, len(data), part)]
    assert 2 <= gets.most <= 3
    # from an offset, the same bytes as a slice
    offset = 6 * MiB + 7
    assert b"".join(store.iter_chunks("prod/base.tar", start=offset)) == data[offset:]


def test_s3_an_object_replaced_while_it_is_read_ahead_is_refused(
        aws_env: S3Endpoint, s3_bucket: str, s3_client: Any):
    store = make_s3_store(aws_env, s3_bucket, part_size=5 * MiB, max_in_flight=2)
    key = f"{PREFIX}/prod/base.tar"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=os.urandom(31 * MiB))
    chunks = store.iter_chunks("prod/base.tar", chunk_size=MiB)
    next(chunks)  # the first parts are in; the later ones are asked for as it goes
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=os.urandom(31 * MiB))
    with pytest.raises(StorageError, match="changed while it was being read"):
        for _ in chunks:
            pass


def test_s3_small_object_is_a_single_put(s3_store: S3Store, s3_client: Any, s3_bucket: str):
    calls = []
    s3_store.client.meta.events.register("before-call.s3.*",
                                         lambda event_name, **_: calls.append(event_name))
    s3_store.write_bytes("small", b"x" * 5 * MiB)  # exactly one part: still one PUT
    assert "before-call.s3.PutObject" in calls
    assert "before-call.s3.CreateMultipartUpload" not in calls
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/small")
    assert "-" not in head["ETag"]


def test_s3_default_storage_class_applies_to_new_objects(aws_env: S3Endpoint, s3_bucket: str,
                                                         s3_client: Any):
    store = make_s3_store(aws_env, s3_bucket, storage_class="STANDARD_IA")
    assert store.write_bytes("a", b"1").storage_class == "STANDARD_IA"
    assert store.open_writer("b", storage_class="ONEZONE_IA").commit().storage_class == (
        "ONEZONE_IA")


def test_s3_set_storage_class(s3_store: S3Store, s3_client: Any, s3_bucket: str):
    s3_store.write_bytes("monthly.dump", b"keep me")
    s3_store.set_storage_class("monthly.dump", "GLACIER_IR")
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/monthly.dump")
    assert head["StorageClass"] == "GLACIER_IR"
    assert s3_store.stat("monthly.dump").storage_class == "GLACIER_IR"
    assert s3_store.read_bytes("monthly.dump") == b"keep me"
    s3_store.set_storage_class("monthly.dump", "GLACIER_IR")  # already there: no-op
    with pytest.raises(StorageError, match="storage class"):
        s3_store.set_storage_class("monthly.dump", "NOT_A_CLASS")


def test_s3_set_storage_class_copies_a_large_object_in_parts(aws_env: S3Endpoint,
                                                             s3_bucket: str, s3_client: Any):
    # CopyObject stops at 5 GiB; a small ceiling here takes the same path.
    store = make_s3_store(aws_env, s3_bucket, part_size=5 * MiB, max_single_copy=5 * MiB)
    data = os.urandom(11 * MiB)
    store.write_bytes("huge.dump", data)
    calls = []
    store.client.meta.events.register("provide-client-params.s3.UploadPartCopy",
                                      lambda params, **_: calls.append(params["CopySourceRange"]))
    store.set_storage_class("huge.dump", "GLACIER_IR")
    assert calls == ["bytes=0-5242879", "bytes=5242880-10485759", "bytes=10485760-11534335"]
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/huge.dump")
    assert head["StorageClass"] == "GLACIER_IR"
    assert hashlib.sha256(store.read_bytes("huge.dump")).digest() == (
        hashlib.sha256(data).digest())


def test_s3_small_part_size_is_refused(aws_env: S3Endpoint, s3_bucket: str):
    with pytest.raises(ValueError, match="5 MiB"):
        make_s3_store(aws_env, s3_bucket, part_size=MiB)


# --- S3 errors an operator can act on --------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_s3_unreachable_endpoint(aws_env: S3Endpoint):
    url = f"http://127.0.0.1:{closed_port()}"
    store = S3Store("backups", endpoint_url=url, region="us-east-1")
    with pytest.raises(StorageError) as failure:
        list(store.list())
    assert str(failure.value).startswith(
        f"cannot reach the S3 endpoint {url}: connection refused")
    assert "endpoint_url" in str(failure.value)


def test_s3_missing_bucket(aws_env: S3Endpoint):
    store = S3Store("no-such-bucket", endpoint_url=aws_env.url, region=aws_env.region)
    expected = f"bucket no-such-bucket does not exist at {aws_env.url}"
    for attempt in (lambda: list(store.list()), lambda: store.stat("k"),
                    lambda: store.read_bytes("k"), lambda: store.write_bytes("k", b"1"),
                    lambda: store.open_writer("k").write(b"x" * (8 * MiB + 1))):
        with pytest.raises(StorageError) as failure:
            attempt()
        assert not isinstance(failure.value, ObjectNotFound)
        assert str(failure.value).startswith(expected)


def test_s3_no_credentials(aws_env: S3Endpoint, s3_bucket: str,
                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3Store(s3_bucket, endpoint_url=aws_env.url, region=aws_env.region)
    with pytest.raises(StorageError, match=r"no AWS credentials found .* AWS_PROFILE"):
        list(store.list())


def test_s3_unknown_profile(aws_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_PROFILE", "nightly-backups")
    with pytest.raises(StorageError, match="profile 'nightly-backups'"):
        S3Store("b", endpoint_url=aws_env.url)


def test_s3_bad_endpoint_url(aws_env: S3Endpoint):
    with pytest.raises(StorageError, match="invalid S3 endpoint_url"):
        S3Store("b", endpoint_url="not a url")
