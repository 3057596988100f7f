"""engine: output lines per second through the real runner, against `cat FILE > /dev/null`.

A generated PostgreSQL-style log of 200,000 lines (about 80 characters each) is
emitted by a one-step runbook (`shell`, `cat FILE`) through `Runner`, into a
null subscriber; a second row does the same with the `--json` printer writing
to /dev/null. The baseline is `cat FILE` with its output on /dev/null, started
as a subprocess and timed the same way. Every run checks that the run
succeeded and that all 200,000 lines arrived as `output` events.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    BenchError,
    Note,
    Report,
    Row,
    Target,
    format_ratio,
    interleaved,
    reproduce,
    timed,
)

NAME = "engine"
LINES = 200_000
RUNS = 5
WARMUP = 1
TARGET_LINES_PER_S = 100_000


def write_log(path: Path, lines: int, seed: int = 0) -> int:
    """A PostgreSQL recovery/restore log: what a restore step really streams. Returns bytes."""
    rng = random.Random(seed)
    tables = ["orders", "order_items", "customers", "payments", "events", "audit_log"]
    users = ["app", "replicator", "postgres", "metabase"]
    out = []
    second = 0
    segment = 0x3A
    for i in range(lines):
        if i % 40 == 0:
            second += 1
        stamp = f"12:{second // 60 % 60:02d}:{second % 60:02d}.{rng.randrange(1000):03d}"
        pid = rng.randrange(1000, 99999)
        kind = rng.random()
        if kind < 0.45:
            segment += 1
            line = f'{stamp} [{pid}] LOG:  restored log file "00000001{segment:016X}" from archive'
        elif kind < 0.65:
            table, rows = rng.choice(tables), rng.randrange(10**6)
            line = f'pg_restore: processing data for table "public.{table}" ({rows})'
        elif kind < 0.8:
            lsn = f"{rng.randrange(16):X}/{rng.randrange(1 << 32):08X}"
            line = f"{stamp} [{pid}] LOG:  redo in progress, elapsed time: 1.{i % 100:02d} s, {lsn}"
        elif kind < 0.9:
            user = rng.choice(users)
            line = f"{stamp} [{pid}] LOG:  connection authorized: user={user} database=app"
        else:
            table = rng.choice(tables)
            line = f"{stamp} [{pid}] LOG:  automatic vacuum of table \"app.public.{table}\""
        out.append(line)
    data = ("\n".join(out) + "\n").encode()
    path.write_bytes(data)
    return len(data)


def runbook_text(path: Path) -> str:
    # a JSON string is a valid TOML basic string
    return f"""\
[runbook]
name = "bench-engine"
title = "Stream a large log through the engine"
scenario = "other"

[[steps]]
id = "cat"
title = "cat the log"
action = "shell"
with = {{ command = ["cat", {json.dumps(str(path))}] }}
"""


class EngineSubject:
    """One timed engine run per call. Keeps this process's CPU time per run as well."""

    def __init__(self, path: Path, workdir_root: Path,
                 make_subscriber: Callable[[], tuple[Callable, Callable[[], None]]]):
        from tui.runbook.loader import load_text

        self.runbook = load_text(runbook_text(path), "<bench engine>")
        self.workdir_root = workdir_root
        self.make_subscriber = make_subscriber  # gives (subscriber, close)
        self.cpu: list[float] = []

    def __call__(self) -> float:
        from tui.engine.runner import Runner
        from tui.headless import HeadlessOperator

        outputs = 0

        def count(event) -> None:
            nonlocal outputs
            if event.kind == "output":
                outputs += 1

        subscriber, close = self.make_subscriber()
        runner = Runner(self.runbook, {}, HeadlessOperator(yes=True),
                        workdir_root=self.workdir_root)
        runner.subscribe(subscriber)
        runner.subscribe(count)
        results = []
        cpu_before = time.process_time()
        try:
            elapsed = timed(lambda: results.append(asyncio.run(runner.run())))
        finally:
            self.cpu.append(time.process_time() - cpu_before)
            close()
        result = results[0]
        if result.status != "succeeded":
            raise BenchError(f"engine run {result.status}: {result.steps[0].error}")
        if outputs != LINES:
            raise BenchError(f"engine delivered {outputs:,} output events, expected {LINES:,}")
        return elapsed


def null_subscriber() -> tuple[Callable, Callable[[], None]]:
    return (lambda event: None), (lambda: None)


def json_subscriber() -> tuple[Callable, Callable[[], None]]:
    from tui.headless import JsonPrinter

    stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 -- closed by the caller
    return JsonPrinter(stream), stream.close


def cat_subject(path: Path):
    def run() -> float:
        result: list[subprocess.CompletedProcess[bytes]] = []
        elapsed = timed(lambda: result.append(subprocess.run(
            ["cat", str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, check=False,
        )))
        if result[0].returncode != 0:
            raise BenchError(f"cat exited {result[0].returncode}: {result[0].stderr!r}")
        return elapsed

    return run


def run() -> Report:
    scratch = Path(tempfile.mkdtemp(prefix="drdeck-bench-"))
    try:
        log = scratch / "restore.log"
        size = write_log(log, LINES)
        workdir_root = scratch / "runs"
        null_engine = EngineSubject(log, workdir_root, null_subscriber)
        json_engine = EngineSubject(log, workdir_root, json_subscriber)
        samples = interleaved(
            {
                "baseline": cat_subject(log),
                "null": null_engine,
                "json": json_engine,
            },
            runs=RUNS, warmup=WARMUP,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def rates(times: list[float]) -> list[float]:
        return [LINES / t for t in times]

    baseline = rates(samples["baseline"])
    label = "cat FILE > /dev/null"
    null_row = Row(NAME, "lines/s", rates(samples["null"]), label, baseline, reproduce(NAME))
    null_row.targets = [Target(f">= {TARGET_LINES_PER_S:,} lines/s",
                               null_row.measured >= TARGET_LINES_PER_S)]
    json_row = Row(f"{NAME} (--json)", "lines/s", rates(samples["json"]), label, baseline,
                   reproduce(NAME))
    per_line_null = 1e6 / null_row.measured
    per_line_json = 1e6 / json_row.measured
    # CPU seconds of this process per run: what a busy machine does not inflate
    cpu_null = statistics.median(null_engine.cpu[WARMUP:])
    cpu_json = statistics.median(json_engine.cpu[WARMUP:])
    json_cost = format_ratio(null_row.measured / json_row.measured)
    notes = [
        Note(NAME, f"{LINES:,} lines, {size / LINES:.1f} bytes/line ({size / 2**20:.1f} MiB), "
                   f"{RUNS} runs each, median; wall {per_line_null:.2f} µs/line with the null "
                   f"subscriber, {per_line_json:.2f} µs/line with the JSON printer "
                   f"({json_cost} the null subscriber's time)"),
        Note(NAME, f"CPU of this process per run: {cpu_null:.3f} s null subscriber "
                   f"({LINES / cpu_null:,.0f} lines per CPU-second), {cpu_json:.3f} s JSON "
                   f"printer ({LINES / cpu_json:,.0f} lines per CPU-second)"),
    ]
    return Report(rows=[null_row, json_row], notes=notes)
