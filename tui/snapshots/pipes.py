"""The plumbing of a streaming pipeline: child processes, a blocking reader in a thread,
and progress that is reported often enough to watch but not on every chunk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Protocol

from tui import environment

CHUNK = 1 << 20


class Reporter(Protocol):
    """What a pipeline reports to: the step context of the action running it."""

    def output(self, line: str, stream: str = "stdout") -> None: ...

    def progress(self, done: float, total: float | None = None, unit: str = "",
                 detail: str = "") -> None: ...


class Throttled:
    """Progress at most every `interval` seconds, and always the last value."""

    def __init__(self, reporter: Reporter, total: float | None, unit: str,
                 interval: float = 0.25):
        self.reporter, self.total, self.unit, self.interval = reporter, total, unit, interval
        self._last = 0.0
        self._reported: float | None = None

    def __call__(self, done: float, detail: str = "", final: bool = False) -> None:
        now = time.monotonic()
        if (final and done != self._reported) or now - self._last >= self.interval:
            self._last, self._reported = now, done
            self.reporter.progress(done, self.total, self.unit, detail)


async def spawn(argv: Sequence[str], *, stdin: Any = None, stdout: Any = None,
                env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """A child in its own process group, so stopping it stops everything it started.

    Without `env` it gets the base set and GNUPGHOME (tui.environment), never drdeck's
    whole environment."""
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environment.for_gpg() if env is None else env,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise OSError(f"{argv[0]} is not installed") from None


async def collect_stderr(proc: asyncio.subprocess.Process,
                         sink: Callable[[str], None] | None = None) -> list[str]:
    lines: list[str] = []
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            lines.append(line)
            if sink is not None:
                sink(line)
    return lines


def stop(proc: asyncio.subprocess.Process | None) -> None:
    """Kill a child's whole group; harmless when it is already gone."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def reap(*procs: asyncio.subprocess.Process | None) -> None:
    for proc in procs:
        if proc is not None:
            stop(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)


async def from_thread(make: Callable[[], Iterator[bytes]], depth: int = 8) -> AsyncIterator[bytes]:
    """Iterate a blocking generator (a download) in a thread, with a bounded queue between.

    The queue bounds memory: the thread waits while `depth` chunks are not yet
    consumed. Leaving the loop early (an error, a cancellation) tells the
    thread to stop at its next chunk.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=depth)
    stopping = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stopping.is_set():
            try:
                future.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
        future.cancel()
        return False

    def produce() -> None:
        try:
            for chunk in make():
                if stopping.is_set() or not put(chunk):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="drdeck-download", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
