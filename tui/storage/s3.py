"""A store in an S3 bucket, or any S3-compatible one (MinIO, R2, GCS interoperability).

boto3's own modules load only when a store is made, so ``import tui.storage``
stays cheap for commands that never touch S3. Credentials come from the normal
AWS chain (environment, shared profile, instance role): drdeck never takes them
as arguments, so they cannot end up in its config, its journal or a message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from tui.redact import mask_credentials
from tui.units import format_bytes

from .base import (
    IncompleteUpload,
    ObjectNotFound,
    RetryCallback,
    StorageError,
    StoredObject,
    check_key,
    check_prefix,
)
from .s3_errors import error_code, is_transient, network_reason, storage_error
from .s3_writer import S3ObjectWriter

MiB = 1 << 20
GiB = 1 << 30
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_SINGLE_COPY = 5 * GiB  # CopyObject's ceiling: larger objects are copied in parts
DEFAULT_READ_TIMEOUT_S = 30  # a repository's timeout when drdeck.toml sets none


class S3Store:
    """Objects under ``prefix/`` in ``bucket``.

    ``part_size`` and ``max_in_flight`` bound an upload's memory (about
    part_size * (max_in_flight + 1)) and, with S3's 10,000-part limit, its size
    (8 MiB parts: 78 GiB). ``read_timeout`` is the repository's ``timeout``.
    ``page_size``, ``retry_base_delay``, ``read_attempts`` and ``max_single_copy``
    exist so tests can reach pagination, retries and multipart copies with small,
    fast inputs.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        storage_class: str | None = None,
        part_size: int = 8 * MiB,
        max_in_flight: int = 2,
        *,
        page_size: int = 1000,
        retry_base_delay: float = 0.5,
        read_attempts: int = 5,
        max_single_copy: int = MAX_SINGLE_COPY,
        read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    ):
        if not bucket:
            raise StorageError("an S3 repository needs a bucket name")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least 5 MiB (S3's minimum), not {part_size}")
        if max_in_flight < 1 or page_size < 1 or read_attempts < 1:
            raise ValueError("max_in_flight, page_size and read_attempts must be at least 1")
        self.bucket = bucket
        self.prefix = check_prefix(prefix.strip("/"))
        self.storage_class = storage_class
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self.page_size = page_size
        self.retry_base_delay = retry_base_delay
        self.read_attempts = read_attempts
        self.max_single_copy = max_single_copy
        self.client = _new_client(bucket, endpoint_url, region, max_in_flight, read_timeout)
        self.endpoint = mask_credentials(self.client.meta.endpoint_url)
        self.description = f"{self._url(self.prefix)} ({self.endpoint})"
        self._bucket_seen = False

    def __repr__(self) -> str:
        return f"S3Store({self.description!r})"

    # --- keys ---------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The key in the bucket: the store's prefix, then ``key``."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        """s3://bucket/prefix/key, for messages."""
        return self._url(self.full_key(key))

    location = url

    def _url(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}".rstrip("/")

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1:] if self.prefix else full_key

    def error(self, error: BaseException, doing: str, key: str | None = None) -> StorageError:
        """The operator's message for ``error`` while ``doing`` the object ``key``."""
        where = self.url(key) if key is not None else self._url(self.prefix)
        return storage_error(error, bucket=self.bucket, endpoint=self.endpoint, doing=doing,
                             where=where, key=key)

    # --- reading ------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self._full_prefix_for_listing(prefix),
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            for page in pages:  # one request per page, made as the caller reaches it
                for item in page.get("Contents", ()):
                    # "folder/" placeholders made by web consoles are not objects.
                    if item["Key"].endswith("/"):
                        continue
                    yield StoredObject(
                        key=self._relative(item["Key"]),
                        size=item["Size"],
                        modified=_utc(item["LastModified"]),
                        storage_class=item.get("StorageClass") or "STANDARD",
                    )
        except (BotoCoreError, ClientError) as error:
            raise self.error(error, "list") from None

    def stat(self, key: str) -> StoredObject | None:
        head = self._head(key)
        if head is None:
            return None
        return StoredObject(
            key=key,
            size=head["ContentLength"],
            modified=_utc(head["LastModified"]),
            # S3 leaves the header out for STANDARD objects.
            storage_class=head.get("StorageClass") or "STANDARD",
        )

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))

    def iter_chunks(
        self,
        key: str,
        *,
        start: int = 0,
        chunk_size: int = 1 << 20,
        on_retry: RetryCallback | None = None,
    ) -> Iterator[bytes]:
        """Ranged GETs that resume from the last byte received after a network error.

        A break after some progress is always retried; ``read_attempts``
        attempts in a row that receive nothing give up. The delay doubles with
        each failure since the last byte arrived. Resumed requests carry
        If-Match with the first response's ETag, so a download never splices
        two versions of an object together.

        An object of more than two parts is read ahead: ``max_in_flight`` parts
        are fetched at once (each a ranged GET resumed as above), and handed on
        in order, so one stream's latency does not bound a restore's speed.
        """
        learnt: dict[str, Any] = {}
        serial = self._read_range(key, start, None, None, chunk_size, on_retry, learnt)
        if self.max_in_flight < 2:
            yield from serial
            return
        # the first GET says how large the object is: a small one is read to its end in
        # it, a large one only for its first part, then ahead, in parallel ranges
        position = start
        for chunk in serial:
            position += len(chunk)
            yield chunk
            if position - start >= self.part_size:
                break
        else:
            return
        size = learnt["size"]
        if size - start <= 2 * self.part_size:
            yield from serial
            return
        serial.close()
        yield from self._read_ahead(key, position, size, learnt["etag"], chunk_size, on_retry)

    def _read_ahead(self, key: str, start: int, size: int, etag: str, chunk_size: int,
                    on_retry: RetryCallback | None) -> Iterator[bytes]:
        """Parts of `part_size` fetched `max_in_flight` at a time, yielded in order: at
        most that many parts, and the one being handed on, are held."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        def fetch(first: int) -> bytes:
            end = min(first + self.part_size, size)
            return b"".join(self._read_range(key, first, end, etag, chunk_size, on_retry))

        offsets = iter(range(start, size, self.part_size))
        pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="drdeck-read")
        pending: deque[Any] = deque()
        try:
            for first in offsets:
                pending.append(pool.submit(fetch, first))
                if len(pending) >= self.max_in_flight:
                    break
            while pending:
                part = pending.popleft().result()
                following = next(offsets, None)
                if following is not None:
                    pending.append(pool.submit(fetch, following))
                for at in range(0, len(part), chunk_size):
                    yield part[at:at + chunk_size]
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _read_range(self, key: str, start: int, end: int | None, etag: str | None,
                    chunk_size: int, on_retry: RetryCallback | None,
                    learnt: dict[str, Any] | None = None) -> Iterator[bytes]:
        """Bytes `start` to `end` (None: the object's end), resumed after a break; the
        object's size and ETag go into `learnt` once the first response gives them."""
        full_key = self.full_key(key)
        position = start
        size: int | None = end  # else learnt from the first response
        failures = 0  # failed attempts since the last byte arrived (backoff, on_retry)
        stalled = 0  # failed attempts in a row that received nothing (giving up)
        while size is None or position < size:
            body = None
            reached = position
            try:
                response = self._get(key, full_key, position, etag, end)
                if response is None:  # start is exactly the end of the object
                    return
                if etag is None:
                    etag = response["ETag"]
                if size is None:
                    size = position + response["ContentLength"]
                if learnt is not None and not learnt:
                    learnt.update(size=size, etag=etag)
                body = response["Body"]
                for chunk in body.iter_chunks(chunk_size):
                    position += len(chunk)
                    yield chunk
                if position < size:  # a clean end of stream, short: a broken one
                    raise ConnectionError("the body ended early")
            except Exception as error:
                if not is_transient(error):
                    raise self.error(error, "read", key) from None
                if position > reached:
                    failures = stalled = 0
                else:
                    stalled += 1
                failures += 1
                received = f"{format_bytes(position - start)} received"
                if stalled >= self.read_attempts:
                    raise StorageError(
                        f"cannot read {self.url(key)} from {self.endpoint}: "
                        f"{network_reason(error)} ({stalled} attempts in a row received "
                        f"nothing; {received} in all); check the network and the endpoint, "
                        "then try again"
                    ) from None
                delay = self.retry_base_delay * 2 ** (failures - 1)
                if on_retry is not None:
                    # A plain sentence, so a caller can show it as it is.
                    interrupted = StorageError(
                        f"{self.url(key)}: {network_reason(error)} ({received}; "
                        f"resuming from byte {position:,})")
                    on_retry(failures, interrupted, delay)
                time.sleep(delay)
            finally:
                if body is not None:
                    body.close()

    def _get(self, key: str, full_key: str, position: int, etag: str | None,
             end: int | None = None) -> Any:
        """GET from ``position`` on (to ``end``); None when ``position`` is exactly the
        object's size."""
        from botocore.exceptions import ClientError

        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key}
        if end is not None:
            arguments["Range"] = f"bytes={position}-{end - 1}"
        elif position > 0:
            # Not for 0: S3 answers "bytes=0-" on an empty object with 416.
            arguments["Range"] = f"bytes={position}-"
        if etag is not None:
            arguments["IfMatch"] = etag
        try:
            return self.client.get_object(**arguments)
        except ClientError as error:
            code = error_code(error)
            if code == "PreconditionFailed":
                raise StorageError(f"{self.url(key)} changed while it was being read; "
                                   "read it again from the start") from None
            if code != "InvalidRange":
                raise
        stored = self.stat(key)
        if stored is None:
            raise ObjectNotFound(f"no object {self.url(key)} (at {self.endpoint})")
        if position == stored.size:
            return None
        raise StorageError(f"cannot read {self.url(key)} from byte {position:,}: "
                           f"it has only {stored.size:,} bytes")

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as error:
            # A HEAD answer has no body, so "no such bucket" and "no such key"
            # both arrive as a bare 404: ask about the bucket (once per store).
            if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
                raise self.error(error, "read", key) from None
        except BotoCoreError as error:
            raise self.error(error, "read", key) from None
        self._check_bucket()
        return None

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"bucket {self.bucket} does not exist at {self.endpoint}; "
                                   "check the repository's bucket, endpoint_url and "
                                   "region") from None
            raise self.error(error, "read") from None
        except BotoCoreError as error:
            raise self.error(error, "read") from None
        self._bucket_seen = True

    # --- writing ------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> StoredObject:
        with S3ObjectWriter(self, key, self.storage_class, if_absent=if_absent) as writer:
            writer.write(data)
            return writer.commit()

    def open_writer(self, key: str, *, storage_class: str | None = None) -> S3ObjectWriter:
        return S3ObjectWriter(self, key, storage_class or self.storage_class)

    def delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self.full_key(key))

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Rewrite the object in place with a new storage class (S3 has no other way)."""
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {self.url(key)} (at {self.endpoint})")
        if (head.get("StorageClass") or "STANDARD") == storage_class:
            return  # S3 refuses a self-copy that changes nothing
        source = {"Bucket": self.bucket, "Key": self.full_key(key)}
        if head["ContentLength"] <= self.max_single_copy:
            self._call("change the storage class of", key, "copy_object",
                       Key=self.full_key(key), CopySource=source, StorageClass=storage_class,
                       MetadataDirective="COPY", CopySourceIfMatch=head["ETag"])
        else:
            self._copy_in_parts(key, head, storage_class)

    def _copy_in_parts(self, key: str, head: dict[str, Any], storage_class: str) -> None:
        """CopyObject stops at 5 GiB; larger objects are copied part by part, server-side."""
        full_key = self.full_key(key)
        size = head["ContentLength"]
        part = max(self.part_size, min(GiB, self.max_single_copy))
        keep = {name: head[name] for name in ("ContentType", "ContentEncoding", "Metadata")
                if head.get(name)}
        doing = "change the storage class of"
        upload = self._call(doing, key, "create_multipart_upload", Key=full_key,
                            StorageClass=storage_class, **keep)
        try:
            parts = []
            for number, offset in enumerate(range(0, size, part), start=1):
                last = min(offset + part, size) - 1
                copied = self._call(
                    doing, key, "upload_part_copy", Key=full_key, UploadId=upload["UploadId"],
                    PartNumber=number, CopySource={"Bucket": self.bucket, "Key": full_key},
                    CopySourceRange=f"bytes={offset}-{last}", CopySourceIfMatch=head["ETag"])
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            self._call(doing, key, "complete_multipart_upload", Key=full_key,
                       UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
        except BaseException:
            # The original object is untouched until the upload completes.
            self._abort_quietly(full_key, upload["UploadId"])
            raise

    # --- incomplete uploads -------------------------------------------------------

    def incomplete_uploads(self, prefix: str = "") -> list[IncompleteUpload]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._full_prefix_for_listing(prefix))
        try:
            for page in pages:
                for upload in page.get("Uploads", ()):
                    described = self._describe_upload(upload)
                    if described is not None:
                        found.append(described)
        except (BotoCoreError, ClientError) as error:
            raise self.error(error, "list the incomplete uploads in") from None
        return sorted(found, key=lambda upload: (upload.key, upload.upload_id))

    def _describe_upload(self, upload: dict[str, Any]) -> IncompleteUpload | None:
        from botocore.exceptions import ClientError

        count = total = 0
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        try:
            for page in pages:
                for part in page.get("Parts", ()):
                    count += 1
                    total += part["Size"]
        except ClientError as error:
            if error_code(error) == "NoSuchUpload":  # completed or aborted meanwhile
                return None
            raise
        initiated = upload.get("Initiated")
        return IncompleteUpload(
            key=self._relative(upload["Key"]),
            started=_utc(initiated) if initiated else None,
            detail=f"multipart upload, {count} part{'s' if count != 1 else ''}, "
            f"{format_bytes(total)}",
            upload_id=upload["UploadId"],
        )

    def abort_incomplete(self, upload: IncompleteUpload) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.full_key(upload.key), UploadId=upload.upload_id)
        except ClientError as error:
            if error_code(error) != "NoSuchUpload":  # gone already: that is what we wanted
                raise self.error(error, "abort the upload of", upload.key) from None
        except Exception as error:
            raise self.error(error, "abort the upload of", upload.key) from None

    # --- helpers ------------------------------------------------------------------

    def _full_prefix_for_listing(self, prefix: str) -> str:
        # The store's own prefix ends at a "/": prefix "pg" must not list "pg-old/...".
        check_prefix(prefix)
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _call(self, doing: str, key: str, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **arguments)
        except Exception as error:
            raise self.error(error, doing, key) from None

    def _abort_quietly(self, full_key: str, upload_id: str) -> None:
        # If this fails too, the upload will show among the incomplete ones.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key,
                                               UploadId=upload_id)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# --- the client -------------------------------------------------------------------------

_client_lock = threading.Lock()
_shared_loader: Any = None


def _new_client(
    bucket: str, endpoint_url: str | None, region: str | None, max_in_flight: int,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
) -> Any:
    """A botocore S3 client whose credentials and region come from the AWS chain.

    Every store gets its own session (a session caches the credentials it
    resolved, and clients are what is thread-safe, not sessions), but they share
    the loader of botocore's service models: loading S3's model is most of the
    60-180 ms a new session's first client costs.
    """
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from tui import __version__

    global _shared_loader
    settings: dict[str, Any] = {
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": read_timeout,
        # The part uploads in flight, plus reads alongside them.
        "max_pool_connections": max(10, max_in_flight + 4),
        "user_agent_extra": f"drdeck/{__version__}",
    }
    if endpoint_url:
        # S3-compatible stores (MinIO, R2, GCS, Ceph) expect path-style URLs, and
        # several reject the CRC checksums botocore >= 1.36 adds by default. Our
        # own integrity check is the manifest's sha256 of the whole object.
        settings["s3"] = {"addressing_style": "path"}
        settings["request_checksum_calculation"] = "when_required"
        settings["response_checksum_validation"] = "when_required"
    with _client_lock:
        session = botocore.session.Session()
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
        try:
            return session.create_client("s3", endpoint_url=endpoint_url, region_name=region,
                                         config=Config(**settings))
        except BotoCoreError as error:
            # Only configuration problems can happen here: a bad profile or URL.
            where = mask_credentials(endpoint_url or "AWS")
            raise storage_error(error, bucket=bucket, endpoint=where, doing="connect to",
                                where=f"s3://{bucket}") from None
        except ValueError as error:
            raise StorageError(f"invalid S3 endpoint_url {mask_credentials(str(endpoint_url))}: "
                               f"{error}") from None
