"""No way to root: whoever can write the repository, or acts as the server's `postgres`
account, gets no file of root's through drdeck, which runs as root for a PITR, a restore
or a verification; nor, through a planted dump, a superuser's powers on the server that a
full verification restores it into.

Each attack is the real one: a forged manifest in a real local repository and in an S3
repository (moto over HTTP), a base backup that is a real tar holding symbolic links, a
spool and a repository where `postgres` itself (runuser) plants links and WAL requests.
Each test asserts the refusal the operator reads, and that a root-only file beside the
attack keeps its bytes, owner and mode, with nothing new next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.catalog.layout import dump_key, manifest_key
from tui.postgres.cluster import LocalCluster, free_port
from tui.storage import LocalStore
from tui.storage.base import StorageError
from tui.storage.s3 import S3Store

from backup_support import local_repository, s3_repository
from cli_support import drdeck, json_events
from crash_support import processes
from harness.postgres import ScratchCluster, start_on_a_free_port
from repo_support import fake_snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="acts as root and as the server's postgres account")

SERVER = pwd.getpwnam("postgres")
CLUSTER, DATABASE = "prod", "app"
TAKEN = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


@dataclass
class Sentinel:
    """A root-only file, 0600, in a directory the postgres account can reach."""

    path: Path
    content: bytes

    @property
    def folder(self) -> Path:
        return self.path.parent

    def assert_untouched(self) -> None:
        info = os.lstat(self.path)
        assert stat.S_ISREG(info.st_mode)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
        assert self.path.read_bytes() == self.content
        assert sorted(p.name for p in self.folder.iterdir()) == [self.path.name]
        assert os.lstat(self.folder).st_uid == 0


@pytest.fixture
def sentinel() -> Iterator[Sentinel]:
    folder = Path(tempfile.mkdtemp(prefix="drdeck-root-"))
    folder.chmod(0o755)
    path = folder / "shadow"
    content = b"root:$6$not-for-postgres:19000:0:99999:7:::\n"
    path.write_bytes(content)
    path.chmod(0o600)
    try:
        yield Sentinel(path, content)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every account can reach (pytest's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="drdeck-nwr-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def as_server(*argv: str) -> None:
    """Run `argv` as the postgres OS user, as an attacker holding that account would."""
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True)


def server_dir(path: Path) -> Path:
    path.mkdir(mode=0o750, parents=True)
    os.chown(path, SERVER.pw_uid, SERVER.pw_gid)
    return path


def write_config(path: Path, repository: str, recipients: list[str] | None = None,
                 gpg_home: Path | None = None) -> Path:
    gpg = f'[gpg]\nhome = "{gpg_home}"\n\n' if gpg_home else ""
    listed = ", ".join(f'"{r}"' for r in recipients or [])
    path.write_text(f"""{repository}

{gpg}[clusters.{CLUSTER}]
dsn = "host=/nonexistent dbname={DATABASE}"
repository = "backups"
databases = ["{DATABASE}"]
gpg_recipients = [{listed}]
""")
    path.chmod(0o644)
    return path


def run(config: Path, state: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                        list[dict]]:
    proc = drdeck("--config", str(config), "run", *args, "--yes", "--json", state_dir=state)
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc, json_events(proc.stdout) if proc.stdout.strip() else []


def failure(events: list[dict]) -> str:
    return next(e["error"] for e in events if e["event"] == "step_finished" and e["error"])


# --- 1. manifest fields that would become local paths -------------------------------------


@pytest.fixture(params=["local", "s3"])
def repository(request, shared: Path) -> Iterator[tuple[str, object]]:
    """(drdeck.toml's repository section, a store on it) for a local directory owned by the
    server's account, or a bucket on moto's S3 server."""
    if request.param == "local":
        repo = server_dir(shared / "repo")
        yield local_repository(repo), LocalStore(repo)
        return
    endpoint = request.getfixturevalue("s3_env")  # this process and drdeck's point at moto
    bucket = request.getfixturevalue("s3_bucket")
    yield s3_repository(endpoint, bucket), S3Store(bucket, prefix="pg", endpoint_url=endpoint.url,
                                                   region=endpoint.region)


def forge(store, stamp: str, fields: dict[str, object]) -> None:
    key = manifest_key(CLUSTER, DATABASE, stamp)
    data = json.loads(store.read_bytes(key))
    data.update(fields)
    store.write_bytes(key, json.dumps(data).encode())


@pytest.mark.parametrize("field, value", [
    ("database", "@/x"),  # the folder of the root-only file: the dump's would-be path
    ("database", "../../../../../../../../tmp/x"),
    ("stamp", "../../../x"),
    ("cluster", "other"),
    ("object", "prod/snapshots/other/20261130T030000Z.dump"),
])
def test_a_manifest_that_is_not_what_its_key_says_is_refused_as_forged(
        repository, sentinel: Sentinel, shared: Path, tmp_path: Path, field: str,
        value: str) -> None:
    section, store = repository
    stamp = fake_snapshot(store, CLUSTER, DATABASE, TAKEN, encrypted=False)
    value = value.replace("@", str(sentinel.folder))
    forge(store, stamp, {field: value})
    if field == "database":  # where the forged dump would land, a link to the root-only file
        os.symlink(sentinel.path, sentinel.folder / f"x-{stamp}.dump.partial")
    config = write_config(shared / "drdeck.toml", section)

    proc, events = run(config, tmp_path / "state", "verify-backup", "-p", "full=false")

    assert proc.returncode == 1
    assert f"refused as forged: its {field} {value!r} is not the" in failure(events)
    if field == "database":
        (sentinel.folder / f"x-{stamp}.dump.partial").unlink()
    sentinel.assert_untouched()
    assert not Path("/tmp/x").exists()


def test_an_unencrypted_snapshot_is_refused_where_the_cluster_encrypts(
        repository, gpg_home, shared: Path, tmp_path: Path) -> None:
    section, store = repository
    older = fake_snapshot(store, CLUSTER, DATABASE, TAKEN - timedelta(days=1), encrypted=True)
    newest = fake_snapshot(store, CLUSTER, DATABASE, TAKEN, encrypted=False)
    config = write_config(shared / "drdeck.toml", section, [gpg_home.fingerprint],
                          gpg_home.path)

    for ref in ("latest", newest):
        proc, events = run(config, tmp_path / "state", "verify-backup", "-p", "full=false",
                           "-p", f"snapshot={ref}")

        assert proc.returncode == 1
        error = failure(events)
        assert (f"snapshot {newest} of {DATABASE} is stored unencrypted, but cluster "
                f"'{CLUSTER}' encrypts its snapshots (gpg_recipients)") in error
        assert "anyone who can write the repository could have put it there" in error
        if ref == "latest":
            assert f"-p snapshot={older}" in error


# --- where the fetched dump and the verification record are written -----------------------


FETCH_TO = """[runbook]
name = "fetch-to"
title = "Fetch a snapshot to a chosen path"

[params.path]
type = "string"

[[steps]]
id = "fetch"
title = "Fetch"
action = "snapshot.fetch"
with = {{ cluster = "{cluster}", database = "{database}", path = "${{path}}" }}
"""


def test_a_fetch_writes_through_no_link_planted_where_the_dump_goes(
        sentinel: Sentinel, shared: Path, tmp_path: Path) -> None:
    """The runbook names a directory the server's account can write: postgres plants links
    at the dump's name and at its partial name, to the root-only file."""
    repo = server_dir(shared / "repo")
    store = LocalStore(repo)
    stamp = fake_snapshot(store, CLUSTER, DATABASE, TAKEN, encrypted=False)
    drop = server_dir(shared / "drop")
    drop.chmod(0o755)
    dest = drop / "app.dump"
    as_server("ln", "-s", str(sentinel.path), str(dest))
    as_server("ln", "-s", str(sentinel.path), f"{dest}.partial")
    runbook = shared / "fetch-to.toml"
    runbook.write_text(FETCH_TO.format(cluster=CLUSTER, database=DATABASE))
    runbook.chmod(0o644)
    config = write_config(shared / "drdeck.toml", local_repository(repo))

    proc, _ = run(config, tmp_path / "state", str(runbook), "-p", f"path={dest}")

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    sentinel.assert_untouched()
    info = os.lstat(dest)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert dest.read_bytes() == store.read_bytes(dump_key(CLUSTER, DATABASE, stamp, False))
    assert sorted(p.name for p in drop.iterdir()) == ["app.dump"]


def test_a_verification_record_is_written_through_no_link(sentinel: Sentinel, shared: Path,
                                                          tmp_path: Path) -> None:
    repo = server_dir(shared / "repo")
    store = LocalStore(repo)
    stamp = fake_snapshot(store, CLUSTER, DATABASE, TAKEN, encrypted=False)
    folder = repo / CLUSTER / "snapshots" / DATABASE
    as_server("ln", "-s", str(sentinel.folder), str(folder / f"{stamp}.verified"))
    config = write_config(shared / "drdeck.toml", local_repository(repo))

    proc, events = run(config, tmp_path / "state", "verify-backup", "-p", "full=false")

    assert proc.returncode == 1
    assert (f"refusing to write through {folder / f'{stamp}.verified'}: it is a symbolic "
            "link inside the repository") in failure(events)
    sentinel.assert_untouched()


# --- 3. the local store: no link below the root is followed ------------------------------


def test_the_local_store_reads_and_deletes_through_no_link(sentinel: Sentinel,
                                                           shared: Path) -> None:
    repo = server_dir(shared / "repo")
    store = LocalStore(repo)
    store.write_bytes("prod/wal/000000010000000000000001", b"a segment")
    elsewhere = server_dir(shared / "elsewhere")
    as_server("cp", "-p", str(repo / "prod/wal/000000010000000000000001"),
              str(elsewhere / "000000010000000000000001"))
    wal = repo / "prod" / "wal"
    as_server("ln", "-s", str(sentinel.path), str(wal / "000000010000000000000002"))
    as_server("mkfifo", str(wal / "000000010000000000000003"))
    as_server("ln", "-s", str(elsewhere), str(repo / "prod" / "snapshots"))

    for key, what in (("prod/wal/000000010000000000000002", "a symbolic link"),
                      ("prod/snapshots/000000010000000000000001", "a symbolic link"),
                      ("prod/wal/000000010000000000000003", "a FIFO")):
        with pytest.raises(StorageError, match=rf"refusing to read .*: it is {what} inside "
                                               r"the repository"):
            store.read_bytes(key)
        with pytest.raises(StorageError, match="refusing to read"):
            b"".join(store.iter_chunks(key))
    with pytest.raises(StorageError, match=r"refusing to read .*: it is a symbolic link"):
        store.stat("prod/wal/000000010000000000000002")
    assert [o.key for o in store.list("prod/")] == ["prod/wal/000000010000000000000001"]
    with pytest.raises(StorageError, match=r"refusing to delete .*snapshots: it is a "
                                           r"symbolic link"):
        store.delete("prod/snapshots/000000010000000000000001")
    assert (elsewhere / "000000010000000000000001").read_bytes() == b"a segment"
    store.delete("prod/wal/000000010000000000000002")  # the link goes, not what it names
    assert not os.path.lexists(wal / "000000010000000000000002")
    sentinel.assert_untouched()


def test_wal_fetch_as_root_reads_no_link_in_the_archive(sentinel: Sentinel, shared: Path,
                                                        tmp_path: Path) -> None:
    repo = server_dir(shared / "repo")
    LocalStore(repo).write_bytes("prod/wal/000000010000000000000001", b"a segment")
    as_server("ln", "-s", str(sentinel.path), str(repo / "prod/wal/000000010000000000000002"))
    config = write_config(shared / "drdeck.toml", local_repository(repo))
    dest = tmp_path / "RECOVERYXLOG"

    proc = drdeck("--config", str(config), "wal", "fetch", "--cluster", CLUSTER,
                  "000000010000000000000002", str(dest), state_dir=tmp_path / "state")

    assert proc.returncode != 0
    assert "it is a symbolic link inside the repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not dest.exists()
    sentinel.assert_untouched()


# --- 3. the WAL feeder and the spool the server's account owns ----------------------------


class Told:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def output(self, line: str, stream: str = "stdout") -> None:
        self.lines.append(line)


SEGMENTS = {f"0000000100000000000000{n:02X}": os.urandom(4096) for n in (3, 4)}
ABSENT = "000000010000000000000009"


async def feed_until(feeder, spool: Path, wanted: list[str], timeout: float = 10) -> None:
    from tui.wal.feeder import WANT

    feeding = asyncio.ensure_future(feeder.run())
    try:
        deadline = time.monotonic() + timeout
        while any(os.path.lexists(spool / f"{WANT}{name}") for name in wanted):
            assert not feeding.done(), feeding.exception()
            assert time.monotonic() < deadline, sorted(os.listdir(spool))
            await asyncio.sleep(0.02)
    finally:
        feeding.cancel()
        await feeder.close()


def test_the_feeder_serves_only_wal_names_and_follows_no_link(sentinel: Sentinel,
                                                              shared: Path) -> None:
    from tui.wal.archive import wal_key
    from tui.wal.feeder import MISSING, WANT, WalFeeder

    repo = server_dir(shared / "repo")
    store = LocalStore(repo)
    for name, content in SEGMENTS.items():
        store.write_bytes(wal_key(CLUSTER, name, False), content)
    data_dir = server_dir(shared / "data")
    spool = data_dir / "drdeck.spool"
    told = Told()
    feeder = WalFeeder(store, CLUSTER, spool, gpg_home=None, encrypted_first=False,
                       owner=(SERVER.pw_uid, SERVER.pw_gid), reporter=told, depth=1)
    feeder.prepare()
    first, second = SEGMENTS
    # what the server's account plants: links where the feeder makes its hidden files and
    # where it delivers, a link under a served name, and requests for names of its choosing
    for link in (f".marking.{ABSENT}", f".fetching.{first}", second, f".marking.{second}"):
        as_server("ln", "-s", str(sentinel.path), str(spool / link))
    wanted = [ABSENT, first, second, "postgresql.conf", "..", "evil name"]
    for name in wanted:
        as_server("touch", str(spool / f"{WANT}{name}"))

    asyncio.run(feed_until(feeder, spool, wanted))

    sentinel.assert_untouched()
    for name, content in SEGMENTS.items():
        info = os.lstat(spool / name)
        assert stat.S_ISREG(info.st_mode) and info.st_uid == SERVER.pw_uid
        assert (spool / name).read_bytes() == content
    assert stat.S_ISREG(os.lstat(spool / f"{ABSENT}{MISSING}").st_mode)
    delivered = {p.name for p in spool.iterdir() if not p.name.startswith(".")}
    assert delivered == {first, second, f"{ABSENT}{MISSING}"}
    for name in ("postgresql.conf", "..", "evil name"):
        assert any(f"ignored a request for {name!r}" in line for line in told.lines), told.lines


def test_the_feeder_refuses_a_spool_that_is_already_there(sentinel: Sentinel,
                                                          shared: Path) -> None:
    from tui.wal.feeder import SpoolRefused, WalFeeder

    data_dir = server_dir(shared / "data")
    spool = data_dir / "drdeck.spool"
    as_server("ln", "-s", str(sentinel.folder), str(spool))
    feeder = WalFeeder(LocalStore(shared / "repo"), CLUSTER, spool, gpg_home=None,
                       encrypted_first=False, owner=(SERVER.pw_uid, SERVER.pw_gid))

    with pytest.raises(SpoolRefused, match="it already exists"):
        feeder.prepare()
    sentinel.assert_untouched()


# --- 2. a base backup holding links where drdeck writes -------------------------------------


def base_backup_holding(store, members: dict[str, str | bytes]) -> str:
    """A base backup in `store` whose tar holds `members` (bytes: a file, text: a symbolic
    link to it) beside PG_VERSION, with WAL after it; its stamp."""
    from tui.pitr.basebackup import BaseManifest, base_manifest_key, base_object_key
    from tui.wal.archive import wal_key
    from tui.wal.names import Segment, format_lsn

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, what in {"PG_VERSION": b"15\n", **members}.items():
            info = tarfile.TarInfo(name)
            if isinstance(what, str):
                info.type, info.linkname = tarfile.SYMTYPE, what
                tar.addfile(info)
            else:
                info.size = len(what)
                tar.addfile(info, io.BytesIO(what))
    payload = buffer.getvalue()
    stopped = TAKEN
    stamp = "20261130T025700Z"
    key = base_object_key(CLUSTER, stamp, False)
    store.write_bytes(key, payload)
    first = Segment(1, 2, 1 << 20)
    digest = hashlib.sha256(payload).hexdigest()
    store.write_bytes(base_manifest_key(CLUSTER, stamp), BaseManifest(
        cluster=CLUSTER, stamp=stamp, object=key,
        started_at=(stopped - timedelta(minutes=3)).isoformat(), stopped_at=stopped.isoformat(),
        start_lsn=format_lsn(first.start_lsn + 0x28), stop_lsn=format_lsn(first.start_lsn + 0x138),
        timeline=1, system_identifier="7312345678901234567", server_version="15.18",
        wal_segment_size=1 << 20, encrypted=False, recipients=(),
        plaintext_size=len(payload), stored_size=len(payload), sha256_stored=digest,
        sha256_plaintext=digest).to_json())
    segment = first
    for _ in range(3):
        store.write_bytes(wal_key(CLUSTER, segment.name, False), b"not really WAL")
        segment = segment.next()
    return stamp


@pytest.mark.parametrize("name, link", [
    ("recovery.signal", "@"),  # chowned to postgres, as it was
    ("postgresql.auto.conf", "@"),  # appended to as root
    ("standby.signal", "@"),
    ("drdeck-recovery.log", "@.new"),  # made by root, then given to postgres
    ("drdeck.spool", "@/.."),  # a directory given to postgres, then written into
])
def test_a_base_backup_with_a_link_where_drdeck_writes_is_refused(
        sentinel: Sentinel, shared: Path, tmp_path: Path, name: str, link: str) -> None:
    repo = server_dir(shared / "repo")
    target = link.replace("@/..", str(sentinel.folder)).replace("@", str(sentinel.path))
    base_backup_holding(LocalStore(repo), {name: target})
    config = write_config(shared / "drdeck.toml", local_repository(repo))
    data_dir = shared / "restored"

    proc, events = run(config, tmp_path / "state", "pitr-restore", "-p", "target=immediate",
                       "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}")

    assert proc.returncode == 1, proc.stdout[-3000:]
    error = failure(events)
    assert (f"the base backup holds {name} as a symbolic link to {target!r}, which "
            "pg_basebackup never makes") in error
    assert "the data directory was emptied again" in error
    assert list(data_dir.iterdir()) == []
    sentinel.assert_untouched()


def test_a_spool_the_source_left_in_its_base_backup_is_made_new(shared: Path) -> None:
    """A data directory restored by drdeck before, then promoted and backed up, carries the
    spool's leftovers: not an attack, and not fed to the new recovery either."""
    from tui.pitr.restore import refuse_planted

    data_dir = shared / "data"
    (data_dir / "drdeck.spool").mkdir(parents=True)
    (data_dir / "drdeck.spool" / "000000010000000000000007").write_bytes(b"stale")
    (data_dir / "drdeck-recovery.log").write_text("an old recovery\n")

    refuse_planted(data_dir, "base.tar")

    assert sorted(p.name for p in data_dir.iterdir()) == ["drdeck-recovery.log"]


def test_drdeck_writes_no_data_directory_file_through_a_link(sentinel: Sentinel,
                                                             shared: Path) -> None:
    """What the server's account can do at any time once the data directory is its own:
    put a link where drdeck appends its settings, or among the files root hands over."""
    from tui.errors import DrdeckError

    data_dir = server_dir(shared / "data")
    data_dir.chmod(0o700)
    as_server("ln", "-s", str(sentinel.path), str(data_dir / "postgresql.auto.conf"))
    as_server("ln", "-s", str(sentinel.path), str(data_dir / "pg_hba.conf"))
    as_server("mkdir", str(data_dir / "base"))
    as_server("ln", "-s", str(sentinel.folder), str(data_dir / "base" / "1"))
    cluster = LocalCluster(data_dir, free_port(), data_dir, data_dir / "drdeck-recovery.log")

    with pytest.raises(DrdeckError, match=r"refusing to write .*postgresql\.auto\.conf: it "
                                          r"is a symbolic link"):
        cluster.configure(restore_command="true")
    cluster.give_data_dir_to_server()

    sentinel.assert_untouched()
    assert os.lstat(data_dir / "pg_hba.conf").st_uid == SERVER.pw_uid  # the link itself


def test_a_data_directory_the_server_account_swaps_for_a_link_is_refused(
        shared: Path, tmp_path: Path) -> None:
    """Restoring under a directory the postgres account owns (its home, say): it can put a
    link where the new data directory is to be, to an empty directory of root's."""
    repo = server_dir(shared / "repo")
    base_backup_holding(LocalStore(repo), {})
    config = write_config(shared / "drdeck.toml", local_repository(repo))
    roots = Path(tempfile.mkdtemp(prefix="drdeck-root-empty-"))
    try:
        roots.chmod(0o755)
        data_dir = server_dir(shared / "home") / "restored"
        as_server("ln", "-s", str(roots), str(data_dir))

        proc, events = run(config, tmp_path / "state", "pitr-restore", "-p",
                           "target=immediate", "-p", f"data_dir={data_dir}", "-p",
                           f"port={free_port()}")

        assert proc.returncode == 1
        assert f"{data_dir} is a symbolic link: drdeck restores only into a real directory" \
            in failure(events)
        info = os.lstat(roots)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
        assert list(roots.iterdir()) == []
    finally:
        shutil.rmtree(roots, ignore_errors=True)


# --- 4. a dump is repository content: restored for a test, it gets no superuser ------------


@pytest.fixture(scope="module")
def verify_server() -> Iterator[ScratchCluster]:
    """A cluster that asks for passwords (scram-sha-256), so the throwaway role really logs
    in with its own; the configured DSN names the superuser."""
    cluster = ScratchCluster.in_temp_directory(prefix="pg")
    try:
        cluster.init(auth="scram-sha-256", password=f"pw-{secrets.token_hex(6)}",
                     no_sync=True)
        start_on_a_free_port(cluster)
        yield cluster
    finally:
        try:
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)


def leftovers(cluster: ScratchCluster) -> list[tuple[str, str]]:
    return cluster.execute("select 'role', rolname from pg_roles where rolname like "
                           "'drdeck\\_verify%' union all select 'database', datname from "
                           "pg_database where datname like 'drdeck\\_verify%'")


class RestoreWatcher(threading.Thread):
    """Reads the command line and environment of every pg_restore that restores into the
    server on `port`, until stopped: the throwaway role's password is in the environment
    of that one alone. Other tests' restores, running beside this one, are not its own."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self._port = str(port).encode()
        self.seen: dict[bytes, set[bytes]] = {}  # command line -> its PGPASSWORDs
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid, (line, _) in processes().items():
                if os.path.basename(line.split(b"\0", 1)[0]) != b"pg_restore" \
                        or b"--dbname=" not in line or self._port not in line:
                    continue
                with contextlib.suppress(OSError):
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                    if not environ:  # exiting
                        continue
                    self.seen.setdefault(line, set()).add(next(
                        (v[len(b"PGPASSWORD="):] for v in environ.split(b"\0")
                         if v.startswith(b"PGPASSWORD=")), b""))
            time.sleep(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def test_a_full_verification_restores_a_planted_dump_as_no_superuser(
        verify_server: ScratchCluster, shared: Path, tmp_path: Path) -> None:
    """A real snapshot whose dump holds an expression index over a plpgsql function that
    says it is IMMUTABLE and runs `COPY ... TO PROGRAM`: building the index calls it on
    every row, so restoring the dump as a superuser runs the program on the server."""
    cluster = verify_server
    marker = server_dir(shared / "drop") / "pwned"
    cluster.execute("create database app")
    cluster.execute(f"""
        create function public.lying(x int) returns int language plpgsql immutable
            as $$ begin return x; end $$;
        create table public.orders (id int);
        insert into public.orders values (1);
        create index on public.orders (public.lying(id));
        -- replaced once its index is built: the program runs on a restore, not here
        create function public.planted(x int) returns int language plpgsql volatile as $$
        begin
            perform pg_sleep(0.3);  -- time enough to read pg_restore's environment
            execute 'copy (select 1) to program ''touch {marker}''';
            return x;
        end $$;
        create or replace function public.lying(x int) returns int language plpgsql
            immutable as $$ begin return public.planted(x); end $$;
    """, dbname="app")
    repo = server_dir(shared / "repo")
    config = shared / "drdeck.toml"
    config.write_text(f"""{local_repository(repo)}

[clusters.{CLUSTER}]
dsn_env = "DATABASE_URL"
repository = "backups"
databases = ["app"]
gpg_recipients = []
""")
    env = {"DATABASE_URL": cluster.dsn("app")}
    state = tmp_path / "state"
    backup = drdeck("--config", str(config), "run", "snapshot-backup", "-p", "encrypt=false",
                    "--json", state_dir=state, **env)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
    assert not marker.exists()

    watcher = RestoreWatcher(cluster.port)
    watcher.start()
    try:
        proc = drdeck("--config", str(config), "run", "verify-backup", "-p", "full=true",
                      "--yes", "--json", state_dir=state, **env)
    finally:
        watcher.stop()

    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    [check] = [e for e in json_events(proc.stdout) if e["event"] == "check"]
    assert not check["ok"] and "to COPY to or from an external program" in check["detail"]
    assert not marker.exists()
    assert not list(marker.parent.iterdir())
    assert leftovers(cluster) == []
    # pg_restore logged in as the throwaway role, its password in PGPASSWORD alone
    [(line, [password])] = [(line, list(found)) for line, found in watcher.seen.items()]
    assert b"user=drdeck_verify_" in line and b"password" not in line.lower(), line
    assert len(password) >= 24 and password.decode() not in cluster.dsn()
    assert password.decode() not in proc.stdout + proc.stderr
    for path in [*state.rglob("*"), *repo.rglob("*")]:
        if path.is_file():
            assert password not in path.read_bytes(), path


def test_the_verification_role_holds_nothing_and_leaves_nothing(
        verify_server: ScratchCluster) -> None:
    from tui.postgres.throwaway_role import (
        ThrowawayRoleFailed,
        scratch_database_as_throwaway_role,
    )

    cluster = verify_server
    dsn = cluster.dsn()

    async def use(body) -> str:
        async with scratch_database_as_throwaway_role(dsn, "drdeck_verify_probe",
                                                      connections=3) as role:
            return await body(role)

    async def look(role) -> str:
        import psycopg

        async with await psycopg.AsyncConnection.connect(role.dsn, autocommit=True) as conn:
            await conn.execute("create table public.t (x int)")  # the restore can create
            row = await (await conn.execute("""
                select current_user, r.rolsuper, r.rolcreatedb, r.rolcreaterole,
                       r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                       r.rolvaliduntil < now() + interval '61 minutes',
                       (select count(*) from pg_auth_members m where m.member = r.oid),
                       (select pg_get_userbyid(datdba) from pg_database
                        where datname = current_database())
                from pg_roles r where r.rolname = current_user""")).fetchone()
        assert row[0] == role.name and role.name.startswith("drdeck_verify_probe_")
        assert row[1:] == (False, False, False, False, False, 3, True, 0, role.name)
        assert role.dsn not in repr(role)
        return role.name

    asyncio.run(use(look))
    assert leftovers(cluster) == []

    async def cancelled(when: str) -> None:
        restoring = asyncio.Event()

        async def wait(role) -> None:
            restoring.set()
            await asyncio.sleep(60)

        task = asyncio.ensure_future(use(wait))
        if when == "restoring":
            await restoring.wait()
        while not leftovers(cluster):  # "made": as soon as the role exists
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for when in ("made", "restoring"):
        asyncio.run(cancelled(when))
        assert leftovers(cluster) == [], when

    hba = cluster.data_dir / "pg_hba.conf"
    kept = hba.read_text()
    try:
        # what a server with only its own account's logins allowed looks like
        hba.write_text("local all postgres scram-sha-256\n"
                       "host all postgres 127.0.0.1/32 scram-sha-256\n")
        reload(cluster)
        with pytest.raises(ThrowawayRoleFailed) as refused:
            asyncio.run(use(look))
    finally:
        hba.write_text(kept)
        reload(cluster)
    message = str(refused.value)
    assert message.startswith("full verification restores as a throwaway unprivileged "
                              "role (drdeck_verify_probe_")
    assert "which could not log in: " in message and "no pg_hba.conf entry" in message
    assert "allow password login for it in pg_hba.conf" in message
    assert "or give target_dsn a host=127.0.0.1 connection" in message
    assert leftovers(cluster) == []


def reload(cluster: ScratchCluster) -> None:
    """pg_ctl reload only signals: wait until new sessions start with the new files."""
    before = cluster.scalar("select pg_conf_load_time()")
    cluster.reload()
    deadline = time.monotonic() + 10
    while cluster.scalar("select pg_conf_load_time()") == before:
        assert time.monotonic() < deadline, "the server did not reload"
        time.sleep(0.02)
