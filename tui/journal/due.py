"""When is the next drill due? A cadence per runbook (`cadence = "30d"`), monthly by default.

Only restore runbooks are drills (scenario snapshot or pitr) unless a runbook
sets its own cadence: backups and verifications run on a schedule instead.
Only a successful drill resets the clock: a failed one proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DEFAULT_CADENCE_S = 30 * 86400
DRILL_SCENARIOS = ("snapshot", "pitr")


@dataclass(frozen=True)
class Due:
    cadence_s: float
    last_success: datetime | None
    due_at: datetime | None  # None: never drilled, due now

    def overdue_by(self, now: datetime) -> float | None:
        """Seconds past due (positive), or None when not yet due."""
        if self.due_at is None:
            return 0.0
        late = (now - self.due_at).total_seconds()
        return late if late > 0 else None

    def describe(self, now: datetime) -> str:
        from tui.durations import format_duration

        if self.due_at is None:
            return "never drilled: due now"
        late = self.overdue_by(now)
        if late is not None:
            return f"OVERDUE {format_duration(late)}"
        return f"in {format_duration((self.due_at - now).total_seconds())}"


def is_drill(runbook: Any) -> bool:
    return runbook.scenario in DRILL_SCENARIOS or runbook.cadence is not None


def due(runbook: Any, runs: list[Any]) -> Due | None:
    """The next drill of `runbook`, from its runs in the journal (newest first); None if it
    is not a drill."""
    if not is_drill(runbook):
        return None
    cadence = runbook.cadence or DEFAULT_CADENCE_S
    last = next((r for r in runs if r.runbook == runbook.name and r.status == "succeeded"
                 and not r.dry_run), None)
    if last is None:
        return Due(cadence, None, None)
    finished = last.ended or last.started
    return Due(cadence, finished, finished + timedelta(seconds=cadence))
