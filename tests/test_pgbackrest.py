"""pgBackRest end to end: a cluster archiving through `pgbackrest archive-push`, a full
backup, a write load with known commit times; then what drdeck reads from `pgbackrest
info`, and `drdeck run pitr-pgbackrest` to a moment in the middle of the load."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.postgres.binaries import pg_bin
from tui.postgres.cluster import free_port
from tui.sources.pgbackrest import PgbackrestSource

from backup_support import Deck
from pgbackrest_support import PGBACKREST, new_stanza, remove
from pitr_support import (
    assert_moved_as_planned,
    events_config,
    give_to_server,
    in_one_transaction,
    stop_restored,
    wait_archived,
)

pytestmark = [
    pytest.mark.skipif(PGBACKREST is None, reason="pgbackrest is not installed "
                       "(scripts/ensure-system-tools --with-pgbackrest installs it)"),
    pytest.mark.slow,
]

ROWS = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A stanza with one full backup and archived WAL, and the commit time of every event."""
    from harness.postgres import scratch_cluster

    state = tmp_path_factory.mktemp("state")
    stanza = new_stanza()
    try:
        # autovacuum off: no commit but ours, so the last archived commit is known exactly
        with scratch_cluster(wal_segsize_mb=1, archive_mode="on",
                             archive_command=stanza.archive_command(),
                             track_commit_timestamp="on", autovacuum="off") as cluster:
            stanza.write_config(cluster)
            cluster.execute("create database app")
            subprocess.run([pg_bin("pgbench"), "-i", "-s", "1", "-q", cluster.dsn("app")],
                           check=True, capture_output=True)
            # the events in a tablespace of their own: the restore must put it somewhere
            # new, never back into the source's directory
            spot = stanza.base / "source-tablespace"
            spot.mkdir()
            give_to_server(spot)
            cluster.execute(f"create tablespace events_space location '{spot}'")
            cluster.execute("create table events (n int primary key, at timestamptz) "
                            "tablespace events_space", dbname="app")
            stanza.run("stanza-create")
            label = stanza.backup("full")
            time.sleep(1.1)  # pgBackRest's stop time has whole seconds: see CONSISTENCY_MARGIN
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
            last_commit = cluster.scalar("select pg_xact_commit_timestamp(xmin) "
                                         "from pgbench_accounts where aid = 1", dbname="app")
            last = wait_archived(cluster)
            config = stanza.base / "drdeck.toml"
            config.write_text("# pgBackRest runbooks need no drdeck cluster\n")
            yield {"stanza": stanza, "cluster": cluster, "commits": commits, "label": label,
                   "last_segment": last, "last_commit": last_commit,
                   "deck": Deck(config, state)}
    finally:
        remove(stanza)


def restore(world, target: str, *extra: str, data_dir: Path | None = None):
    stanza = world["stanza"]
    data_dir = data_dir or stanza.base / f"restored-{free_port()}"
    proc, events = world["deck"].run_json(
        "run", "pitr-pgbackrest", "-p", f"stanza={stanza.name}",
        "-p", f"pgbackrest_config={stanza.config}", "-p", f"target={target}",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}", "-p", "database=app",
        "-p", "check_query=select count(*) from events", "--yes", *extra)
    return proc, events, data_dir


def checks(events) -> dict[str, bool]:
    return {e["name"]: e["ok"] for e in events if e["event"] == "check"}


def step_error(events) -> str:
    return next(e for e in events if e["event"] == "step_finished" and e.get("error"))["error"]


def test_info_is_read_into_backups_archive_and_window(world) -> None:
    from tui.sources.pgbackrest import inventory

    stanza = world["stanza"]
    seen = inventory(stanza.name, str(stanza.config))
    json.dumps(seen)  # a plain dict, as `drdeck inventory --json` will print it
    assert seen["kind"] == "pgbackrest" and seen["status"] == "ok"
    [backup] = seen["backups"]
    assert backup["label"] == world["label"] and backup["type"] == "full"
    assert backup["start_wal"] <= backup["stop_wal"] < world["last_segment"]
    assert backup["timeline"] == 1 and backup["size"] > 20 << 20
    assert backup["start"] <= backup["stop"] < world["commits"][0].astimezone(UTC).isoformat()
    [archive] = seen["archives"]
    assert archive["min"] <= backup["start_wal"] and archive["max"] >= world["last_segment"]
    assert seen["wal_segment_size"] == 1 << 20
    assert seen["gaps"] == [] and seen["problems"] == []
    [window] = seen["windows"]
    assert window["backups"] == [world["label"]]
    assert window["start"] == backup["consistent_by"]
    assert window["end_is"] == "last archived commit"
    assert window["end"] == world["last_commit"].astimezone(UTC).isoformat()
    assert seen["window"] == {"start": window["start"], "end": window["end"]}


def test_restore_to_a_time_in_the_middle_of_the_load(world) -> None:
    commits = world["commits"]
    middle = ROWS // 2
    target = commits[middle - 1] + (commits[middle] - commits[middle - 1]) / 2
    mapped = world["stanza"].base / f"events-here-{free_port()}"
    proc, events, data_dir = restore(world, target.isoformat(), "-p",
                                     f"tablespace_map=events_space={mapped}")
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        seen = checks(events)
        assert seen["target inside the recoverable window"] is True
        assert seen["out of recovery on a new timeline"] is True
        assert seen["the last replayed commit is at or before the target"] is True
        rpo = next(e for e in events if e["event"] == "measure" and e["name"] == "achieved_rpo")
        assert 0 <= rpo["value"] < 1.0
        progress = [e for e in events if e["event"] == "progress" and e["step"] == "restore"]
        files = [e for e in progress if e["unit"] == "bytes"]
        assert len(files) >= 2 and files[-1]["done"] == files[-1]["total"]
        assert any(e["detail"].startswith(("base/", "global/")) for e in files)
        assert progress[-1]["unit"] == "bytes of WAL"
        assert progress[-1]["done"] == progress[-1]["total"]
        assert_moved_as_planned(events, PgbackrestSource(
            world["stanza"].name, str(world["stanza"].config)), target.isoformat())
        lines = [e["line"] for e in events if e["event"] == "output" and e["step"] == "restore"]
        ran = next(line for line in lines if line.startswith("$ "))
        assert f"--set={world['label']}" in ran and "--type=time" in ran
        assert "--target-action=promote" in ran and "--delta" not in ran
        import psycopg

        announced = next(line for line in lines if line.startswith("recovered and promoted"))
        with psycopg.connect(announced.split("connect with ", 1)[1]) as conn:
            count = conn.execute("select count(*), max(n) from events").fetchone()
            archive_mode = conn.execute("show archive_mode").fetchone()[0]
            (location,) = conn.execute("select pg_tablespace_location(oid) from pg_tablespace "
                                       "where spcname = 'events_space'").fetchone()
        assert count == (middle, middle)
        assert location == str(mapped), location
        assert seen["tablespaces placed"] is True
        assert archive_mode == "off"
        check_lines = [e["line"] for e in events if e["event"] == "output"
                       and e["step"] == "check"]
        assert any(str(middle) in line for line in check_lines), check_lines
    finally:
        stop_restored(data_dir)


def test_tablespaces_go_beside_the_data_directory_and_never_into_the_sources(world) -> None:
    stanza = world["stanza"]
    data_dir = stanza.base / f"restored-{free_port()}"
    # without --yes: the pre-flight places them, the restore waits for a confirmation
    proc, events = world["deck"].run_json(
        "run", "pitr-pgbackrest", "-p", f"stanza={stanza.name}",
        "-p", f"pgbackrest_config={stanza.config}", "-p", "target=latest",
        "-p", f"data_dir={data_dir}", "-p", f"port={free_port()}")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    [placed] = [e for e in events if e["event"] == "check" and e["name"] ==
                "tablespaces placed"]
    assert placed["ok"] is True
    assert placed["detail"].startswith(f"events_space -> {data_dir}.tablespaces/"), placed
    # the source's own directory, even asked for, is refused before anything is written
    source = stanza.base / "source-tablespace"
    before = sorted(p.name for p in source.rglob("*"))
    proc, events, _ = restore(world, "latest", "-p", f"tablespace_map=events_space={source}",
                              data_dir=data_dir)
    assert proc.returncode == 1
    error = step_error(events)
    assert f"tablespace events_space would be restored into {source}, which is or holds a " \
           "tablespace directory of the source" in error, error
    assert not data_dir.exists()
    assert sorted(p.name for p in source.rglob("*")) == before


def test_a_target_before_the_backup_is_refused(world) -> None:
    too_early = world["commits"][0] - timedelta(hours=1)
    proc, events, data_dir = restore(world, too_early.isoformat())
    assert proc.returncode == 1
    assert "the earliest point you can reach is" in step_error(events)
    assert not data_dir.exists()


def test_a_target_after_the_archive_is_refused(world) -> None:
    too_late = world["commits"][-1] + timedelta(hours=1)
    proc, events, data_dir = restore(world, too_late.isoformat())
    assert proc.returncode == 1
    assert "the newest point you can reach is" in step_error(events)
    assert not data_dir.exists()


def test_a_non_empty_data_directory_is_refused(world) -> None:
    data_dir = world["stanza"].base / "occupied"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("15\n")
    proc, events, _ = restore(world, world["commits"][5].isoformat(), data_dir=data_dir)
    assert proc.returncode == 1
    assert f"{data_dir} is not empty" in step_error(events)
    assert (data_dir / "PG_VERSION").read_text() == "15\n"


def test_a_missing_middle_segment_ends_the_window_and_is_reported(world,
                                                                  tmp_path: Path) -> None:
    from tui.sources.pgbackrest import inventory

    stanza = world["stanza"]
    archived = sorted(stanza.repo.glob("archive/demo/15-1/0000000100000000/"
                                       "0000000100000000000000??-*.gz"))
    victim = archived[-4]
    name = victim.name[:24]
    hidden = tmp_path / victim.name
    victim.rename(hidden)
    try:
        seen = inventory(stanza.name, str(stanza.config))
    finally:
        hidden.rename(victim)
    [gap] = seen["gaps"]
    assert name in gap and "WAL gap on timeline 1" in gap
    [window] = seen["windows"]
    assert window["last_segment"] == archived[-5].name[:24]
    assert window["end"] < world["last_commit"].astimezone(UTC).isoformat()


def test_a_missing_stanza_is_a_clear_error(world) -> None:
    from tui.sources.pgbackrest import PgbackrestError, inventory

    with pytest.raises(PgbackrestError, match=r"stanza 'nope'.*does not exist.*stanza-create"):
        inventory("nope", str(world["stanza"].config))
    with pytest.raises(PgbackrestError, match=r"pgbackrest info failed \(exit 55\).*missing"):
        inventory("demo", str(world["stanza"].base / "absent.conf"))


def test_pgbackrest_not_installed_says_what_to_install(monkeypatch) -> None:
    from tui.sources.pgbackrest import PgbackrestError, inventory

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PgbackrestError, match="apt-get install pgbackrest"):
        inventory("demo", "/nonexistent/pgbackrest.conf")


def test_unexpected_info_output_is_a_clear_error() -> None:
    from tui.sources.pgbackrest import PgbackrestError, parse_info

    with pytest.raises(PgbackrestError, match="did not print JSON"):
        parse_info(b"<html>", "demo")
    with pytest.raises(PgbackrestError, match="JSON drdeck cannot read"):
        parse_info(json.dumps([{"name": "demo", "status": {"code": 0},
                                "backup": [{"label": "x", "type": "full"}]}]), "demo")
    with pytest.raises(PgbackrestError, match="says nothing about stanza 'demo'"):
        parse_info("[]", "demo")


def test_restore_lines_and_options() -> None:
    from tui.pitr.target import parse_target
    from tui.sources.pgbackrest import BackupSet, parse_restore_line, restore_options

    line = ("2026-11-27 18:01:03.486 P01 DETAIL: restore file /new/base/5/1255 (768KB, 3.42%) "
            "checksum 9416c40c873837f857ad2ae5261346b994c06cff")
    assert parse_restore_line(line) == ("/new/base/5/1255", 3.42)
    assert parse_restore_line("P01 DETAIL: restore file /n/base/1/3429 (0B, 100.00%)") == \
        ("/n/base/1/3429", 100.0)
    assert parse_restore_line("P00 DETAIL: sync path '/n/base'") is None
    now = datetime.now(UTC)
    backup = BackupSet("20261127-175918F", "full", None, now, now, "0/800028", "0/800100",
                       "000000010000000000000008", "000000010000000000000008", 1, 1, 1, 1, 1, 2)
    assert restore_options(parse_target("0/9000000", inclusive=False), "/new", backup) == [
        "--repo=2", "--set=20261127-175918F", "--type=lsn", "--target=0/09000000",
        "--target-action=promote", "--target-exclusive", "--pg1-path=/new",
        "--log-level-console=detail"]
    assert restore_options(parse_target("latest"), "/new", backup,
                           {"fast": "/new.tablespaces/16390", "a b": "/x y"})[2:] == [
        "--type=default", "--pg1-path=/new", "--tablespace-map=fast=/new.tablespaces/16390",
        "--tablespace-map=a b=/x y", "--log-level-console=detail"]


def test_the_inventory_shows_a_configured_stanza(world, tmp_path) -> None:
    stanza = world["stanza"]
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[repositories.none]
type = "local"
path = "{tmp_path / 'empty-repo'}"

[clusters.prod]
dsn = "{world['cluster'].dsn('app')}"
repository = "none"
pgbackrest = {{ stanza = "{stanza.name}", config = "{stanza.config}" }}
""")
    proc = Deck(config, tmp_path / "state").run("inventory", "--json")
    assert proc.returncode == 0, proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    report = cluster["pgbackrest"]
    assert report["stanza"] == stanza.name and "error" not in report
    assert [b["label"] for b in report["backups"]] == [world["label"]]
    assert report["window"]["end"] is not None
    human = Deck(config, tmp_path / "state").run("inventory")
    assert f"pgBackRest stanza {stanza.name}:" in human.stdout
    assert world["label"] in human.stdout


def test_a_cluster_backed_up_by_pgbackrest_alone_needs_no_drdeck_repository(
        world, tmp_path) -> None:
    stanza = world["stanza"]
    config = tmp_path / "drdeck.toml"
    config.write_text(f"""
[clusters.prod]
dsn = "{world['cluster'].dsn('app')}"
pgbackrest = {{ stanza = "{stanza.name}", config = "{stanza.config}" }}
""")
    deck = Deck(config, tmp_path / "state")
    proc = deck.run("inventory", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert cluster["error"] is None and cluster["snapshots"] == []
    assert [b["label"] for b in cluster["pgbackrest"]["backups"]] == [world["label"]]
    human = deck.run("inventory")
    assert human.returncode == 0 and "has no repository" not in human.stdout + human.stderr
    assert f"pgBackRest stanza {stanza.name}:" in human.stdout

    proc = deck.run("status", "--json")
    items = {item["check"]: item for item in json.loads(proc.stdout)["clusters"][0]["items"]}
    assert "repository" not in items and "snapshot" not in items
    assert items["wal"]["reason"].startswith("newest recoverable point is")


def test_the_stanza_gives_its_wal_by_name_as_pgbackrest_stored_it(world) -> None:
    """The Source protocol's WAL: each archived segment, decompressed, byte for byte what
    the repository holds; a name the stanza lacks is None, not an error."""
    import gzip

    from tui.sources.pgbackrest import PgbackrestSource
    from tui.wal.names import Segment

    stanza = world["stanza"]
    fetch = PgbackrestSource(stanza.name, str(stanza.config)).wal_fetcher()
    last = world["last_segment"]
    [stored] = stanza.repo.glob(f"archive/demo/15-1/{last[:16]}/{last}-*.gz")
    assert fetch(last) == gzip.decompress(stored.read_bytes())
    assert len(fetch(last)) == 1 << 20
    beyond = Segment.parse(last, 1 << 20).next().name
    assert fetch(beyond) is None
    assert fetch("00000002.history") is None


def test_wal_events_read_the_stanza_and_name_the_dropped_table(world, tmp_path) -> None:
    """The scan through the Source protocol over pgBackRest's archive; named by a catalog
    map taken from the live server. Last in the module: it writes WAL after what the tests
    above read."""
    cluster, stanza = world["cluster"], world["stanza"]
    deck = Deck(events_config(tmp_path / "drdeck.toml", cluster, f'pgbackrest = {{ stanza = '
                              f'"{stanza.name}", config = "{stanza.config}" }}'),
                tmp_path / "state")
    cluster.execute("create table doomed (id int primary key); "
                    "insert into doomed select generate_series(1, 50)", dbname="app")
    proc = deck.run("wal", "catalog-map")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    xid, at = in_one_transaction(cluster, "drop table doomed")
    wait_archived(cluster)
    proc = deck.run("wal", "events", "--source", "pgbackrest", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    drops = [e for e in json.loads(proc.stdout) if e["kind"] == "drop_table"]
    assert [(e["xid"], e["commit_time"], e["relations"][:1]) for e in drops] == [
        (xid, at.isoformat(), ["public.doomed"])], drops
    # the events' UPDATEs of 2,000 accounts each are big ones: listed, with their rows
    updates = [e for e in json.loads(proc.stdout) if e["kind"] == "update"]
    assert len(updates) >= ROWS and {e["rows"] for e in updates} == {2000}
    text = deck.run("wal", "events", "--source", "pgbackrest", "--min-rows", "5000")
    assert text.returncode == 0, text.stderr
    assert f"xid {xid}" in text.stdout and "UPDATE" not in text.stdout
    assert (f"drdeck run pitr-pgbackrest -p stanza={stanza.name} -p "
            f"pgbackrest_config={stanza.config} -p target={xid}") in text.stdout

