"""Blocks of pg_waldump's text digested in other processes (tui.wal.events.digest_block:
the regular expressions, most of a scan's work), so that a scan uses more than one core.

Each digester is `python -m tui.wal.digester`, started here with the base environment
(none of drdeck's secrets): it reads a block at a time from its stdin and writes back its
digest, both pickled in length-prefixed frames. One thread here owns each digester and
asks it one block at a time, so nothing waits on a full pipe; the threads wait in I/O,
outside the interpreter lock. Not multiprocessing: its spawned workers import the
program's main module again, which would run whatever program embeds a scan.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tui.child_python import python_module
from tui.errors import DrdeckError

_FRAME = struct.Struct("<Q")
AHEAD = 3  # blocks handed out per digester before the first is taken back


class DigesterFailed(DrdeckError):
    pass


@dataclass
class _Digester:
    process: subprocess.Popen[bytes]
    errors: Any  # a temporary file: what it says on stderr, should it fail

    def last_words(self) -> str:
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


class _Failure:
    """What a digester answers when a block could not be digested."""

    def __init__(self, message: str) -> None:
        self.message = message


class DigestPool:
    """`count` digesters, for the life of a `with`."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._threads = ThreadPoolExecutor(count, thread_name_prefix="drdeck-digest")
        self._local = threading.local()
        self._started: list[_Digester] = []
        self._lock = threading.Lock()
        self._files = contextlib.ExitStack()

    def __enter__(self) -> DigestPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        for digester in self._started:
            if digester.process.stdin is not None:
                with contextlib.suppress(OSError):  # one that died has no pipe to close
                    digester.process.stdin.close()  # a digester ends at its input's end
        for digester in self._started:
            try:
                digester.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                digester.process.kill()
                digester.process.wait()
        self._files.close()

    def digests(self, major: int) -> Callable[[Iterable[str]], Iterator[tuple[str, Any]]]:
        """tui.wal.events.destructive_events' `digests`: each block with its digest, in
        order, a few blocks found ahead."""
        def digests(blocks: Iterable[str]) -> Iterator[tuple[str, Any]]:
            pending: deque[tuple[str, Future[Any]]] = deque()
            for block in blocks:
                pending.append((block, self._threads.submit(self._digest, block, major)))
                if len(pending) >= AHEAD * self.count:
                    done, digest = pending.popleft()
                    yield done, digest.result()
            while pending:
                done, digest = pending.popleft()
                yield done, digest.result()
        return digests

    def _digest(self, block: str, major: int) -> Any:
        digester = getattr(self._local, "digester", None)
        if digester is None:
            digester = self._local.digester = self._start()
        process = digester.process
        assert process.stdin is not None and process.stdout is not None
        try:
            _write(process.stdin, (block, major))
            answer = _read(process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            process.kill()
            code = process.wait()
            said = digester.last_words()
            raise DigesterFailed(f"a process reading WAL text ended ({exc}; exit code "
                                 f"{code}{': ' + said if said else ''})") from None
        if isinstance(answer, _Failure):
            raise DigesterFailed(f"reading WAL text failed: {answer.message}")
        return answer

    def _start(self) -> _Digester:
        from tui import environment

        root = str(Path(__file__).resolve().parents[2])  # where `tui` is imported from
        with self._lock:
            errors = self._files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            process = subprocess.Popen(
                python_module("tui.wal.digester"), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=errors,
                env={**environment.base(), "PYTHONPATH": root})
            digester = _Digester(process, errors)
            self._started.append(digester)
        return digester


def _write(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("no answer")
    (size,) = _FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("a cut answer")
    return pickle.loads(data)  # from the process this one started, over its own pipe


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """A digester's life: a digest for each block, until its input ends."""
    from tui.wal.events import digest_block

    while True:
        try:
            block, major = _read(source)
        except EOFError:
            return
        try:
            answer: Any = digest_block(block, major)
        except Exception as exc:  # said by the scan, in its words; this process goes on
            answer = _Failure(f"{type(exc).__name__}: {exc}")
        _write(sink, answer)


if __name__ == "__main__":
    # from the module by its own name: what it answers must unpickle as tui.wal.digester's
    from tui.wal.digester import serve as serve_as_module

    serve_as_module(sys.stdin.buffer, sys.stdout.buffer)
