"""Point-in-time recovery end to end: WAL archived by `drdeck wal push`, a base backup, a
write load with known commit times, then a restore to a moment in the middle of it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tui.postgres.cluster import free_port

from pitr_support import (
    app_with_events_in_a_tablespace,
    archiving_setup,
    base_backups_listed,
    give_to_server,
    point_config_at,
    stop_restored,
    wait_archived,
)

ROWS = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A cluster with base backup and archived WAL, and the commit time of every event."""
    from harness.gpg import scratch_gpg_home
    from harness.postgres import scratch_cluster

    state = tmp_path_factory.mktemp("state")
    with scratch_gpg_home() as gpg:
        give_to_server(gpg.path)
        setup = archiving_setup(state, recipients=[gpg.fingerprint], gpg_home=gpg.path)
        command = setup.archive_command()
        # does nothing on a primary, but the base backup carries it, as one taken from a
        # delayed standby does: a restore must not hold every commit for an hour
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on", archive_command=command,
                             track_commit_timestamp="on",
                             recovery_min_apply_delay="1h") as cluster:
            spot = app_with_events_in_a_tablespace(cluster, setup.base)
            point_config_at(setup, cluster)
            wait_archived(cluster)
            backup = setup.deck.run("run", "base-backup", "--headless")
            assert backup.returncode == 0, backup.stdout + backup.stderr
            commits = []
            for n in range(1, ROWS + 1):
                cluster.execute("insert into events values (%s, clock_timestamp())", (n,),
                                dbname="app")
                commits.append(cluster.scalar(
                    "select pg_xact_commit_timestamp(xmin) from events where n = %s", (n,),
                    dbname="app"))
                # some pgbench writes between the events: WAL that replay must cross
                cluster.execute("update pgbench_accounts set abalance = abalance + 1 "
                                "where aid <= 2000", dbname="app")
                if n % 5 == 0:
                    wait_archived(cluster)
            last = wait_archived(cluster)
            try:
                yield {"setup": setup, "cluster": cluster, "commits": commits, "last": last,
                       "gpg": gpg, "tablespace": spot}
            finally:
                shutil.rmtree(setup.base, ignore_errors=True)


def restore(world, target: str, *extra: str, data_dir: Path | None = None):
    data_dir = data_dir or world["setup"].base / f"restored-{free_port()}"
    proc, events = world["setup"].deck.run_json(
        "run", "pitr-restore", "-p", f"target={target}", "-p", f"data_dir={data_dir}",
        "-p", f"port={free_port()}", "--yes", *extra)
    return proc, events, data_dir


def checks(events) -> dict[str, bool]:
    return {e["name"]: e["ok"] for e in events if e["event"] == "check"}


def test_restore_to_a_time_in_the_middle_of_the_load(world) -> None:
    commits = world["commits"]
    middle = 12  # between two events with no archiving wait between them: a short gap
    target = commits[middle - 1] + (commits[middle] - commits[middle - 1]) / 2
    proc, events, data_dir = restore(world, target.isoformat())
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        assert checks(events)["target inside the recoverable window"] is True
        assert checks(events)["out of recovery on a new timeline"] is True
        assert checks(events)["the last replayed commit is at or before the target"] is True
        rpo = next(e for e in events if e["event"] == "measure" and e["name"] == "achieved_rpo")
        assert 0 <= rpo["value"] < 1.0
        progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
        assert progress and progress[-1]["done"] == progress[-1]["total"]
        # the base backup brought a 1h apply delay along; drdeck's setting, read later, won
        settings = (data_dir / "postgresql.auto.conf").read_text()
        assert "recovery_min_apply_delay = '1h'" in settings
        assert settings.rindex("recovery_min_apply_delay = 0") > \
            settings.rindex("recovery_min_apply_delay = '1h'")
        took = next(e["duration_s"] for e in events
                    if e["event"] == "step_finished" and e["step"] == "restore")
        assert took < 60
        import psycopg

        announced = next(e["line"] for e in events
                         if e["event"] == "output" and e["step"] == "restore"
                         and e["line"].startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            count = conn.execute("select count(*), max(n) from events").fetchone()
            (oid, location), = conn.execute(
                "select oid, pg_tablespace_location(oid) from pg_tablespace "
                "where spcname = 'events_space'").fetchall()
        assert count == (middle, middle)
        # the tablespace came back beside the data directory, not into the source's
        home = data_dir.with_name(data_dir.name + ".tablespaces")
        assert Path(location) == home / str(oid)
        assert (data_dir / "pg_tblspc" / str(oid)).readlink() == home / str(oid)
        assert not (data_dir / "tablespace_map").exists()
        placed = next(e for e in events if e["event"] == "check"
                      and e["name"] == "tablespaces placed")
        assert placed["ok"] and placed["detail"] == f"events_space -> {home / str(oid)}"
    finally:
        stop_restored(data_dir)


def test_a_restore_measures_what_it_moved_and_the_next_forecast_is_scaled_to_it(
        world, tmp_path: Path) -> None:
    """The restore step records the base backup's bytes and the WAL it replayed, with the
    time each took; the next forecast reads this run's bytes from the archive and scales
    the step by the throughput that run measured."""
    from tui.config import load_config
    from tui.pitr.target import parse_target
    from tui.sources.archive import ArchiveSource
    from tui.units import format_bytes

    deck = dataclasses.replace(world["setup"].deck, state=tmp_path / "state")  # no history
    data_dir = world["setup"].base / f"restored-{free_port()}"
    proc, events = deck.run_json("run", "pitr-restore", "-p", "target=latest",
                                 "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}",
                                 "--yes")
    stop_restored(data_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    measured = {e["name"]: e["value"] for e in events
                if e["event"] == "measure" and e["step"] == "restore"}
    config = load_config(deck.config)
    source = ArchiveSource.configured(config, config.cluster(None))
    planned = source.restore_volumes(parse_target("latest"))
    assert measured["base_bytes"] == planned["base"] > 0
    assert 0 < measured["wal_bytes"] <= planned["wal"]  # latest: at most the whole archive
    assert measured["base_s"] > 0 and measured["wal_s"] > 0
    took = next(e["duration_s"] for e in events
                if e["event"] == "step_finished" and e["step"] == "restore")

    shown = deck.run("forecast", "pitr-restore", "-p", "target=latest", "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    restore = next(step for step in found["steps"] if step["id"] == "restore")
    assert found["volumes"] == planned
    base_rate = measured["base_bytes"] / measured["base_s"]
    wal_rate = measured["wal_bytes"] / measured["wal_s"]
    rest = took - measured["base_s"] - measured["wal_s"]
    assert restore["forecast_s"] == pytest.approx(
        rest + planned["base"] / base_rate + planned["wal"] / wal_rate)
    assert restore["basis"] == (
        f"median of 1 run, scaled to base backup {format_bytes(planned['base'])} at "
        f"{format_bytes(base_rate)}/s, WAL {format_bytes(planned['wal'])} at "
        f"{format_bytes(wal_rate)}/s")
    # and a run starts with that forecast, scaled, and keeps it: this one is refused at
    # its pre-flight (the directory holds the last restore), after its start was recorded
    assert any(data_dir.iterdir())
    refused, began = deck.run_json("run", "pitr-restore", "-p", "target=latest",
                                   "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}",
                                   "--yes")
    assert refused.returncode != 0
    started = next(e for e in began if e["event"] == "run_started")
    assert started["forecast"]["volumes"] == planned
    assert next(s for s in started["forecast"]["steps"] if s["id"] == "restore") == restore


def test_a_target_before_the_base_backup_is_refused(world) -> None:
    too_early = world["commits"][0] - timedelta(hours=1)
    proc, events, data_dir = restore(world, too_early.isoformat())
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "the earliest point you can reach is" in error
    assert not data_dir.exists()


def test_a_target_after_the_archive_is_refused(world) -> None:
    too_late = world["commits"][-1] + timedelta(hours=1)
    proc, events, data_dir = restore(world, too_late.isoformat())
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert "the newest point you can reach is" in error
    assert not data_dir.exists()


def test_a_non_empty_data_directory_is_refused(world) -> None:
    data_dir = world["setup"].base / "occupied"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("15\n")
    proc, events, _ = restore(world, world["commits"][5].isoformat(), data_dir=data_dir)
    assert proc.returncode == 1
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert f"{data_dir} is not empty" in error
    assert (data_dir / "PG_VERSION").read_text() == "15\n"


def test_a_missing_middle_segment_is_reported_as_a_gap(world, tmp_path: Path) -> None:
    repo = world["setup"].repo
    wal = sorted((repo / "prod" / "wal").glob("0000000100000000000000*.gpg"))
    victim = wal[len(wal) // 2 + 2]
    hidden = tmp_path / victim.name
    shutil.move(victim, hidden)
    try:
        proc, events, _ = restore(world, world["commits"][-1].isoformat())
        assert proc.returncode == 1
        lines = [e["line"] for e in events if e["event"] == "output"]
        assert any("WAL gap" in line and victim.name.removesuffix(".zst.gpg") in line
                   for line in lines), lines
    finally:
        shutil.move(hidden, victim)


def test_the_archive_gives_its_wal_by_name_and_its_window_as_a_source(world) -> None:
    """drdeck's own archive behind the Source protocol: each segment decrypted and
    decompressed, byte for byte what gpg and zstd give back; a name it lacks is None; its
    report is the inventory's `pitr` block, with the keys every source's has."""
    from tui.config import load_config_file
    from tui.sources import source_for
    from tui.wal.names import Segment

    config = load_config_file(world["setup"].config)
    source = source_for(config, config.cluster("prod"), "pitr")
    fetch = source.wal_fetcher()
    last = world["last"]
    stored = world["setup"].repo / "prod" / "wal" / f"{last}.zst.gpg"  # zstd, then gpg
    compressed = subprocess.run(["gpg", "--homedir", str(world["gpg"].path), "--batch",
                                 "--quiet", "--decrypt", str(stored)], capture_output=True,
                                check=True).stdout
    plain = subprocess.run(["zstd", "--decompress", "--stdout"], input=compressed,
                           capture_output=True, check=True).stdout
    assert fetch(last) == plain and len(plain) == 1 << 20
    assert len(compressed) < len(plain) / 2
    assert fetch(Segment.parse(last, 1 << 20).next().name) is None

    report = source.report()
    [window] = report["windows"]
    assert report["kind"] == "pitr" and report["gaps"] == [] and report["problems"] == []
    assert report["window"] == {"start": window["start"], "end": window["end"]}
    assert window["last_segment"] == last
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    assert start <= world["commits"][0] and world["commits"][-1] <= end
    assert [b["id"] for b in report["backups"]] == [window["base_backup"]]
    assert source.summary(report)[1].text.startswith("recoverable ")


def test_the_base_backup_is_stored_compressed_and_one_stored_before_still_restores(
        world) -> None:
    """The backup the world took is zstd inside gpg, a fraction of its tar. The same backup
    stored as drdeck wrote them before compression (base.tar.gpg, no `compression` in its
    manifest) restores exactly."""
    import hashlib
    import json

    import psycopg

    from tui.storage.local import LocalStore
    from tui.units import format_bytes

    gpg = ["gpg", "--homedir", str(world["gpg"].path), "--batch", "--quiet"]

    def unpacked(stored: bytes) -> bytes:
        compressed = subprocess.run([*gpg, "--decrypt"], input=stored, capture_output=True,
                                    check=True).stdout
        return subprocess.run(["zstd", "--decompress", "--stdout"], input=compressed,
                              capture_output=True, check=True).stdout

    def uncompressed(tar: bytes, object_key: str) -> dict:
        """`tar` stored as drdeck did before compression: gpg alone, `.tar.gpg`."""
        encrypted = subprocess.run([*gpg, "--encrypt", "--recipient",
                                    world["gpg"].fingerprint, "--compress-algo", "none"],
                                   input=tar, capture_output=True, check=True).stdout
        store.write_bytes(object_key, encrypted)
        return {"object": object_key, "stored_size": len(encrypted),
                "sha256_stored": hashlib.sha256(encrypted).hexdigest(),
                "plaintext_size": len(tar), "sha256_plaintext": hashlib.sha256(tar).hexdigest()}

    store = LocalStore(world["setup"].repo)
    [stamp] = {o.key.split("/")[2] for o in store.list("prod/base/")}
    manifest_key = f"prod/base/{stamp}/manifest.json"
    original = store.read_bytes(manifest_key)
    manifest = json.loads(original)
    assert manifest["compression"] == "zstd"
    assert manifest["object"] == f"prod/base/{stamp}/base.tar.zst.gpg"
    [tablespace] = manifest["tablespaces"]
    objects = [manifest["object"], tablespace["object"]]
    stored = {key: store.read_bytes(key) for key in objects}
    tars = {key: unpacked(value) for key, value in stored.items()}
    for key in objects:
        assert tars[key][257:262] == b"ustar"  # a tar, once gpg and zstd are undone
    tar = tars[manifest["object"]]
    assert len(stored[manifest["object"]]) * 4 < len(tar)

    # the same backup as drdeck stored one before compression, in its place: no
    # `compression` in its manifest, each tar gpg alone
    old_object = f"prod/base/{stamp}/base.tar.gpg"
    old_tablespace = f"prod/base/{stamp}/{tablespace['oid']}.tar.gpg"
    old = {key: value for key, value in manifest.items() if key != "compression"}
    old |= uncompressed(tar, old_object)
    old["tablespaces"] = [tablespace | uncompressed(tars[tablespace["object"]],
                                                    old_tablespace)]
    for key in objects:
        store.delete(key)
    store.write_bytes(manifest_key, json.dumps(old).encode())
    commits = world["commits"]
    target = commits[20] + (commits[21] - commits[20]) / 2
    try:
        proc, events, data_dir = restore(world, target.isoformat())
        try:
            assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
            lines = [e["line"] for e in events if e["event"] == "output"]
            assert any(line.startswith("fetching ") and line.endswith(
                f"{old_object} ({format_bytes(old['stored_size'])})") for line in lines), lines
            announced = next(line for line in lines if line.startswith("recovered and promoted"))
            with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
                assert conn.execute("select count(*), max(n) from events").fetchone() == (21, 21)
        finally:
            stop_restored(data_dir)
    finally:
        store.delete(old_object)
        store.delete(old_tablespace)
        for key, value in stored.items():
            store.write_bytes(key, value)
        store.write_bytes(manifest_key, original)


def test_a_tablespace_goes_where_the_tablespace_map_says(world) -> None:
    place = world["setup"].base / f"fast-{free_port()}"
    target = world["commits"][7]
    proc, events, data_dir = restore(world, target.isoformat(), "-p",
                                     f"tablespace_map=events_space={place}")
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        import psycopg

        announced = next(e["line"] for e in events if e["event"] == "output"
                         and e["line"].startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            assert conn.execute("select count(*) from events").fetchone() == (8,)
            assert conn.execute("select pg_tablespace_location(oid) from pg_tablespace "
                                "where spcname = 'events_space'").fetchone() == (str(place),)
        assert not data_dir.with_name(data_dir.name + ".tablespaces").exists()
    finally:
        stop_restored(data_dir)


@pytest.mark.parametrize("mapping, why", [
    ("events_space={source}", "never restores into the source's tablespaces"),
    ("{source}={source}/inner", "never restores into the source's tablespaces"),
    ("events_space={occupied}", "is not empty"),
    ("events_space={data_dir}/ts", "inside the new data directory"),
    ("nosuch={base}/x", "'nosuch', which is no tablespace of this backup: it has events_space"),
    ("events_space=relative/x", "is not an absolute path"),
    ("events_space", "is not NAME=DIRECTORY"),
])
def test_a_tablespace_map_that_would_do_harm_is_refused_before_anything_is_written(
        world, mapping: str, why: str) -> None:
    base = world["setup"].base
    occupied = base / "occupied-tablespace"
    occupied.mkdir(exist_ok=True)
    (occupied / "PG_15_202209061").mkdir(exist_ok=True)
    data_dir = base / f"never-{free_port()}"
    source = world["tablespace"]
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    proc, events, _ = restore(world, world["commits"][5].isoformat(), "-p",
                              "tablespace_map=" + mapping.format(
                                  source=source, occupied=occupied, data_dir=data_dir,
                                  base=base), data_dir=data_dir)
    assert proc.returncode == 1, proc.stdout[-3000:]
    error = next(e for e in events if e["event"] == "step_finished")["error"]
    assert why in error, error
    assert not data_dir.exists()
    assert not data_dir.with_name(data_dir.name + ".tablespaces").exists()
    assert list((occupied / "PG_15_202209061").iterdir()) == []
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert "Traceback" not in proc.stdout + proc.stderr


def _base_backup(world) -> tuple[object, str, dict]:
    import json

    from tui.storage.local import LocalStore

    store = LocalStore(world["setup"].repo)
    [stamp] = {o.key.split("/")[2] for o in store.list("prod/base/")}
    return store, stamp, json.loads(store.read_bytes(f"prod/base/{stamp}/manifest.json"))


def test_a_missing_tablespace_object_makes_the_backup_incomplete(world, tmp_path) -> None:
    _, stamp, manifest = _base_backup(world)
    [tablespace] = manifest["tablespaces"]
    assert tablespace["name"] == "events_space"
    assert tablespace["object"] == f"prod/base/{stamp}/{tablespace['oid']}.tar.zst.gpg"
    assert manifest["stored_size"] + tablespace["stored_size"] > 0
    victim = world["setup"].repo / tablespace["object"]
    hidden = tmp_path / victim.name
    shutil.move(victim, hidden)
    try:
        [backup] = base_backups_listed(world["setup"].deck)
        assert backup["complete"] is False
        assert "tablespace events_space's backup is missing" in backup["problem"]
        proc, _, data_dir = restore(world, world["commits"][5].isoformat())
        assert proc.returncode == 1
        assert not data_dir.exists()
    finally:
        shutil.move(hidden, victim)
    [backup] = base_backups_listed(world["setup"].deck)
    assert backup["complete"] is True
    assert backup["stored_size"] == manifest["stored_size"] + tablespace["stored_size"]
    assert backup["tablespaces"] == [{"oid": tablespace["oid"], "name": "events_space",
                                      "location": str(world["tablespace"]),
                                      "stored_size": tablespace["stored_size"]}]


def test_a_tablespace_object_the_manifest_points_elsewhere_is_refused_as_forged(
        world) -> None:
    """A repository writer points the tablespace's object at a tar of their own choosing
    (another backup's, another cluster's): the restore must not fetch and unpack it."""
    import json

    store, stamp, _ = _base_backup(world)
    key = f"prod/base/{stamp}/manifest.json"
    original = store.read_bytes(key)
    forged = json.loads(original)
    forged["tablespaces"][0]["object"] = "other/base/20200101T000000Z/base.tar.zst.gpg"
    store.write_bytes(key, json.dumps(forged).encode())
    try:
        [backup] = base_backups_listed(world["setup"].deck)
        assert backup["complete"] is False
        assert "refused as forged" in backup["problem"]
        assert "object of its tablespace" in backup["problem"]
        proc, _, data_dir = restore(world, world["commits"][5].isoformat())
        assert proc.returncode == 1
        assert not data_dir.exists()
    finally:
        store.write_bytes(key, original)
