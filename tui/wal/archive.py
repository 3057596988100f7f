"""Push and fetch WAL files: what archive_command and restore_command run.

    <repository>/<cluster>/wal/<name>[.zst][.gpg]

compressed with zstd (the repository's `compression`), then encrypted; a file pushed
before compression existed, or to a repository with compression = "none", has no
.zst, and is fetched just the same.

A segment is at most wal_segment_size (16 MiB by default), so it is read and
written whole. Pushing is idempotent as PostgreSQL's documentation demands:
the same file pushed twice succeeds; a different file under a name already
archived fails loudly and changes nothing. Fetching a name that is not in the
archive exits non-zero, which is how recovery learns it has reached the end.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tui import environment
from tui.compression import SUFFIX, Undecompressable, compress, decompress
from tui.crypto import (
    decrypt_argv,
    encrypt_argv,
    explain_gpg_failure,
    passphrase_from_environment,
)
from tui.errors import DrdeckError, PermanentFailure
from tui.storage.base import ObjectExists, ObjectNotFound

# a create that lost a race looks again; a key that vanishes and reappears each time is
# someone deleting and rewriting it, not a race to wait out
_CREATE_ATTEMPTS = 3
MAX_WAL_FILE = 1 << 30  # the largest segment initdb allows; history files are far smaller


class WalConflict(PermanentFailure):
    pass


class WalError(DrdeckError):
    pass


def wal_prefix(cluster: str) -> str:
    return f"{cluster}/wal/"


def wal_key(cluster: str, name: str, encrypted: bool, compressed: bool = False) -> str:
    return (f"{wal_prefix(cluster)}{name}{SUFFIX if compressed else ''}"
            f"{'.gpg' if encrypted else ''}")


def archived_name(rest: str) -> str:
    """The WAL file a key under wal_prefix() holds: its name without .zst and .gpg."""
    return rest.removesuffix(".gpg").removesuffix(SUFFIX)


def _forms(encrypted_first: bool, compressed_first: bool) -> list[tuple[bool, bool]]:
    """(encrypted, compressed) in the order to look for them: the likeliest first."""
    return [(encrypted, compressed) for encrypted in (encrypted_first, not encrypted_first)
            for compressed in (compressed_first, not compressed_first)]


def push(store: Any, cluster: str, path: Path, *, recipients: tuple[str, ...] = (),
         gpg_home: str | None = None, compression: str = "none", level: int = 3) -> str:
    """Archive one file; returns what happened, in words."""
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WalError(f"cannot read {path}: {exc.strerror}") from None
    encrypted, compressed = bool(recipients), compression == "zstd"
    for _ in range(_CREATE_ATTEMPTS):
        already = _compare_with_archived(store, cluster, name, data, encrypted, compressed,
                                         gpg_home)
        if already:
            return already
        payload = compress(data, level) if compressed else data
        if encrypted:
            payload = _gpg(encrypt_argv(list(recipients), gpg_home), payload, gpg_home, name)
        try:
            # create-only: two pushes racing (a retried archive_command, two clusters
            # on one archive) cannot both "win"; the loser compares, as above
            store.write_bytes(wal_key(cluster, name, encrypted, compressed), payload,
                              if_absent=True)
        except ObjectExists:
            continue
        how = [word for word, on in (("compressed", compressed), ("encrypted", encrypted)) if on]
        return f"{name} archived" + (f" ({', '.join(how)})" if how else "")
    raise WalError(f"{name}: another writer keeps taking its key in the archive; try again")


def _compare_with_archived(store: Any, cluster: str, name: str, data: bytes, encrypted: bool,
                           compressed: bool, gpg_home: str | None) -> str | None:
    """None when the archive has no copy; a message when it has the same one; else refuse."""
    for was_encrypted, was_compressed in _forms(encrypted, compressed):
        key = wal_key(cluster, name, was_encrypted, was_compressed)
        if store.stat(key) is None:
            continue
        archived = _plain(store.read_bytes(key), was_encrypted, was_compressed, gpg_home,
                          store.location(key), name)
        if archived == data:
            return f"{name} was already archived, with the same content"
        raise WalConflict(
            f"{name} is already archived at {store.location(key)} with DIFFERENT content; "
            "refusing to overwrite it. Is another cluster archiving into the same place?")
    return None


def fetch(store: Any, cluster: str, name: str, dest: Path, gpg_home: str | None = None,
          encrypted_first: bool = True) -> bool:
    """Restore one file to `dest`; False when the archive does not have it."""
    data = fetch_bytes(store, cluster, name, gpg_home, encrypted_first)
    if data is None:
        return False
    write_atomically(dest, data)
    return True


def fetch_bytes(store: Any, cluster: str, name: str, gpg_home: str | None = None,
                encrypted_first: bool = True) -> bytes | None:
    """One archived file's content, decrypted and decompressed; None when the archive does
    not have it."""
    for encrypted, compressed in _forms(encrypted_first, True):
        key = wal_key(cluster, name, encrypted, compressed)
        try:
            raw = store.read_bytes(key)
        except ObjectNotFound:
            continue
        return _plain(raw, encrypted, compressed, gpg_home, store.location(key), name)
    return None


def write_atomically(dest: Path, data: bytes) -> None:
    """Recovery must never read a half-written segment: write beside it, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(raw: bytes, encrypted: bool, compressed: bool, gpg_home: str | None, where: str,
           name: str) -> bytes:
    decrypted = _decrypted(raw, encrypted, gpg_home, where, name)
    if not compressed:
        return decrypted
    try:
        return decompress(decrypted, MAX_WAL_FILE, where)
    except Undecompressable as exc:
        raise WalError(str(exc)) from None


def _decrypted(raw: bytes, encrypted: bool, gpg_home: str | None, where: str,
               name: str) -> bytes:
    if not encrypted:
        return raw
    try:
        passphrase = passphrase_from_environment()
        if passphrase is None:
            return _gpg(decrypt_argv(gpg_home), raw, gpg_home, name)
        # as for snapshots: the passphrase reaches gpg through a pipe, never argv or a file
        read_end, write_end = os.pipe()
        os.write(write_end, passphrase.encode() + b"\n")
        os.close(write_end)
        try:
            return _gpg(decrypt_argv(gpg_home, passphrase_fd=read_end), raw, gpg_home, name,
                        pass_fds=(read_end,))
        finally:
            os.close(read_end)
    except WalError as exc:
        raise WalError(f"{where}: {exc}") from None


def _gpg(argv: list[str], data: bytes, gpg_home: str | None, name: str,
         pass_fds: tuple[int, ...] = ()) -> bytes:
    result = subprocess.run(argv, input=data, capture_output=True, check=False,
                            pass_fds=pass_fds, env=environment.for_gpg())
    if result.returncode != 0:
        # WAL is pushed for the cluster's gpg_recipients; no manifest lists them
        raise WalError(explain_gpg_failure(
            result.stderr.decode(errors="replace"), gpg_home, what=f"WAL file {name}",
            recipients="the cluster's gpg_recipients in drdeck.toml"))
    return result.stdout
