"""The forecast before a run: each step's median over the journal's earlier successful
runs of the same runbook on the same cluster, with their spread, summed against the RTO;
steps no run finished say "no history". Journals with known histories give exact numbers,
through `drdeck forecast` and `drdeck run --dry-run`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.journal.forecast import forecast
from tui.journal.store import Journal, RunDetail, RunRow, StepRow, default_path
from tui.runbook.discovery import SHIPPED_DIR
from tui.runbook.loader import load_runbook

from cli_support import drdeck

PITR = load_runbook(SHIPPED_DIR / "pitr-restore.toml")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# step -> its duration in each of the three successful runs on prod (back: always skipped)
TOOK = {"preflight": (10, 12, 20), "restore": (600, 900, 1200), "check": (1, 1, 2),
        "switch": (60, 120, 90), "restored": (0, 0, 0)}


def record(journal: Journal, rid: str, status: str, params: dict, took: dict[str, float],
           *, dry: bool = False, day: int = 0) -> None:
    started = START + timedelta(days=day)
    journal.insert_run(RunRow(
        id=rid, runbook="pitr-restore", runbook_sha256=PITR.sha256, title=PITR.title,
        scenario=PITR.scenario, mode="drill", operator="ana", host="db-admin-1", pid=1,
        started_at=started.isoformat(), status=status, params_json=json.dumps(params),
        ended_at=(started + timedelta(hours=1)).isoformat(), heartbeat_at=started.isoformat(),
        rto_target_s=PITR.rto, dry_run=int(dry)))
    for position, step in enumerate(PITR.steps):
        if step.id not in took:
            journal.upsert_step(StepRow(rid, step.id, position, step.title, step.action,
                                        "skipped"))
            continue
        journal.upsert_step(StepRow(rid, step.id, position, step.title, step.action,
                                    "succeeded", attempts=1, duration_s=float(took[step.id])))


def past(*took: float, step: str = "restore") -> list[RunDetail]:
    """Earlier runs in which `step` took each of `took` seconds."""
    run = RunRow(id="r", runbook="pitr-restore", runbook_sha256="", title="", scenario="",
                 mode="drill", operator="", host="", pid=1, status="succeeded",
                 started_at=START.isoformat(), params_json="{}")
    return [RunDetail(run, [StepRow("r", step, 1, "", "pitr.restore", "succeeded",
                                    duration_s=float(d))]) for d in took]


@contextlib.contextmanager
def prod_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Journal]:
    """The journal of a state directory of its own (tmp_path/state), open to be written,
    and a configuration of one cluster, prod, in tmp_path/drdeck.toml."""
    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "drdeck.toml").write_text('[clusters.prod]\ndsn = "host=/nonexistent '
                                          'dbname=app"\n')
    journal = Journal(default_path())
    try:
        yield journal
    finally:
        journal.close()


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with prod_journal(tmp_path, monkeypatch) as journal:
        for n, params in enumerate(({"cluster": ""}, {"cluster": "prod"}, {})):
            record(journal, f"good{n}", "succeeded", params,
                   {step: took[n] for step, took in TOOK.items()}, day=n)
        slow = {step: 10_000.0 for step in TOOK}
        record(journal, "failed0", "failed", {"cluster": "prod"}, slow, day=4)
        record(journal, "dryrun0", "succeeded", {"cluster": "prod"}, slow, dry=True, day=5)
        record(journal, "other00", "succeeded", {"cluster": "other"}, slow, day=6)
    return tmp_path / "drdeck.toml"


def test_each_step_is_the_median_of_the_earlier_successful_runs_with_their_spread(
        history: Path, tmp_path: Path) -> None:
    proc = drdeck("--config", str(history), "forecast", "pitr-restore", "--json",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    steps = {step["id"]: step for step in found["steps"]}
    assert steps["restore"] == {"id": "restore", "forecast_s": 900.0, "low_s": 600.0,
                                "high_s": 1200.0, "basis": "median of 3 runs", "runs": 3,
                                "scale": ""}
    assert steps["preflight"]["forecast_s"] == 12.0
    assert steps["back"] == {"id": "back", "forecast_s": None, "low_s": None, "high_s": None,
                             "basis": "no history", "runs": 0, "scale": ""}
    # the failed run, the dry run and the other cluster's run are not learnt from
    assert (found["total_s"], found["low_s"], found["high_s"]) == (1003.0, 671.0, 1342.0)
    assert (found["without_history"], found["rto_target_s"]) == (1, 4 * 3600)


def test_the_total_is_said_against_the_rto_and_a_step_without_history_is_counted(
        history: Path, tmp_path: Path) -> None:
    proc = drdeck("--config", str(history), "forecast", "pitr-restore", "-p", "cluster=prod",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    head, *rows = proc.stdout.splitlines()
    assert head == ("pitr-restore on prod: forecast 16m43s (11m11s..22m22s) of 4h; at least, "
                    "as 1 of 6 steps has no history")
    assert any(row.split()[:3] == ["restore", "15m", "(10m..20m)"] for row in rows), rows
    assert any(row.split()[:3] == ["back", "no", "history"] for row in rows), rows

    dry = drdeck("--config", str(history), "run", "pitr-restore", "--dry-run",
                 "-p", "target=latest", "-p", "data_dir=/nonexistent/new", "-p", "port=5999",
                 state_dir=tmp_path / "state")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[0] == head.removeprefix("pitr-restore on prod: ")
    # and a step that would not run says so: no expect_back, no check of what came back
    back = dry.stdout.split("○ back", 1)[1].split("○ check", 1)[0]
    assert "· would be skipped: when = '${expect_back}' does not hold" in back


def test_another_cluster_or_a_runbook_never_run_has_no_history(history, tmp_path) -> None:
    other = tmp_path / "two.toml"
    other.write_text(history.read_text() + '\n[clusters.stage]\ndsn = "host=/nonexistent"\n')
    proc = drdeck("--config", str(other), "forecast", "pitr-restore", "-p", "cluster=stage",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "pitr-restore on stage: forecast: no history (6 of 6 steps have no history: no "
        "earlier successful run of pitr-restore on stage)")


def test_over_the_rto_is_said() -> None:
    slow = past(3 * 3600, 5 * 3600, 6 * 3600)
    assert "of 4h: over the RTO" in forecast(PITR, "prod", slow).line()
    quick = past(3600, 2 * 3600, 5 * 3600)
    assert "of 4h: the slowest earlier runs missed the RTO" in forecast(PITR, "prod",
                                                                        quick).line()


async def test_the_briefing_shows_the_forecast_before_the_start(history: Path) -> None:
    from tui.app.screens.briefing import BriefingScreen
    from tui.config import load_config
    from tui.runbook.discovery import load_directory

    from app_support import live_app, wait_for

    app = live_app(config=load_config(history), runbooks=load_directory(SHIPPED_DIR),
                   open_runbook=PITR)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen)
                       and str(app.screen.query_one("#forecast").render()))
        assert str(app.screen.query_one("#forecast").render()) == (
            "forecast 16m43s (11m11s..22m22s) of 4h, 1 step without history")


def test_a_run_starts_with_its_forecast_says_each_step_against_it_and_records_it(
        tmp_path: Path) -> None:
    book = tmp_path / "twice.toml"
    book.write_text('[runbook]\nname = "twice"\ntitle = "Twice"\nrto = "1h"\n\n'
                    '[[steps]]\nid = "first"\ntitle = "First"\naction = "shell"\n'
                    'with = { command = "sleep 0.2" }\n\n'
                    '[[steps]]\nid = "second"\ntitle = "Second"\naction = "shell"\n'
                    'with = { command = "true" }\n')
    state = tmp_path / "state"
    first = drdeck("run", str(book), "--headless", state_dir=state)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "forecast: no history (2 of 2 steps have no history" in first.stdout
    second = drdeck("run", str(book), "--headless", state_dir=state)
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert lines[2].startswith("forecast ") and lines[2].endswith(" of 1h"), lines[:4]
    done = next(line for line in lines if line.startswith("✓ first  succeeded"))
    assert "(forecast 0.2" in done and "· projected " in done and done.endswith(" of 1h")
    third = drdeck("run", str(book), "--json", state_dir=state)
    started = json.loads(third.stdout.splitlines()[0])
    assert started["event"] == "run_started"
    assert [(s["id"], s["runs"]) for s in started["forecast"]["steps"]] == [
        ("first", 2), ("second", 2)]
    journal = Journal(state / "journal.sqlite")
    try:
        [newest, *_] = journal.runs("twice")
        assert json.loads(newest.forecast_json) == started["forecast"]  # kept with the run
    finally:
        journal.close()


async def test_the_run_screen_projects_the_finish_from_the_forecast(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.app.screens.run import RunScreen
    from tui.config import load_config

    from app_support import live_app, wait_for

    monkeypatch.setenv("DRDECK_STATE_DIR", str(tmp_path / "state"))
    book_path = tmp_path / "waits.toml"
    book_path.write_text('[runbook]\nname = "waits"\ntitle = "Waits"\nrto = "1h"\n\n'
                         '[[steps]]\nid = "quick"\ntitle = "Quick"\naction = "shell"\n'
                         'with = { command = "true" }\n\n'
                         '[[steps]]\nid = "decide"\ntitle = "Decide"\naction = "manual"\n'
                         'with = { instructions = "Go on?" }\n')
    book = load_runbook(book_path)
    journal = Journal(default_path())
    try:
        for n, (quick, decide) in enumerate(((30, 100), (50, 120))):
            started = START + timedelta(days=n)
            journal.insert_run(RunRow(
                id=f"waits{n}", runbook="waits", runbook_sha256=book.sha256, title="Waits",
                scenario="other", mode="drill", operator="ana", host="h", pid=1,
                started_at=started.isoformat(), status="succeeded", params_json="{}",
                ended_at=started.isoformat(), heartbeat_at=started.isoformat()))
            for position, (sid, took) in enumerate((("quick", quick), ("decide", decide))):
                journal.upsert_step(StepRow(f"waits{n}", sid, position, sid, "shell",
                                            "succeeded", attempts=1, duration_s=float(took)))
    finally:
        journal.close()
    config = tmp_path / "drdeck.toml"
    config.write_text("")
    app = live_app(config=load_config(config), open_runbook=book, autostart={})
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen)
                       and app.screen.state.current == "decide")
        screen = app.screen
        assert screen.state.forecast.total_s == 150.0  # 40 + 110
        await wait_for(pilot, lambda: "proj. 0:01:5" in str(screen.query_one(
            "#crumb").right), what="the projected finish")


def test_history_holds_what_each_run_took_against_its_forecast() -> None:
    from tui.app.screens.history import forecast_text

    made = forecast(PITR, "prod", past(500, 700))

    def run(took_s: float, forecast_json: str | None) -> RunRow:
        return RunRow(id="x", runbook="pitr-restore", runbook_sha256="", title="", scenario="",
                      mode="drill", operator="", host="", pid=1, status="succeeded",
                      started_at=START.isoformat(), params_json="{}",
                      ended_at=(START + timedelta(seconds=took_s)).isoformat(),
                      forecast_json=forecast_json)

    inside = forecast_text(run(650, json.dumps(made.to_json())))
    assert (inside.plain, inside.style) == ("10m50s / 10m", "")
    slow = forecast_text(run(900, json.dumps(made.to_json())))
    assert (slow.plain, slow.style) == ("15m / 10m", "bold red")  # past the slowest
    quick = forecast_text(run(100, json.dumps(made.to_json())))
    assert quick.style == "yellow"
    first = forecast_text(run(100, json.dumps(forecast(PITR, "prod", []).to_json())))
    assert first.plain == "1m40s / no history"
    assert forecast_text(run(100, None)).plain == "-"


def test_the_step_list_shows_each_step_against_its_forecast() -> None:
    """The run screen's steps: what each took (or has taken) beside ~ what earlier runs
    took; yellow once past the slowest of them; nothing beside a step without history."""
    from rich.console import Console

    from tui.app.widgets.steps import step_table
    from tui.engine.state import RunState, StepView
    from tui.journal.forecast import Forecast, StepForecast

    state = RunState(run_id="r", runbook="b", title="t", mode="drill", dry_run=False,
                     rto_target_s=3600, rpo_target_s=None, started_at=0.0)
    state.steps = {
        "done": StepView("done", "Stop the service", "shell", status="succeeded",
                         started_at=0.0, duration_s=65.0),
        "slow": StepView("slow", "Restore the base backup", "shell", status="running",
                         started_at=65.0),
        "new": StepView("new", "A step never run before", "shell"),
    }
    state.current = "slow"
    state.forecast = Forecast("b", "prod", [
        StepForecast("done", "Stop the service", 70.0, 60.0, 80.0, 3),
        StepForecast("slow", "Restore the base backup", 120.0, 100.0, 150.0, 3),
        StepForecast("new", "A step never run before", None, None, None, 0)])
    console = Console(width=60, record=True)
    console.print(step_table(state, now=65.0 + 160.0))
    lines = console.export_text().splitlines()
    assert lines[0].endswith("1:05 ~1:10")
    assert lines[1].endswith("2:40 ~2:00")  # 160 s, past the slowest (150 s)
    assert lines[2].rstrip().endswith("A step never run before")
    assert "~" not in lines[2]
    from tui.app.widgets.steps import step_time

    late = step_time(state.steps["slow"], 225.0, state.forecast.steps[1])
    assert [str(span.style) for span in late.spans if "~" in late.plain[span.start:span.end]
            ] == ["yellow"]
    on_time = step_time(state.steps["slow"], 165.0, state.forecast.steps[1])
    assert on_time.plain == "1:40 ~2:00"
    assert [str(span.style) for span in on_time.spans][-1] == "dim"


# what the restore step of each earlier run moved: (base bytes, base s, WAL bytes, WAL s,
# the step's whole time). Throughputs: base 2, 4 and 5 MB/s; WAL 4, 3 and 6 MB/s; the rest
# of the step (starting, checking, promoting) 50, 30 and 40 s.
MB = 1_000_000
MOVED = ((1000 * MB, 500, 600 * MB, 150, 700),
         (1000 * MB, 250, 300 * MB, 100, 380),
         (2000 * MB, 400, 600 * MB, 100, 540))


@pytest.fixture
def moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal whose three runs of pitr-restore on prod measured what they moved."""
    with prod_journal(tmp_path, monkeypatch) as journal:
        for n, (base, base_s, wal, wal_s, took) in enumerate(MOVED):
            record(journal, f"moved{n}", "succeeded", {"cluster": "prod"},
                   {"preflight": 10, "restore": took}, day=n)
            for name, value, unit in (("base_bytes", base, "B"), ("base_s", base_s, "s"),
                                      ("wal_bytes", wal, "B"), ("wal_s", wal_s, "s")):
                journal.add("measures", run_id=f"moved{n}", step_id="restore", name=name,
                            value=float(value), unit=unit, detail="", at=START.isoformat())
    return tmp_path / "drdeck.toml"


def test_a_restore_step_is_scaled_to_what_this_run_moves(moved: Path) -> None:
    from tui.config import load_config
    from tui.journal.forecast import read_history

    journal = Journal(default_path())
    try:
        history = read_history(journal, "pitr-restore", "prod", load_config(moved))
    finally:
        journal.close()
    made = forecast(PITR, "prod", history, volumes={"base": 3000 * MB, "wal": 1200 * MB})
    restore = next(step for step in made.steps if step.id == "restore")
    # the median rest, and this run's bytes over the median throughput of each volume
    assert restore.forecast_s == 40 + 3000 / 4 + 1200 / 4
    assert restore.low_s == 30 + 3000 / 5 + 1200 / 6  # the fastest throughputs
    assert restore.high_s == 50 + 3000 / 2 + 1200 / 3  # the slowest
    assert restore.basis == ("median of 3 runs, scaled to base backup 2.8 GiB at 3.8 MiB/s, "
                             "WAL 1.1 GiB at 3.8 MiB/s")
    preflight = next(step for step in made.steps if step.id == "preflight")
    assert (preflight.forecast_s, preflight.basis) == (10.0, "median of 3 runs")
    assert made.to_json()["volumes"] == {"base": 3000 * MB, "wal": 1200 * MB}
    assert made.line().endswith("; scaled to what this run moves: base backup 2.8 GiB, "
                                "WAL 1.1 GiB")
    # twice the bytes of the first run: not twice its time, for the rest does not grow
    double = forecast(PITR, "prod", history, volumes={"base": 2000 * MB, "wal": 600 * MB})
    assert next(s.forecast_s for s in double.steps if s.id == "restore") == \
        40 + 2000 / 4 + 600 / 4


def test_without_this_runs_size_the_step_keeps_its_median_and_says_so(
        moved: Path, tmp_path: Path) -> None:
    # the cluster names no repository: nothing says what the run would move
    proc = drdeck("--config", str(moved), "forecast", "pitr-restore", "--json",
                  state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    restore = next(s for s in json.loads(proc.stdout)["steps"] if s["id"] == "restore")
    assert (restore["forecast_s"], restore["low_s"], restore["high_s"]) == (540, 380, 700)
    assert restore["basis"] == (
        "median of 3 runs, not scaled: the size of this run's base backup and WAL is unknown "
        "(cluster 'prod' has no repository: add repository = "
        f"\"NAME\" to [clusters.prod] in {moved})")
    said = drdeck("--config", str(moved), "forecast", "pitr-restore",
                  state_dir=tmp_path / "state")
    row = next(line for line in said.stdout.splitlines() if line.split()[:1] == ["restore"])
    assert "not scaled: the size of this run's base backup and WAL is unknown (cluster" in row


def test_the_wal_a_recovery_replays_is_planned_from_the_target() -> None:
    """From the base backup's start: all the WAL written during the backup, then as far
    into the window as the target lies (a time: at the pace the window was written)."""
    from types import SimpleNamespace

    from tui.pitr.target import Plan, parse_target, wal_to_replay

    stopped = START
    base = SimpleNamespace(start_lsn="0/1000000", stop_lsn="0/3000000", stopped=stopped)
    window = SimpleNamespace(end_lsn=0xB000000, end=stopped + timedelta(seconds=100))

    def planned(target: str) -> int:
        return wal_to_replay(Plan(parse_target(target), base, window))

    MiB = 1 << 20
    assert planned("latest") == 160 * MiB
    assert planned("immediate") == 32 * MiB  # the backup's own WAL
    assert planned("0/5000000") == 64 * MiB
    assert planned((stopped + timedelta(seconds=25)).isoformat()) == 32 * MiB + 32 * MiB
    assert planned(stopped.isoformat()) == 32 * MiB


def test_runs_that_measured_less_or_a_forged_journal_do_not_skew_the_forecast() -> None:
    run = RunRow(id="r", runbook="pitr-restore", runbook_sha256="", title="", scenario="",
                 mode="drill", operator="", host="", pid=1, status="succeeded",
                 started_at=START.isoformat(), params_json="{}")

    def ran(took: float, **moved: tuple[float, float]) -> RunDetail:
        measures = [{"step_id": "restore", "name": f"{volume}_{what}", "value": value,
                     "unit": unit}
                    for volume, (size, seconds) in moved.items()
                    for what, value, unit in (("bytes", size, "B"), ("s", seconds, "s"))]
        return RunDetail(run, [StepRow("r", "restore", 1, "", "pitr.restore", "succeeded",
                                       duration_s=took)], measures=measures)

    # the newest run measured base and WAL; an older one only its base (its WAL time is
    # in its rest): only the first is learnt from
    history = [ran(250, base=(1000 * MB, 100), wal=(500 * MB, 100)),
               ran(300, base=(1000 * MB, 100))]
    made = forecast(PITR, "prod", history, volumes={"base": 2000 * MB, "wal": 500 * MB})
    restore = next(s for s in made.steps if s.id == "restore")
    assert (restore.forecast_s, restore.runs) == (50 + 200 + 100, 1)

    # a shared journal written by a hostile hand: numbers no run could measure are not
    # learnt from, and nothing overflows
    forged = [ran(200, base=(1e-300, 100), wal=(float("inf"), 1)),
              ran(float("nan")), ran(float("inf"))]
    made = forecast(PITR, "prod", forged, volumes={"base": 2000 * MB, "wal": 500 * MB})
    restore = next(s for s in made.steps if s.id == "restore")
    assert (restore.forecast_s, restore.basis) == (200.0, "median of 1 run")
    assert made.line().startswith("forecast 3m20s (3m20s..3m20s) of 4h")
