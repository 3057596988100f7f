"""Fetch a snapshot: repository -> sha256 -> gpg --decrypt -> a local dump file, in one pass.

    store (ranged reads, resumed on error) ──▶ us (sha256) ──▶ gpg --decrypt ──▶ file

pg_restore -j needs a regular file, so the decrypted dump is the one local
copy. It is written as `<name>.partial` and renamed only once the stored
object's checksum matches the manifest and gpg's integrity check passed: a
corrupt or truncated snapshot is caught here, before anything is restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.catalog.manifest import Manifest
from tui.crypto import decrypt_argv, explain_gpg_failure, passphrase_from_environment
from tui.errors import PermanentFailure
from tui.snapshots.pipes import Reporter, Throttled, collect_stderr, from_thread, reap, spawn
from tui.units import format_bytes


class FetchFailed(PermanentFailure):
    pass


@dataclass(frozen=True)
class StoredItem:
    """What is needed to fetch and prove one stored object (a snapshot, a base backup)."""

    key: str
    size: int
    sha256: str
    encrypted: bool


async def fetch_snapshot(manifest: Manifest, store: Any, dest: Path, reporter: Reporter,
                         gpg_home: str | None = None) -> Path:
    """The decrypted dump at `dest` (mode 0600), proven intact; raises FetchFailed."""
    item = StoredItem(manifest.object, manifest.stored_size, manifest.sha256_stored,
                      manifest.encrypted)
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        await stream_object(item, store, fd, reporter, gpg_home)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(partial, dest)
    reporter.output(f"checksum and integrity verified; dump at {dest}")
    return dest


async def stream_object(item: StoredItem, store: Any, out_fd: int, reporter: Reporter,
                        gpg_home: str | None = None) -> None:
    """Download `item`, decrypting it into `out_fd` (a file or a pipe to tar).

    Raises FetchFailed, after everything written to `out_fd`, when the object is
    missing, of the wrong size, corrupt, or not decryptable with the keys at hand.
    """
    stored = await asyncio.to_thread(store.stat, item.key)
    where = store.location(item.key)
    if stored is None:
        raise FetchFailed(f"{where} is missing: the manifest exists but the object does not")
    if stored.size != item.size:
        raise FetchFailed(
            f"{where} is {stored.size:,} bytes but its manifest says {item.size:,}: "
            "truncated or replaced; it will not be restored")
    reporter.output(f"fetching {where} ({format_bytes(stored.size)})")
    decrypt = None
    try:
        if item.encrypted:
            decrypt = await _start_decrypt(out_fd, gpg_home)
        digest, complete = await _download(item, store, out_fd, decrypt, reporter)
        gpg_error = None
        if decrypt is not None:
            assert decrypt.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                decrypt.stdin.close()
            errors, code = await asyncio.gather(collect_stderr(decrypt), decrypt.wait())
            if code != 0:
                gpg_error = explain_gpg_failure("\n".join(errors), gpg_home)
        if complete and digest != item.sha256:  # the plainest proof comes first
            raise FetchFailed(
                f"{where} is corrupt: its sha256 is {digest[:16]}…, the manifest says "
                f"{item.sha256[:16]}…; it will not be restored")
        if gpg_error:  # gpg stopped early: a wrong key, or data it could not read
            raise FetchFailed(f"{where}: {gpg_error}; it will not be restored")
        if not complete:
            raise FetchFailed(f"{where}: the download ended early; it will not be restored")
    except BaseException:
        await reap(decrypt)
        raise


async def _start_decrypt(fd: int, gpg_home: str | None) -> asyncio.subprocess.Process:
    passphrase = passphrase_from_environment()
    if passphrase is None:
        return await spawn(decrypt_argv(gpg_home), stdin=asyncio.subprocess.PIPE, stdout=fd)
    # The passphrase reaches gpg through a pipe of its own: never argv, never a file.
    read_end, write_end = os.pipe()
    os.write(write_end, passphrase.encode() + b"\n")
    os.close(write_end)
    try:
        return await asyncio.create_subprocess_exec(
            *decrypt_argv(gpg_home, passphrase_fd=read_end), stdin=asyncio.subprocess.PIPE,
            stdout=fd, stderr=asyncio.subprocess.PIPE, pass_fds=(read_end,),
            start_new_session=True)
    finally:
        os.close(read_end)


async def _download(item: StoredItem, store: Any, fd: int,
                    decrypt: asyncio.subprocess.Process | None,
                    reporter: Reporter) -> tuple[str, bool]:
    """Stream the stored object into gpg (or the file): (its sha256, whether all of it came)."""
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    done = 0
    progress = Throttled(reporter, item.size, "bytes")

    def on_retry(attempt: int, error: Exception, delay: float) -> None:
        loop.call_soon_threadsafe(
            reporter.output, f"download interrupted ({error}); resuming in {delay:g}s "
            f"(retry {attempt})", "stderr")

    def chunks():
        return store.iter_chunks(item.key, on_retry=on_retry)

    async for chunk in from_thread(chunks):
        digest.update(chunk)
        done += len(chunk)
        if decrypt is not None:
            assert decrypt.stdin is not None
            try:
                decrypt.stdin.write(chunk)
                await decrypt.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                return digest.hexdigest(), False  # gpg gave up: its message says why
        else:
            _write_all(fd, chunk)
        progress(done)
    progress(done, final=True)
    return digest.hexdigest(), True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
