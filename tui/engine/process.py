"""Run a child process, stream its lines as they come, and never leave it behind.

Each child gets its own session (process group), so a timeout or an abort can
stop the whole tree it started (a shell pipeline, pg_restore's workers), not
just the first process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LineSink = Callable[[str, str], None]  # (stream, line)

_CHUNK = 1 << 16
_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int
    stdout: str | None  # only when captured


class ProcessNotFound(OSError):
    pass


async def run_process(
    argv: Sequence[str],
    *,
    on_line: LineSink,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    capture_stdout: bool = False,
) -> ProcessResult:
    """Run `argv`, call `on_line` for each output line; on cancellation stop the group."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ProcessNotFound(f"command not found: {argv[0]}") from exc
    except PermissionError as exc:
        raise ProcessNotFound(f"not allowed to run {argv[0]}: {exc.strerror}") from exc
    captured: list[str] | None = [] if capture_stdout else None

    def stdout_line(stream: str, line: str) -> None:
        if captured is not None:
            captured.append(line)
        on_line(stream, line)

    try:
        await asyncio.gather(
            _pump(proc.stdout, "stdout", stdout_line),
            _pump(proc.stderr, "stderr", on_line),
        )
        exit_code = await proc.wait()
    except BaseException:
        await _stop_group(proc)
        raise
    return ProcessResult(exit_code, "\n".join(captured) if captured is not None else None)


async def _pump(reader: asyncio.StreamReader | None, stream: str, sink: LineSink) -> None:
    """Read in large chunks and split lines ourselves: far faster than readline()."""
    if reader is None:
        return
    pending = b""
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            sink(stream, raw.decode("utf-8", "replace").rstrip("\r"))
        # let the rest of the program (a UI, a timer) breathe during a flood
        await asyncio.sleep(0)
    if pending:
        sink(stream, pending.decode("utf-8", "replace").rstrip("\r"))


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL whatever is still there after a grace period."""
    if proc.returncode is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # children may outlive their leader
        return
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), _GRACE_SECONDS)
    _kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), _GRACE_SECONDS)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
