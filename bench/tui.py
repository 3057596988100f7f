"""tui: the run screen under an output flood, against the headless printer.

The `engine` benchmark's log (200,000 lines of about 80 characters) is streamed
by a one-step runbook (`shell`, `cat FILE`) in three ways, interleaved:

- baseline: `Runner` headless with the human printer writing to /dev/null and
  the journal recorder `drdeck run --headless` attaches (the app records its
  runs too, so both sides pay for the journal), timed around
  `asyncio.run(runner.run())`;
- the app: `DrdeckApp` under `run_test` at 120x36, which opens the run screen
  and starts the run at once; timed from the engine's start (the `run_finished`
  event's time less its duration, so the app's own start-up is left out) until
  the run has finished and all 200,000 lines are folded into the screen's state;
- the app again while "f" (follow) is pressed every 100 ms of the flood: each
  press is timed from sending the key until `OutputPanel.following` flips. Its
  baseline is the same presses on an idle run screen (a step that only sleeps).

Every run checks that it succeeded, that every line arrived, and that the log
widget holds the bounded tail of the file, ending with its last line. Each run
starts from a collected heap, as a fresh process would (see `fresh_heap`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchError, Note, Report, Row, Target, interleaved, reproduce, timed
from bench.engine import runbook_text, write_log

NAME = "tui"
LINES = 200_000
RUNS = 3
WARMUP = 1
TARGET_SHARE = 0.5  # the app drains at least half as fast as the headless printer
TARGET_KEY_S = 0.100
PRESS_EVERY_S = 0.100
MIN_PRESSES = 10
IDLE_STEP_S = 1.2  # the idle run screen: one step that sleeps this long
POLL_S = 0.001
FLIP_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 60.0
SIZE = (120, 36)


def idle_runbook_text() -> str:
    return f"""\
[runbook]
name = "bench-tui-idle"
title = "A step that prints nothing"
scenario = "other"

[[steps]]
id = "sleep"
title = "sleep"
action = "shell"
with = {{ command = ["sleep", {json.dumps(str(IDLE_STEP_S))}] }}
"""


def fresh_heap() -> None:
    """Start a run from the heap a fresh process would have.

    Textual memoizes `StylesCache.get_inner_outer` with `functools.lru_cache` on the
    method, so every finished app's style caches (and their strips) stay alive: about
    11,000 objects per app run, which make each later full collection slower (40 ms
    at the first run, 120 ms by the twelfth). One app per process never sees that.
    """
    try:
        from textual._styles_cache import StylesCache

        StylesCache.get_inner_outer.cache_clear()
    except (ImportError, AttributeError):  # a Textual without it: nothing to clear
        pass
    gc.collect()


class GcMeter:
    """Time spent in the cyclic garbage collector while active: (seconds, full collections)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self.longest_full = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        self.seconds += spent
        if info["generation"] == 2:
            self.full += 1
            self.longest_full = max(self.longest_full, spent)

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


class HeadlessSubject:
    """One timed headless run per call, the human printer writing to /dev/null."""

    def __init__(self, runbook: Any, workdir_root: Path):
        self.runbook = runbook
        self.workdir_root = workdir_root
        self.gc: list[GcMeter] = []

    def __call__(self) -> float:
        from tui.commands.run import record
        from tui.config import load_config
        from tui.engine.runner import Runner
        from tui.headless import HeadlessOperator, HumanPrinter

        outputs = 0

        def count(event) -> None:
            nonlocal outputs
            if event.kind == "output":
                outputs += 1

        runner = Runner(self.runbook, {}, HeadlessOperator(yes=True),
                        workdir_root=self.workdir_root)
        results = []
        fresh_heap()
        journal = record(runner, load_config(None))
        try:
            with open(os.devnull, "w", encoding="utf-8") as stream, GcMeter() as meter:
                runner.subscribe(HumanPrinter(stream, colour=False))
                runner.subscribe(count)
                elapsed = timed(lambda: results.append(asyncio.run(runner.run())))
        finally:
            journal.close()
        self.gc.append(meter)
        result = results[0]
        if result.status != "succeeded":
            raise BenchError(f"headless run {result.status}: {result.steps[0].error}")
        if outputs != LINES:
            raise BenchError(f"headless run delivered {outputs:,} output events, "
                             f"expected {LINES:,}")
        return elapsed


class AppSubject:
    """One app run per call; returns the drain time, keeps key delays, start-up and GC.

    With `press`, "f" is sent every PRESS_EVERY_S while the run is going. Each press is
    `pilot.press("f")` started as a task (awaited in place it would also wait for the
    app to go idle, which under a flood takes up to seconds) and timed two ways:
    `handled`, from just before the task is created until the screen's `set_following`
    runs (a timestamp taken inside the app by a wrapper on that one panel instance, so
    no polling is in it), and `seen`, until a poll loop sleeping POLL_S (the one thing
    this test does on the app's loop meanwhile) notices `following` flipped.
    """

    def __init__(self, runbook: Any, *, lines: int, tail: list[str] | None, press: bool):
        self.runbook = runbook
        self.lines = lines
        self.tail = tail  # the file's last lines, to find in the log widget
        self.press = press
        self.handled: list[list[float]] = []  # per call, per press
        self.seen: list[list[float]] = []
        self.unanswered: list[int] = []  # presses that met the end of the run instead
        self.startup: list[float] = []  # from creating the app to the pilot in hand
        self.gc: list[GcMeter] = []

    def __call__(self) -> float:
        fresh_heap()
        with GcMeter() as meter:
            elapsed = asyncio.run(self._run())
        self.gc.append(meter)
        return elapsed

    async def _run(self) -> float:
        from tui.app.app import DrdeckApp
        from tui.app.screens.run import RunScreen
        from tui.app.widgets.output import OutputPanel

        created = time.perf_counter()
        app = DrdeckApp(runbooks=[], open_runbook=self.runbook, autostart={},
                        cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            self.startup.append(time.perf_counter() - created)
            screens = [s for s in app.screen_stack if isinstance(s, RunScreen)]
            if not screens:
                raise BenchError("the app did not open the run screen")
            screen = screens[0]
            state = screen.state
            panel = screen.query_one(OutputPanel)
            handled: list[float] = []
            seen: list[float] = []
            unanswered = 0
            if self.press:
                handled, seen, unanswered = await self._press_during(pilot, state, panel)

            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while state.finished is None or state.output_lines < self.lines:
                if time.monotonic() > deadline:
                    raise BenchError(f"the app folded {state.output_lines:,} of {self.lines:,} "
                                     f"lines in {DRAIN_TIMEOUT_S:g} s (run finished: "
                                     f"{state.finished is not None})")
                await asyncio.sleep(POLL_S)
            done = datetime.now(UTC)
            finished = state.finished
            if finished.status != "succeeded":
                raise BenchError(f"app run {finished.status}: {finished.error}")
            if state.output_lines != self.lines:
                raise BenchError(f"the app folded {state.output_lines:,} output events, "
                                 f"expected {self.lines:,}")
            self._check_tail(list(panel.log_widget.lines))
        self.handled.append(handled)
        self.seen.append(seen)
        self.unanswered.append(unanswered)
        # the engine's own start: `ts` is taken when run_finished is built
        started = finished.at - timedelta(seconds=finished.duration_s)
        return (done - started).total_seconds()

    async def _press_during(self, pilot, state, panel) -> tuple[list[float], list[float], int]:
        flipped_at: list[float] = []
        set_following = panel.set_following

        def timestamped(following: bool) -> None:
            flipped_at.append(time.perf_counter())
            set_following(following)

        panel.set_following = timestamped  # this instance only, for this run
        handled: list[float] = []
        seen: list[float] = []
        presses: list[asyncio.Task[None]] = []
        unanswered = 0
        try:
            next_press = time.perf_counter()
            while state.finished is None:
                now = time.perf_counter()
                if now < next_press:
                    await asyncio.sleep(min(POLL_S, next_press - now))
                    continue
                before, calls = panel.following, len(flipped_at)
                sent = time.perf_counter()
                presses.append(asyncio.create_task(pilot.press("f")))
                while panel.following == before:
                    if state.finished is not None or time.perf_counter() - sent > FLIP_TIMEOUT_S:
                        break
                    await asyncio.sleep(POLL_S)
                if panel.following == before:
                    if state.finished is None:
                        raise BenchError(f"pressing f had no effect in {FLIP_TIMEOUT_S:g} s")
                    unanswered += 1  # the run ended first: the summary took the key
                    break
                seen.append(time.perf_counter() - sent)
                handled.append(flipped_at[calls] - sent)
                next_press = sent + PRESS_EVERY_S
            await asyncio.gather(*presses)
        finally:
            panel.set_following = set_following
        return handled, seen, unanswered

    def _check_tail(self, shown: list[str]) -> None:
        """The log holds the newest MAX_LINES lines: the file's tail, then the end markers."""
        if self.tail is None:
            return
        from tui.app.widgets.output import MAX_LINES

        if len(shown) != MAX_LINES:
            raise BenchError(f"the log widget holds {len(shown):,} lines, expected the "
                             f"bounded tail of {MAX_LINES:,}")
        # after the output come the markers of the step's and the run's end ("── ...");
        # every line carries the wall-clock stamp in front, hence endswith
        ends = [i for i in range(len(shown) - 1, len(shown) - 6, -1)
                if shown[i].endswith(self.tail[-1])]
        if not ends:
            raise BenchError("the file's last line is not at the end of the log widget: "
                             f"{shown[-4:]!r}")
        end = ends[0]
        for got, want in zip(shown[:end + 1], self.tail[-(end + 1):], strict=True):
            if not got.endswith(want):
                raise BenchError(f"the log widget's tail differs from the file: {got!r} "
                                 f"does not end with {want!r}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _gc_text(meters: list[GcMeter]) -> str:
    seconds = statistics.median(m.seconds for m in meters)
    full = statistics.median(m.full for m in meters)
    longest = max(m.longest_full for m in meters)
    return f"{_ms(seconds)} ({full:g} full collections, longest {_ms(longest)})"


def run() -> Report:
    from tui.app.widgets.output import MAX_LINES
    from tui.runbook.loader import load_text

    scratch = Path(tempfile.mkdtemp(prefix="drdeck-bench-"))
    saved_state_dir = os.environ.get("DRDECK_STATE_DIR")
    # the app's runner keeps its work directories under the state directory
    os.environ["DRDECK_STATE_DIR"] = str(scratch / "state")
    try:
        log = scratch / "restore.log"
        size = write_log(log, LINES)
        tail = log.read_text(encoding="utf-8").splitlines()[-MAX_LINES:]
        flood = load_text(runbook_text(log), "<bench tui>")
        idle = load_text(idle_runbook_text(), "<bench tui idle>")
        headless = HeadlessSubject(flood, scratch / "runs")
        app = AppSubject(flood, lines=LINES, tail=tail, press=False)
        pressed = AppSubject(flood, lines=LINES, tail=tail, press=True)
        quiet = AppSubject(idle, lines=0, tail=None, press=True)
        subjects: dict[str, Callable[[], float]] = {
            "baseline": headless,
            "app": app,
            "pressed": pressed,
            "idle": quiet,
        }
        samples = interleaved(subjects, runs=RUNS, warmup=WARMUP)
    finally:
        if saved_state_dir is None:
            os.environ.pop("DRDECK_STATE_DIR", None)
        else:
            os.environ["DRDECK_STATE_DIR"] = saved_state_dir
        shutil.rmtree(scratch, ignore_errors=True)

    def rates(times: list[float]) -> list[float]:
        return [LINES / t for t in times]

    def measured(per_run: list[list[float]]) -> list[list[float]]:
        return [delays for delays in per_run[WARMUP:] if delays]

    command = reproduce(NAME)
    label = "headless: human printer > /dev/null, journal"
    baseline = rates(samples["baseline"])
    drain = Row(NAME, "lines/s", rates(samples["app"]), label, baseline, command)
    drain.targets = [Target(f">= {TARGET_SHARE:.0%} of headless lines/s",
                            drain.measured >= TARGET_SHARE * drain.baseline)]
    drain_pressed = Row(f"{NAME} (pressing f)", "lines/s", rates(samples["pressed"]), label,
                        baseline, command)

    runs = measured(pressed.handled)
    handled = [d for delays in runs for d in delays]
    seen = [d for delays in measured(pressed.seen) for d in delays]
    idle_handled = [d for delays in measured(quiet.handled) for d in delays]
    if len(handled) < MIN_PRESSES:
        raise BenchError(f"only {len(handled)} presses of f landed during the flood, "
                         f"expected at least {MIN_PRESSES}")
    if not idle_handled:
        raise BenchError("no press of f landed on the idle run screen")
    idle_label = "idle run screen"
    worst = Row(f"{NAME} (f key, worst)", "s", [max(handled)], idle_label,
                [max(idle_handled)], command)
    worst.targets = [Target(f"<= {TARGET_KEY_S * 1000:.0f} ms", worst.measured <= TARGET_KEY_S)]
    median = Row(f"{NAME} (f key, median)", "s", handled, idle_label, idle_handled, command)

    first = [delays[0] for delays in runs]
    later = [d for delays in runs for d in delays[1:]]
    startup = statistics.median(app.startup[WARMUP:] + pressed.startup[WARMUP:])
    unanswered = sum(pressed.unanswered[WARMUP:])
    polling = [s - h for s, h in zip(seen, handled, strict=True)]
    notes = [
        Note(NAME, f"{LINES:,} lines, {size / LINES:.1f} bytes/line, {RUNS} runs each after "
                   f"{WARMUP} warm-up, median; app at {SIZE[0]}x{SIZE[1]} under run_test "
                   f"(headless driver: the screen is composed, only the terminal write is "
                   f"skipped); the app's start-up ({_ms(startup)} median) is not in its "
                   f"time, the run screen's first layout (under way as the run starts) is"),
        Note(NAME, f"f key: {len(handled)} presses during the flood, one every "
                   f"{PRESS_EVERY_S * 1000:.0f} ms of {RUNS} runs ({unanswered} met the end "
                   f"of the run instead); delay = from just before pilot.press('f') is "
                   f"started as a task until the app runs set_following (timestamped in the "
                   f"app, not polled); first press of each run (as the screen comes up) "
                   f"worst {_ms(max(first))}, later presses worst "
                   f"{_ms(max(later)) if later else '-'}, median {_ms(statistics.median(handled))}"
                   f"; idle screen: worst {_ms(max(idle_handled))} of {len(idle_handled)}"),
        Note(NAME, f"f key as seen by a poll loop sleeping {POLL_S * 1000:g} ms: worst "
                   f"{_ms(max(seen))}, median {_ms(statistics.median(seen))}; polling "
                   f"adds {_ms(statistics.median(polling))} median, {_ms(max(polling))} "
                   f"at most (the poll waits behind whatever the app's loop runs)"),
        Note(NAME, f"cyclic GC per run, median: app {_gc_text(app.gc[WARMUP:])}, headless "
                   f"{_gc_text(headless.gc[WARMUP:])}"),
    ]
    return Report(rows=[drain, drain_pressed, worst, median], notes=notes)
