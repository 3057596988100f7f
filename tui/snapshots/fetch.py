"""Fetch a snapshot: repository -> sha256 -> gpg --decrypt -> a local dump file, in one pass.

    store (ranged reads, resumed) ──▶ us (sha256) ──▶ gpg --decrypt ──▶ us (sha256) ──▶ file

pg_restore -j needs a regular file, so the decrypted dump is the one local
copy. It is written as `<name>.partial` and renamed only once the stored
object's checksum matches the manifest, gpg's integrity check passed and the
decrypted dump's checksum matches the manifest's `sha256_plaintext`: a
corrupt, truncated or mismatched snapshot is caught here, before anything is
restored. A disk too small for the dump is refused before the download, and a
disk that fills up during it is named, with what the dump needs and what is
free.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui import environment
from tui.catalog.manifest import Manifest
from tui.crypto import decrypt_argv, explain_gpg_failure, passphrase_from_environment
from tui.errors import PermanentFailure
from tui.snapshots.pipes import (
    CHUNK,
    Reporter,
    Throttled,
    collect_stderr,
    from_thread,
    reap,
    spawn,
    stop,
)
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
    what: str = "this snapshot"  # for gpg's messages: "no secret key to decrypt <what>"


# The run's work directory is $DRDECK_STATE_DIR/runs/<run id> (tui/engine/runner.py): the
# one knob that moves it, and so the dump, to another disk.
MOVE_WORKDIR = ("set DRDECK_STATE_DIR to a directory on a disk with room (each run's work "
                "directory is made in $DRDECK_STATE_DIR/runs/) and run again")


async def fetch_snapshot(manifest: Manifest, store: Any, dest: Path, reporter: Reporter,
                         gpg_home: str | None = None, *, move: str = MOVE_WORKDIR) -> Path:
    """The decrypted dump at `dest` (mode 0600), proven intact; raises FetchFailed.

    `move` says how to put `dest` on another disk, for when this one is full.
    """
    item = StoredItem(manifest.object, manifest.stored_size, manifest.sha256_stored,
                      manifest.encrypted)
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the dump is exactly plaintext_size bytes: a disk without them fails now, not after
    # minutes of downloading (and again on every retry)
    if _free_space(dest.parent) < manifest.plaintext_size:
        raise _disk_full(manifest, dest.parent, move)
    fd = _create_partial(partial)
    try:
        plaintext = await stream_object(item, store, fd, reporter, gpg_home,
                                        hash_plaintext=True)
        _check_plaintext(manifest, plaintext)
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_full(manifest, dest.parent, move) from None
        raise
    os.close(fd)
    try:
        os.replace(partial, dest)  # a link at `dest` is replaced, never followed
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise FetchFailed(f"cannot put the dump at {dest}: {exc.strerror or exc}") from None
    reporter.output(f"checksums and integrity verified; dump at {dest}")
    return dest


def _create_partial(partial: Path) -> int:
    """The partial dump, made new (O_EXCL|O_NOFOLLOW): never written through a name that
    someone else put there, whatever directory it is in. One left by a fetch that was
    stopped is removed first (unlink removes a link itself, never what it names)."""
    try:
        partial.unlink(missing_ok=True)
        return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise FetchFailed(f"cannot create {partial} for the dump: {exc.strerror or exc}; "
                          "nothing was fetched. Is someone else writing there?") from None


def _check_plaintext(manifest: Manifest, got: str | None) -> None:
    if got == manifest.sha256_plaintext:
        return
    # the stored object passed its own checksum and gpg's check: the dump is whole, but it
    # is not the one this manifest describes (a manifest edited or paired with another dump)
    raise FetchFailed(
        f"snapshot {manifest.stamp} of {manifest.database}: the decrypted dump's sha256 is "
        f"{(got or '')[:16]}…, the manifest's sha256_plaintext says "
        f"{manifest.sha256_plaintext[:16]}…; the dump is not the one the manifest describes, "
        "so it was not restored (and was removed). Run verify-backup on this snapshot to "
        "record it as failed, and restore another one (-p snapshot=ID; drdeck inventory "
        "lists them)")


def _free_space(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def _disk_full(manifest: Manifest, directory: Path, move: str) -> FetchFailed:
    """What the operator needs when the dump does not fit: where, how much, and the way out.

    Measured after the partial dump is removed: what is free for the next attempt.
    """
    try:
        free = format_bytes(_free_space(directory))
    except OSError:
        free = "an unknown amount"
    return FetchFailed(
        f"the disk holding {directory} is too full for snapshot {manifest.stamp} of "
        f"{manifest.database} (No space left on device): the decrypted dump needs "
        f"{format_bytes(manifest.plaintext_size)} there and {free} is free. Nothing was "
        f"restored and no partial dump is left. Free space on that disk, or {move}")


async def stream_object(item: StoredItem, store: Any, out_fd: int, reporter: Reporter,
                        gpg_home: str | None = None, *,
                        hash_plaintext: bool = False) -> str | None:
    """Download `item`, decrypting it into `out_fd` (a file or a pipe to tar).

    Raises FetchFailed, after everything written to `out_fd`, when the object is
    missing, of the wrong size, corrupt, or not decryptable with the keys at hand;
    a failed write to `out_fd` raises its OSError (ENOSPC: a full disk). With
    `hash_plaintext`, returns the sha256 of what was written, hashed on the way.
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
    decrypt = copy = None
    try:
        if item.encrypted:
            # gpg writes straight to out_fd unless its output is to be hashed: then it
            # comes through us
            decrypt = await _start_decrypt(asyncio.subprocess.PIPE if hash_plaintext
                                           else out_fd, gpg_home)
            if hash_plaintext:
                copy = _copy_out(decrypt, out_fd)
        digest, complete = await _download(item, store, out_fd, decrypt, reporter)
        gpg_error = None
        if decrypt is not None:
            assert decrypt.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                decrypt.stdin.close()
            errors, code = await asyncio.gather(collect_stderr(decrypt), decrypt.wait())
            if code != 0:
                gpg_error = explain_gpg_failure("\n".join(errors), gpg_home, what=item.what)
        # a failed write (a full disk) is why gpg was stopped: it is raised before the rest
        plaintext = await copy if copy is not None else digest
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
        await _settle(copy)
        raise
    return plaintext if hash_plaintext else None


def _copy_out(decrypt: asyncio.subprocess.Process, fd: int) -> asyncio.Task[str]:
    """gpg's output into `fd`, hashed on the way: the task's result is its sha256.

    Writes happen in a thread, so a slow disk does not stall the download feeding gpg.
    A failed write stops gpg, which would otherwise block on a pipe nobody reads while
    the download blocks on gpg, and drains what gpg had written.
    """
    async def copy() -> str:
        assert decrypt.stdout is not None
        digest, buffer = hashlib.sha256(), bytearray()
        try:
            while chunk := await decrypt.stdout.read(CHUNK):
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await asyncio.to_thread(_write_all, fd, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(_write_all, fd, bytes(buffer))
        except OSError:
            stop(decrypt)
            # read gpg's output to its end: asyncio's wait() for a process returns only
            # once its pipes are closed, and a pipe nobody reads stays open
            while await decrypt.stdout.read(CHUNK):
                pass
            raise
        return digest.hexdigest()

    return asyncio.ensure_future(copy())


async def _settle(copy: asyncio.Task[str] | None) -> None:
    """Wait for the copy to end (gpg is gone, so its output ends) without cancelling it: a
    cancelled task would leave its thread writing to a descriptor about to be closed."""
    if copy is None:
        return
    await asyncio.wait([copy])
    if not copy.cancelled():
        copy.exception()  # retrieved: the error being raised already says what matters


async def _start_decrypt(out: int, gpg_home: str | None) -> asyncio.subprocess.Process:
    """gpg --decrypt writing to `out`: a descriptor, or asyncio.subprocess.PIPE."""
    passphrase = passphrase_from_environment()
    if passphrase is None:
        return await spawn(decrypt_argv(gpg_home), stdin=asyncio.subprocess.PIPE, stdout=out)
    # The passphrase reaches gpg through a pipe of its own: never argv, never a file.
    read_end, write_end = os.pipe()
    os.write(write_end, passphrase.encode() + b"\n")
    os.close(write_end)
    try:
        return await asyncio.create_subprocess_exec(
            *decrypt_argv(gpg_home, passphrase_fd=read_end), stdin=asyncio.subprocess.PIPE,
            stdout=out, stderr=asyncio.subprocess.PIPE, pass_fds=(read_end,),
            env=environment.for_gpg(), start_new_session=True)
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
