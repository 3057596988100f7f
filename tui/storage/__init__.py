"""Where backup bytes live: a local directory or an S3(-compatible) bucket.

``open_store(repository)`` turns a configured repository into a Store; callers
then work with keys relative to the repository and never care which kind it is.
Importing this package is cheap: boto3 loads when the first S3 store is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import (
    IncompleteUpload,
    ObjectNotFound,
    ObjectWriter,
    RetryCallback,
    StorageError,
    Store,
    StoredObject,
)
from .local import LocalStore

if TYPE_CHECKING:
    from .s3 import S3Store


def __getattr__(name: str) -> Any:
    # S3Store pulls in ssl, sockets and a thread pool: only for whoever uses S3.
    # `drdeck wal fetch` on a local archive runs once per segment and must start fast.
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(name)

__all__ = [
    "IncompleteUpload",
    "LocalStore",
    "ObjectNotFound",
    "ObjectWriter",
    "RetryCallback",
    "S3Store",
    "StorageError",
    "Store",
    "StoredObject",
    "open_store",
]


def open_store(repository: Any) -> Store:
    """The store for a configured repository (anything with the Repository attributes:
    ``type``, ``bucket``, ``prefix``, ``endpoint_url``, ``region``, ``storage_class``, ``timeout``,
    ``path``).
    """
    kind = getattr(repository, "type", None)
    name = getattr(repository, "name", None)
    which = f"repository {name!r}" if name else "the repository"
    if kind == "s3":
        bucket = getattr(repository, "bucket", None)
        if not bucket:
            raise StorageError(f"{which} is of type \"s3\" but has no bucket; set bucket = \"...\"")
        from .s3 import DEFAULT_READ_TIMEOUT_S, S3Store

        return S3Store(
            bucket,
            prefix=getattr(repository, "prefix", None) or "",
            endpoint_url=getattr(repository, "endpoint_url", None) or None,
            region=getattr(repository, "region", None) or None,
            storage_class=getattr(repository, "storage_class", None) or None,
            read_timeout=getattr(repository, "timeout", None) or DEFAULT_READ_TIMEOUT_S,
        )
    if kind == "local":
        path = getattr(repository, "path", None)
        if not path:
            raise StorageError(f"{which} is of type \"local\" but has no path; set path = \"...\"")
        return LocalStore(Path(path))
    raise StorageError(f"{which} has type {kind!r}; drdeck knows \"s3\" and \"local\"")
