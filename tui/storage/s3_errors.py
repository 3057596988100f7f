"""botocore's exceptions, told the way an operator needs to hear them.

botocore reports "An error occurred (SignatureDoesNotMatch) when calling the
ListObjectsV2 operation: ..." or "Could not connect to the endpoint URL: ...".
Here each becomes one line that names the bucket or object and the endpoint, and
says what to check. No message carries a credential: botocore never puts one in
an error, and endpoint URLs are masked in case someone wrote user:password@ in one.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from .base import EndpointUnreachable, ObjectNotFound, StorageError

CREDENTIALS_HINT = "credentials come from the AWS environment variables or profile"

_ACCESS_CODES = {
    "AccessDenied": "the credentials are not allowed to do this",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "InvalidAccessKeyId": "the endpoint does not know the access key ID",
    "SignatureDoesNotMatch": "the secret access key does not match the access key ID",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "TokenRefreshRequired": "the session token has expired",
    "AuthorizationHeaderMalformed": "the request was signed for another region; "
    "check the repository's region",
    "403": "the credentials are not allowed to do this",
}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_SERVER_BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                      "503", "500"}


def error_code(error: BaseException) -> str:
    """The S3 error code of a ClientError ("NoSuchKey", or "404" for a HEAD), else ""."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_transient(error: BaseException) -> bool:
    """Whether trying again (later, from where we stopped) may succeed."""
    from botocore import exceptions as bx
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(error, bx.ClientError):
        status = _status(error)
        return error_code(error) in _SERVER_BUSY_CODES or (status is not None and status >= 500)
    transient = (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError, Urllib3Error,
                 ConnectionError, TimeoutError)
    return isinstance(error, transient)


def network_reason(error: BaseException) -> str:
    """What went wrong on the wire, in a few words: "connection refused", "timed out"..."""
    from botocore import exceptions as bx

    if isinstance(error, bx.ReadTimeoutError):
        return "no answer within the read timeout"
    if isinstance(error, bx.ConnectTimeoutError):
        return "connection timed out"
    if isinstance(error, bx.IncompleteReadError):
        return "the connection closed before the whole body arrived"
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cause, TimeoutError):
            return "timed out"
    text = str(error).lower()
    if "incompleteread" in text or "connection broken" in text:
        return "the connection broke in the middle of the body"
    if isinstance(error, bx.ConnectionClosedError):
        return "the endpoint closed the connection"
    if isinstance(error, bx.ClientError):
        return f"{error_code(error)} (HTTP {_status(error)})"
    return "connection failed"


def _causes(error: BaseException) -> list[BaseException]:
    """The error and everything behind it: __cause__, __context__ and botocore's kwargs."""
    found: list[BaseException] = []
    pending: list[Any] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, *current.args]
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, dict):
            pending.append(kwargs.get("error"))
    return found


def storage_error(
    error: BaseException,
    *,
    bucket: str,
    endpoint: str,
    doing: str,
    where: str,
    key: str | None = None,
) -> StorageError:
    """The StorageError for ``error``, raised while ``doing`` (e.g. "read") ``where``.

    ``where`` is what was being worked on ("s3://bucket/prefix/key"); ``key`` is
    set when a missing object should become ObjectNotFound.
    """
    from botocore import exceptions as bx

    if isinstance(error, StorageError):
        return error
    if isinstance(error, bx.ClientError):
        code = error_code(error)
        status = _status(error)
        message = error.response.get("Error", {}).get("Message") or ""
        if code == "NoSuchBucket":
            return StorageError(f"bucket {bucket} does not exist at {endpoint}; "
                                "check the repository's bucket, endpoint_url and region")
        if code in _ACCESS_CODES or status == 403:
            why = _ACCESS_CODES.get(code, "the credentials are not allowed to do this")
            return StorageError(f"access denied to bucket {bucket} at {endpoint} "
                                f"({CREDENTIALS_HINT}): cannot {doing} {where}: {why}")
        if key is not None and (code in _NOT_FOUND_CODES or status == 404):
            return ObjectNotFound(f"no object {where} (at {endpoint})")
        if code == "InvalidObjectState":
            return StorageError(f"cannot {doing} {where}: it is archived (Glacier or Deep "
                                "Archive); restore it in S3 first, then try again")
        if code == "InvalidStorageClass":
            return StorageError(f"cannot {doing} {where}: {endpoint} does not support that "
                                "storage class; check the repository's storage_class")
        if code == "EntityTooSmall":
            return StorageError(f"cannot {doing} {where}: {endpoint} refused a multipart part "
                                "as too small (S3 needs parts of at least 5 MiB)")
        if code in _SERVER_BUSY_CODES or (status is not None and status >= 500):
            return StorageError(f"the S3 endpoint {endpoint} failed to {doing} {where}: "
                                f"{code or status} {message}".rstrip() + "; try again later")
        return StorageError(f"S3 refused to {doing} {where}: {code or status}"
                            + (f": {message}" if message else ""))
    if isinstance(error, bx.NoCredentialsError):
        return StorageError(f"no AWS credentials found for bucket {bucket}: set "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                            "(drdeck never reads credentials from its own configuration)")
    if isinstance(error, bx.PartialCredentialsError):
        missing = error.kwargs.get("cred_var", "a variable")
        return StorageError(f"incomplete AWS credentials for bucket {bucket}: {missing} "
                            "is missing (from the environment or the profile)")
    if isinstance(error, bx.ProfileNotFound):
        profile = error.kwargs.get("profile", "?")
        return StorageError(f"the AWS profile {profile!r} (AWS_PROFILE) does not exist; "
                            "check ~/.aws/config or unset AWS_PROFILE")
    if isinstance(error, bx.ReadTimeoutError):
        return EndpointUnreachable(
            f"the S3 endpoint {endpoint} did not answer in time to {doing} {where}; check "
            "the network and the endpoint, then try again")
    if is_transient(error):
        return EndpointUnreachable(
            f"cannot reach the S3 endpoint {endpoint}: {network_reason(error)} (trying to "
            f"{doing} {where}); check the repository's endpoint_url and the network")
    return StorageError(f"cannot {doing} {where} at {endpoint}: {type(error).__name__}: "
                        f"{_first_line(error)}")


def _first_line(error: BaseException) -> str:
    from tui.redact import mask_credentials

    lines = str(error).strip().splitlines()
    return mask_credentials(lines[0]) if lines else "no detail"
