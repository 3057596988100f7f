"""Stream a program's output into the repository: program -> (gpg) -> store, hashed on the way.

    program stdout ──▶ us (sha256, size) ──▶ gpg --encrypt ──▶ us (sha256) ──▶ store writer

Used by snapshots (pg_dump); base backups feed it each archive the server streams
(tui.postgres.backup_protocol) the same way, without a program in front. Memory stays
bounded whatever the size: every hop is a pipe or a fixed-size buffer, and the
store uploads parts as they fill. On any failure every process is stopped and
the upload aborted: nothing half-written remains.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
    """Run `argv` and store its stdout at `key`, encrypted when there are fingerprints;
    stored only once the program has exited 0."""
    source = None

    def stderr_line(line: str) -> None:
        if on_stderr is not None:
            on_stderr(line)
        reporter.output(line, "stderr")

    async def produced() -> AsyncIterator[bytes]:
        assert source is not None and source.stdout is not None
        while chunk := await source.stdout.read(CHUNK):
            yield chunk

    async def exited() -> None:
        assert source is not None
        lines = await said
        code = await source.wait()
        if code != 0:
            name = argv[0].rsplit("/", 1)[-1]
            raise StreamFailed(f"{name} failed (exit {code}): "
                               + (lines[-1] if lines else "no message"))

    source = await spawn(argv, env=env)
    said = asyncio.ensure_future(collect_stderr(source, stderr_line))
    try:
        return await store_chunks(produced(), store, key, fingerprints=fingerprints,
                                  gpg_home=gpg_home, reporter=reporter, what=what,
                                  before_commit=exited)
    except BaseException:
        await reap(source)
        said.cancel()
        raise


async def store_chunks(chunks: AsyncIterator[bytes], store: Any, key: str, *,
                       fingerprints: Sequence[str], gpg_home: str | None, reporter: Reporter,
                       what: str, before_commit: Callable[[], Awaitable[None]] | None = None,
                       ) -> Stored:
    """Store the bytes `chunks` yields at `key`, encrypted when there are fingerprints.
    `before_commit` may still refuse them (by raising): then nothing is stored."""
    encrypt = None
    writer = await asyncio.to_thread(store.open_writer, key)
    try:
        if fingerprints:
            encrypt = await spawn(encrypt_argv(list(fingerprints), gpg_home),
                                  stdin=asyncio.subprocess.PIPE)
        plain, stored = hashlib.sha256(), hashlib.sha256()
        sizes = {"plain": 0, "stored": 0}
        progress = Throttled(reporter, None, "bytes")

        async def upload(pieces: AsyncIterator[bytes], digest: Any, counter: str) -> None:
            buffer = bytearray()
            async for chunk in pieces:
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
            assert encrypt is not None and encrypt.stdin is not None
            async for chunk in chunks:
                plain.update(chunk)
                sizes["plain"] += len(chunk)
                encrypt.stdin.write(chunk)
                await encrypt.stdin.drain()
            encrypt.stdin.close()

        async def encrypted() -> AsyncIterator[bytes]:
            assert encrypt is not None and encrypt.stdout is not None
            while chunk := await encrypt.stdout.read(CHUNK):
                yield chunk

        if encrypt is not None:
            outcome = await asyncio.gather(
                into_gpg(), upload(encrypted(), stored, "stored"),
                collect_stderr(encrypt, lambda line: reporter.output(line, "stderr")))
        else:
            await upload(chunks, plain, "plain")
        if before_commit is not None:
            await before_commit()
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
        await reap(encrypt)
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
