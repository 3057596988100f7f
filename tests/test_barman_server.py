"""Barman end to end: a real Barman server (barman archive-wal, barman backup) backing up
a real cluster, then what `drdeck inventory` shows of it: the backup, the window to the
last commit, a missing WAL file as a gap, a backup barman describes wrongly, and a
configuration whose barman is not there."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tui.postgres.access import let_server_account_run_drdeck
from tui.postgres.binaries import pg_bin
from tui.sources.barman import (
    BackupInvalid,
    BarmanSource,
    check_complete,
    compression_of,
    listed_backups,
    parse_show_backup,
    segment_size_from_lsns,
)
from tui.sources.barman_cloud import CONSISTENCY_MARGIN

from backup_support import Deck
from harness.barman import BARMAN, BarmanServer, missing_reason
from pitr_support import wait_archived

needs_barman = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
MiB = 1 << 20


@dataclass
class World:
    barman: BarmanServer
    backup_id: str
    load_segments: list[str]  # filed after the backup, one per load
    last_commit: datetime

    def deck(self, tmp_path: Path, **settings: str) -> Deck:
        """drdeck configured with this Barman server alone, as a Barman user would."""
        settings = {"server": self.barman.server, "config": str(self.barman.config),
                    "program": str(BARMAN), **settings}
        table = "\n".join(f'{key} = "{value}"' for key, value in settings.items())
        config = tmp_path / "drdeck.toml"
        config.write_text(f"""
[clusters.prod]
dsn = "host=/nonexistent dbname=app"
rpo = "1h"

[clusters.prod.barman]
{table}
""")
        return Deck(config, tmp_path / "state")

    def inventory(self, tmp_path: Path, **settings: str) -> dict[str, Any]:
        proc = self.deck(tmp_path, **settings).run("inventory", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [cluster] = json.loads(proc.stdout)["clusters"]
        assert cluster["error"] is None and cluster["barman_cloud"] is None
        return cluster["barman"]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from harness.postgres import scratch_cluster

    let_server_account_run_drdeck()  # barman, as the postgres account, runs its interpreter
    barman = BarmanServer.create()
    try:
        # autovacuum off: no commit but ours, so the last filed commit is known
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=barman.archive_command(),
                             track_commit_timestamp="on", autovacuum="off") as cluster:
            barman.configure(cluster)
            subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn()],
                           check=True, capture_output=True)
            wait_archived(cluster)
            barman.archive_wal()
            backup_id = barman.backup()
            # a commit within CONSISTENCY_MARGIN of the backup's end is not known to be
            # after the backup is consistent: the load waits it out
            time.sleep(CONSISTENCY_MARGIN.total_seconds() + 0.2)
            load_segments = []
            for _ in range(2):
                subprocess.run([pg_bin("pgbench"), "-n", "-t", "10", cluster.dsn()],
                               check=True, capture_output=True)
                load_segments.append(wait_archived(cluster))
                barman.archive_wal()
            last_commit = cluster.scalar(
                "select max(pg_xact_commit_timestamp(xmin)) from pgbench_history")
            yield World(barman, backup_id, load_segments, last_commit)
    finally:
        barman.remove()


@pytest.mark.slow
@needs_barman
def test_the_backup_and_the_window_to_the_last_commit_are_in_the_inventory(
        world: World, tmp_path: Path) -> None:
    report = world.inventory(tmp_path)
    assert report["kind"] == "barman" and report["server"] == "pg"
    assert report["wals_directory"] == str(world.barman.wals_directory)
    assert report["wal_segment_size"] == MiB
    assert report["gaps"] == [] and report["problems"] == []
    [backup] = report["backups"]
    assert (backup["id"], backup["status"], backup["problem"]) == (world.backup_id, "DONE", None)
    assert (backup["timeline"], backup["version"] // 10000, backup["method"]) == (1, 15, "postgres")
    assert backup["begin_time"] < backup["end_time"]
    assert backup["size"] > 20 * MiB  # pgbench's data
    [window] = report["windows"]
    assert window["end_is"] == "last archived commit"
    assert window["last_segment"] == world.load_segments[-1]
    assert window["backups"] == [world.backup_id]
    end = datetime.fromisoformat(report["window"]["end"])
    # the last commit itself, as pg_waldump reads it from barman's copy of the WAL
    assert timedelta(0) <= end - world.last_commit < timedelta(seconds=1)
    assert report["window"]["start"] == backup["consistent_by"]
    assert report["timelines"][0]["last"] == world.load_segments[-1]

    human = world.deck(tmp_path).run("inventory")
    assert human.returncode == 0, human.stderr
    assert f"Barman server pg ({world.barman.config}):" in human.stdout
    assert f"{world.backup_id}  DONE  ended" in human.stdout
    assert "WARNING" not in human.stdout


@pytest.mark.slow
@needs_barman
def test_the_server_gives_its_wal_by_name_as_barman_filed_it(world: World) -> None:
    """The Source protocol's WAL: a segment barman gzipped, decompressed byte for byte; a
    name it has not filed is None; a link planted in its place is refused."""
    import gzip

    from tui.sources.barman import BarmanError, BarmanSource
    from tui.wal.names import Segment

    source = BarmanSource(world.barman.server, str(world.barman.config), str(BARMAN))
    fetch = source.wal_fetcher()
    last = world.load_segments[-1]
    assert fetch(last) == gzip.decompress(world.barman.wal_path(last).read_bytes())
    assert len(fetch(last)) == MiB
    beyond = Segment.parse(last, MiB).next()
    assert fetch(beyond.name) is None
    planted = world.barman.wal_path(beyond.name)
    planted.symlink_to(world.barman.wal_path(last))
    try:
        with pytest.raises(BarmanError, match="is not a regular file"):
            fetch(beyond.name)
    finally:
        planted.unlink()


@pytest.mark.slow
@needs_barman
def test_a_missing_wal_file_is_a_gap_that_ends_the_window(world: World, tmp_path: Path) -> None:
    missing, resumes = world.load_segments
    moved = tmp_path / missing
    shutil.move(world.barman.wal_path(missing), moved)
    try:
        report = world.inventory(tmp_path)
        human = world.deck(tmp_path).run("inventory")
    finally:
        shutil.move(moved, world.barman.wal_path(missing))
    assert report["gaps"] == [f"WAL gap on timeline 1: {missing} missing (archive resumes at "
                              f"{resumes})"]
    [backup] = report["backups"]
    [window] = report["windows"]
    assert window["last_segment"] == backup["end_wal"]
    # no commit between the backup's end and the gap: the window is the backup's end
    assert window["end"] == window["start"] == backup["consistent_by"]
    assert datetime.fromisoformat(window["end"]) < world.last_commit
    assert f"WARNING: WAL gap on timeline 1: {missing} missing" in human.stdout


@pytest.mark.slow
@needs_barman
def test_a_backup_barman_describes_wrongly_is_reported_and_the_other_listed(
        world: World, tmp_path: Path) -> None:
    """barman shows what its meta files say: one that was tampered with, or damaged."""
    meta = world.barman.home / "pg" / "meta"
    good = (meta / f"{world.backup_id}-backup.info").read_text()
    end_wal = next(line for line in good.splitlines() if line.startswith("end_wal="))
    planted = {
        "20261201T000001": good.replace(end_wal, "end_wal=000000010000000000000099"),
        "20261201T000002": good.replace("status=DONE", "status=FAILED")
        .replace("error=None", "error=pg_basebackup exited with 1\x1b[31m"),
    }
    for backup_id, text in planted.items():
        (meta / f"{backup_id}-backup.info").write_text(text)
    try:
        report = world.inventory(tmp_path)
    finally:
        for backup_id in planted:
            (meta / f"{backup_id}-backup.info").unlink()
    problems = {b["id"]: b["problem"] for b in report["backups"]}
    assert set(problems) == {world.backup_id, *planted}
    assert problems[world.backup_id] is None
    assert "end_wal 000000010000000000000099 does not hold end_lsn" in \
        problems["20261201T000001"]
    assert problems["20261201T000002"].startswith("status FAILED: pg_basebackup exited with 1")
    assert "\x1b" not in problems["20261201T000002"]
    assert len(report["windows"]) == 1
    for backup_id in planted:
        assert any(backup_id in problem for problem in report["problems"])


@pytest.mark.slow
@needs_barman
def test_a_server_barman_does_not_know_is_its_error(world: World, tmp_path: Path) -> None:
    report = world.inventory(tmp_path, server="elsewhere")
    assert "Unknown server 'elsewhere'" in report["error"]
    assert report["backups"] == [] and report["window"] is None


# --- no Barman server needed --------------------------------------------------------------


def _deck_without_barman(tmp_path: Path, table: str) -> Deck:
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[clusters.prod]
dsn = "host=/nonexistent dbname=app"

[clusters.prod.barman]
{table}
""")
    # a PATH with what drdeck needs and no barman on it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return Deck(config, tmp_path / "state", {"PATH": f"{bin_dir}:/usr/bin:/bin"})


@pytest.mark.parametrize("table, said", [
    ('server = "pg"', "barman is not installed (not found on PATH)"),
    ('server = "pg"\nprogram = "/nonexistent/barman"', "barman is not installed at "
                                                       "/nonexistent/barman"),
])
def test_a_missing_barman_is_said_in_the_report(tmp_path: Path, table: str, said: str) -> None:
    deck = _deck_without_barman(tmp_path, table)
    proc = deck.run("inventory", "--json")
    # as for any engine that cannot be read: the report says so, the command succeeds
    assert proc.returncode == 0, proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert said in cluster["barman"]["error"]
    assert "Traceback" not in proc.stderr
    human = deck.run("inventory")
    assert f"WARNING: cannot read it: {said}" in human.stdout


def test_a_setting_that_cannot_be_right_is_the_configurations(tmp_path: Path) -> None:
    deck = _deck_without_barman(tmp_path, 'server = "-c/etc/x"\nconfig = "barman.conf"')
    proc = deck.run("inventory")
    assert proc.returncode == 2
    assert "barman server '-c/etc/x' is not a Barman server name" in proc.stderr
    assert "barman config 'barman.conf' is not an absolute path" in proc.stderr


SHOWN = {  # what barman 3.19 prints for a DONE backup, less what drdeck does not read
    "backup_id": "20261202T214846", "backup_type": "full", "status": "DONE",
    "system_id": "7714826949350229199", "postgresql_version": 150018,
    "cluster_size_bytes": 23142089,
    "base_backup_information": {
        "backup_method": "postgres", "backup_size_bytes": 23146215, "compression": None,
        "encryption": None, "begin_lsn": "0/700028", "end_lsn": "0/800000",
        "begin_time": "2026-12-02 21:48:46.657507+00:00",
        "end_time": "2026-12-02 21:48:47.890811+00:00",
        "begin_wal": "000000010000000000000007", "end_wal": "000000010000000000000007",
        "timeline": 1},
}


def _shown(**changes: Any) -> dict[str, Any]:
    base = {**SHOWN["base_backup_information"], **changes.pop("base", {})}
    return {**SHOWN, "base_backup_information": base, **changes}


@pytest.mark.parametrize("shown, message", [
    ([], "not an object"),
    (_shown(backup_id="20261202T000000"), "describes backup '20261202T000000'"),
    (_shown(status="done"), "status 'done' is not one of"),
    ({**SHOWN, "base_backup_information": []}, "base_backup_information is not an object"),
    (_shown(base={"begin_time": "yesterday"}), "begin_time 'yesterday' is not a time"),
    (_shown(base={"begin_lsn": 7340072}), "begin_lsn 7340072 is not an LSN"),
    (_shown(base={"timeline": "1"}), "timeline '1' is not a whole number"),
    (_shown(base={"timeline": True}), "timeline True is not a whole number"),
    (_shown(base={"end_wal": "../../etc/passwd"}), "end_wal '../../etc/passwd' is not a WAL"),
    (_shown(backup_name="a\x1b[2Jname"), "backup_name is not a short line of text"),
    (_shown(system_id=7714826949350229199), "system_id 7714826949350229199 is not a system"),
])
def test_what_show_backup_prints_is_checked(shown: Any, message: str) -> None:
    with pytest.raises(BackupInvalid, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_show_backup(shown, "20261202T214846")


@pytest.mark.parametrize("changes, message", [
    ({"end_lsn": None}, "status is DONE but end_lsn is missing"),
    ({"end_time": "2026-12-02 21:00:00+00:00"}, "it ends"),
    ({"begin_wal": "000000020000000000000007"}, "begin_wal 000000020000000000000007 is not "
                                                "on timeline 1"),
    ({"end_wal": "000000010000000000000099"}, "end_wal 000000010000000000000099 does not hold"),
])
def test_a_done_backup_must_be_consistent(changes: dict[str, Any], message: str) -> None:
    from dataclasses import replace

    backup = replace(parse_show_backup(_shown(base=changes), "20261202T214846"),
                     wal_segment_size=MiB)
    with pytest.raises(BackupInvalid, match=message):
        check_complete(backup)


def test_the_segment_size_follows_from_the_lsns_when_postgresql_is_not_asked() -> None:
    backup = parse_show_backup(SHOWN, "20261202T214846")
    assert segment_size_from_lsns([backup]) == MiB  # 0/700028 is in ...07 with 1 MiB only


def test_list_backups_entries_without_an_id_are_reported() -> None:
    ids, bad = listed_backups([{"backup_id": "20261202T214846"}, {"backup_id": "../x"}, 7,
                               {"backup_id": "20261202T214846"}])
    assert ids == ["20261202T214846"]
    assert [b.problem for b in bad] == ["entry 2 of list-backups has no Barman backup id",
                                        "entry 3 of list-backups has no Barman backup id"]
    with pytest.raises(Exception, match="not a list of backups"):
        listed_backups({"backups": []})


def test_compression_is_told_by_the_first_bytes() -> None:
    import bz2
    import gzip
    import lzma

    assert compression_of(gzip.compress(b"wal")) == "gzip"
    assert compression_of(bz2.compress(b"wal")) == "bzip2"
    assert compression_of(lzma.compress(b"wal")) == "xz"
    assert compression_of(b"\x10\xd1\x02\x00") is None  # a PostgreSQL 15 WAL page


def test_settings_are_checked_by_the_source() -> None:
    assert BarmanSource.check_settings({"server": "pg", "config": "/etc/barman.conf"}) == []
    problems = dict(BarmanSource.check_settings({"server": "all", "program": "barman"}))
    assert "not a Barman server name" in problems["server"]
    assert "not an absolute path" in problems["program"]
