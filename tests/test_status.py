"""`drdeck status`: each cluster's backups, archive, verifications and drills against their
targets, with monitoring exit codes, JSON and Prometheus text.

States are built for real: snapshots in a local repository (tests/repo_support.py) at
chosen ages, and drills in the SQLite journal with chosen dates.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.cli import main
from tui.config import load_config_file
from tui.journal.status import compute_status, prometheus_text
from tui.journal.store import Journal, RunRow
from tui.storage import LocalStore

from cli_support import drdeck
from harness.postgres import start_on_a_free_port
from repo_support import fake_base_backup, fake_snapshot

HOUR = 3600.0
DAY = 86400.0

CONFIG = """\
[repositories.nearby]
type = "local"
path = "{repo}"

[clusters.prod]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app"]
rpo = "24h"
rto = "1h"
"""


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def repo(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "repo")


@pytest.fixture
def config_path(tmp_path: Path, repo: LocalStore) -> Path:
    path = tmp_path / "drdeck.toml"
    path.write_text(CONFIG.format(repo=tmp_path / "repo"))
    return path


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The state directory this test's drdeck (in process or not) keeps its journal in."""
    directory = tmp_path / "state"
    directory.mkdir()
    monkeypatch.setenv("DRDECK_STATE_DIR", str(directory))
    return directory


def snapshot(repo: LocalStore, age_s: float, verified: tuple[str, bool] | None = ("full", True),
             cluster: str = "prod", database: str = "app") -> None:
    fake_snapshot(repo, cluster, database, now() - timedelta(seconds=age_s), verified=verified)


def drill(state: Path, *, ended_ago_s: float, status: str = "succeeded",
          rto_s: float | None = 1800.0, runbook: str = "snapshot-restore",
          cluster: str = "prod", error: str | None = None, run_id: str | None = None,
          journal_url: str | None = None) -> str:
    ended = now() - timedelta(seconds=ended_ago_s)
    started = ended - timedelta(seconds=rto_s or 600)
    run_id = run_id or f"run{int(ended_ago_s)}{status[:3]}{cluster}"
    journal = Journal(journal_url or str(state / "journal.sqlite"))
    try:
        journal.insert_run(RunRow(
            id=run_id, runbook=runbook, runbook_sha256="0" * 64, title="Restore",
            scenario="snapshot", mode="drill", operator="dba@host", host="host", pid=1,
            started_at=started.isoformat(), status="running",
            params_json=json.dumps({"cluster": cluster}), rto_target_s=7200.0))
        journal.update_run(run_id, status=status, ended_at=ended.isoformat(),
                           rto_s=rto_s if status == "succeeded" else None, error=error)
    finally:
        journal.close()
    return run_id


def healthy(repo: LocalStore, state: Path) -> None:
    """Everything ok: a fresh verified snapshot, a recent drill within its RTO."""
    snapshot(repo, 2 * HOUR)
    drill(state, ended_ago_s=2 * DAY)


def status(config_path: Path, *args: str, capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, str, str]:
    code = main(["--config", str(config_path), "status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def states(out: str) -> dict[str, str]:
    """check (and runbook) -> STATE, from the human output."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"(OK|WARNING|CRITICAL)\s+prod\s+(\S+(?: [\w-]+)?)\s{2,}", line)
        if match:
            found[match[2].strip()] = match[1]
    return found


# --- exit codes at each threshold --------------------------------------------------------


def test_all_ok_exits_0(repo, state, config_path, capsys) -> None:
    healthy(repo, state)
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 0, out
    assert states(out) == {"snapshot": "OK", "verification": "OK",
                           "drill snapshot-restore": "OK", "due snapshot-restore": "OK"}
    assert out.splitlines()[-1] == "drdeck status: OK"


@pytest.mark.parametrize(("age_h", "code", "expected"), [
    (17, 0, "OK"),  # under 75% of the 24h RPO
    (19, 1, "WARNING"),  # over 75% (18h)
    (25, 2, "CRITICAL"),  # over the RPO
])
def test_snapshot_age_against_the_rpo(repo, state, config_path, capsys, age_h, code,
                                      expected) -> None:
    snapshot(repo, age_h * HOUR)
    drill(state, ended_ago_s=2 * DAY)
    result, out, _ = status(config_path, capsys=capsys)
    assert result == code, out
    assert states(out)["snapshot"] == expected
    assert "newest snapshot of app is" in out


def test_the_oldest_database_counts(tmp_path, repo, state, capsys) -> None:
    path = tmp_path / "two.toml"
    path.write_text(CONFIG.format(repo=tmp_path / "repo").replace(
        'databases = ["app"]', 'databases = ["app", "billing"]'))
    snapshot(repo, 1 * HOUR, database="app")
    snapshot(repo, 20 * HOUR, database="billing")
    drill(state, ended_ago_s=DAY)
    code, out, _ = status(path, capsys=capsys)
    assert code == 1 and "newest snapshot of billing is 20h" in out

    path.write_text(path.read_text().replace('"billing"]', '"billing", "audit"]'))
    code, out, _ = status(path, capsys=capsys)
    assert code == 2 and "no complete snapshot of audit" in out


def test_no_snapshot_is_critical(repo, state, config_path, capsys) -> None:
    drill(state, ended_ago_s=DAY)
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 2
    assert "nothing to restore from" in out


def test_unreadable_repository_is_critical(tmp_path, state, capsys) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the repository should be")
    path = tmp_path / "broken.toml"
    path.write_text(CONFIG.format(repo=blocker))
    drill(state, ended_ago_s=DAY)
    code, out, _ = status(path, capsys=capsys)
    assert code == 2, out
    assert states(out)["repository"] == "CRITICAL"
    assert "cannot read the repository" in out


def test_failed_verification_is_critical(repo, state, config_path, capsys) -> None:
    snapshot(repo, 2 * HOUR, verified=("full", False))
    drill(state, ended_ago_s=DAY)
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 2
    assert states(out)["verification"] == "CRITICAL"
    assert "FAILED" in out and "row counts differ" in out


def test_old_or_missing_verification_is_a_warning(repo, state, config_path, capsys) -> None:
    snapshot(repo, 2 * HOUR, verified=None)
    drill(state, ended_ago_s=DAY)
    code, out, _ = status(config_path, capsys=capsys)
    assert (code, states(out)["verification"]) == (1, "WARNING")
    assert "no snapshot has ever been verified" in out

    snapshot(repo, 8 * DAY, verified=("full", True))  # verified 20 minutes after: 8d ago
    code, out, _ = status(config_path, capsys=capsys)
    assert (code, states(out)["verification"]) == (1, "WARNING")
    assert "older than 7 days" in out

    snapshot(repo, 6 * DAY, verified=("list", True))
    code, out, _ = status(config_path, capsys=capsys)
    assert (code, states(out)["verification"]) == (0, "OK")


def test_drills(repo, state, config_path, capsys) -> None:
    snapshot(repo, 2 * HOUR)
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert states(out) == {"snapshot": "OK", "verification": "OK", "drill": "WARNING",
                           "due": "WARNING"}
    assert "never drilled" in out

    drill(state, ended_ago_s=31 * DAY)  # a success a month ago: overdue
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert states(out)["drill snapshot-restore"] == "OK"
    assert states(out)["due snapshot-restore"] == "WARNING" and "OVERDUE" in out

    drill(state, ended_ago_s=2 * DAY, rto_s=2 * HOUR)  # on time, but over the cluster's 1h
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert states(out)["drill snapshot-restore"] == "WARNING"
    assert states(out)["due snapshot-restore"] == "OK"
    assert "over the target 1h" in out

    drill(state, ended_ago_s=DAY, rto_s=20 * 60)
    assert status(config_path, capsys=capsys)[0] == 0

    drill(state, ended_ago_s=HOUR, status="failed", error="pg_restore: error: out of disk")
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert states(out)["drill snapshot-restore"] == "WARNING"
    assert "last drill FAILED" in out and "out of disk" in out
    assert states(out)["due snapshot-restore"] == "OK"  # the success a day ago still counts


def test_drills_count_for_the_cluster_they_named(tmp_path, repo, state, capsys) -> None:
    path = tmp_path / "two.toml"
    path.write_text(CONFIG.format(repo=tmp_path / "repo") + """
[clusters.stage]
dsn = "host=/nonexistent dbname=app"
repository = "nearby"
databases = ["app"]
rpo = "24h"
""")
    snapshot(repo, HOUR)
    snapshot(repo, HOUR, cluster="stage")
    drill(state, ended_ago_s=DAY, cluster="prod")
    config = load_config_file(path)
    result = compute_status(config)
    prod, stage = result.clusters
    assert (prod.name, prod.state, stage.name, stage.state) == ("prod", "ok", "stage", "warning")
    assert stage.item("drill").reason.startswith("no restore drill of this cluster")


def test_wal_lag_against_the_rpo(repo, state, config_path, capsys) -> None:
    healthy(repo, state)
    fake_base_backup(repo, "prod", now() - timedelta(hours=30))
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 2
    assert states(out)["wal"] == "CRITICAL" and "newest recoverable point is 1d06h old" in out

    fake_base_backup(repo, "prod", now() - timedelta(hours=1), start_segment=20)
    code, out, _ = status(config_path, capsys=capsys)
    assert states(out)["wal"] == "OK"
    # the repository holds a WAL archive of prod, and prod's server cannot be asked
    # whether it still feeds it: a warning, the only one (test_shared_repository asks one)
    assert code == 1, out
    assert states(out)["archiver"] == "WARNING"
    assert "cannot check the server's archiver: cannot connect:" in out


def test_drills_from_a_postgresql_journal(repo, state, config_path, capsys, pg_cluster,
                                          monkeypatch) -> None:
    pg_cluster.execute("create database journal")
    url = pg_cluster.dsn("journal")
    snapshot(repo, HOUR)
    drill(state, ended_ago_s=40 * DAY, journal_url=url)
    drill(state, ended_ago_s=DAY, status="failed", error="restore refused", journal_url=url)
    monkeypatch.setenv("DRDECK_JOURNAL", url)
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert states(out) == {"snapshot": "OK", "verification": "OK",
                           "drill snapshot-restore": "WARNING",
                           "due snapshot-restore": "WARNING"}
    assert "last drill FAILED" in out and "OVERDUE" in out


def test_drills_from_a_sqlite_url_in_the_config(tmp_path, repo, state, capsys,
                                                monkeypatch) -> None:
    journal = tmp_path / "shared" / "journal.db"
    path = tmp_path / "conf" / "drdeck.toml"
    path.parent.mkdir()
    path.write_text(CONFIG.format(repo=tmp_path / "repo")
                    + f'\n[journal]\nurl = "sqlite://{journal}"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # not where the journal is: the URL alone says where
    snapshot(repo, HOUR)
    code, out, _ = status(path, capsys=capsys)
    assert code == 1 and f"no journal at {journal}" in out
    assert not journal.exists() and list(work.iterdir()) == []  # status only reads

    drill(state, ended_ago_s=DAY, journal_url=f"sqlite://{journal}")
    code, out, _ = status(path, capsys=capsys)
    assert code == 0, out
    assert states(out)["drill snapshot-restore"] == "OK"


def test_unreadable_journal_is_a_warning(repo, tmp_path, config_path, capsys, monkeypatch
                                         ) -> None:
    snapshot(repo, HOUR)
    monkeypatch.setenv("DRDECK_JOURNAL", str(tmp_path))  # a directory: SQLite cannot open it
    code, out, _ = status(config_path, capsys=capsys)
    assert code == 1
    assert "cannot read the journal" in out


def test_no_clusters_is_invalid_input(tmp_path, capsys) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    code, _, err = status(path, capsys=capsys)
    assert code == 2 and "no clusters" in err


# --- the server's archiver: failing, or behind ------------------------------------------

READY_SEGMENT = r"^[0-9A-F]{24}[.]ready$"


def ready_segments(cluster) -> list[str]:
    """What the server itself says waits: the segments marked .ready in archive_status."""
    return [row[0].removesuffix(".ready") for row in cluster.execute(
        "select name from pg_ls_archive_statusdir() where name ~ %s order by name",
        [READY_SEGMENT])]


def until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def until_archived(cluster, what: str) -> None:
    """No .ready left, and pg_stat_archiver has counted the newest (it does so just after
    the server renames its .ready)."""
    newest = (ready_segments(cluster) or [""])[-1]
    until(lambda: not ready_segments(cluster) and (cluster.scalar(
        "select last_archived_wal from pg_stat_archiver") or "") >= newest, what)


def new_segments(cluster, count: int) -> None:
    """Write, then finish the segment: `count` more segments for the archiver."""
    cluster.execute("create table if not exists filler (n int)")
    for _ in range(count):
        cluster.execute("insert into filler values (1)")
        cluster.execute("select pg_switch_wal()")


def status_pointed_at(tmp_path: Path, cluster, user: str = "postgres") -> Path:
    path = tmp_path / f"{user}.toml"
    path.write_text(CONFIG.format(repo=tmp_path / "repo").replace(
        "host=/nonexistent dbname=app", cluster.dsn(user=user)))
    return path


def archiver_of(path: Path, capsys) -> tuple[int, dict, str]:
    """(exit code, the archiver item of --json, the archiver line of the text)."""
    code, out, _ = status(path, "--json", capsys=capsys)
    items = {i["check"]: i for i in json.loads(out)["clusters"][0]["items"]}
    text_code, text, _ = status(path, capsys=capsys)
    [line] = [line for line in text.splitlines() if re.match(r"\w+\s+prod\s+archiver ", line)]
    assert text_code == code and "Traceback" not in text
    return code, items["archiver"], line


def test_a_hung_archive_command_shows_its_waiting_segments(tmp_path, repo, state, capsys,
                                                           make_pg_cluster) -> None:
    """A hung archive_command never fails: the count of waiting segments tells."""
    healthy(repo, state)  # everything else ok: the exit code is the archiver's
    cluster = make_pg_cluster(archive=True, wal_segsize_mb=1, start=False)
    hung = cluster.base_dir / "hung"  # while it exists, archive_command waits
    hung.touch()
    cluster.configure(archive_command=f"while test -e {hung}; do sleep 0.05; done; "
                                      f"cp %p {cluster.archive_dir}/%f")
    start_on_a_free_port(cluster)
    path = status_pointed_at(tmp_path, cluster)

    new_segments(cluster, 1)
    assert len(ready_segments(cluster)) == 1
    code, item, line = archiver_of(path, capsys)
    # nothing archived yet: nothing to count from, so no number at all
    assert (code, item["state"], item["waiting_segments"]) == (0, "ok", None)
    assert line.endswith("segments waiting to be archived: unknown (nothing archived yet "
                         "to count from)"), line

    hung.unlink()
    until_archived(cluster, "the segment is archived")
    code, item, line = archiver_of(path, capsys)
    assert (code, item["state"], item["waiting_segments"]) == (0, "ok", 0)
    assert line.endswith("; no segment waiting to be archived"), line

    hung.touch()
    new_segments(cluster, 3)
    waiting = ready_segments(cluster)
    code, item, line = archiver_of(path, capsys)
    assert ready_segments(cluster) == waiting and len(waiting) == 3
    assert (code, item["state"], item["ok"]) == (0, "ok", True)
    assert item["waiting_segments"] == len(waiting) and 0 <= item["age_s"] < 60
    assert re.search(r"OK\s+prod\s+archiver\s+archiving works: no failure, last archived "
                     r"\w{24} at .* UTC \(1 archived\); 3 segments waiting to be archived, "
                     r"the oldest for \d", line), line
    _, metrics, _ = status(path, "--prometheus", capsys=capsys)
    assert 'drdeck_archiver_waiting_segments{cluster="prod"} 3' in metrics.splitlines()

    # a role without pg_monitor counts them too, but may not list archive_status
    cluster.execute("create role watcher login")
    watched = status_pointed_at(tmp_path, cluster, user="watcher")
    code, item, line = archiver_of(watched, capsys)
    assert (item["waiting_segments"], item["age_s"]) == (3, None)
    assert line.endswith("3 segments waiting to be archived (for how long needs "
                         "pg_monitor, to list pg_wal/archive_status)"), line

    # ten minutes later, as the oldest .ready file's time says: behind, a warning
    oldest = cluster.data_dir / "pg_wal" / "archive_status" / f"{waiting[0]}.ready"
    ten_minutes_ago = time.time() - 600
    os.utime(oldest, (ten_minutes_ago, ten_minutes_ago))
    code, item, line = archiver_of(path, capsys)
    assert (code, item["state"], item["waiting_segments"]) == (1, "warning", 3)
    assert 600 <= item["age_s"] < 660 and item["target_s"] == 300
    assert re.search(r"^WARNING\s+prod\s+archiver\s+3 segments waiting to be archived, "
                     r"the oldest for 10m(\d\ds)? \(over 5m: archive_command is slow or hung\); "
                     r"no failure, last archived ", line), line

    hung.unlink()  # it goes again: the backlog drains, the count drops to 0
    until_archived(cluster, "the backlog is archived")
    code, item, line = archiver_of(path, capsys)
    assert (code, item["state"], item["waiting_segments"], item["age_s"]) == (0, "ok", 0, None)
    assert "(4 archived); no segment waiting to be archived" in line, line


def test_a_failing_archive_command_counts_what_piles_up(tmp_path, repo, state, capsys,
                                                        make_pg_cluster) -> None:
    healthy(repo, state)
    cluster = make_pg_cluster(archive=True, wal_segsize_mb=1)
    working = cluster.scalar("show archive_command")
    new_segments(cluster, 1)
    until_archived(cluster, "the first segment is archived")
    path = status_pointed_at(tmp_path, cluster)

    cluster.configure(archive_command="false")
    cluster.reload()
    failures = cluster.scalar("select failed_count from pg_stat_archiver")
    new_segments(cluster, 2)
    until(lambda: cluster.scalar("select failed_count from pg_stat_archiver") > failures,
          "archive_command fails")
    waiting = ready_segments(cluster)
    code, item, line = archiver_of(path, capsys)
    assert ready_segments(cluster) == waiting and len(waiting) == 2
    assert (code, item["state"], item["ok"]) == (2, "critical", False)
    assert item["waiting_segments"] == 2
    assert re.search(r"^CRITICAL\s+prod\s+archiver\s+WAL archiving is failing: ", line), line
    # after the server's own failure lines: what piles up meanwhile
    assert re.search(r" Archiver lag: 2 segments waiting to be archived, the oldest for "
                     r"[\d.]+s\.$", line), line

    cluster.configure(archive_command=working)
    cluster.reload()
    until_archived(cluster, "what piled up is archived")
    code, item, line = archiver_of(path, capsys)
    assert (code, item["state"], item["waiting_segments"]) == (0, "ok", 0)


def test_the_lag_is_counted_by_segment_name_or_said_unknown() -> None:
    """Where a number would be wrong, the archiver's lag is unknown, and says why."""
    from tui.postgres.archiver import ArchiverStats

    at = now() - timedelta(minutes=1)

    def lag(last: str | None, current: str | None, recovery: bool = False,
            mode: str = "on") -> tuple[int | None, str]:
        stats = ArchiverStats(mode, recovery, 5, last, at if last else None, 0, None, None,
                              current_wal=current, wal_segment_size=16 << 20)
        return stats.waiting_segments, stats.describe_waiting()

    # 16 MiB segments: 256 to a log, so 1/FF is followed by 2/00 and 2/01
    assert lag("0000000100000001000000FF", "000000010000000200000002") == (
        2, "2 segments waiting to be archived (for how long needs pg_monitor, to list "
        "pg_wal/archive_status)")
    assert lag("000000010000000200000001", "000000010000000200000002") == (
        0, "no segment waiting to be archived")
    assert lag("000000010000000000000004", "000000020000000000000006") == (
        None, "segments waiting to be archived: unknown (the newest segment archived is on "
        "timeline 1, the server writes timeline 2)")
    assert lag("00000002.history", "000000020000000000000006")[0] is None
    assert lag("000000010000000000000003.00000028.backup", "000000010000000000000006") == (
        None, "segments waiting to be archived: unknown (the newest file archived, "
        "000000010000000000000003.00000028.backup, is no WAL segment)")
    assert lag(None, "000000010000000000000006")[1].endswith("(nothing archived yet to "
                                                              "count from)")
    assert lag("000000010000000000000004", None, recovery=True, mode="always")[1].endswith(
        "(a standby has no WAL position of its own to count to)")


# --- the machine forms ----------------------------------------------------------------------


def test_json_shape(repo, state, config_path, capsys) -> None:
    snapshot(repo, 20 * HOUR)
    run_id = drill(state, ended_ago_s=2 * DAY)
    code, out, _ = status(config_path, "--json", capsys=capsys)
    assert code == 1
    report = json.loads(out)
    assert set(report) == {"format", "generated_at", "state", "exit_code", "thresholds",
                           "clusters"}
    assert (report["format"], report["state"], report["exit_code"]) == (1, "warning", 1)
    assert report["thresholds"] == {"rpo_warning_fraction": 0.75,
                                    "verification_max_age_s": 7 * DAY,
                                    "archiver_wait_warning_s": 300}
    [cluster] = report["clusters"]
    assert (cluster["name"], cluster["state"], cluster["rpo_s"], cluster["rto_s"]) == (
        "prod", "warning", DAY, HOUR)
    items = {(i["check"], i["runbook"]): i for i in cluster["items"]}
    assert set(items) == {("snapshot", None), ("verification", None),
                          ("drill", "snapshot-restore"), ("due", "snapshot-restore")}
    for item in cluster["items"]:
        assert item["state"] in ("ok", "warning", "critical") and item["reason"]
    snap = items[("snapshot", None)]
    assert snap["state"] == "warning" and snap["database"] == "app"
    assert 20 * HOUR - 60 < snap["age_s"] < 20 * HOUR + 60 and snap["target_s"] == DAY
    verification = items[("verification", None)]
    assert verification["ok"] is True and verification["state"] == "ok"
    drilled = items[("drill", "snapshot-restore")]
    assert (drilled["run_id"], drilled["rto_s"], drilled["target_s"], drilled["ok"]) == (
        run_id, 1800.0, HOUR, True)
    due = items[("due", "snapshot-restore")]
    assert due["state"] == "ok" and due["overdue_s"] == 0 and due["target_s"] == 30 * DAY


SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def parse_prometheus(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict, str]]]:
    """(metric -> (help, type), [(metric, labels, value)]), checking the order as it goes."""
    described: dict[str, list[str]] = {}
    samples = []
    for line in text.splitlines():
        assert line, "no blank lines in the exposition"
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            described[name] = [help_text]
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert described[name] and len(described[name]) == 1, "TYPE follows its HELP"
            described[name].append(kind)
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value = match.groups()
            assert name in described, f"{name}: sample before its HELP/TYPE"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels_text or ""))
            float(value)  # a number, +Inf or NaN
            samples.append((name, labels, value))
    return {k: (v[0], v[1]) for k, v in described.items()}, samples


def test_prometheus_text(repo, state, config_path, capsys) -> None:
    snapshot(repo, 25 * HOUR)  # critical: --prometheus still exits 0 once printed
    drill(state, ended_ago_s=2 * DAY, rto_s=1500.0)
    code, out, _ = status(config_path, "--prometheus", capsys=capsys)
    assert code == 0
    described, samples = parse_prometheus(out)
    assert all(kind == "gauge" for _, kind in described.values())
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    prod = (("cluster", "prod"),)
    drill_labels = (("cluster", "prod"), ("runbook", "snapshot-restore"))
    assert values[("drdeck_status", prod)] == "2"
    assert values[("drdeck_rpo_seconds", prod)] == "86400"
    assert values[("drdeck_rto_seconds", prod)] == "3600"
    assert 25 * HOUR - 60 < float(values[("drdeck_snapshot_age_seconds", prod)]) < 25 * HOUR + 60
    assert 0 < float(values[("drdeck_last_verification_age_seconds", prod)]) < 25 * HOUR
    assert values[("drdeck_last_verification_ok", prod)] == "1"
    assert values[("drdeck_last_drill_rto_seconds", drill_labels)] == "1500"
    assert values[("drdeck_last_drill_ok", drill_labels)] == "1"
    assert values[("drdeck_drill_overdue_seconds", drill_labels)] == "0"
    assert ("drdeck_status_generated_timestamp_seconds", ()) in values
    assert not any(name == "drdeck_wal_lag_seconds" for name, _, _ in samples)  # no WAL here


def test_prometheus_wal_lag_and_never_drilled(repo, state, config_path, capsys) -> None:
    snapshot(repo, HOUR)
    fake_base_backup(repo, "prod", now() - timedelta(hours=3))
    code, out, _ = status(config_path, "--prometheus", capsys=capsys)
    assert code == 0
    _, samples = parse_prometheus(out)
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
    lag = float(values[("drdeck_wal_lag_seconds", (("cluster", "prod"),))])
    assert 3 * HOUR - 60 < lag < 3 * HOUR + 60
    # never drilled: infinitely overdue, so an `overdue > 0` alert fires
    assert values[("drdeck_drill_overdue_seconds", (("cluster", "prod"), ("runbook", "")))] \
        == "+Inf"
    assert values[("drdeck_status", (("cluster", "prod"),))] == "1"


def test_prometheus_label_values_are_escaped() -> None:
    from tui.journal.status import ClusterStatus, Item, Status

    weird = 'we"ird\\name'
    text = prometheus_text(Status(now(), [ClusterStatus(
        "prod", 60.0, None, [Item("drill", "ok", "fine", runbook=weird, ok=True, age_s=5.0)])]))
    assert 'runbook="we\\"ird\\\\name"' in text


def test_through_the_real_command(repo, tmp_path, config_path) -> None:
    """The installed entry point, as cron or a monitoring agent runs it."""
    snapshot(repo, 25 * HOUR)
    state = tmp_path / "cli-state"
    result = drdeck("--config", str(config_path), "status", state_dir=state)
    assert result.returncode == 2, result.stderr
    assert re.search(r"^CRITICAL\s+prod\s+snapshot\s+newest snapshot of app is 1d01h",
                     result.stdout, re.M), result.stdout
    assert result.stdout.rstrip().endswith("drdeck status: CRITICAL (1 critical, 2 warning)")
    assert "(no journal at " in result.stdout  # a hint when status runs as another user
    assert drdeck("status", "--json", "--prometheus", state_dir=state).returncode == 2
    assert not (state / "journal.sqlite").exists()  # status reads; it never starts a journal
