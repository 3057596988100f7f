"""What every store offers: the object and upload records, the errors, the two protocols.

A store is a flat namespace of keys ("cluster/snapshots/app/20240101T000000Z.json")
under a root (a local directory, or a bucket and prefix). Keys always use "/" and
are relative to that root, so callers never care which kind of store they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from tui.errors import DrdeckError

#: The callback ``iter_chunks`` calls before it retries: (attempt, error, delay in seconds).
RetryCallback = Callable[[int, Exception, float], None]


@dataclass(frozen=True)
class StoredObject:
    """One complete object in a store."""

    key: str  # relative to the store's root (no leading slash)
    size: int
    modified: datetime  # aware, UTC
    storage_class: str | None = None  # None for a local store


@dataclass(frozen=True)
class IncompleteUpload:
    """An object whose writing started and never finished (or is still under way).

    ``upload_id`` is the store's own handle for it, which ``abort_incomplete``
    needs: the S3 UploadId (several uploads of one key can be open at once), or,
    for a local store, the partial file's path relative to the root.
    """

    key: str
    started: datetime | None
    detail: str  # e.g. "multipart upload, 2 parts, 16.0 MiB" / "partial file, 3.0 MiB"
    upload_id: str


class StorageError(DrdeckError):
    """A store operation failed; the message names the object and what to do."""


class EndpointUnreachable(StorageError):
    """The store did not answer at all (refused, reset, timed out): asking it for more
    now would only make the operator wait for the same timeouts again."""


class ObjectNotFound(StorageError):
    """The object asked for does not exist."""


class ObjectExists(StorageError):
    """A write asked to create an object (``if_absent``) found one already there."""


class ObjectWriter(Protocol):
    """Streams one object into a store; nothing is visible until ``commit``.

    Use it as a context manager: an exception inside the block aborts, and so
    does leaving the block without calling ``commit``. Calls may come from
    different threads (``asyncio.to_thread``), but one at a time.
    """

    bytes_written: int

    def write(self, data: bytes) -> None:
        """Add data; blocks while enough is in flight, so memory stays bounded."""
        ...

    def commit(self) -> StoredObject:
        """Make the object appear, whole, in one step."""
        ...

    def abort(self) -> None:
        """Remove every trace of the partial object. Idempotent; no-op after commit."""
        ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...


@runtime_checkable
class Store(Protocol):
    """Where backup bytes live. Synchronous: from async code use ``asyncio.to_thread``."""

    description: str  # "s3://bucket/prefix (endpoint)" or "/abs/path"

    def location(self, key: str) -> str:
        """Where ``key`` lives, for messages: "s3://bucket/prefix/key" or "/abs/path/key"."""
        ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every complete object whose key starts with ``prefix``, sorted by key."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """The object at ``key``, or None if there is none."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object (for small ones: manifests). Raises ObjectNotFound."""
        ...

    def write_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> StoredObject:
        """Write a whole object atomically: readers see all of it or none.

        With ``if_absent``, only create it: ObjectExists if the key is taken, even by
        a writer that got there a moment earlier (no check-then-write race)."""
        ...

    def open_writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        """Start streaming an object to ``key``."""
        ...

    def iter_chunks(
        self,
        key: str,
        *,
        start: int = 0,
        chunk_size: int = 1 << 20,
        on_retry: RetryCallback | None = None,
    ) -> Iterator[bytes]:
        """The object's bytes from offset ``start``, resuming after network errors."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting one that is already gone is not an error."""
        ...

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Move the object to another storage class (S3); a local store has only one."""
        ...

    def incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]:
        """Writes under ``prefix`` that started and were never committed or aborted."""
        ...

    def abort_incomplete(self, upload: IncompleteUpload) -> None:
        """Remove what ``upload`` left behind. Idempotent."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a usable object key, else a StorageError saying why.

    Keys come partly from configuration (cluster and database names), so they
    are checked: whatever the store, a key must stay inside its root.
    """
    if key.endswith("/"):
        problem: str | None = "it ends with '/' (that names a folder, not an object)"
    else:
        problem = _key_problem(key)
    if problem:
        raise StorageError(f"invalid object key {key!r}: {problem}")
    return key


def is_usable_key(key: str) -> bool:
    """Whether ``key`` is one a store can write (check_key would accept it)."""
    return not key.endswith("/") and _key_problem(key) is None


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can start keys ("" and a trailing "/" are fine), else a StorageError."""
    problem = _key_problem(prefix.removesuffix("/")) if prefix else None
    if problem:
        raise StorageError(f"invalid key prefix {prefix!r}: {problem}")
    return prefix


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if key.startswith("/"):
        return "it starts with '/' (keys are relative to the repository)"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "it has an empty, '.' or '..' path segment"
    if "\\" in key or any(ord(ch) < 32 for ch in key):
        return "it contains a backslash or a control character"
    return None
