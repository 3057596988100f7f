"""startup: wall time of `drdeck --help` against `python -c pass` on the same interpreter.

Both are started as fresh processes, interleaved, and the median is kept. The
import trace of `python -X importtime -m tui --help` says which modules that
path pulls in: none of the heavy libraries may be among them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchError,
    Note,
    Report,
    Row,
    Target,
    children_cpu,
    format_ratio,
    interleaved,
    reproduce,
    timed,
)

NAME = "startup"
RUNS = 20
WARMUP = 2
TARGET_SECONDS = 0.3
TARGET_RATIO = 4.0
HEAVY = ("textual", "boto3", "botocore", "psycopg", "gnupg")


def drdeck_argv() -> list[str]:
    """The console script beside this interpreter, or `python -m tui` when there is none."""
    script = Path(sys.executable).parent / "drdeck"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "--help"]
    return [sys.executable, "-m", "tui", "--help"]


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP", "PYTHONINSPECT"):
        env.pop(name, None)
    return env


class _Subject:
    """Start `argv` once per call; returns the wall time and keeps the child's CPU time."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.env = env
        self.cpu: list[float] = []

    def __call__(self) -> float:
        result: list[subprocess.CompletedProcess[bytes]] = []
        cpu_before = children_cpu()
        elapsed = timed(lambda: result.append(subprocess.run(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=self.env, check=False,
        )))
        self.cpu.append(children_cpu() - cpu_before)
        if result[0].returncode != 0:
            stderr = result[0].stderr.decode(errors="replace").strip()
            raise BenchError(f"{' '.join(self.argv)} exited {result[0].returncode}: "
                             f"{stderr[-300:]}")
        return elapsed


@dataclass
class Imported:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


def import_trace(env: dict[str, str]) -> list[Imported]:
    """Every module `python -X importtime -m tui --help` imports, in import order."""
    argv = [sys.executable, "-X", "importtime", "-m", "tui", "--help"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, check=False)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {result.returncode}")
    return parse_importtime(result.stderr.decode(errors="replace"))


def parse_importtime(text: str) -> list[Imported]:
    """`import time: self | cumulative | name`, the name indented two spaces per level."""
    modules = []
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        raw_name = fields[2].rstrip()
        name = raw_name.lstrip()
        depth = (len(raw_name) - len(name) - 1) // 2
        modules.append(Imported(name, int(fields[0]), int(fields[1]), depth))
    return modules


def heavy_imports(modules: list[Imported]) -> list[str]:
    """The heavy packages among `modules` (by top-level package name)."""
    return sorted({m.name.split(".")[0] for m in modules} & set(HEAVY))


def run() -> Report:
    env = _clean_env()
    subject = _Subject(drdeck_argv(), env)
    baseline = _Subject([sys.executable, "-c", "pass"], env)
    samples = interleaved({"subject": subject, "baseline": baseline}, runs=RUNS, warmup=WARMUP)
    row = Row(
        name=NAME,
        unit="s",
        samples=samples["subject"],
        baseline_label="python -c pass",
        baseline_samples=samples["baseline"],
        command=reproduce(NAME),
    )
    row.targets = [
        Target(f"< {TARGET_SECONDS * 1000:.0f} ms", row.measured < TARGET_SECONDS),
        Target(f"<= {TARGET_RATIO:g}x baseline", row.ratio <= TARGET_RATIO),
    ]
    shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(subject.argv))
    # CPU time is what a busy machine does not inflate; the warm-up runs are left out
    cpu = statistics.median(subject.cpu[WARMUP:])
    cpu_base = statistics.median(baseline.cpu[WARMUP:])
    notes = [Note(NAME, f"`{shown}`: {len(row.samples)} runs each, median; "
                        f"min {min(row.samples) * 1000:.1f} ms vs "
                        f"{min(row.baseline_samples) * 1000:.1f} ms; "
                        f"CPU (user+sys) {cpu * 1000:.1f} ms vs {cpu_base * 1000:.1f} ms "
                        f"({format_ratio(cpu / cpu_base if cpu_base else float('inf'))})")]

    modules = import_trace(env)
    found = heavy_imports(modules)
    total_ms = sum(m.self_us for m in modules) / 1000
    top = sorted((m for m in modules if m.depth == 0), key=lambda m: -m.cumulative_us)[:3]
    slowest = ", ".join(f"{m.name} {m.cumulative_us / 1000:.1f} ms" for m in top)
    heavy = ", ".join(HEAVY)
    if found:
        verdict = f"heavy modules imported by `-m tui --help`: {', '.join(found)}"
    else:
        verdict = f"`-m tui --help` imports none of {heavy}"
    notes.append(Note(NAME, f"{verdict} ({len(modules)} modules, {total_ms:.1f} ms of imports "
                            f"under -X importtime; slowest top-level: {slowest})",
                      ok=not found))
    return Report(rows=[row], notes=notes)
