"""A small client for the Neon API v2: the calls a point-in-time restore needs.

Standard library only (urllib in a worker thread, so the event loop stays
free); retries and their waits are asyncio, so an aborted step stops at once
instead of sleeping out a backoff in a thread the process must wait for.

The API key comes from NEON_API_KEY and goes only into the Authorization
header: never into a message, an exception or a repr. Neon answers errors as
JSON `{"code": ..., "message": ...}`; they become DrdeckErrors worded for the
operator, PermanentFailure when trying again cannot help (401, 404, 422...).
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tui.errors import DrdeckError, PermanentFailure

DEFAULT_API_URL = "https://console.neon.tech/api/v2"
API_KEY_ENV = "NEON_API_KEY"
API_URL_ENV = "NEON_API_URL"

#: an operation in one of these is done with; `finished` and `skipped` went well
OPERATION_DONE = frozenset({"finished", "skipped"})
OPERATION_FAILED = frozenset({"failed", "error", "cancelled"})

#: answers that mean the request was not carried out, so sending it again is safe
_NOT_TAKEN = {
    423: "is busy with another operation on this project",  # conflicting operations running
    429: "is rate-limiting requests",
    503: "is unavailable",
}
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MESSAGE_LIMIT = 300


class NeonApiError(DrdeckError):
    """Neon answered with an error, or could not be reached (status 0)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "",
                 retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


class NeonPermanentError(NeonApiError, PermanentFailure):
    """A Neon error that trying again cannot fix."""

    def __init__(self, message: str, *, status: int = 0, code: str = ""):
        super().__init__(message, status=status, code=code, retryable=False)


def api_key_missing() -> PermanentFailure:
    return PermanentFailure(
        f"{API_KEY_ENV} is not set: export {API_KEY_ENV}=<a Neon API key> (Neon Console, "
        "Account settings > API keys) in the shell that runs drdeck, then run again")


@dataclass(frozen=True)
class Retry:
    """How hard to try when Neon is busy (429, 503) or out of reach."""

    attempts: int = 5
    first_wait: float = 1.0
    #: the longest wait drdeck accepts, whatever Retry-After asks for
    max_wait: float = 30.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_wait))
        return min(self.first_wait * 2 ** (attempt - 1), self.max_wait)


class NeonClient:
    """Neon API v2 for one API key. Methods are coroutines; each request has a timeout."""

    def __init__(self, api_key: str, base_url: str | None = None, *, timeout: float = 30.0,
                 retry: Retry | None = None, on_retry: Callable[[str], None] | None = None):
        if not api_key or not api_key.strip():
            raise api_key_missing()
        self._key = api_key.strip()
        self.base_url = _checked_base_url(base_url or DEFAULT_API_URL)
        self.timeout = timeout
        self.retry = retry or Retry()
        #: told, in a sentence, each time a request is sent again
        self.on_retry = on_retry

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: Any) -> NeonClient:
        """The key from NEON_API_KEY; the URL from NEON_API_URL (tests), else Neon's."""
        key = env.get(API_KEY_ENV, "")
        if not key.strip():
            raise api_key_missing()
        return cls(key, env.get(API_URL_ENV) or None, **kwargs)

    def __repr__(self) -> str:  # the key stays out of every log line and traceback
        return f"NeonClient({self.base_url!r})"

    # --- the calls ----------------------------------------------------------------------

    async def get_project(self, project_id: str) -> dict[str, Any]:
        answer = await self._call("GET", f"/projects/{_seg(project_id)}",
                                  what=f"read project {project_id}",
                                  missing=f"project {project_id} does not exist (or this "
                                  "key cannot see it)")
        return answer.get("project") or {}

    async def get_branch(self, project_id: str, branch_id: str) -> dict[str, Any]:
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/branches/{_seg(branch_id)}",
            what=f"read branch {branch_id}",
            missing=f"branch {branch_id} not found in project {project_id}")
        return answer.get("branch") or {}

    async def get_database(self, project_id: str, branch_id: str,
                           database: str) -> dict[str, Any]:
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/branches/{_seg(branch_id)}/databases/"
            f"{_seg(database)}", what=f"read database {database}",
            missing=f"database {database!r} not found on branch {branch_id} of project "
            f"{project_id}")
        return answer.get("database") or {}

    async def get_role(self, project_id: str, branch_id: str, role: str) -> dict[str, Any]:
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/branches/{_seg(branch_id)}/roles/{_seg(role)}",
            what=f"read role {role}",
            missing=f"role {role!r} not found on branch {branch_id} of project {project_id}")
        return answer.get("role") or {}

    async def restore_branch(self, project_id: str, branch_id: str, source_branch_id: str,
                             *, source_timestamp: str | None = None,
                             source_lsn: str | None = None,
                             preserve_under_name: str | None = None) -> dict[str, Any]:
        """POST .../branches/{branch_id}/restore; the answer holds `branch` and `operations`.

        Not idempotent: it is sent again only when Neon said it did not take it
        (423, 429, 503) or the connection was refused, never after an ambiguous failure.
        """
        body: dict[str, Any] = {"source_branch_id": source_branch_id}
        if source_timestamp:
            body["source_timestamp"] = source_timestamp
        if source_lsn:
            body["source_lsn"] = source_lsn
        if preserve_under_name:
            body["preserve_under_name"] = preserve_under_name
        return await self._call(
            "POST", f"/projects/{_seg(project_id)}/branches/{_seg(branch_id)}/restore",
            body=body, what="the restore", refused="Neon refused the restore",
            missing=f"branch {branch_id} (or source branch {source_branch_id}) not found in "
            f"project {project_id}", idempotent=False)

    async def get_operation(self, project_id: str, operation_id: str) -> dict[str, Any]:
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/operations/{_seg(operation_id)}",
            what=f"read operation {operation_id}",
            missing=f"operation {operation_id} not found in project {project_id}")
        return answer.get("operation") or {}

    async def connection_uri(self, project_id: str, branch_id: str, database_name: str,
                             role_name: str, *, pooled: bool = False) -> str:
        query = {"branch_id": branch_id, "database_name": database_name,
                 "role_name": role_name}
        if pooled:
            query["pooled"] = "true"
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/connection_uri", query=query,
            what="get the connection URI",
            missing=f"no database {database_name!r} with role {role_name!r} on branch "
            f"{branch_id} of project {project_id}")
        uri = answer.get("uri")
        if not isinstance(uri, str) or not uri:
            raise NeonPermanentError("Neon's connection_uri answer has no uri")
        return uri

    # --- plumbing -----------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, what: str, missing: str,
                    refused: str | None = None, query: Mapping[str, str] | None = None,
                    body: Any = None, idempotent: bool = True) -> dict[str, Any]:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await asyncio.to_thread(self._send, method, url, data, what, missing,
                                               refused or f"Neon refused to {what}", idempotent)
            except NeonApiError as exc:
                if exc.retry_after is not None and exc.retry_after > self.retry.max_wait:
                    raise NeonApiError(
                        f"{exc}; Neon asks to wait {exc.retry_after:.0f} s, longer than drdeck "
                        "waits within a step: try again later", status=exc.status,
                        code=exc.code) from None
                if not exc.retryable or attempt >= self.retry.attempts:
                    if exc.retryable and attempt > 1:
                        raise NeonApiError(f"{exc} (gave up after {attempt} attempts)",
                                           status=exc.status, code=exc.code) from None
                    raise
                wait = self.retry.wait(attempt, exc.retry_after)
                if self.on_retry is not None:
                    self.on_retry(f"{exc}; trying again in {wait:.3g} s "
                                  f"(attempt {attempt + 1} of {self.retry.attempts})")
                await asyncio.sleep(wait)

    def _send(self, method: str, url: str, data: bytes | None, what: str, missing: str,
              refused: str, idempotent: bool) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._key}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "drdeck")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._http_error(exc.code, exc.headers, exc.read(), what, missing,
                                       refused, idempotent) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc, what, idempotent) from None
        if not payload.strip():
            return {}
        try:
            answer = json.loads(payload)
        except ValueError:
            raise NeonApiError(f"Neon answered {what} with something that is not JSON",
                               retryable=idempotent) from None
        return answer if isinstance(answer, dict) else {}

    def _http_error(self, status: int, headers: Any, payload: bytes, what: str, missing: str,
                    refused: str, idempotent: bool) -> NeonApiError:
        code, message = self._error_body(payload)
        said = f": {message}" if message else ""
        if status == 401:
            return NeonPermanentError(
                f"{API_KEY_ENV} was rejected (HTTP 401): check the key", status=status, code=code)
        if status == 403:
            return NeonPermanentError(
                f"{API_KEY_ENV} is not allowed to {what} (HTTP 403){said}",
                status=status, code=code)
        if status == 404:
            return NeonPermanentError(f"{missing} (HTTP 404){said}", status=status, code=code)
        if status in _NOT_TAKEN:
            # Neon did not take the request: sending it again is safe, even a POST
            return NeonApiError(f"Neon {_NOT_TAKEN[status]} ({what}, HTTP {status}){said}",
                                status=status, code=code, retry_after=_retry_after(headers))
        if status >= 500:
            if idempotent:
                return NeonApiError(f"Neon failed to answer {what} (HTTP {status}){said}",
                                    status=status, code=code, retry_after=_retry_after(headers))
            return NeonPermanentError(
                f"Neon failed while handling {what} (HTTP {status}){said}. It may or may not "
                "have been applied: look at the project's operations in the Neon console "
                "before running the step again", status=status, code=code)
        return NeonPermanentError(f"{refused}: {message or 'no reason given'} (HTTP {status})",
                                  status=status, code=code)

    def _error_body(self, payload: bytes) -> tuple[str, str]:
        text = payload.decode("utf-8", "replace")
        code, message = "", ""
        try:
            body = json.loads(text)
        except ValueError:
            message = text.strip()
        else:
            if isinstance(body, dict):
                code = str(body.get("code") or "")
                message = str(body.get("message") or "")
        message = " ".join(message.split())[:_MESSAGE_LIMIT]
        if self._key in message:  # an echoing proxy must not put the key on screen
            message = message.replace(self._key, "***")
        return code, message

    def _network_error(self, exc: Exception, what: str, idempotent: bool) -> NeonApiError:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(self.base_url).netloc
        text = f"cannot reach the Neon API at {host} ({what}): {reason}"
        refused = isinstance(reason, ConnectionRefusedError)
        if idempotent or refused:  # a refused connection never carried the request
            return NeonApiError(text)
        return NeonPermanentError(
            f"{text}. The request may or may not have reached Neon: look at the project's "
            "operations in the Neon console before running the step again")


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _checked_base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PermanentFailure(f"{API_URL_ENV} must be an https:// URL, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        # plain HTTP would carry the API key in the clear
        raise PermanentFailure(
            f"{API_URL_ENV} must use https:// (plain http is only accepted on 127.0.0.1)")
    return url.strip().rstrip("/")


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
