"""Barman Cloud end to end: a real cluster archiving through barman-cloud-wal-archive
into moto's S3, a base backup by barman-cloud-backup, a little pgbench load; then what
drdeck reads from the object store: the backup, the WAL archive, the window and its
gaps, and a bad backup.info among good ones."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tui.pitr.window import Gap
from tui.postgres.access import let_server_account_run_drdeck
from tui.postgres.binaries import pg_bin
from tui.sources.barman_cloud import (
    CONSISTENCY_MARGIN,
    END_BACKUP,
    END_COMMIT,
    BarmanCloudError,
    ObjectStorePicture,
    WalUnreadable,
    decompress,
    inventory,
    read_object_store,
)
from tui.wal.names import Segment, parse_lsn

from barman_support import BarmanCloud, missing_reason
from harness.s3 import S3Endpoint
from pitr_support import wait_archived

needs_barman = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
MiB = 1 << 20


@dataclass
class World:
    barman: BarmanCloud
    backup_id: str
    load_segments: list[str]  # archived after the backup, one per load
    last_commit: datetime

    def read(self, store: BarmanCloud | None = None) -> ObjectStorePicture:
        store = store or self.barman
        return read_object_store(store.destination, store.server_name,
                                 endpoint_url=store.endpoint.url, region=store.endpoint.region)

    def postgres_backup_record(self) -> dict[str, tuple[int, str]]:
        """START and STOP WAL LOCATION from PostgreSQL's own backup history file."""
        (key,) = [k for k in self.barman.object_keys() if k.endswith(".backup.gz")]
        text = gzip.decompress(self.barman.read(key)).decode()
        return {which: (parse_lsn(lsn), name) for which, lsn, name in re.findall(
            r"(START|STOP) WAL LOCATION: (\S+) \(file (\w+)\)", text)}


@pytest.fixture(scope="module")
def reader_env(s3_server: S3Endpoint) -> Iterator[None]:
    """drdeck takes its S3 credentials from the AWS chain: here, the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.startswith("AWS_")]:
            patch.delenv(key)
        for key, value in s3_server.env().items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def world(s3_server: S3Endpoint, reader_env: None) -> Iterator[World]:
    from harness.postgres import scratch_cluster

    let_server_account_run_drdeck()  # the server account runs barman-cloud's interpreter
    barman = BarmanCloud(s3_server, s3_server.create_bucket())
    try:
        # autovacuum off: no commit but pgbench's, so the last archived commit is known
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on", archive_command="/bin/true",
                             track_commit_timestamp="on", autovacuum="off") as cluster:
            subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn()],
                           check=True, capture_output=True)
            # pgbench's initial WAL is thrown away: a store whose archive begins with its
            # first backup, and a dozen fewer barman-cloud-wal-archive runs (~1 s each)
            wait_archived(cluster)
            barman.start_archiving(cluster)
            backup_id = barman.backup(cluster, "--gzip", "--name", "nightly")
            load_segments = []
            for _ in range(2):
                subprocess.run([pg_bin("pgbench"), "-n", "-t", "10", cluster.dsn()],
                               check=True, capture_output=True)
                load_segments.append(wait_archived(cluster))
            last_commit = cluster.scalar(
                "select max(pg_xact_commit_timestamp(xmin)) from pgbench_history")
            yield World(barman, backup_id, load_segments, last_commit)
    finally:
        s3_server.delete_bucket(barman.bucket)


@pytest.mark.slow
@needs_barman
def test_the_backup_is_listed_with_its_wal_and_status(world: World) -> None:
    picture = world.read()
    (backup,) = picture.backups
    assert picture.unreadable == []
    recorded = world.postgres_backup_record()
    assert (backup.backup_id, backup.name, backup.status) == (world.backup_id, "nightly", "DONE")
    assert (backup.begin_lsn, backup.begin_wal) == recorded["START"]
    assert (backup.end_lsn, backup.end_wal) == recorded["STOP"]
    assert (backup.timeline, backup.wal_segment_size, backup.version // 10000) == (1, MiB, 15)
    assert backup.compression == "gzip"
    assert backup.begin_time < backup.end_time
    assert backup.size > 20 * MiB > backup.stored_size > 0  # pgbench's data, gzipped
    assert picture.problem_of(backup) is None


@pytest.mark.slow
@needs_barman
def test_the_window_runs_from_the_backup_to_the_last_commit(world: World) -> None:
    picture = world.read()
    (backup,) = picture.backups
    (window,) = picture.recovery.windows
    assert window.start == backup.end_time + CONSISTENCY_MARGIN
    assert abs(window.end - world.last_commit) < timedelta(seconds=1)
    assert window.last_segment == world.load_segments[-1]
    assert picture.end_is[window.last_segment] == END_COMMIT
    assert window.ended_by is None and picture.recovery.gaps == []
    archived = picture.recovery.archive.segments[1]
    first, last = backup.first_segment.number, Segment.parse(window.last_segment, MiB).number
    assert set(range(first, last + 1)) <= archived
    assert picture.recovery.problems == []

    shown = inventory(world.barman.destination, world.barman.server_name,
                      endpoint_url=world.barman.endpoint.url)
    assert shown["kind"] == "barman_cloud" and shown["gaps"] == []
    assert shown["window"] == {"start": window.start.isoformat(), "end": window.end.isoformat()}
    assert [b["id"] for b in shown["backups"]] == [world.backup_id]
    assert shown["timelines"][0]["last"] == world.load_segments[-1]


@pytest.mark.slow
@needs_barman
def test_a_missing_wal_object_is_a_gap_that_ends_the_window(world: World) -> None:
    missing, resumes = world.load_segments
    broken = world.barman.copy_as("pg-gap", leave_out=(world.barman.wal_key(missing),))
    picture = world.read(broken)
    (backup,) = picture.backups
    (window,) = picture.recovery.windows
    assert window.ended_by == Gap(1, missing, missing, resumes)
    assert picture.recovery.gaps == [window.ended_by]
    assert window.last_segment == backup.end_wal
    # no commit between the backup's end and the gap: the window is the backup's end
    assert window.end == window.start == backup.stopped
    assert picture.end_is[window.last_segment] == END_BACKUP
    assert window.end < world.last_commit


@pytest.mark.slow
@needs_barman
def test_the_store_gives_its_wal_by_name_and_finds_what_is_archived_later(
        world: World) -> None:
    """The Source protocol's WAL: a segment decompressed, byte for byte what barman-cloud
    gzipped; a name the store lacks is None; one archived after the fetcher began is
    found (a restore to `latest` goes on while archiving does)."""
    from tui.sources.barman_cloud import BarmanCloudSource

    first, last = world.load_segments
    late = world.barman.copy_as("pg-late", leave_out=(world.barman.wal_key(last),))
    source = BarmanCloudSource(late.destination, late.server_name, late.endpoint.url,
                               late.endpoint.region)
    fetch = source.wal_fetcher()
    assert fetch(first) == gzip.decompress(late.read(late.wal_key(first)))
    assert fetch(last) is None
    late.put(late.wal_key(last), world.barman.read(world.barman.wal_key(last)))
    time.sleep(1.1)  # a name not found is looked for again at most once a second
    assert fetch(last) == gzip.decompress(world.barman.read(world.barman.wal_key(last)))
    assert len(fetch(last)) == MiB


@pytest.mark.slow
@needs_barman
def test_a_malformed_backup_info_is_reported_and_the_other_backup_listed(world: World) -> None:
    bad = world.barman.copy_as("pg-bad")
    good_info = bad.read(f"{bad.prefix}base/{world.backup_id}/backup.info")
    end_wal = re.search(rb"^end_wal=(\w+)$", good_info, re.M)[1]
    elsewhere = good_info.replace(b"end_wal=" + end_wal, b"end_wal=000000010000000000000099")
    broken = {
        "20261201T000000": b"status=DONE\nbegin_time=yesterday\n",
        "20261201T000001": b"\xff\xfe\x00 not text",
        "20261201T000002": elsewhere,
    }
    for backup_id, body in broken.items():
        bad.put(f"{bad.prefix}base/{backup_id}/backup.info", body)
    picture = world.read(bad)
    assert [b.backup_id for b in picture.backups] == [world.backup_id]
    why = {u.backup_id: u.problem for u in picture.unreadable}
    assert set(why) == set(broken)
    assert "begin_time='yesterday' is not a time" in why["20261201T000000"]
    assert "not UTF-8" in why["20261201T000001"]
    assert "end_wal 000000010000000000000099 does not hold end_xlog" in why["20261201T000002"]
    assert len(picture.recovery.windows) == 1
    for backup_id in broken:
        assert any(backup_id in problem for problem in picture.recovery.problems)


# --- no store needed ---------------------------------------------------------------------


@pytest.mark.parametrize("value, why", [
    ("__import__('os').system('touch /tmp/owned')", "is not a list of tablespaces"),
    ("[('t', 0, '/x')]", "is not a (name, oid, location)"),
    ("[('t', True, '/x')]", "is not a (name, oid, location)"),
    ("[('t', 16385, '/x'), ('u', 16385, '/y')]", "an oid is listed twice"),
    ("[" * 5000 + "]" * 5000, "is not a list of tablespaces"),
])
def test_a_tablespace_list_is_read_as_a_literal_and_checked(value: str, why: str) -> None:
    from tui.sources.barman_cloud import BackupInfoInvalid, parse_backup_info

    info = f"status=STARTED\ntimeline=1\ntablespaces={value}\n".encode()
    with pytest.raises(BackupInfoInvalid, match=re.escape(why)):
        parse_backup_info(info, "20261202T000000")
    assert not os.path.exists("/tmp/owned")


def test_a_tablespace_list_names_each_tablespace() -> None:
    from tui.sources.barman_cloud import Tablespace, parse_backup_info

    info = b"status=STARTED\ntimeline=1\ntablespaces=[('events', 16385, '/srv/ts')]\n"
    backup = parse_backup_info(info, "20261202T000000")
    assert backup.tablespaces == (Tablespace("events", 16385, "/srv/ts"),)


@pytest.mark.parametrize("compression, pack", [("gzip", gzip.compress), ("bzip2", bz2.compress),
                                               ("xz", lzma.compress)])
def test_what_barman_compressed_is_decompressed_within_a_limit(compression, pack) -> None:
    segment = bytes(range(256)) * 256  # 64 KiB
    limit = len(segment)
    assert decompress(pack(segment), compression, limit) == segment
    with pytest.raises(WalUnreadable, match="more than"):
        decompress(pack(segment * 16), compression, limit)  # what a bomb would be
    packed = pack(segment)
    with pytest.raises(WalUnreadable, match=r"truncated|not valid"):
        decompress(packed[:len(packed) // 2], compression, limit)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")
def test_zstd_is_decompressed_with_the_program() -> None:
    segment = b"wal" * 100_000
    packed = subprocess.run(["zstd", "-q", "-c"], input=segment, capture_output=True,
                            check=True).stdout
    assert decompress(packed, "zstd", MiB) == segment
    with pytest.raises(WalUnreadable, match="more than"):
        decompress(packed, "zstd", 1000)


def test_snappy_says_it_cannot_be_read() -> None:
    with pytest.raises(WalUnreadable, match="snappy-compressed"):
        decompress(b"\xff\x06\x00\x00sNaPpY", "snappy", MiB)


@pytest.mark.parametrize("destination, server_name, message", [
    ("gs://bucket/path", "pg", "not an s3:// URL"),
    ("s3:///path", "pg", "no valid bucket name"),
    ("s3://bucket/path", "../pg", "not a Barman server name"),
])
def test_a_destination_or_server_name_that_cannot_be_right_is_refused(
        destination, server_name, message) -> None:
    with pytest.raises(BarmanCloudError, match=message):
        read_object_store(destination, server_name, endpoint_url="http://127.0.0.1:9")


@pytest.mark.slow
@needs_barman
def world_time(world: World) -> str:
    """The backup's end as drdeck shows times: UTC, to the second."""
    (backup,) = world.read().backups
    return backup.end_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_a_cluster_backed_up_by_barman_cloud_alone_has_an_inventory_and_a_status(
        world: World, tmp_path) -> None:
    """What a CloudNativePG user configures: their bucket, and nothing of drdeck's."""
    from backup_support import Deck

    barman = world.barman
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[clusters.prod]
dsn = "host=/nonexistent dbname=app"
rpo = "1h"

[clusters.prod.barman_cloud]
destination = "{barman.destination}"
server_name = "{barman.server_name}"
endpoint_url = "{barman.endpoint.url}"
""")
    deck = Deck(config, tmp_path / "state", barman.endpoint.env())
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert cluster["error"] is None and cluster["pgbackrest"] is None
    report = cluster["barman_cloud"]
    assert [b["id"] for b in report["backups"]] == [world.backup_id]
    assert datetime.fromisoformat(report["window"]["end"]) - world.last_commit \
        < timedelta(seconds=1)

    human = deck.run("inventory")
    assert human.returncode == 0, human.stderr
    assert "prod  no drdeck repository: backed up by Barman Cloud" in human.stdout
    assert re.search(r"newest recoverable point \S+ old \(Barman Cloud\) · RPO 1h · ok",
                     human.stdout), human.stdout
    assert "no snapshot" not in human.stdout  # it never was to have one
    assert f"Barman Cloud server {barman.server_name} in {barman.destination}:" in human.stdout
    assert f"{world.backup_id}  DONE  ended {world_time(world)}" in human.stdout

    proc = deck.run("status", "--json")
    items = {i["check"]: i for i in json.loads(proc.stdout)["clusters"][0]["items"]}
    assert "snapshot" not in items and "repository" not in items
    assert items["wal"]["reason"].startswith("newest recoverable point is")
    assert "run one (pitr-barman)" in items["drill"]["reason"]  # the runbook that restores it

    # the policy document speaks of what protects this cluster, not of drdeck's snapshots
    assert deck.run("docs", "--out", str(tmp_path / "docs")).returncode == 0
    policy = (tmp_path / "docs" / "backup-policy.md").read_text()
    assert "the newest recoverable point must be younger than this" in policy
    assert "drdeck keeps no repository for this cluster" in policy
    assert "Not encrypted" not in policy and "### Retention" not in policy

    # a mistake in the table is the configuration's, with its place
    config.write_text(config.read_text().replace('server_name = "pg"', 'server_name = "../x"'))
    proc = deck.run("inventory")
    assert proc.returncode == 2
    assert "drdeck.toml:8:1: barman_cloud server_name '../x' is not a Barman server name" \
        in proc.stderr



def barman_only_config(barman: BarmanCloud) -> Any:
    from tui.config import load_config_text

    return load_config_text(f"""
[clusters.prod]
dsn = "host=/nonexistent dbname=app"
rpo = "1h"

[clusters.prod.barman_cloud]
destination = "{barman.destination}"
server_name = "{barman.server_name}"
endpoint_url = "{barman.endpoint.url}"
""")


@pytest.mark.slow
@needs_barman
async def test_the_pitr_barman_briefing_shows_the_store_s_window_and_refuses_past_it(
        world: World) -> None:
    from test_app_form import error_of, shown, type_into

    from tui.runbook.discovery import SHIPPED_DIR, load_directory
    from tui.runbook.loader import load_runbook

    from app_support import TERMINAL, live_app, wait_for

    app = live_app(config=barman_only_config(world.barman), runbooks=load_directory(SHIPPED_DIR),
                   open_runbook=load_runbook(SHIPPED_DIR / "pitr-barman.toml"),
                   params={"cluster": "prod"})
    async with app.run_test(size=TERMINAL) as pilot:
        await wait_for(pilot, lambda: "recoverable" in shown(app, "#note-target"),
                       what="the store's recoverable window")
        picture = world.read()
        start = picture.recovery.earliest.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert shown(app, "#note-target").startswith(f"recoverable (prod): {start} to ")
        too_late = (world.last_commit + timedelta(hours=1)).isoformat(sep=" ")
        await type_into(pilot, "target", too_late)
        assert "the newest point you can reach is" in error_of(app, "target")
        await type_into(pilot, "target", "latest")
        assert error_of(app, "target") == ""


@pytest.mark.slow
@needs_barman
async def test_the_inventory_screen_shows_a_cluster_barman_cloud_alone_backs_up(
        world: World) -> None:
    """What the operator sees: the store's window against the RPO, its backup, and no
    advice to set up a drdeck archive the cluster does not need."""
    from tui.app.screens.inventory import InventoryScreen

    from app_support import TERMINAL, live_app, wait_for

    app = live_app(config=barman_only_config(world.barman))
    async with app.run_test(size=TERMINAL) as pilot:
        await pilot.press("i")

        def screen() -> InventoryScreen | None:
            return next((s for s in app.screen_stack if isinstance(s, InventoryScreen)), None)

        await wait_for(pilot, lambda: screen() is not None and screen().inventories,
                       what="the inventory")
        await pilot.pause()

        def text(selector: str) -> str:
            return str(screen().query_one(selector).render())

        headline = text("#rpo-line")
        assert headline.startswith("prod  no drdeck repository   ")
        assert re.search(r"newest recoverable point \S+ old \(Barman Cloud\) · RPO 1h · ✓ ok",
                         headline), headline
        assert "no snapshot" not in headline
        window = text("#window-line")
        assert window.startswith("Recoverable  ") and window.endswith("(Barman Cloud)")
        wal = text("#wal-body")
        assert wal.startswith(f"Barman Cloud server pg in {world.barman.destination}")
        assert f"{world.backup_id}  DONE  ended {world_time(world)}" in wal
        assert "wal push" not in wal  # no advice to set up what it does not need
        assert "no repository" in text("#manifest-body")
