"""snapshot-memory: drdeck's peak RSS taking a snapshot of a small and of a large database.

`drdeck run snapshot-backup --headless --json -p database=NAME` (pg_dump -Fc ->
gpg --encrypt -> a local repository, the manifest, then the runbook's list
verification: fetch, sha256, gpg --decrypt, pg_restore --list) runs against
two databases of one cluster: pgbench's tables at scale SMALL and at scale
LARGE (md5 filler, see bench.fixtures; created with --unlogged-tables, which
makes them faster to generate and changes nothing pg_dump reads or drdeck
streams). Runs alternate small, large, small, large; the median peak is kept.

How the peaks are taken:

- drdeck: `VmHWM` (peak RSS) from /proc/self/status of the drdeck process
  itself, read at exit by a tiny wrapper that runs `python -m tui` in-process
  (`runpy`). Not getrusage: on Linux a process's `ru_maxrss` starts from the
  memory of the image it replaced at exec, which after a fork (or vfork) is
  the spawning process's RSS; so `RUSAGE_CHILDREN` around the subprocess,
  `/usr/bin/time -v` and even `RUSAGE_SELF` in drdeck report at least the
  size of whoever started it (the benchmark process, 137 MiB after the restore
  benchmark, against drdeck's 50), and every program drdeck starts reports at
  least drdeck's RSS. VmHWM counts only the current image;
- pg_dump, gpg: the largest `VmHWM` read from /proc/PID/status of drdeck's
  descendants, polled every POLL_S while the run lasts (the peak of a process
  that ends between two polls is missed: a floor).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import BenchError, Note, Report, Row, Target, reproduce
from bench.fixtures import (
    bench_cluster,
    drdeck_env,
    gpg_home,
    local_repository,
    mib,
    scratch_directory,
    seed_pgbench,
    write_config,
)

NAME = "snapshot-memory"
SMALL, LARGE = 5, 40  # pgbench scales
RUNS = 2  # per size, alternating
TARGET_RATIO = 1.3
POLL_S = 0.02
TIMEOUT_S = 600

# `python -m tui`, in-process, reporting its own peak RSS at exit (see the module's doc)
WRAPPER = """\
import atexit, json, os, resource, runpy, sys

_report_to = os.environ.pop("DRDECK_BENCH_RUSAGE")


def _report():
    with open("/proc/self/status", encoding="utf-8") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(_report_to, "w", encoding="utf-8") as out:
        json.dump({"vmhwm_kib": peak, "maxrss_kib": maxrss}, out)


atexit.register(_report)
sys.argv = ["drdeck", *sys.argv[1:]]
runpy.run_module("tui", run_name="__main__", alter_sys=True)
"""


class DescendantPeaks:
    """The largest VmHWM per program name among a process's descendants, while it runs."""

    def __init__(self, root: int):
        self.root = root
        self.peaks: dict[str, int] = {}  # name -> KiB
        self.root_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-rss", daemon=True)

    def __enter__(self) -> DescendantPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(POLL_S)

    def _sample(self) -> None:
        status = _status(self.root)
        if status is None:
            return
        own_name, peak = status
        self.root_peak = max(self.root_peak, peak)
        for pid in _descendants(self.root):
            status = _status(pid)
            # a child between fork and exec still shows drdeck's own image: not a program
            if status is not None and status[0] != own_name:
                name, peak = status
                self.peaks[name] = max(self.peaks.get(name, 0), peak)


def _descendants(root: int) -> list[int]:
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                    for child in children.read().split():
                        found.append(int(child))
                        pending.append(int(child))
    return found


def _status(pid: int) -> tuple[str, int] | None:
    """(program name, VmHWM in KiB), or None once it is gone (or has no memory: a zombie)."""
    name, peak = "", None
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("Name:"):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
                    break
    except OSError:
        return None
    return (name, peak) if peak is not None else None


class Backup:
    """One `drdeck run snapshot-backup` per call; keeps the peaks and what was stored."""

    def __init__(self, database: str, config: Path, scratch: Path):
        self.database = database
        self.config = config
        self.scratch = scratch
        self.wrapper = scratch / "drdeck_rss.py"
        self.wrapper.write_text(WRAPPER, encoding="utf-8")
        self.drdeck: list[float] = []  # MiB
        self.children: dict[str, list[float]] = {}
        self.seconds: list[float] = []
        self.polled: list[float] = []  # drdeck's own VmHWM, polled: a cross-check
        self.maxrss: list[float] = []  # getrusage's view, for the record (see the module's doc)

    def __call__(self) -> None:
        report = self.scratch / f"rusage-{self.database}.json"
        report.unlink(missing_ok=True)
        state = self.scratch / "state"
        env = drdeck_env(state, {"DRDECK_BENCH_RUSAGE": str(report)})
        argv = [sys.executable, str(self.wrapper), "--config", str(self.config), "run",
                "snapshot-backup", "-p", f"database={self.database}", "--headless", "--json"]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=self.scratch)
        with DescendantPeaks(proc.pid) as peaks:
            try:
                out, err = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise BenchError(f"drdeck run snapshot-backup took over {TIMEOUT_S} s") from None
        self.seconds.append(time.perf_counter() - started)
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        if proc.returncode != 0 or not events or events[-1].get("status") != "succeeded":
            raise BenchError(f"drdeck run snapshot-backup -p database={self.database} exited "
                             f"{proc.returncode}: {err.strip()[-300:] or events[-3:]}")
        failed = [e["name"] for e in events if e["event"] == "check" and not e["ok"]]
        if failed:
            raise BenchError(f"the new snapshot of {self.database} failed checks: {failed}")
        try:
            peak = json.loads(report.read_text())
            self.drdeck.append(peak["vmhwm_kib"] / 1024)
            self.maxrss.append(peak["maxrss_kib"] / 1024)
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"the wrapper wrote no peak RSS: {exc}") from None
        self.polled.append(peaks.root_peak / 1024)
        for name, kib in peaks.peaks.items():
            self.children.setdefault(name, []).append(kib / 1024)


@contextlib.contextmanager
def _world() -> Iterator[tuple[Path, Path, Path, dict[str, int]]]:
    with scratch_directory() as scratch, gpg_home() as home, bench_cluster() as cluster:
        rows = {f"s{scale}": seed_pgbench(cluster, f"s{scale}", scale, unlogged=True)
                for scale in (SMALL, LARGE)}
        repo = scratch / "repo"
        config = write_config(scratch / "drdeck.toml", dsn=cluster.dsn("postgres"),
                              repository=local_repository(repo), gpg_home=home.path,
                              recipients=[home.fingerprint], databases=list(rows))
        yield scratch, config, repo, rows


def _own_peak_mib() -> float:
    status = _status(os.getpid())
    return status[1] / 1024 if status else float("nan")


def _dump_sizes(repo: Path, database: str) -> tuple[int, int]:
    """(plaintext, stored) bytes of the newest snapshot of `database`, from its manifest."""
    manifests = sorted((repo / "prod" / "snapshots" / database).glob("*.json"))
    manifests = [m for m in manifests if m.name.count(".") == 1]  # not verification records
    if not manifests:
        raise BenchError(f"no manifest of {database} in {repo}")
    data = json.loads(manifests[-1].read_text())
    return int(data["plaintext_size"]), int(data["stored_size"])


def run() -> Report:
    started = time.perf_counter()
    with _world() as (scratch, config, repo, rows):
        seeded_s = time.perf_counter() - started
        small = Backup(f"s{SMALL}", config, scratch)
        large = Backup(f"s{LARGE}", config, scratch)
        for _ in range(RUNS):
            small()
            large()
        sizes = {b.database: _dump_sizes(repo, b.database) for b in (small, large)}
    total_s = time.perf_counter() - started

    command = reproduce(NAME)
    label = f"scale {SMALL}"
    row = Row(f"{NAME} (drdeck, scale {LARGE})", "MiB", large.drdeck, label, small.drdeck,
              command)
    row.targets = [Target(f"<= {TARGET_RATIO:g}x scale {SMALL}", row.ratio <= TARGET_RATIO)]
    rows_out = [row]
    for program in ("pg_dump", "gpg"):
        if program in large.children and program in small.children:
            rows_out.append(Row(f"{NAME} ({program}, scale {LARGE})", "MiB",
                                large.children[program], label, small.children[program],
                                command))

    (small_plain, small_stored), (large_plain, large_stored) = (sizes[small.database],
                                                                sizes[large.database])
    grown = statistics.median(large.drdeck) - statistics.median(small.drdeck)
    others = ", ".join(f"{name} {max(large.children[name] + small.children.get(name, [])):.1f}"
                       for name in sorted(set(large.children) - {"pg_dump", "gpg"}))
    notes = [
        Note(NAME, f"scale {SMALL}: {rows[small.database]:,} rows, dump "
                   f"{mib(small_plain)} ({mib(small_stored)} stored); scale {LARGE}: "
                   f"{rows[large.database]:,} rows, dump {mib(large_plain)} "
                   f"({mib(large_stored)} stored), {large_plain / small_plain:.1f}x the bytes; "
                   f"local repository, encrypted, pgbench tables created with "
                   f"--unlogged-tables (pg_dump reads them alike); {RUNS} runs each, "
                   f"alternating, median"),
        Note(NAME, f"drdeck peak RSS {statistics.median(small.drdeck):.1f} -> "
                   f"{statistics.median(large.drdeck):.1f} MiB ({grown:+.1f} MiB for "
                   f"{mib(large_stored - small_stored)} more streamed), VmHWM of the drdeck "
                   f"process at its exit (getrusage's ru_maxrss there said "
                   f"{statistics.median(small.maxrss + large.maxrss):.1f} MiB: it starts "
                   f"from the spawning process's RSS, and this benchmark process's peak is "
                   f"{_own_peak_mib():.1f} MiB); backups took "
                   f"{statistics.median(small.seconds):.1f} s and "
                   f"{statistics.median(large.seconds):.1f} s (the list verification "
                   f"included)"),
        Note(NAME, "pg_dump and gpg (encrypting, and decrypting in the verification) are "
                   f"separate processes: their VmHWM polled every {POLL_S * 1000:.0f} ms, a "
                   "floor for short-lived ones"
                   + (f"; others seen, peak MiB: {others}" if others else "")
                   + f"; drdeck's own VmHWM polled the same way: "
                     f"{statistics.median(small.polled):.1f} and "
                     f"{statistics.median(large.polled):.1f} MiB"
                   + f"; set-up {seeded_s:.1f} s, whole benchmark {total_s:.1f} s"),
    ]
    return Report(rows=rows_out, notes=notes)
