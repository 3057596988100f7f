"""`drdeck drills`, `drills show` and `report --month` on runs made for real through the CLI:
a drill that succeeds, one that fails, a verification, one killed mid-step (interrupted), and
a row from another month written into the journal directly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.journal.report import measured_text
from tui.journal.store import Journal, RunRow

from cli_support import drdeck, drdeck_env, json_events

SECRET = "s3cr3t-drill-token-4711"

DRILL = """
[runbook]
name = "restore-drill"
title = "Restore drill"
scenario = "snapshot"
rto = "1h"
rpo = "15m"
contacts = ["Ops on call <ops@example.com>"]

[params.who]
type = "string"
default = "ops"

[params.token]
type = "secret"

[params.fail]
type = "bool"
default = false

[[steps]]
id = "prepare"
title = "Prepare the scratch target"
action = "shell"
with = { command = "echo preparing for ${who} with $T; sleep 0.3", env = { T = "${token}" } }

[[steps.checks]]
name = "the tool answers"
command = ["echo", "tool ok"]
expect = { contains = "tool ok" }

[[steps]]
id = "break"
title = "Break when asked"
action = "shell"
when = "${fail}"
with = { command = "echo breaking down; exit 3" }

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }

[[steps]]
id = "tidy"
title = "Tidy up"
action = "shell"
with = { command = "echo tidy" }
"""

VERIFY = """
[runbook]
name = "nightly-verify"
title = "Nightly verification"
scenario = "verify"

[[steps]]
id = "check"
title = "Check the newest backup"
action = "shell"
with = { command = "echo verified" }
"""

HANG = """
[runbook]
name = "hang-drill"
title = "A drill that hangs"
scenario = "pitr"

[[steps]]
id = "first"
title = "Quick first step"
action = "shell"
with = { command = "echo first" }

[[steps]]
id = "hang"
title = "The step that never ends"
action = "shell"
with = { command = "test -f ${env.DRILL_GATE} || { echo waiting; sleep 60; }; echo done" }
"""

OLD_MONTH = "2025-01"


@dataclass
class Recorded:
    root: Path
    state: Path
    config: Path
    ids: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return drdeck("--config", str(self.config), *args, state_dir=self.state,
                      cwd=self.root, **{"DRDECK_SECRET_TOKEN": SECRET, **kwargs})

    def journal(self) -> Journal:
        return Journal(str(self.state / "journal.sqlite"))


def write_books(root: Path) -> tuple[Path, Path]:
    books = root / "runbooks-under-test"
    books.mkdir()
    for name, text in (("restore-drill", DRILL), ("nightly-verify", VERIFY),
                       ("hang-drill", HANG)):
        (books / f"{name}.toml").write_text(text)
    config = root / "drdeck.toml"
    config.write_text(f'[runbooks]\ndirs = ["{books}"]\n')
    return books, config


def kill_mid_step(rec: Recorded) -> str:
    """Start hang-drill, SIGKILL it while its second step runs; its run id."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "--config", str(rec.config), "run", "hang-drill",
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=rec.root,
        env=drdeck_env(rec.state, DRILL_GATE=str(rec.root / "gate")), stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    run_id = None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        event = json.loads(line)
        run_id = run_id or event.get("run_id")
        if event.get("line") == "waiting":
            break
        assert time.monotonic() < deadline
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
    assert run_id
    return run_id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("drills")
    _, config = write_books(root)
    rec = Recorded(root, root / "state", config)

    ok = rec.run("run", "restore-drill", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rec.ids["ok"] = json_events(ok.stdout)[0]["run_id"]
    failed = rec.run("run", "restore-drill", "-p", "fail=true",
                     "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    rec.ids["failed"] = json_events(failed.stdout)[0]["run_id"]
    verify = rec.run("run", "nightly-verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rec.ids["verify"] = json_events(verify.stdout)[0]["run_id"]
    rec.ids["interrupted"] = kill_mid_step(rec)

    journal = rec.journal()
    try:
        # The achieved RPO is measured by restore actions (PITR, snapshot with an incident
        # time; see test_real_backup_verify_restore_month); here it is written as they write
        # it, so the report's RPO lines are checked without a database.
        journal.add("measures", run_id=rec.ids["ok"], step_id="prepare", name="achieved_rpo",
                    value=42.0, unit="s", detail="incident time minus the snapshot's",
                    at=datetime.now(UTC).isoformat())
        journal.update_run(rec.ids["ok"], rpo_s=42.0)
        # a drill from another month, which missed its RTO target
        started = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
        rec.ids["old"] = "0ld0ld0ld0ld"
        journal.insert_run(RunRow(
            id=rec.ids["old"], runbook="restore-drill", runbook_sha256="ab" * 32,
            title="Restore drill", scenario="snapshot", mode="incident",
            operator="dba@old-host", host="old-host", pid=1,
            started_at=started.isoformat(), heartbeat_at=started.isoformat(),
            ended_at=(started + timedelta(hours=2)).isoformat(), status="succeeded",
            params_json=json.dumps({"who": "night shift", "token": "***", "fail": "false"}),
            rto_s=5400.0, rto_target_s=3600.0, rpo_s=1800.0, rpo_target_s=900.0))
    finally:
        journal.close()
    return rec


def table_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def test_the_table_lists_runs_newest_first_with_rto_against_target(recorded) -> None:
    proc = recorded.run("drills")
    assert proc.returncode == 0, proc.stderr
    header, *rows = table_lines(proc.stdout)
    assert header.split() == ["DATE", "(UTC)", "RUN", "RUNBOOK", "MODE", "RESULT", "RTO", "%",
                              "TARGET", "RPO"]
    ids = recorded.ids
    order = [next(key for key, run_id in ids.items() if run_id in row) for row in rows]
    assert order == ["interrupted", "verify", "failed", "ok", "old"]

    by_key = dict(zip(order, rows, strict=True))
    # the killed run is found dead by this very command, and can be resumed
    assert "interrupted" in by_key["interrupted"]
    assert by_key["interrupted"].endswith(f"drdeck resume {ids['interrupted']}")
    assert "drdeck resume" not in by_key["failed"]
    ok = by_key["ok"].split()
    assert ok[3:6] == ["restore-drill", "DRILL", "succeeded"]
    assert re.fullmatch(r"\d\.\d\ds|0:00:\d\d", ok[-3]) and ok[-2] == "0%" and ok[-1] == "0:00:42"
    assert "failed" in by_key["failed"] and by_key["failed"].split()[-3:] == ["-", "-", "-"]
    old = by_key["old"].split()
    assert old[:2] == ["2025-01-15", "09:30"] and "INCIDENT" in old
    assert "RTO MISSED" in by_key["old"] and "RPO MISSED" in by_key["old"]
    assert old[-3:] == ["1:30:00", "150%", "0:30:00"]


def test_json_rows_and_filters(recorded) -> None:
    proc = recorded.run("drills", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["format"] == 1 and report["more"] is False
    runs = {r["id"]: r for r in report["runs"]}
    ok = runs[recorded.ids["ok"]]
    assert ok["status"] == "succeeded" and ok["mode"] == "drill" and ok["scenario"] == "snapshot"
    assert ok["rto"]["target_s"] == 3600 and ok["rto"]["verdict"] == "met"
    assert 0.3 < ok["rto"]["measured_s"] < 60 and ok["rto"]["share"] < 0.02
    assert ok["rpo"] == {"measured_s": 42.0, "target_s": 900.0, "share": round(42 / 900, 4),
                         "verdict": "met"}
    assert len(ok["runbook_sha256"]) == 64 and ok["resume_hint"] is None
    failed = runs[recorded.ids["failed"]]
    assert failed["status"] == "failed" and failed["rto"]["verdict"] == "not measured"
    assert "code 3" in failed["error"]
    interrupted = runs[recorded.ids["interrupted"]]
    assert interrupted["resume_hint"] == f"drdeck resume {recorded.ids['interrupted']}"
    old = runs[recorded.ids["old"]]
    assert old["rto"] == {"measured_s": 5400.0, "target_s": 3600.0, "share": 1.5,
                          "verdict": "missed"}

    only = json.loads(recorded.run("drills", "--runbook", "restore-drill", "--json").stdout)
    assert {r["runbook"] for r in only["runs"]} == {"restore-drill"} and len(only["runs"]) == 3
    newest = json.loads(recorded.run("drills", "--limit", "2", "--json").stdout)
    assert [r["id"] for r in newest["runs"]] == [recorded.ids["interrupted"],
                                                 recorded.ids["verify"]]
    assert newest["more"] is True
    table = recorded.run("drills", "--limit", "2")
    assert "--limit 0 shows all" in table.stdout
    none = recorded.run("drills", "--runbook", "no-such-book")
    assert none.returncode == 0 and "no runs of no-such-book" in none.stdout


def test_show_is_a_report_an_auditor_can_read(recorded) -> None:
    run_id = recorded.ids["ok"]
    proc = recorded.run("drills", "show", run_id[:6])
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert md.startswith("# Drill report: Restore drill (`restore-drill`)")
    journal = recorded.journal()
    detail = journal.run(run_id)
    journal.close()
    run = detail.run
    for fact in (f"| Run | `{run_id}` |", f"`{run.runbook_sha256}`", "| Mode | DRILL |",
                 f"| Operator | {run.operator} |", "| Result | SUCCEEDED |", "| Resumed | no |",
                 f"| Started | {run.started.strftime('%Y-%m-%d %H:%M:%S')} UTC |",
                 "| `token` | `***` |", "| `who` | `ops` |"):
        assert fact in md, fact
    assert "of 1:00:00 target (" in md and "%, met), measured from the start to the " \
        "service-restored milestone" in md
    assert "| RPO | 0:00:42 of 0:15:00 target (5%, met) |" in md

    steps = {s.step_id: s for s in detail.steps}
    prepare = next(line for line in md.splitlines() if "(`prepare`)" in line)
    assert "Prepare the scratch target" in prepare and "| succeeded | 1 |" in prepare
    assert f"| {measured_text(steps['prepare'].duration_s)} |" in prepare  # 0.3 s and a bit
    skipped = next(line for line in md.splitlines() if "(`break`)" in line)
    assert "| skipped |" in skipped and "when = '${fail}' does not hold" in skipped
    assert "| `prepare` | the tool answers | PASS | tool ok (contains 'tool ok') |" in md
    assert "| service-restored |" in md
    assert "| `prepare` | achieved_rpo | 0:00:42 | incident time minus the snapshot's |" in md
    assert "- `prepare`: `echo preparing for ops with $T; sleep 0.3`" in md
    # the steps in the order they ran
    assert md.index("(`prepare`)") < md.index("(`break`)") < md.index("(`restored`)") \
        < md.index("(`tidy`)")

    as_json = json.loads(recorded.run("drills", "show", run_id, "--format", "json").stdout)
    assert as_json["kind"] == "run" and as_json["run"]["id"] == run_id
    assert as_json["run"]["rto"]["measured_to"] == "service-restored"
    assert [s["id"] for s in as_json["steps"]] == ["prepare", "break", "restored", "tidy"]
    assert as_json["steps"][0]["checks"] == [
        {"name": "the tool answers", "ok": True, "detail": "tool ok (contains 'tool ok')",
         "at": as_json["steps"][0]["checks"][0]["at"]}]
    assert as_json["steps"][1]["reason"] == "when = '${fail}' does not hold"
    assert as_json["summary"] == {"steps": {"succeeded": 3, "skipped": 1},
                                  "checks": {"passed": 1, "failed": 0}}
    assert as_json["measures"][0]["name"] == "achieved_rpo"


def test_show_a_failed_and_an_interrupted_run(recorded) -> None:
    md = recorded.run("drills", "show", recorded.ids["failed"]).stdout
    assert "| Result | FAILED |" in md
    assert "| RTO | not reached (target 1:00:00) |" in md
    assert "## Failures" in md and "### Break when asked (`break`): failed" in md
    assert "breaking down" in md  # the tail of its output
    assert "| Error | command exited with code 3 |" in md

    md = recorded.run("drills", "show", recorded.ids["interrupted"]).stdout
    assert "| Result | INTERRUPTED |" in md
    assert f"| To continue | `drdeck resume {recorded.ids['interrupted']}` |" in md
    assert "### The step that never ends (`hang`): interrupted" in md and "waiting" in md

    resumed = recorded.run("drills", "show", recorded.ids["old"], "--format", "json")
    assert json.loads(resumed.stdout)["run"]["mode"] == "incident"

    missing = recorded.run("drills", "show", "zzzz")
    assert missing.returncode == 2 and "no run 'zzzz'" in missing.stderr
    bad = recorded.run("drills", "show", recorded.ids["ok"], "--format", "pdf")
    assert bad.returncode == 2


def test_a_resumed_run_says_so(tmp_path: Path) -> None:
    _, config = write_books(tmp_path)
    rec = Recorded(tmp_path, tmp_path / "state", config)
    run_id = kill_mid_step(rec)
    (tmp_path / "gate").touch()
    resumed = rec.run("resume", run_id, "--json", DRILL_GATE=str(tmp_path / "gate"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    md = rec.run("drills", "show", run_id).stdout
    assert "| Result | SUCCEEDED |" in md
    assert "| Resumed | yes, 1 time: one run with its full history" in md
    hang = next(line for line in md.splitlines() if "(`hang`)" in line)
    assert "| succeeded | 1 |" in hang
    [row] = json.loads(rec.run("drills", "--json").stdout)["runs"]
    assert row["resumes"] == 1 and row["resume_hint"] is None


def test_month_report_takes_the_month_and_only_it(recorded) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    proc = recorded.run("report", "--month", month, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kind"] == "month" and report["month"] == month
    drills = [d["id"] for d in report["drills"]]
    # oldest first; the verification is not a drill, the other month's run is not in it
    assert drills == [recorded.ids["ok"], recorded.ids["failed"], recorded.ids["interrupted"]]
    assert report["drill_summary"] == {"runs": 3, "succeeded": 1, "not_succeeded": 2,
                                       "rto_met": 1, "rto_missed": 0, "rto_not_measured": 1,
                                       "rpo_met": 1, "rpo_missed": 0}
    [verification] = report["verifications"]
    assert verification["run_id"] == recorded.ids["verify"] and verification["ok"] is True
    worst = {w["runbook"]: w for w in report["worst_rto"]}
    assert worst["restore-drill"]["run_id"] == recorded.ids["ok"]
    assert worst["restore-drill"]["runs"] == 2 and worst["restore-drill"]["verdict"] == "met"
    assert worst["hang-drill"]["verdict"] == "no target"
    assert report["repository_verifications"] is None  # no cluster configured

    md = recorded.run("report", "--month", month).stdout
    assert md.startswith("# Drills and backup verifications: ")
    assert "- Drills: 3 runs, 1 succeeded, 2 did not succeed." in md
    assert "- Backup verifications recorded in the journal: 1, 1 passed, 0 failed." in md
    for key in ("ok", "failed", "interrupted", "verify"):
        assert recorded.ids[key] in md
    assert recorded.ids["old"] not in md

    old = json.loads(recorded.run("report", "--month", OLD_MONTH, "--format", "json").stdout)
    assert [d["id"] for d in old["drills"]] == [recorded.ids["old"]]
    assert old["drill_summary"]["rto_missed"] == 1 and old["drill_summary"]["rpo_missed"] == 1
    assert old["worst_rto"][0]["measured_s"] == 5400 and old["worst_rto"][0]["share"] == 1.5
    old_md = recorded.run("report", "--month", OLD_MONTH).stdout
    assert "January 2025" in old_md
    assert f"| 2025-01-15 09:30 | `{recorded.ids['old']}` | `restore-drill` | INCIDENT |" \
        in old_md
    assert "| 1:30:00 | 1:00:00 | 150% | MISSED |" in old_md
    assert recorded.ids["ok"] not in old_md

    empty = recorded.run("report", "--month", "2024-02").stdout
    assert "No drills this month." in empty


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "November", "2026-00", ""])
def test_a_bad_month_is_refused(recorded, month: str) -> None:
    proc = recorded.run("report", "--month", month)
    assert proc.returncode == 2
    assert "write the month as YYYY-MM" in proc.stderr and "Traceback" not in proc.stderr


def test_the_secret_appears_in_no_report(recorded) -> None:
    outputs = [recorded.run("drills").stdout, recorded.run("drills", "--json").stdout]
    for run_id in recorded.ids.values():
        for fmt in ("md", "json"):
            proc = recorded.run("drills", "show", run_id, "--format", fmt)
            assert proc.returncode == 0, proc.stderr
            outputs.append(proc.stdout)
    for month in (datetime.now(UTC).strftime("%Y-%m"), OLD_MONTH):
        for fmt in ("md", "json"):
            outputs.append(recorded.run("report", "--month", month, "--format", fmt).stdout)
    everything = "\n".join(outputs)
    assert "echo preparing for ops with $T" in everything  # the command was shown
    assert SECRET not in everything
    assert SECRET not in (recorded.state / "journal.sqlite").read_bytes().decode(errors="replace")


# --- the real thing: snapshot-backup, verify-backup, snapshot-restore on PostgreSQL -----------


def test_real_backup_verify_restore_month(pg_cluster, gpg_home, tmp_path: Path) -> None:
    """A month report lists snapshot-backup's verify step, verify-backup, the repository's
    verification records, and the restore drill with its measured RTO and RPO."""
    from backup_support import Deck, local_repository, seed_app, write_config

    seed_app(pg_cluster)
    config = write_config(tmp_path / "drdeck.toml", cluster=pg_cluster,
                          repository=local_repository(tmp_path / "repo"),
                          gpg_home=gpg_home.path, recipients=[gpg_home.fingerprint])
    deck = Deck(config, tmp_path / "state")
    ids = {}

    def run(name: str, *args: str) -> None:
        proc, events = deck.run_json("run", name, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ids[name] = events[0]["run_id"]

    run("snapshot-backup")
    run("verify-backup", "-p", "full=false")  # two verifications in the same second: both kept
    time.sleep(0.5)  # the incident comes after the snapshot: some data is lost
    run("snapshot-restore", "-p", "target_db=app_drill", "-p",
        f"incident_time={datetime.now(UTC).isoformat()}", "--yes")

    proc = deck.run("report", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [drill] = report["drills"]
    assert drill["id"] == ids["snapshot-restore"] and drill["status"] == "succeeded"
    assert drill["rto"]["target_s"] == 7200 and drill["rto"]["verdict"] == "met"
    assert drill["rpo"]["measured_s"] > 0 and drill["rpo"]["verdict"] == "no target"
    verified = [(v["runbook"], v["step"], v["ok"]) for v in report["verifications"]]
    assert verified == [("snapshot-backup", "verify", True), ("verify-backup", "verify", True)]
    records = report["repository_verifications"]
    assert [(r["cluster"], r["database"], r["ok"]) for r in records] == [("prod", "app", True)] * 2
    assert report["repositories"] == [{"cluster": "prod", "repository": str(tmp_path / "repo"),
                                       "error": None}]

    md = deck.run("drills", "show", ids["snapshot-restore"]).stdout
    rpo_line = next(line for line in md.splitlines() if line.startswith("| RPO | "))
    assert rpo_line.endswith("(no target set) |")
    measures = md.split("## Measures")[1]
    assert "| achieved_rpo |" in measures
    assert "| Mode | DRILL |" in md and "| Result | SUCCEEDED |" in md


def test_the_same_reports_from_a_postgresql_journal(pg_cluster, tmp_path: Path) -> None:
    pg_cluster.execute("create database journal")
    url = pg_cluster.dsn("journal")
    _, config = write_books(tmp_path)
    rec = Recorded(tmp_path, tmp_path / "state", config)
    ok = rec.run("run", "restore-drill", "--json", DRDECK_JOURNAL=url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    run_id = json_events(ok.stdout)[0]["run_id"]
    assert not (tmp_path / "state" / "journal.sqlite").exists()

    [row] = json.loads(rec.run("drills", "--json", DRDECK_JOURNAL=url).stdout)["runs"]
    assert row["id"] == run_id and row["rto"]["verdict"] == "met"
    md = rec.run("drills", "show", run_id[:5], DRDECK_JOURNAL=url).stdout
    assert "| Result | SUCCEEDED |" in md and "| `prepare` | the tool answers | PASS |" in md
    month = json.loads(rec.run("report", "--format", "json", DRDECK_JOURNAL=url).stdout)
    assert [d["id"] for d in month["drills"]] == [run_id]
    docs = rec.run("docs", "--out", str(tmp_path / "out"), DRDECK_JOURNAL=url)
    assert docs.returncode == 0, docs.stderr
    book = (tmp_path / "out" / "recovery-runbook.md").read_text()
    assert "from 1 successful drill:" in section_of(book, "## Restore drill")
    assert SECRET not in md + book + json.dumps(month)


def section_of(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]
