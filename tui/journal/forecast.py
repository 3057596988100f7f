"""How long a run should take, before it starts: each step's median over the journal's
past successful runs of the same runbook on the same cluster, with the spread those runs
showed (the fastest and the slowest), summed against the runbook's RTO target.

A step that moves data is scaled by what this run moves. Such a step records, for each
volume it moves (tui.engine.volumes: the snapshot, the base backup, the WAL), a pair of
measures: `<volume>_bytes` and `<volume>_s`, the bytes and the seconds it spent on them.
Each earlier run gives a throughput per volume and the rest of the step's time; this
run's bytes, read from its source before the start, over the median throughput, plus
the median rest, is the step's forecast (the fastest and slowest throughputs its spread).
Without this run's bytes the step keeps its plain median, and says it is not scaled.

Pure but for `read_history` and `forecast_for`, which read the journal (and the
source): `forecast` is given those runs, and nothing reads a clock. A step no earlier
run finished says "no history", and the forecast counts such steps: its total is then a
floor, and says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tui.durations import format_duration
from tui.engine.volumes import MOST_BYTES, WORDS
from tui.units import format_bytes

HISTORY_RUNS = 20  # the newest successful runs a forecast learns from


@dataclass(frozen=True)
class StepForecast:
    id: str
    title: str
    forecast_s: float | None  # the median; None: no history
    low_s: float | None
    high_s: float | None
    runs: int  # how many earlier runs it is learnt from
    # how it was scaled to this run's bytes ("scaled to 1.0 GiB at 40.0 MiB/s"), or why not
    scale: str = ""

    @property
    def basis(self) -> str:
        if self.forecast_s is None:
            return "no history"
        said = f"median of {self.runs} run{'s' if self.runs != 1 else ''}"
        return f"{said}, {self.scale}" if self.scale else said

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "forecast_s": self.forecast_s, "low_s": self.low_s,
                "high_s": self.high_s, "basis": self.basis, "runs": self.runs,
                "scale": self.scale}


@dataclass(frozen=True)
class Forecast:
    runbook: str
    cluster: str
    steps: list[StepForecast] = field(default_factory=list)
    rto_target_s: float | None = None
    volumes: dict[str, int] = field(default_factory=dict)  # this run's bytes, by volume

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
    def scalable(self) -> bool:
        """Whether this run's bytes would change it: a step learnt from earlier runs that
        measured what they moved."""
        return any(s.scale for s in self.steps)

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
        if self.volumes and any(s.scale.startswith("scaled") for s in self.steps):
            text += "; scaled to what this run moves: " + ", ".join(
                f"{_word(volume)} {format_bytes(size)}"
                for volume, size in self.volumes.items())
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
                "volumes": self.volumes, "steps": [s.to_json() for s in self.steps]}


def from_json(data: dict[str, Any]) -> Forecast:
    """A Forecast again, from the `to_json()` a run started with (its event, its row)."""
    steps = [StepForecast(s["id"], s.get("title", s["id"]), s["forecast_s"], s.get("low_s"),
                          s.get("high_s"), s.get("runs", 0), s.get("scale", ""))
             for s in data.get("steps", [])]
    return Forecast(data.get("runbook", ""), data.get("cluster", ""), steps,
                    data.get("rto_target_s"), dict(data.get("volumes") or {}))


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


def forecast(runbook: Any, cluster: str, history: Iterable[Any],
             rto_target_s: float | None = None,
             volumes: dict[str, int] | None = None, unknown_why: str = "") -> Forecast:
    """`runbook` (tui.runbook.model.Runbook) on `cluster`; `history`: the earlier
    successful runs (tui.journal.store.RunDetail: their steps and measures); `volumes`:
    what this run moves, in bytes by volume (tui.engine.volumes), when known, else
    `unknown_why` says why not."""
    # a size no source could mean (a forged manifest's) scales nothing
    volumes = {name: int(size) for name, size in (volumes or {}).items()
               if _believable(size)}
    past: dict[str, list[_Past]] = {}
    for run in history:
        moved = _moved_by_step(run.measures)
        for step in run.steps:
            if step.status == "succeeded" and _believable(step.duration_s):
                past.setdefault(step.step_id, []).append(
                    _Past(float(step.duration_s), moved.get(step.step_id, {})))
    steps = [_step_forecast(step.id, step.title, past.get(step.id, []), volumes, unknown_why)
             for step in runbook.steps]
    return Forecast(runbook.name, cluster, steps,
                    rto_target_s if rto_target_s is not None else runbook.rto, volumes)


@dataclass(frozen=True)
class _Past:
    """One earlier run of a step: what it took, and what it moved, as
    {volume: (bytes, seconds)}."""

    took_s: float
    moved: dict[str, tuple[float, float]]


def _moved_by_step(measures: Iterable[dict[str, Any]]
                   ) -> dict[str, dict[str, tuple[float, float]]]:
    """{step: {volume: (bytes, seconds)}} from a run's `<volume>_bytes` and `<volume>_s`
    measures; a volume without both, or with nothing moved, teaches nothing."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for m in measures:
        name, unit = str(m.get("name", "")), m.get("unit")
        if name.endswith("_bytes") and unit == "B":
            found.setdefault(m["step_id"], {}).setdefault(name[:-6], {})["bytes"] = m["value"]
        elif name.endswith("_s") and unit == "s":
            found.setdefault(m["step_id"], {}).setdefault(name[:-2], {})["s"] = m["value"]
    return {step: {volume: (pair["bytes"], pair["s"]) for volume, pair in by.items()
                   if _believable(pair.get("bytes"), 1) and _believable(pair.get("s"), 1e-3)}
            for step, by in found.items()}


def _believable(value: Any, least: float = 0.0) -> bool:
    """A journal's number a forecast can learn from: finite, at least `least`, short of
    what no run could measure (a shared journal is written by many hands)."""
    return isinstance(value, int | float) and math.isfinite(value) and \
        least <= value < MOST_BYTES


def _step_forecast(step_id: str, title: str, past: list[_Past], volumes: dict[str, int],
                   unknown_why: str) -> StepForecast:
    if not past:
        return StepForecast(step_id, title, None, None, None, 0)
    plain = [p.took_s for p in past]
    movers = [p for p in past if p.moved]
    if not movers:
        return StepForecast(step_id, title, statistics.median(plain), min(plain), max(plain),
                            len(plain))
    # what the newest such run moved; the runs that measured all of it are learnt from
    moved = sorted(movers[0].moved)
    movers = [p for p in movers if all(v in p.moved for v in moved)]
    unknown = [v for v in moved if v not in volumes]
    if unknown:
        return StepForecast(step_id, title, statistics.median(plain), min(plain), max(plain),
                            len(plain), "not scaled: the size of this run's "
                            f"{' and '.join(_word(v) for v in unknown)} is unknown"
                            + (f" ({unknown_why})" if unknown_why else ""))
    # the step's time not spent moving: connecting, checking, promoting, a confirmation
    # waited for, an attempt that failed before the one that moved it all
    rest = [max(0.0, p.took_s - sum(p.moved[v][1] for v in moved)) for p in movers]
    median_s, low_s, high_s = (statistics.median(rest), min(rest), max(rest))
    said = []
    for volume in moved:
        rates = [b / s for b, s in (p.moved[volume] for p in movers)]
        size, rate = volumes[volume], statistics.median(rates)
        median_s += size / rate
        low_s += size / max(rates)
        high_s += size / min(rates)
        said.append(f"{_word(volume)} {format_bytes(size)} at {format_bytes(rate)}/s")
    return StepForecast(step_id, title, median_s, low_s, high_s, len(movers),
                        "scaled to " + ", ".join(said))


def _word(volume: str) -> str:
    return WORDS.get(volume, volume)


def read_history(journal: Any, runbook: str, cluster: str, config: Any,
                 limit: int = HISTORY_RUNS) -> list[Any]:
    """The newest `limit` successful, real (not dry) runs of `runbook` on `cluster`, from
    the journal (tui.journal.store.Journal), each a RunDetail."""
    found = []
    for run in journal.runs(runbook, statuses=("succeeded",)):
        if run.dry_run or cluster_of(run.params, config) != cluster:
            continue
        found.append(journal.run(run.id))
        if len(found) >= limit:
            break
    return found


def forecast_for(config: Any, runbook: Any, given: dict[str, Any]) -> Forecast:
    """The forecast of `runbook` run with the parameters `given` (defaults filled in),
    scaled to what the run would move as its source says (which reads the source)."""
    from tui.engine.volumes import planned_volumes
    from tui.journal.store import open_journal

    defaults = {name: param.default for name, param in runbook.params.items()
                if isinstance(param.default, str)}
    cluster = cluster_of({**defaults, **given}, config)
    journal = open_journal(config)
    try:
        history = read_history(journal, runbook.name, cluster, config)
    finally:
        journal.close()
    made = forecast(runbook, cluster, history)
    if not made.scalable:
        return made
    planned = planned_volumes(config, runbook, {**defaults, **given})
    return forecast(runbook, cluster, history, volumes=planned.sizes,
                    unknown_why=planned.problem)
