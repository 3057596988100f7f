"""Streaming one object into S3 with bounded memory: a multipart upload.

Bytes collect in a buffer; each full part goes to a small thread pool while the
caller keeps writing. A semaphore caps the parts in flight, so write() blocks
when the network is slower than the producer (pg_dump, gpg) and memory stays
near ``part_size * (max_in_flight + 1)`` however large the object grows.

Nothing is visible under the key until complete_multipart_upload (or, for an
object smaller than one part, the single put_object at commit): a reader never
sees half a backup. Abort removes the upload and its parts.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tui.units import format_bytes

from .base import ObjectExists, StorageError, StoredObject
from .s3_errors import error_code

# A conditional write lost: the key exists (412), or another conditional write of it
# is under way (409); either way, someone else's object is (about to be) there.
_TAKEN_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}

if TYPE_CHECKING:
    from .s3 import S3Store

# S3 (and every compatible store) allows at most 10,000 parts per upload.
MAX_PARTS = 10_000


class S3ObjectWriter:
    """One multipart upload (or one put_object, if the object stays under one part)."""

    def __init__(self, store: S3Store, key: str, storage_class: str | None, *,
                 if_absent: bool = False):
        self._store = store
        self.key = key
        # S3's conditional write: the PUT or the completion fails (412) if the key exists
        self._condition = {"IfNoneMatch": "*"} if if_absent else {}
        self._full_key = store.full_key(key)
        self._storage_class = storage_class
        self._part_size = store.part_size
        self.bytes_written = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = threading.Semaphore(store.max_in_flight)
        self._parts: list[Future[dict[str, Any]]] = []
        self._part_failure: BaseException | None = None
        self._object_made = False  # put/complete succeeded: abort must delete the object
        self._state = "open"  # open -> committed | aborted

    # --- the writer protocol ------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._check_open("write")
        self._raise_part_failure()
        self._buffer += data
        self.bytes_written += len(data)
        # Strictly more than a part: an object of exactly one part goes in one PUT.
        while len(self._buffer) > self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            try:
                self._send_part(part)
            except Exception as error:
                raise self._fail(error, "upload") from None

    def commit(self) -> StoredObject:
        self._check_open("commit")
        try:
            self._raise_part_failure()
            if self._upload_id is None:
                self._put_whole()
            else:
                self._complete()
            stored = self._store.stat(self.key)
            if stored is None:
                raise StorageError(f"{self._where} was uploaded but the endpoint does not "
                                   "show it; check the bucket's lifecycle rules and try again")
        except Exception as error:
            if self._condition and error_code(error) in _TAKEN_CODES:
                self._abort_quietly()  # our parts only: the object there is someone else's
                raise ObjectExists(f"{self._where} already exists") from None
            raise self._fail(error, "upload") from None
        except BaseException:  # KeyboardInterrupt and the like: clean up, keep it as it is
            self._abort_quietly()
            raise
        self._state = "committed"
        self._shutdown_pool()
        return stored

    def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborting"  # refuse further writes even if the clean-up fails
        # Parts not started are dropped; parts on the wire are let finish first,
        # since a part that lands after the abort can outlive it (S3's own
        # documentation says to abort again in that case).
        for future in self._parts:
            future.cancel()
        self._shutdown_pool()
        try:
            if self._upload_id is not None:
                self._abort_upload()
        except Exception as error:
            raise StorageError(
                f"could not abort the multipart upload of {self._where}: "
                f"{self._store.error(error, 'abort the upload of', self.key)}; "
                "it shows among the incomplete uploads until it is aborted") from None
        try:
            if self._object_made:  # commit got that far, then failed: all or nothing
                self._call("delete_object")
        except Exception as error:
            raise StorageError(
                f"could not delete {self._where} after its upload failed: "
                f"{self._store.error(error, 'delete', self.key)}; delete it before "
                "trusting the repository") from None
        self._state = "aborted"

    def __enter__(self) -> S3ObjectWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._state == "committed":
            return
        if exc is None:
            self.abort()
        else:
            # The caller's error is the one to see; a failed clean-up will show
            # among the incomplete uploads.
            self._abort_quietly()

    # --- parts --------------------------------------------------------------------

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            response = self._call("create_multipart_upload", **self._class_argument())
            self._upload_id = response["UploadId"]
            self._pool = ThreadPoolExecutor(self._store.max_in_flight,
                                            thread_name_prefix="drdeck-s3-part")
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            largest = format_bytes(MAX_PARTS * self._part_size)
            raise self._fail(StorageError(
                f"{self._where} is larger than S3 allows in parts of "
                f"{format_bytes(self._part_size)} ({MAX_PARTS:,} parts, {largest}); "
                "use a larger part size"), "upload")
        self._in_flight.acquire()  # blocks while max_in_flight parts are uploading
        if self._part_failure is not None:
            self._in_flight.release()
            self._raise_part_failure()
        assert self._pool is not None
        future = self._pool.submit(self._upload_part, number, data)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        response = self._call("upload_part", UploadId=self._upload_id, PartNumber=number,
                              Body=data)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _part_done(self, future: Future[dict[str, Any]]) -> None:
        # Runs in the pool's thread (or the caller's, for a cancelled part).
        self._in_flight.release()
        if not future.cancelled() and future.exception() is not None:
            self._part_failure = self._part_failure or future.exception()

    def _raise_part_failure(self) -> None:
        failure = self._part_failure
        if failure is not None:
            raise self._fail(failure, "upload a part of") from None

    def _complete(self) -> None:
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        parts = [future.result() for future in self._parts]
        self._call_conditionally("complete_multipart_upload", UploadId=self._upload_id,
                                 MultipartUpload={"Parts": parts})
        self._object_made = True

    def _put_whole(self) -> None:
        self._call_conditionally("put_object", Body=bytes(self._buffer),
                                 **self._class_argument())
        self._object_made = True
        self._buffer.clear()

    def _call_conditionally(self, method: str, **kwargs: Any) -> Any:
        """With If-None-Match when asked; an S3-compatible endpoint that does not implement
        conditional writes gets the plain request (the caller compared contents just
        before, so only a race in that moment goes unseen, as it would without this)."""
        try:
            return self._call(method, **kwargs, **self._condition)
        except Exception as error:
            if not self._condition or error_code(error) != "NotImplemented":
                raise
        return self._call(method, **kwargs)

    # --- helpers ------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self._store.url(self.key)

    def _class_argument(self) -> dict[str, str]:
        return {"StorageClass": self._storage_class} if self._storage_class else {}

    def _call(self, operation: str, **arguments: Any) -> Any:
        method = getattr(self._store.client, operation)
        return method(Bucket=self._store.bucket, Key=self._full_key, **arguments)

    def _check_open(self, doing: str) -> None:
        if self._state != "open":
            state = {"aborting": "aborted"}.get(self._state, self._state)
            raise StorageError(f"cannot {doing} {self._where}: the upload was already {state}")

    def _abort_upload(self) -> None:
        try:
            self._call("abort_multipart_upload", UploadId=self._upload_id)
        except Exception as error:
            if error_code(error) != "NoSuchUpload":  # already aborted: nothing left
                raise

    def _fail(self, error: BaseException, doing: str) -> StorageError:
        """Abort because of ``error``; the StorageError to raise says both what failed
        and, if it also failed, that the clean-up did not happen."""
        failure = self._store.error(error, doing, self.key)
        try:
            self.abort()
        except StorageError as cleanup:
            return StorageError(f"{failure}; and {cleanup}")
        return failure

    def _abort_quietly(self) -> None:
        with contextlib.suppress(StorageError):
            self.abort()

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
