"""A run as the journal has it, for someone who watches it from elsewhere (`drdeck watch`):
the journal's rows of one run folded into the same RunState a run screen draws, and the
output lines new since the last look.

Read only: nothing here writes to the journal or reaches the process running the run. The
journal is as current as the recorder keeps it (each event is committed as it comes,
output tails as soon as the loop is free), so what the watcher sees lags by its polling.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tui.engine import events as ev
from tui.engine.state import RunState, StepView
from tui.journal.store import HEARTBEAT_STALE, RunDetail

ENDED = ("succeeded", "failed", "aborted", "interrupted", "refused")


def newest_running(journal: Any) -> str | None:
    """The id of the newest run the journal says is running; None when none is."""
    runs = journal.runs(statuses=("running",), limit=1)
    return runs[0].id if runs else None


def unheard(run_id: str, status: str, heartbeat_at: str, host: str, pid: int,
            wall_now: datetime) -> str:
    """What a watcher must know of a run the journal says is running whose drdeck has
    been silent longer than a live one ever is (it beats every few seconds, waiting or
    not): its process may be gone, killed with no chance to say so. "" otherwise. The
    same words for as long as it stays silent: a notice is sent when they change."""
    if status != "running" or not heartbeat_at:
        return ""
    try:
        last = datetime.fromisoformat(heartbeat_at).astimezone(UTC)
        silent = (wall_now - last).total_seconds()
    except (TypeError, ValueError):
        return ""
    if silent < HEARTBEAT_STALE.total_seconds():
        return ""
    since = last.strftime("%H:%M:%S" if last.date() == wall_now.astimezone(UTC).date()
                          else "%Y-%m-%d %H:%M:%S")
    return (f"no word since {since} UTC from drdeck (pid {pid}) on {host}: it may be dead; "
            f"if so, on {host}: drdeck resume {run_id}")


class Silence:
    """`unheard` as one watcher sees a run over time. Two hosts' clocks may disagree by
    minutes: a heartbeat this watcher has seen change within HEARTBEAT_STALE, by its
    own clock, is alive whatever its time says."""

    def __init__(self) -> None:
        self._beat: str | None = None
        self._changed_at: float | None = None  # when this watcher saw it change

    def words(self, run_id: str, status: str, heartbeat_at: str, host: str, pid: int,
              wall_now: datetime, now: float) -> str:
        """`now`: this watcher's monotonic clock, at `wall_now`."""
        if heartbeat_at != self._beat:
            self._changed_at = None if self._beat is None else now
            self._beat = heartbeat_at
        if self._changed_at is not None and \
                now - self._changed_at < HEARTBEAT_STALE.total_seconds():
            return ""
        return unheard(run_id, status, heartbeat_at, host, pid, wall_now)


def state_of(detail: RunDetail, now: float, wall_now: datetime) -> RunState:
    """The run's RunState, its times on the caller's monotonic clock (`now` is that clock
    at `wall_now`)."""
    run = detail.run

    def clock(at: str | None) -> float | None:
        if not at:
            return None
        return now - (wall_now - datetime.fromisoformat(at)).total_seconds()

    state = RunState(run_id=run.id, runbook=run.runbook, title=run.title, mode=run.mode,
                     dry_run=bool(run.dry_run), rto_target_s=run.rto_target_s,
                     rpo_target_s=run.rpo_target_s, started_at=clock(run.started_at))
    if run.forecast_json:
        from tui.journal.forecast import from_json

        state.forecast = from_json(json.loads(run.forecast_json))
    for row in detail.steps:
        step = StepView(row.step_id, row.title, row.action, status=row.status,
                        attempt=row.attempts, max_attempts=max(1, row.attempts),
                        command=row.command or "", started_at=clock(row.started_at),
                        duration_s=row.duration_s, error=row.error, reason=row.reason,
                        operator_wait_s=row.operator_wait_s)
        state.steps[row.step_id] = step
        if row.status in ("running", "waiting"):
            state.current = row.step_id
    for check in detail.checks:
        if check["step_id"] in state.steps:
            state.steps[check["step_id"]].checks.append(ev.CheckResult(
                step=check["step_id"], name=check["name"], ok=bool(check["ok"]),
                detail=check["detail"]))
    state.milestones = [ev.Milestone(name=m["name"], elapsed_s=m["elapsed_s"])
                        for m in detail.milestones]
    if run.status in ENDED:
        ended = clock(run.ended_at) if run.ended_at else now
        started = state.started_at if state.started_at is not None else ended
        counts = {status: sum(1 for s in state.steps.values() if s.status == status)
                  for status in ("succeeded", "failed", "skipped", "pending")}
        state.finished = ev.RunFinished(
            status=run.status if run.status in ("succeeded", "failed") else "aborted",
            duration_s=(ended or now) - started, rto_s=run.rto_s,
            rto_target_s=run.rto_target_s, error=run.error, succeeded=counts["succeeded"],
            failed=counts["failed"], skipped=counts["skipped"], not_run=counts["pending"])
        if run.status != "succeeded" and state.current is None:
            state.current = next((s.id for s in state.steps.values()
                                  if s.status == "failed"), None)
    return state


class Tails:
    """The output lines new since the last look, from each step's tail (its last lines,
    as the journal keeps them)."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}

    def new_lines(self, detail: RunDetail) -> list[str]:
        fresh: list[str] = []
        for row in detail.steps:
            tail = row.output_tail.splitlines()
            before = self._seen.get(row.step_id, [])
            fresh += tail[_overlap(before, tail):]
            self._seen[row.step_id] = tail
        return fresh


def _overlap(before: list[str], after: list[str]) -> int:
    """How many of `after`'s first lines are `before`'s last ones (a tail slides on as lines
    come): the lines after them are new."""
    for size in range(min(len(before), len(after)), 0, -1):
        if before[-size:] == after[:size]:
            return size
    return 0
