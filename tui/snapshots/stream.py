"""Stream a program's output into the repository: program -> (gpg) -> store, hashed on the way.

    program stdout ──▶ us (sha256, size) ──▶ gpg --encrypt ──▶ us (sha256) ──▶ store writer

Used by snapshots (pg_dump) and base backups (pg_basebackup). Memory stays
bounded whatever the size: every hop is a pipe or a fixed-size buffer, and the
store uploads parts as they fill. On any failure every process is stopped and
the upload aborted: nothing half-written remains.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tui.crypto import encrypt_argv
from tui.errors import DrdeckError
from tui.snapshots.pipes import CHUNK, Reporter, Throttled, collect_stderr, reap, spawn
from tui.units import format_bytes


class StreamFailed(DrdeckError):
    pass


@dataclass(frozen=True)
class Stored:
    plaintext_size: int
    stored_size: int
    sha256_plaintext: str
    sha256_stored: str


async def store_output(argv: Sequence[str], env: dict[str, str], store: Any, key: str, *,
                       fingerprints: Sequence[str], gpg_home: str | None, reporter: Reporter,
                       what: str, on_stderr: Callable[[str], None] | None = None) -> Stored:
    """Run `argv` and store its stdout at `key`, encrypted when there are fingerprints."""
    source = encrypt = None
    writer = await asyncio.to_thread(store.open_writer, key)
    try:
        source = await spawn(argv, env=env)
        if fingerprints:
            encrypt = await spawn(encrypt_argv(list(fingerprints), gpg_home),
                                  stdin=asyncio.subprocess.PIPE)
        plain, stored = hashlib.sha256(), hashlib.sha256()
        sizes = {"plain": 0, "stored": 0}
        progress = Throttled(reporter, None, "bytes")

        async def upload(reader: asyncio.StreamReader, digest: Any, counter: str) -> None:
            buffer = bytearray()
            while chunk := await reader.read(CHUNK):
                digest.update(chunk)
                sizes[counter] += len(chunk)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await asyncio.to_thread(writer.write, bytes(buffer))
                    buffer.clear()
                    progress(sizes["stored"] or sizes["plain"],
                             f"{format_bytes(sizes['plain'])} {what}")
            if buffer:
                await asyncio.to_thread(writer.write, bytes(buffer))

        async def into_gpg() -> None:
            assert source.stdout is not None and encrypt is not None
            assert encrypt.stdin is not None
            while chunk := await source.stdout.read(CHUNK):
                plain.update(chunk)
                sizes["plain"] += len(chunk)
                encrypt.stdin.write(chunk)
                await encrypt.stdin.drain()
            encrypt.stdin.close()

        def stderr_line(line: str) -> None:
            if on_stderr is not None:
                on_stderr(line)
            reporter.output(line, "stderr")

        jobs = [collect_stderr(source, stderr_line)]
        if encrypt is not None:
            jobs += [into_gpg(), upload(encrypt.stdout, stored, "stored"),
                     collect_stderr(encrypt, stderr_line)]
        else:
            jobs.append(upload(source.stdout, plain, "plain"))
        outcome = await asyncio.gather(*jobs)
        code = await source.wait()
        name = argv[0].rsplit("/", 1)[-1]
        if code != 0:
            raise StreamFailed(f"{name} failed (exit {code}): "
                               + (outcome[0][-1] if outcome[0] else "no message"))
        if encrypt is not None:
            code = await encrypt.wait()
            if code != 0:
                raise StreamFailed(f"gpg failed to encrypt (exit {code}): "
                                   + (outcome[-1][-1] if outcome[-1] else "no message"))
        else:
            stored, sizes["stored"] = plain, sizes["plain"]
        progress(sizes["stored"], f"{format_bytes(sizes['plain'])} {what}", final=True)
        await asyncio.to_thread(writer.commit)
        return Stored(sizes["plain"], sizes["stored"], plain.hexdigest(), stored.hexdigest())
    except BaseException as failure:
        await reap(source, encrypt)
        try:
            await asyncio.to_thread(writer.abort)
        except Exception as cleanup:
            # a failed clean-up must not hide what failed (the writer may have said both)
            if isinstance(failure, Exception) and str(cleanup) not in str(failure):
                raise StreamFailed(f"{failure}; and {cleanup}") from None
        raise


async def store_bytes(data: bytes, store: Any, key: str, *, fingerprints: Sequence[str],
                      gpg_home: str | None) -> Stored:
    """Store a small object (kilobytes: a manifest's companion), encrypted when asked."""
    stored = data
    if fingerprints:
        encrypt = await spawn(encrypt_argv(list(fingerprints), gpg_home),
                              stdin=asyncio.subprocess.PIPE)
        stored, errors = await encrypt.communicate(data)
        if encrypt.returncode != 0:
            lines = errors.decode(errors="replace").strip().splitlines()
            raise StreamFailed(f"gpg failed to encrypt (exit {encrypt.returncode}): "
                               + (lines[-1] if lines else "no message"))
    await asyncio.to_thread(store.write_bytes, key, stored)
    return Stored(len(data), len(stored), hashlib.sha256(data).hexdigest(),
                  hashlib.sha256(stored).hexdigest())
