"""`drdeck wal push` and `drdeck wal fetch` as PostgreSQL runs them (archive_command and
restore_command): the real CLI in a subprocess, on a local repository and in moto's
S3-protocol server on 127.0.0.1, encrypted for a scratch GnuPG key and not.

The segments are small fake ones (a few KiB of random bytes with segment names): the
archive never looks inside a segment, and the prefetcher takes the segment size from the
file it restored, so the names still follow one another as real ones do.

restore_command's contract, which every fetch test holds drdeck to: exit 0 when the file
was restored; 1 when the archive does not have it (recovery ends there, as it should at
the end of the archive); above 125 when the archive cannot be read, which PostgreSQL
treats as fatal, so recovery stops instead of promoting at a point nobody chose.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tui.postgres.cluster import free_port

CLUSTER = "prod"
PREFIX = "pg"  # the S3 repositories' key prefix
SEGMENT_BYTES = 8192  # a fake segment; a power of two, like wal_segment_size
NOT_FOUND, UNREADABLE = 1, 126
SPOOL_WAIT_S = 15.0  # "within a few seconds", with room for a busy machine (xdist)


def segment_name(number: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{0:08X}{number:08X}"


# --- an archive and the drdeck commands that fill and read it ----------------------------


@dataclass
class Archive:
    """One drdeck.toml (one cluster, one repository) and what `drdeck wal` did with it."""

    kind: str  # "local" or "s3"
    encrypted: bool
    compressed: bool  # zstd before gpg: the repository's default
    config: Path
    work: Path  # stands in for the data directory: pg_wal/ (pushed from) and restored/
    env: dict[str, str]
    stored: Callable[[], dict[str, bytes]]  # what the repository holds under <cluster>/wal/
    outputs: list[str]  # stdout and stderr of every drdeck run, checked for secrets

    def drdeck(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "tui", "--config", str(self.config), "wal", *args],
            capture_output=True, text=True, env=self.env, cwd=self.work,
            stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    def push(self, path: Path) -> subprocess.CompletedProcess[str]:
        return self.drdeck("push", "--cluster", CLUSTER, str(path))

    def fetch(self, name: str, dest: Path, *options: str) -> subprocess.CompletedProcess[str]:
        return self.drdeck("fetch", "--cluster", CLUSTER, *options, name, str(dest))

    def wal_file(self, name: str, content: bytes | None = None,
                 folder: str = "pg_wal") -> tuple[Path, bytes]:
        """A file as the server hands it to archive_command (%p): its path and bytes."""
        content = os.urandom(SEGMENT_BYTES) if content is None else content
        path = self.work / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path, content

    def restored(self, name: str = "RECOVERYXLOG") -> Path:
        """Where restore_command is asked to put a file (%p)."""
        folder = self.work / "restored"
        folder.mkdir(exist_ok=True)
        return folder / name

    def key(self, name: str) -> str:
        return name + (".zst" if self.compressed else "") + (".gpg" if self.encrypted else "")

    def pushed(self, *contents: tuple[str, bytes]) -> None:
        for name, content in contents:
            path, _ = self.wal_file(name, content)
            proc = self.push(path)
            assert proc.returncode == 0, proc.stderr


def plain_or_gpg(archive: Archive, stored: bytes, plain: bytes) -> None:
    """An encrypted archive holds OpenPGP data, never the segment; a plain one the segment,
    as a zstd frame when it compresses."""
    if archive.encrypted:
        assert stored != plain and plain[:64] not in stored
    elif archive.compressed:
        assert zstandard.ZstdDecompressor().decompress(stored) == plain
    else:
        assert stored == plain


@pytest.fixture
def outputs(s3_server) -> Iterator[list[str]]:
    """Everything drdeck printed in the test: the secret access key must be in none of it."""
    seen: list[str] = []
    yield seen
    leaked = [text for text in seen if s3_server.secret_access_key in text]
    assert not leaked, f"the AWS secret access key reached drdeck's output: {leaked[:1]}"


@pytest.fixture
def make_archive(tmp_path: Path, s3_server, make_gpg_home,
                 outputs: list[str]) -> Iterator[Callable[..., Archive]]:
    """make_archive(kind, encrypted, endpoint_url=None, compression=None): a configured,
    empty archive; compression None leaves the repository's default (zstd)."""
    buckets: list[str] = []

    def make(kind: str, encrypted: bool, endpoint_url: str | None = None,
             compression: str | None = None) -> Archive:
        base = Path(tempfile.mkdtemp(prefix=f"wal-{kind}-", dir=tmp_path))
        gpg = ""
        recipients = ""
        if encrypted:
            home = make_gpg_home()
            gpg = f'[gpg]\nhome = "{home.path}"\n'
            recipients = f'"{home.fingerprint}"'
        if kind == "local":
            repo = base / "repo"
            repository = f'type = "local"\npath = "{repo}"'

            def stored() -> dict[str, bytes]:
                folder = repo / CLUSTER / "wal"
                if not folder.is_dir():
                    return {}
                return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        else:
            bucket = s3_server.create_bucket("drdeck-wal")
            buckets.append(bucket)
            repository = (f'type = "s3"\nbucket = "{bucket}"\nprefix = "{PREFIX}"\n'
                          f'endpoint_url = "{endpoint_url or s3_server.url}"\n'
                          f'region = "{s3_server.region}"')
            client = s3_server.client()
            wal = f"{PREFIX}/{CLUSTER}/wal/"

            def stored() -> dict[str, bytes]:
                listing = client.list_objects_v2(Bucket=bucket, Prefix=wal)
                return {item["Key"][len(wal):]: client.get_object(
                            Bucket=bucket, Key=item["Key"])["Body"].read()
                        for item in listing.get("Contents", ())}
        if compression is not None:
            repository += f'\ncompression = "{compression}"'
        config = base / "drdeck.toml"
        config.write_text(f"""[repositories.backups]
{repository}

{gpg}
[clusters.{CLUSTER}]
dsn = "host=/nonexistent dbname=app"
repository = "backups"
gpg_recipients = [{recipients}]
""")
        work = base / "data"
        work.mkdir()
        env = s3_server.environ() | {"NO_COLOR": "1"}
        env.pop("DRDECK_CONFIG", None)
        return Archive(kind, encrypted, compression != "none", config, work, env, stored,
                       outputs)

    yield make
    for bucket in buckets:
        s3_server.delete_bucket(bucket)


KINDS = [("local", False), ("local", True), ("s3", False), ("s3", True)]


@pytest.fixture(params=KINDS, ids=[f"{k}-{'gpg' if e else 'plain'}" for k, e in KINDS])
def archive(request: pytest.FixtureRequest, make_archive: Callable[..., Archive]) -> Archive:
    kind, encrypted = request.param
    return make_archive(kind, encrypted)


# --- push and fetch ----------------------------------------------------------------------


def test_push_then_fetch_gives_back_the_same_bytes(archive: Archive) -> None:
    name = segment_name(1)
    path, content = archive.wal_file(name)

    pushed = archive.push(path)

    assert pushed.returncode == 0, pushed.stderr
    stored = archive.stored()
    assert list(stored) == [archive.key(name)]
    plain_or_gpg(archive, stored[archive.key(name)], content)
    dest = archive.restored()
    fetched = archive.fetch(name, dest)
    assert fetched.returncode == 0, fetched.stderr
    assert dest.read_bytes() == content
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary left over


def test_pushing_the_same_file_twice_succeeds_and_keeps_one_object(archive: Archive) -> None:
    name = segment_name(2)
    path, content = archive.wal_file(name)
    assert archive.push(path).returncode == 0
    before = archive.stored()

    # PostgreSQL pushes a segment again when it crashed before recording the first push
    again = archive.push(path)
    copy, _ = archive.wal_file(name, content, folder="pg_wal_after_crash")
    and_again = archive.push(copy)

    assert again.returncode == 0, again.stderr
    assert and_again.returncode == 0, and_again.stderr
    assert archive.stored() == before  # one object, not rewritten
    assert len(before) == 1


def test_different_content_under_an_archived_name_fails_loudly(archive: Archive) -> None:
    name = segment_name(3)
    path, content = archive.wal_file(name)
    assert archive.push(path).returncode == 0
    before = archive.stored()
    other, _ = archive.wal_file(name, os.urandom(SEGMENT_BYTES), folder="other_cluster")

    refused = archive.push(other)

    assert refused.returncode != 0
    assert "DIFFERENT content" in refused.stderr and name in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert archive.stored() == before
    dest = archive.restored()
    assert archive.fetch(name, dest).returncode == 0
    assert dest.read_bytes() == content


HISTORY = b"1\t0/3000000\tno recovery target specified\n"
BACKUP_LABEL = (b"START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n"
                b"STOP WAL LOCATION: 0/4000100 (file 000000010000000000000004)\n")


@pytest.mark.parametrize("name, content", [
    ("00000002.history", HISTORY),
    (f"{segment_name(5)}.partial", None),
    (f"{segment_name(4)}.00000028.backup", BACKUP_LABEL),
], ids=["history", "partial", "backup"])
def test_history_partial_and_backup_files_are_archived_and_restored(
        archive: Archive, name: str, content: bytes | None) -> None:
    path, content = archive.wal_file(name, content)

    pushed = archive.push(path)

    assert pushed.returncode == 0, pushed.stderr
    assert list(archive.stored()) == [archive.key(name)]
    dest = archive.restored()
    fetched = archive.fetch(name, dest)
    assert fetched.returncode == 0, fetched.stderr
    assert dest.read_bytes() == content


def test_fetch_of_a_name_not_in_the_archive_exits_1_and_writes_nothing(
        archive: Archive) -> None:
    archive.pushed((segment_name(6), os.urandom(SEGMENT_BYTES)))
    dest = archive.restored()

    for name in (segment_name(7), "00000002.history"):
        fetched = archive.fetch(name, dest)
        assert fetched.returncode == NOT_FOUND, fetched.stderr
        assert "Traceback" not in fetched.stderr
        assert list(dest.parent.iterdir()) == []


# --- compression: smaller objects; every object written before it still restores ----------


def wal_like(size: int = SEGMENT_BYTES) -> bytes:
    """Bytes that compress as WAL does: records of repeated structure, some of them random."""
    record = b"\x00\x00\x01\x00heap insert rel 1663/5/16384 blk 0 off 7" + bytes(40)
    out = bytearray()
    while len(out) < size:
        out += record + os.urandom(8)
    return bytes(out[:size])


def test_wal_is_stored_compressed_and_fetched_whole(archive: Archive) -> None:
    name = segment_name(1)
    path, content = archive.wal_file(name, wal_like(SEGMENT_BYTES * 8))

    pushed = archive.drdeck("push", "--cluster", CLUSTER, "--verbose", str(path))

    assert pushed.returncode == 0, pushed.stderr
    assert "compressed" in pushed.stderr, pushed.stderr
    [(key, stored)] = archive.stored().items()
    assert key == f"{name}.zst" + (".gpg" if archive.encrypted else "")
    assert len(stored) < len(content) / 4, (len(stored), len(content))
    dest = archive.restored()
    fetched = archive.fetch(name, dest)
    assert fetched.returncode == 0, fetched.stderr
    assert dest.read_bytes() == content


@pytest.mark.parametrize("kind, encrypted", [("local", False), ("s3", True)],
                         ids=["local-plain", "s3-gpg"])
def test_wal_archived_before_compression_still_restores_and_is_not_archived_twice(
        make_archive: Callable[..., Archive], kind: str, encrypted: bool) -> None:
    archive = make_archive(kind, encrypted, compression="none")
    old = {segment_name(n): wal_like() for n in (1, 2)}
    archive.pushed(*old.items())
    before = archive.stored()
    assert sorted(before) == sorted(archive.key(name) for name in old)
    # the repository turns compression on (the default): the old objects stay as they are
    archive.config.write_text(archive.config.read_text().replace('compression = "none"\n', ""))
    archive.compressed = True
    new_name, new_content = segment_name(3), wal_like()

    again, _ = archive.wal_file(segment_name(2), old[segment_name(2)], folder="after_crash")
    assert archive.push(again).returncode == 0  # already archived, uncompressed
    archive.pushed((new_name, new_content))

    assert archive.stored().keys() == before.keys() | {archive.key(new_name)}
    dest = archive.restored()
    for name, content in [*old.items(), (new_name, new_content)]:
        fetched = archive.fetch(name, dest)
        assert fetched.returncode == 0, fetched.stderr
        assert dest.read_bytes() == content


@pytest.mark.parametrize("damage", ["cut short", "a changed byte", "bytes appended"])
def test_a_damaged_compressed_object_is_refused_as_unreadable(
        make_archive: Callable[..., Archive], damage: str) -> None:
    archive = make_archive("local", False)
    name = segment_name(1)
    archive.pushed((name, wal_like(SEGMENT_BYTES * 4)))
    [stored] = (archive.config.parent / "repo" / CLUSTER / "wal").iterdir()
    raw = stored.read_bytes()
    if damage == "cut short":
        raw = raw[:len(raw) // 2]
    elif damage == "a changed byte":
        raw = raw[:len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0x01]) + raw[len(raw) // 2 + 1:]
    else:
        raw += b"\x00" * 16
    stored.write_bytes(raw)
    dest = archive.restored()

    fetched = archive.fetch(name, dest)

    # fatal to recovery (above 125): never "not found", which would promote the server here
    assert fetched.returncode == UNREADABLE, fetched.stderr
    assert str(stored) in fetched.stderr and "not used" in fetched.stderr, fetched.stderr
    assert "Traceback" not in fetched.stderr
    assert not dest.exists()


# --- when the archive cannot be read: fatal, never "not found" ---------------------------


@pytest.mark.slow  # botocore tries the closed port several times before it gives up
def test_fetch_when_the_repository_is_unreachable_exits_126(
        make_archive: Callable[..., Archive]) -> None:
    port = free_port()  # nothing listens there: connections are refused
    archive = make_archive("s3", False, endpoint_url=f"http://127.0.0.1:{port}")
    dest = archive.restored()

    fetched = archive.fetch(segment_name(1), dest)

    assert fetched.returncode == UNREADABLE, fetched.stderr
    message = fetched.stderr
    assert segment_name(1) in message and f"127.0.0.1:{port}" in message, message
    assert "connection refused" in message, message
    assert "Traceback" not in message and "internal error" not in message
    assert not dest.exists()


@pytest.mark.parametrize("problem", ["missing file", "bad TOML", "unknown cluster"])
def test_a_configuration_error_is_fatal_to_recovery(
        make_archive: Callable[..., Archive], problem: str) -> None:
    archive = make_archive("local", False)
    archive.pushed((segment_name(1), os.urandom(SEGMENT_BYTES)))
    dest = archive.restored()
    cluster = CLUSTER
    if problem == "missing file":
        archive.config = archive.config.with_name("gone.toml")
        expected = "gone.toml"
    elif problem == "bad TOML":
        archive.config.write_text(archive.config.read_text() + "\n[clusters.prod\n")
        expected = f"{archive.config}:"
    else:
        cluster = "staging"
        expected = "staging"

    fetched = archive.drdeck("fetch", "--cluster", cluster, segment_name(1), str(dest))

    assert fetched.returncode == UNREADABLE, fetched.stderr
    assert expected in fetched.stderr, fetched.stderr
    assert "Traceback" not in fetched.stderr
    assert not dest.exists()


def test_a_destination_that_cannot_be_written_is_fatal_not_the_end_of_the_archive(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive("local", False)
    archive.pushed((segment_name(1), os.urandom(SEGMENT_BYTES)))
    dest = archive.work / "no-such-dir" / "RECOVERYXLOG"

    fetched = archive.fetch(segment_name(1), dest)

    # the archive has the segment: failing to deliver it is not "the end of the archive"
    assert fetched.returncode == UNREADABLE, fetched.stderr
    assert "internal error" not in fetched.stderr


# --- the spool and the prefetcher ---------------------------------------------------------


def spooled(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir() if not p.name.startswith(".")) \
        if spool.is_dir() else []


def prefetchers(spool: Path) -> list[int]:
    """Processes running `drdeck wal prefetch` (pgrep -f) for this spool."""
    found = subprocess.run(["pgrep", "-f", "wal prefetch"], capture_output=True, text=True,
                           check=False)
    mine = []
    for pid in found.stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"--spool" in argv and argv[argv.index(b"--spool") + 1:][:1] == [bytes(spool)]:
            mine.append(int(pid))
    return mine


def lock_is_free(spool: Path) -> bool:
    lock = spool / ".prefetch.lock"
    if not lock.exists():
        return True
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def wait_until(condition: Callable[[], Any], what: str, timeout: float = SPOOL_WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


@pytest.fixture
def spools() -> Iterator[list[Path]]:
    """Spools used by a test: any prefetcher still serving one is stopped afterwards."""
    used: list[Path] = []
    yield used
    for spool in used:
        for pid in prefetchers(spool):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        shutil.rmtree(spool, ignore_errors=True)


@pytest.mark.parametrize("kind, encrypted", [("local", False), ("s3", True)],
                         ids=["local-plain", "s3-gpg"])
def test_prefetch_fills_the_spool_ahead_and_recovery_takes_from_it(
        make_archive: Callable[..., Archive], spools: list[Path], kind: str,
        encrypted: bool) -> None:
    depth, last = 4, 10
    archive = make_archive(kind, encrypted)
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, last + 1)}
    archive.pushed(*segments.items())
    spool = archive.work / "spool"
    spools.append(spool)
    dest = archive.restored()
    options = ("--spool", str(spool), "--prefetch", str(depth))

    first = archive.fetch(segment_name(1), dest, *options)

    assert first.returncode == 0, first.stderr
    assert dest.read_bytes() == segments[segment_name(1)]
    ahead = [segment_name(n) for n in range(2, 2 + depth)]
    wait_until(lambda: spooled(spool) == ahead, f"the spool holding {ahead}")
    assert len(prefetchers(spool)) == 1
    for n in range(2, last + 1):
        name = segment_name(n)
        wait_until(lambda name=name: name in spooled(spool), f"{name} in the spool")
        assert len(spooled(spool)) <= depth  # never more than asked for
        fetched = archive.fetch(name, dest, *options)
        assert fetched.returncode == 0, fetched.stderr
        assert dest.read_bytes() == segments[name]
        assert name not in spooled(spool)  # moved from there: not fetched from the archive
    end = archive.fetch(segment_name(last + 1), dest, *options)

    assert end.returncode == NOT_FOUND, end.stderr
    assert spooled(spool) == []  # filled, then emptied by recovery
    wait_until(lambda: lock_is_free(spool) and not prefetchers(spool),
               "the prefetcher leaving at the end of the archive")
    assert spooled(spool) == []


def test_back_to_back_fetches_as_recovery_makes_them_leave_nothing_behind(
        make_archive: Callable[..., Archive], spools: list[Path]) -> None:
    last = 8
    archive = make_archive("s3", False)
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, last + 1)}
    archive.pushed(*segments.items())
    spool = archive.work / "spool"
    spools.append(spool)
    dest = archive.restored()
    options = ("--spool", str(spool), "--prefetch", "4")

    # PostgreSQL asks for the next segment as soon as it has replayed one: no pause
    for name, content in segments.items():
        fetched = archive.fetch(name, dest, *options)
        assert fetched.returncode == 0, fetched.stderr
        assert dest.read_bytes() == content
    assert archive.fetch(segment_name(last + 1), dest, *options).returncode == NOT_FOUND
    wait_until(lambda: lock_is_free(spool) and not prefetchers(spool),
               "the prefetcher leaving at the end of the archive")

    assert spooled(spool) == []


def test_a_spool_on_another_file_system_still_delivers(
        make_archive: Callable[..., Archive], spools: list[Path]) -> None:
    shm = Path("/dev/shm")
    archive = make_archive("local", False)
    if not shm.is_dir() or shm.stat().st_dev == archive.work.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary directory")
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, 4)}
    archive.pushed(*segments.items())
    spool = Path(tempfile.mkdtemp(prefix="drdeck-spool-", dir=shm))
    spools.append(spool)
    dest = archive.restored()
    options = ("--spool", str(spool), "--prefetch", "2")

    first = archive.fetch(segment_name(1), dest, *options)

    assert first.returncode == 0, first.stderr  # from the archive: the spool is empty
    assert dest.read_bytes() == segments[segment_name(1)]
    wait_until(lambda: segment_name(2) in spooled(spool), "the spool filling")
    second = archive.fetch(segment_name(2), dest, *options)
    assert second.returncode == 0, second.stderr  # from the spool
    assert dest.read_bytes() == segments[segment_name(2)]


# --- the feeder: how a guided PITR hands WAL to the server ---------------------------------


async def test_the_feeder_serves_a_segment_asked_for_again(tmp_path: Path) -> None:
    import asyncio

    from tui.storage import LocalStore
    from tui.wal.archive import push
    from tui.wal.feeder import WalFeeder, restore_command

    store = LocalStore(tmp_path / "repo")
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, 7)}
    for name, content in segments.items():
        (tmp_path / name).write_bytes(content)
        push(store, CLUSTER, tmp_path / name)
    spool, pg_wal = tmp_path / "spool", tmp_path / "pg_wal"
    pg_wal.mkdir()
    feeder = WalFeeder(store, CLUSTER, spool, gpg_home=None, encrypted_first=False, depth=4)
    feeder.prepare()
    command = restore_command(spool, wait_s=5)
    dest = pg_wal / "RECOVERYXLOG"

    async def restore(name: str) -> int:
        """restore_command as the server runs it: %f and %p replaced, through a shell."""
        dest.unlink(missing_ok=True)
        line = command.replace("%f", name).replace("%p", str(dest)).replace("%%", "%")
        proc = await asyncio.create_subprocess_shell(line, cwd=pg_wal)
        return await proc.wait()

    async def spooled_soon(name: str) -> None:
        for _ in range(500):
            if (spool / name).exists():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{name} never reached the spool")

    feeding = asyncio.ensure_future(feeder.run())
    try:
        last = segment_name(len(segments))
        for number, (name, content) in enumerate(segments.items(), start=1):
            if number > 1:
                await spooled_soon(name)  # the feeder is ahead, as it should be
            assert await restore(name) == 0
            assert dest.read_bytes() == content
        # the end of the archive, as PostgreSQL meets it: the next segment (asked twice),
        # then, after "redo done", the last segment once more
        assert await restore(segment_name(len(segments) + 1)) == NOT_FOUND
        assert await restore(segment_name(len(segments) + 1)) == NOT_FOUND

        again = await restore(last)

        assert again == 0
        assert dest.read_bytes() == segments[last]
    finally:
        feeding.cancel()
        await feeder.close()


async def test_the_feeder_survives_the_server_taking_a_file_before_it_is_handed_over(
        tmp_path: Path) -> None:
    import asyncio

    from tui.storage import LocalStore
    from tui.wal.archive import push
    from tui.wal.feeder import WalFeeder, restore_command

    class SlowToHandOver(WalFeeder):
        """Handing a file over to the server's account takes a while: restore_command, which
        polls for the .missing marker meanwhile, must still see it only once it is whole."""

        def _give(self, descriptor: int) -> None:
            time.sleep(0.2)
            super()._give(descriptor)

    store = LocalStore(tmp_path / "repo")
    content = os.urandom(SEGMENT_BYTES)
    (tmp_path / segment_name(1)).write_bytes(content)
    push(store, CLUSTER, tmp_path / segment_name(1))
    spool, pg_wal = tmp_path / "spool", tmp_path / "pg_wal"
    pg_wal.mkdir()
    feeder = SlowToHandOver(store, CLUSTER, spool, gpg_home=None, encrypted_first=False,
                            depth=4, owner=(os.getuid(), os.getgid()))
    feeder.prepare()
    command = restore_command(spool, wait_s=5)
    dest = pg_wal / "RECOVERYXLOG"

    async def restore(name: str) -> int:
        line = command.replace("%f", name).replace("%p", str(dest)).replace("%%", "%")
        proc = await asyncio.create_subprocess_shell(line, cwd=pg_wal)
        return await proc.wait()

    feeding = asyncio.ensure_future(feeder.run())
    try:
        # what PostgreSQL asks first when recovery_target_timeline is latest
        assert await restore("00000002.history") == NOT_FOUND
        await asyncio.sleep(0.2)

        assert not feeding.done(), f"the feeder stopped: {feeding.exception()!r}"
        assert await restore(segment_name(1)) == 0
        assert dest.read_bytes() == content
    finally:
        feeding.cancel()
        await feeder.close()


def test_restore_command_gives_up_at_once_when_the_spool_is_removed(tmp_path: Path) -> None:
    """What drdeck does when recovery fails: the server's startup process, waiting in
    restore_command, must not outlive it for the full wait (a start by hand would fail)."""
    from tui.wal.feeder import WANT, restore_command

    spool, pg_wal = tmp_path / "spool", tmp_path / "pg_wal"
    spool.mkdir()
    pg_wal.mkdir()
    name = segment_name(1)
    line = restore_command(spool, wait_s=60).replace("%f", name).replace(
        "%p", str(pg_wal / "RECOVERYXLOG")).replace("%%", "%")
    waiting = subprocess.Popen(line, shell=True, cwd=pg_wal, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + SPOOL_WAIT_S
        while not (spool / f"{WANT}{name}").exists():
            assert waiting.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()

        shutil.rmtree(spool)

        assert waiting.wait(timeout=SPOOL_WAIT_S) == UNREADABLE
        assert time.monotonic() - started < 5
        assert "drdeck stopped feeding WAL (the restore was stopped)" in waiting.stderr.read()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        if waiting.stderr:
            waiting.stderr.close()


def conf_string(setting: str) -> str:
    """The value of `name = '...'` as postgresql.conf reads it: '' and \\ undone."""
    quoted = setting.split(" = ", 1)[1]
    assert quoted.startswith("'") and quoted.endswith("'"), setting
    return re.sub(r"''|\\\\", lambda m: m.group()[0], quoted[1:-1])


def expand(line: str, name: str, dest: Path) -> str:
    """What PostgreSQL runs: %f, %p and %% replaced in one pass, left to right."""
    return re.sub(r"%[fp%]", lambda m: {"%f": name, "%p": str(dest), "%%": "%"}[m.group()],
                  line)


def test_the_printed_restore_command_moves_spooled_segments_without_starting_drdeck(
        make_archive: Callable[..., Archive], spools: list[Path]) -> None:
    """`drdeck wal restore-command --spool`: what an operator pastes into postgresql.conf,
    with a spool whose name holds what a shell or PostgreSQL would read as syntax."""
    last = 6
    archive = make_archive("s3", True)
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, last + 1)}
    archive.pushed(*segments.items())
    spool = archive.work / "it's 100%f $(touch pwned) `x` \\ spool"
    spools.append(spool)
    dest = archive.restored()
    printed = archive.drdeck("restore-command", "--cluster", CLUSTER, "--spool", str(spool),
                             "--prefetch", "3")
    assert printed.returncode == 0, printed.stderr
    line = conf_string(printed.stdout.strip())
    assert f"--config {archive.config} wal fetch --cluster {CLUSTER} --spool " in line

    def restore(name: str) -> subprocess.CompletedProcess[str]:
        """restore_command as the server runs it: expanded, through a shell."""
        return subprocess.run(["sh", "-c", expand(line, name, dest)], capture_output=True,
                              text=True, env=archive.env, cwd=archive.work, timeout=90,
                              check=False)

    first = restore(segment_name(1))  # nothing spooled: drdeck fetches, starts the prefetcher
    assert first.returncode == 0, first.stderr
    assert dest.read_bytes() == segments[segment_name(1)]
    for n in range(2, last + 1):
        name = segment_name(n)
        wait_until(lambda name=name: name in spooled(spool), f"{name} in the spool")
        taken = restore(name)
        assert taken.returncode == 0, taken.stderr
        assert dest.read_bytes() == segments[name]  # decrypted, whole
    # a `drdeck wal fetch` that serves from the spool notes it there; none ran for 2 to 6
    assert not (spool / ".last-requested").exists()
    assert restore(segment_name(last + 1)).returncode == NOT_FOUND
    assert not list(archive.work.rglob("pwned"))  # the name was never run as a command
    wait_until(lambda: lock_is_free(spool) and not prefetchers(spool),
               "the prefetcher leaving at the end of the archive")


def test_the_printed_restore_command_without_a_spool_is_the_plain_fetch(
        make_archive: Callable[..., Archive]) -> None:
    archive = make_archive("local", False)
    printed = archive.drdeck("restore-command")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip().endswith(
        f"--config {archive.config} wal fetch --cluster {CLUSTER} %f %p'")
    refused = archive.drdeck("restore-command", "--spool", "x", "--prefetch", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "drdeck: --prefetch must be 1 or more"


def test_a_spool_that_cannot_be_used_is_a_miss_not_the_end_of_the_archive(
        make_archive: Callable[..., Archive]) -> None:
    """Exit 1 would tell PostgreSQL the archive has no such file, and recovery would end
    there: a spool drdeck cannot use must not do that."""
    archive = make_archive("local", False)
    segments = {segment_name(n): os.urandom(SEGMENT_BYTES) for n in range(1, 3)}
    archive.pushed(*segments.items())
    blocker = archive.work / "not-a-directory"
    blocker.write_text("")
    dest = archive.restored()

    fetched = archive.fetch(segment_name(1), dest, "--spool", str(blocker / "spool"))

    assert fetched.returncode == 0, fetched.stderr
    assert dest.read_bytes() == segments[segment_name(1)]
    assert f"spool {blocker / 'spool'}: Not a directory" in fetched.stderr
    assert "Traceback" not in fetched.stderr
