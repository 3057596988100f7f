"""How long a run should take, before it starts: each step's median over the journal's
past successful runs of the same runbook on the same cluster, with the spread those runs
showed (the fastest and the slowest), summed against the runbook's RTO target.

Pure but for `read_history` and `forecast_for`, which read the journal: `forecast` is
given the steps of those runs, and nothing reads a clock. A step no earlier run finished
says "no history", and the forecast counts such steps: its total is then a floor, and
says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.durations import format_duration

HISTORY_RUNS = 20  # the newest successful runs a forecast learns from


@dataclass(frozen=True)
class StepForecast:
    id: str
    title: str
    forecast_s: float | None  # the median; None: no history
    low_s: float | None
    high_s: float | None
    runs: int  # how many earlier runs it is learnt from

    @property
    def basis(self) -> str:
        if self.forecast_s is None:
            return "no history"
        return f"median of {self.runs} run{'s' if self.runs != 1 else ''}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "forecast_s": self.forecast_s, "low_s": self.low_s,
                "high_s": self.high_s, "basis": self.basis, "runs": self.runs}


@dataclass(frozen=True)
class Forecast:
    runbook: str
    cluster: str
    steps: list[StepForecast] = field(default_factory=list)
    rto_target_s: float | None = None

    @property
    def total_s(self) -> float:
        return sum(s.forecast_s for s in self.steps if s.forecast_s is not None)

    @property
    def low_s(self) -> float:
        return sum(s.low_s for s in self.steps if s.low_s is not None)

    @property
    def high_s(self) -> float:
        return sum(s.high_s for s in self.steps if s.high_s is not None)

    @property
    def without_history(self) -> int:
        return sum(1 for s in self.steps if s.forecast_s is None)

    @property
    def known(self) -> bool:
        return any(s.forecast_s is not None for s in self.steps)

    def line(self) -> str:
        """'forecast 1h40m (1h20m..2h05m) of 4h', and what it lacks."""
        missing = self.without_history
        lacking = (f"{missing} of {len(self.steps)} steps have no history"
                   if missing != 1 else f"1 of {len(self.steps)} steps has no history")
        if not self.known:
            return f"forecast: no history ({lacking}: no earlier successful run of " \
                   f"{self.runbook} on {self.cluster or 'this cluster'})"
        text = (f"forecast {format_duration(self.total_s)} ({format_duration(self.low_s)}.."
                f"{format_duration(self.high_s)})")
        if self.rto_target_s:
            text += f" of {format_duration(self.rto_target_s)}"
            if self.high_s > self.rto_target_s:
                text += ": the slowest earlier runs missed the RTO" \
                    if self.total_s <= self.rto_target_s else ": over the RTO"
        if missing:
            text += f"; at least, as {lacking}"
        return text

    def short(self) -> str:
        """The line for a narrow place (the briefing, beside its start button)."""
        if not self.known:
            return "forecast: no earlier run to learn from"
        text = (f"forecast {format_duration(self.total_s)} ({format_duration(self.low_s)}.."
                f"{format_duration(self.high_s)})")
        if self.rto_target_s:
            text += f" of {format_duration(self.rto_target_s)}"
        missing = self.without_history
        if missing:
            text += f", {missing} step{'s' if missing != 1 else ''} without history"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "cluster": self.cluster, "total_s": self.total_s,
                "low_s": self.low_s, "high_s": self.high_s,
                "rto_target_s": self.rto_target_s, "without_history": self.without_history,
                "steps": [s.to_json() for s in self.steps]}


def from_json(data: dict[str, Any]) -> Forecast:
    """A Forecast again, from the `to_json()` a run started with (its event, its row)."""
    steps = [StepForecast(s["id"], s.get("title", s["id"]), s["forecast_s"], s.get("low_s"),
                          s.get("high_s"), s.get("runs", 0)) for s in data.get("steps", [])]
    return Forecast(data.get("runbook", ""), data.get("cluster", ""), steps,
                    data.get("rto_target_s"))


def projected_total(forecast: Forecast, elapsed_s: float, finished: set[str],
                    running: str | None = None, running_s: float = 0.0) -> float:
    """Where the run should end, seconds from its start: what has passed, and the
    forecast of every step still to come (of the running one, what it has left)."""
    left = 0.0
    for step in forecast.steps:
        if step.id in finished or step.forecast_s is None:
            continue
        left += max(0.0, step.forecast_s - running_s) if step.id == running else step.forecast_s
    return elapsed_s + left


def cluster_of(params: dict[str, Any], config: Any) -> str:
    """Which cluster a run works on, as its parameters say: `cluster` (empty: the only one
    `config` has), or, for an engine's runbook, its `stanza`."""
    only = next(iter(config.clusters)) if len(config.clusters) == 1 else ""
    return str(params.get("cluster") or params.get("stanza") or only)


def forecast(runbook: Any, cluster: str, history: Iterable[Sequence[Any]],
             rto_target_s: float | None = None) -> Forecast:
    """`runbook` (tui.runbook.model.Runbook) on `cluster`; `history`: for each earlier
    successful run, its steps (tui.journal.store.StepRow)."""
    durations: dict[str, list[float]] = {}
    for steps in history:
        for step in steps:
            if step.status == "succeeded" and step.duration_s is not None:
                durations.setdefault(step.step_id, []).append(float(step.duration_s))
    steps = []
    for step in runbook.steps:
        seen = durations.get(step.id, [])
        steps.append(StepForecast(
            step.id, step.title, statistics.median(seen) if seen else None,
            min(seen) if seen else None, max(seen) if seen else None, len(seen)))
    return Forecast(runbook.name, cluster, steps,
                    rto_target_s if rto_target_s is not None else runbook.rto)


def read_history(journal: Any, runbook: str, cluster: str, config: Any,
                 limit: int = HISTORY_RUNS) -> list[list[Any]]:
    """The steps of the newest `limit` successful, real (not dry) runs of `runbook` on
    `cluster`, from the journal (tui.journal.store.Journal)."""
    found = []
    for run in journal.runs(runbook, statuses=("succeeded",)):
        if run.dry_run or cluster_of(run.params, config) != cluster:
            continue
        found.append(journal.run(run.id).steps)
        if len(found) >= limit:
            break
    return found


def forecast_for(config: Any, runbook: Any, given: dict[str, Any]) -> Forecast:
    """The forecast of `runbook` run with the parameters `given` (defaults filled in)."""
    from tui.journal.store import open_journal

    defaults = {name: param.default for name, param in runbook.params.items()
                if isinstance(param.default, str)}
    cluster = cluster_of({**defaults, **given}, config)
    journal = open_journal(config)
    try:
        history = read_history(journal, runbook.name, cluster, config)
    finally:
        journal.close()
    return forecast(runbook, cluster, history)
