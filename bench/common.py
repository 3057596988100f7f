"""What every benchmark shares: result rows, interleaved timing, the environment."""

from __future__ import annotations

import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class BenchError(Exception):
    """The subject could not be measured (it failed, or produced the wrong result)."""


@dataclass
class Target:
    description: str  # "< 300 ms", ">= 100,000 lines/s"
    met: bool


@dataclass
class Row:
    """One measured benchmark: the median of its samples against the baseline's median."""

    name: str
    unit: str  # "s" (lower is better) or "lines/s" (higher is better)
    samples: list[float]
    baseline_label: str
    baseline_samples: list[float]
    command: str
    targets: list[Target] = field(default_factory=list)
    error: str | None = None

    @property
    def measured(self) -> float:
        return statistics.median(self.samples)

    @property
    def baseline(self) -> float:
        return statistics.median(self.baseline_samples)

    @property
    def ratio(self) -> float:
        """The slowdown against the baseline: subject time / baseline time, for any unit.

        For a rate (lines/s) that is baseline / measured, so 2.0x always means "takes
        twice as long as the baseline".
        """
        if self.unit.endswith("/s"):
            return self.baseline / self.measured if self.measured else float("inf")
        return self.measured / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        """None when the row has no target (it is there for information)."""
        if self.error is not None:
            return False
        return all(t.met for t in self.targets) if self.targets else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "unit": self.unit, "command": self.command}
        if self.error is not None:
            return {**data, "error": self.error, "met": False}
        return {
            **data,
            "measured": self.measured,
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "ratio": self.ratio,
            "ratio_meaning": "subject time / baseline time (slowdown)",
            "targets": [asdict(t) for t in self.targets],
            "met": self.met,
            "runs": len(self.samples),
            "samples": self.samples,
            "baseline_samples": self.baseline_samples,
        }


@dataclass
class Note:
    """A line under the table: something measured that is not a number against a baseline."""

    benchmark: str
    text: str
    ok: bool | None = None  # None: informational


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def interleaved(
    subjects: dict[str, Callable[[], float]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Call each subject `warmup` times unrecorded, then `runs` times, round-robin.

    Each call returns its own elapsed seconds (so a subject can leave set-up out of
    the timed region). Round-robin, so a slow moment of the machine hits every
    subject alike instead of all runs of one.
    """
    for _ in range(warmup):
        for subject in subjects.values():
            subject()
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(runs):
        for name, subject in subjects.items():
            samples[name].append(subject())
    return samples


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def format_ratio(ratio: float) -> str:
    return f"{ratio:.3g}x"


def children_cpu() -> float:
    """User + system seconds of every child this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def python_shown() -> str:
    """This interpreter, relative to the working directory when it lives below it."""
    path = Path(sys.executable)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def reproduce(name: str) -> str:
    return f"{shlex.quote(python_shown())} -m bench --only {name}"


def environment() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu_model": _cpu_model(),
        # other work on the machine stretches wall times: say how busy it was
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def format_environment(env: dict[str, Any]) -> str:
    cpus = f"{env['cpu_count']} CPUs"
    if env["cpus_usable"] != env["cpu_count"]:
        cpus += f" ({env['cpus_usable']} usable)"
    parts = [
        f"python {env['python']} ({env['implementation']}, {python_shown()})",
        cpus,
        env["machine"],
        env["system"],
    ]
    if env["cpu_model"]:
        parts.append(env["cpu_model"])
    if env["load_average"]:
        parts.append("load " + " ".join(f"{x:.2f}" for x in env["load_average"]))
    return " · ".join(parts)


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:,.1f} ms"
    if unit == "lines/s":
        return f"{value:,.0f} lines/s"
    if unit == "B":
        return f"{value / (1 << 20):,.1f} MiB"
    return f"{value:,.3g} {unit}"
