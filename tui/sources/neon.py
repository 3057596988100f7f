"""A small client for the Neon API v2: the calls a point-in-time restore needs.

Standard library only (urllib in a worker thread, so the event loop stays
free); retries and their waits are asyncio, so an aborted step stops at once
instead of sleeping out a backoff in a thread the process must wait for.

The API key comes from NEON_API_KEY and goes only into the Authorization
header: never into a message, an exception or a repr. Neon answers errors as
JSON `{"code": ..., "message": ..., "request_id": ...}`; they become
DrdeckErrors worded for the operator, with Neon's request_id (its identifier
of the request, for debugging), PermanentFailure when trying again cannot
help (401, 404, 422...).

Two waits follow Neon's docs (https://neon.com/docs/manage/operations,
https://neon.com/docs/reference/api/operations): an answer 423 Locked (the
project has conflicting operations running) is waited out by polling the
project's operations until they end, then the request is sent again; an
operation in status `error` is one Neon retries, so it is followed on. Neither
wait has a deadline of its own: the step's timeout bounds it.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tui.durations import format_duration
from tui.errors import DrdeckError, PermanentFailure
from tui.sources.base import Line, Source

DEFAULT_API_URL = "https://console.neon.tech/api/v2"
API_KEY_ENV = "NEON_API_KEY"
API_URL_ENV = "NEON_API_URL"

#: Operation.status in Neon's OpenAPI v2 document: scheduling, running, finished, failed,
#: error, cancelling, cancelled, skipped. `finished` and `skipped` went well.
OPERATION_DONE = frozenset({"finished", "skipped"})
#: the end of an operation that did not happen; drdeck stops following and says so
OPERATION_FAILED = frozenset({"failed", "cancelled"})
#: not an end: the spec lists `error` without defining it, Neon's docs call only finished,
#: skipped and cancelled terminal, and an operation in error carries failures_count and
#: retry_at while Neon retries it. drdeck follows it on, as it does `cancelling`.
OPERATION_RETRYING = frozenset({"error"})
#: Neon's documented interval for polling operations (https://neon.com/docs/manage/operations)
DEFAULT_POLL_INTERVAL = 5.0

#: answers that mean the request was not carried out, so sending it again is safe
_NOT_TAKEN = {
    423: "is busy with another operation on this project",  # conflicting operations running
    429: "is rate-limiting requests",
    503: "is unavailable",
}
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MESSAGE_LIMIT = 300
_PROJECT_PATH = re.compile(r"/projects/([^/?]+)")
#: what a request id may look like before drdeck shows it (Neon's are UUIDs)
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}")
#: where Neon puts its request id: the error body's `request_id` (documented), else these
_REQUEST_ID_HEADERS = ("X-Neon-Request-Id", "X-Request-Id")
#: the page of operations read to see what holds a locked project; running ones are the newest
_OPERATIONS_PAGE = 100


class NeonApiError(DrdeckError):
    """Neon answered with an error, or could not be reached (status 0)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "",
                 retryable: bool = True, retry_after: float | None = None,
                 request_id: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.request_id = request_id


class NeonPermanentError(NeonApiError, PermanentFailure):
    """A Neon error that trying again cannot fix."""

    def __init__(self, message: str, *, status: int = 0, code: str = "", request_id: str = ""):
        super().__init__(message, status=status, code=code, retryable=False,
                         request_id=request_id)


#: what the pre-flight adds to its verdict: the window is the project's setting, not a promise
PLAN_HISTORY_CAP = (
    "Neon's plan can still refuse a target inside this window: the Free plan keeps at most "
    "1 GB of history, whatever history_retention_seconds says "
    "(https://neon.com/docs/introduction/history-window)")


@dataclass(frozen=True)
class RestoreWindow:
    """How far back a branch can be restored from, as far as the API tells."""

    #: the earliest reachable point (UTC), or None when Neon gave no bound
    earliest: datetime | None
    #: what sets it: why a target before `earliest` cannot be reached, as a clause
    limit: str = ""

    def refuse_if_outside(self, target: datetime) -> None:
        """PermanentFailure, naming the earliest point to use, for a target before the window."""
        if self.earliest is not None and target < self.earliest:
            raise PermanentFailure(f"the target {_stamp(target)} {self.limit}: the earliest "
                                   f"point you can reach is {self.earliest_shown}")

    @property
    def earliest_shown(self) -> str:
        """The earliest point to the second, rounded up so that it is really reachable."""
        if self.earliest is None:
            return "unknown"
        whole = self.earliest.replace(microsecond=0)
        return _stamp(whole if whole == self.earliest else whole + timedelta(seconds=1))


def restore_window(project: Mapping[str, Any], branch: Mapping[str, Any],
                   now: datetime) -> RestoreWindow:
    """The later of now - history_retention_seconds and the source branch's created_at.

    Neon keeps a project's history for history_retention_seconds
    (Project.history_retention_seconds), and a branch has none from before it was
    created (Branch.created_at). The plan can cut the window shorter still: see
    PLAN_HISTORY_CAP, which a pre-flight says beside its verdict.
    """
    bounds: list[tuple[datetime, str]] = []
    retention = project.get("history_retention_seconds")
    if isinstance(retention, int | float) and not isinstance(retention, bool):
        bounds.append((now - timedelta(seconds=retention),
                       f"is older than project {project.get('id') or '?'}'s history window "
                       f"({format_duration(retention)})"))
    created = _parse_time(branch.get("created_at"))
    if created is not None:
        name, branch_id = branch.get("name"), branch.get("id") or "?"
        label = f"{branch_id} ({name})" if name and name != branch_id else branch_id
        bounds.append((created, f"is before branch {label} existed (it was created "
                                f"{_stamp(created)}, and has no history from before)"))
    if not bounds:
        return RestoreWindow(None)
    earliest, limit = max(bounds, key=lambda bound: bound[0])
    return RestoreWindow(earliest, limit)


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
                 retry: Retry | None = None, on_retry: Callable[[str], None] | None = None,
                 poll_interval: float = DEFAULT_POLL_INTERVAL):
        if not api_key or not api_key.strip():
            raise api_key_missing()
        self._key = api_key.strip()
        self.base_url = _checked_base_url(base_url or DEFAULT_API_URL)
        self.timeout = timeout
        self.retry = retry or Retry()
        #: told, in a sentence, each time drdeck or Neon tries again and each time drdeck
        #: waits for Neon: a request sent again, a locked project, an operation in error
        self.on_retry = on_retry
        #: how often to look at a locked project's operations (Retry-After wins when given)
        self.poll_interval = poll_interval
        #: what was last said about each operation in error, so it is said once per change
        self._told_error: dict[str, tuple[Any, ...]] = {}

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
        operation = answer.get("operation") or {}
        self._tell_if_in_error(operation, operation_id)
        return operation

    async def list_operations(self, project_id: str,
                              limit: int = _OPERATIONS_PAGE) -> list[dict[str, Any]]:
        """The project's newest operations (GET /projects/{id}/operations), newest first."""
        answer = await self._call(
            "GET", f"/projects/{_seg(project_id)}/operations", query={"limit": str(limit)},
            what=f"list the operations of project {project_id}",
            missing=f"project {project_id} does not exist (or this key cannot see it)")
        return [op for op in answer.get("operations") or [] if isinstance(op, dict)]

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
        locked = _PROJECT_PATH.match(path)
        attempt = 0
        idle_locks = 0  # 423s with no operation to wait for
        while True:
            attempt += 1
            try:
                return await asyncio.to_thread(self._send, method, url, data, what, missing,
                                               refused or f"Neon refused to {what}", idempotent)
            except NeonApiError as exc:
                if exc.status == 423 and locked and method != "GET":
                    # a lock is not a failure: wait for what holds it, then ask again
                    idle_locks = await self._wait_for_lock(
                        urllib.parse.unquote(locked.group(1)), what, exc, idle_locks)
                    attempt -= 1
                    continue
                if exc.retry_after is not None and exc.retry_after > self.retry.max_wait:
                    raise NeonApiError(
                        f"{exc}; Neon asks to wait {exc.retry_after:.0f} s, longer than drdeck "
                        "waits within a step: try again later", status=exc.status,
                        code=exc.code, request_id=exc.request_id) from None
                if not exc.retryable or attempt >= self.retry.attempts:
                    if exc.retryable and attempt > 1:
                        raise NeonApiError(f"{exc} (gave up after {attempt} attempts)",
                                           status=exc.status, code=exc.code,
                                           request_id=exc.request_id) from None
                    raise
                wait = self.retry.wait(attempt, exc.retry_after)
                if self.on_retry is not None:
                    self.on_retry(f"{exc}; trying again in {wait:.3g} s "
                                  f"(attempt {attempt + 1} of {self.retry.attempts})")
                await asyncio.sleep(wait)

    async def _wait_for_lock(self, project_id: str, what: str, exc: NeonApiError,
                             idle_locks: int) -> int:
        """Poll the project's operations until none is running; returns the idle count.

        Neon answers 423 while conflicting operations run and advises waiting for
        them; the wait ends when they do (or the step's timeout). A 423 with
        nothing running is a lock that just ended: sent again at once, then with
        backoff, and given up after `retry.attempts` of them in a row.
        """
        interval = min(exc.retry_after if exc.retry_after is not None else self.poll_interval,
                       self.retry.max_wait)
        try:
            running = _still_going(await self.list_operations(project_id))
            why = f"no operation of project {project_id} is running now"
            just_ended = True
        except NeonPermanentError as cannot:  # a key that may not list operations, say
            running, why, just_ended = [], f"drdeck cannot see what holds it ({cannot})", False
        if not running:
            idle_locks += 1
            if idle_locks > self.retry.attempts:
                raise NeonApiError(
                    f"{exc}; Neon kept answering 423 ({idle_locks} times) and {why}: try "
                    "again later, and look at the project's operations in the Neon console",
                    status=exc.status, code=exc.code, request_id=exc.request_id)
            # a lock that just ended is asked again at once; after that, with backoff
            turn = idle_locks - 1 if just_ended else idle_locks
            wait = self.retry.wait(turn, exc.retry_after) if turn else 0.0
            self._tell(f"{exc}; {why}: sending {what} again"
                       + (f" in {wait:.3g} s" if wait else ""))
            await asyncio.sleep(wait)
            return idle_locks
        self._tell(f"{exc}; waiting for {_describe_operations(running)} to end (asking Neon "
                   f"every {interval:.3g} s; the step's timeout bounds the wait)")
        holding = {op.get("id") for op in running}
        while running:
            await asyncio.sleep(interval)
            running = _still_going(await self.list_operations(project_id))
            now_holding = {op.get("id") for op in running}
            if running and now_holding != holding:
                self._tell(f"project {project_id} is still locked: waiting for "
                           f"{_describe_operations(running)}")
            holding = now_holding
        self._tell(f"the operations that locked project {project_id} ended: "
                   f"sending {what} again")
        return 0

    def _tell(self, sentence: str) -> None:
        if self.on_retry is not None:
            self.on_retry(sentence)

    def _tell_if_in_error(self, operation: dict[str, Any], operation_id: str) -> None:
        """Say once per change that Neon is retrying an operation, and how often it failed."""
        if operation.get("status") not in OPERATION_RETRYING:
            self._told_error.pop(operation_id, None)
            return
        failures, retry_at = operation.get("failures_count"), operation.get("retry_at")
        error = " ".join(str(operation.get("error") or "").split())[:_MESSAGE_LIMIT]
        seen = (failures, retry_at, error)
        if self._told_error.get(operation_id) == seen:
            return
        self._told_error[operation_id] = seen
        count = (f"failures_count {failures}" if isinstance(failures, int)
                 else "failures_count not given")
        when = f", retry_at {self._scrub(str(retry_at))[:40]}" if retry_at else ""
        said = f": {self._scrub(error)}" if error else ""
        self._tell(f"Neon operation {operation.get('action') or 'operation'} {operation_id} is "
                   f"in status error ({count}{when}){said}. Neon retries it: drdeck follows "
                   "it until it finishes, fails or is cancelled, within the step's timeout")

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
        code, message, request_id = self._error_body(payload)
        request_id = request_id or self._header_request_id(headers)
        said = f": {message}" if message else ""
        # GeneralError.request_id identifies the request to Neon: every error shows it
        tag = f"HTTP {status}" + (f", request_id {request_id}" if request_id else "")
        ids = {"status": status, "code": code, "request_id": request_id}
        if status == 401:
            return NeonPermanentError(f"{API_KEY_ENV} was rejected ({tag}): check the key", **ids)
        if status == 403:
            return NeonPermanentError(f"{API_KEY_ENV} is not allowed to {what} ({tag}){said}",
                                      **ids)
        if status == 404:
            return NeonPermanentError(f"{missing} ({tag}){said}", **ids)
        if status in _NOT_TAKEN:
            # Neon did not take the request: sending it again is safe, even a POST
            return NeonApiError(f"Neon {_NOT_TAKEN[status]} ({what}, {tag}){said}",
                                retry_after=_retry_after(headers), **ids)
        if status >= 500:
            if idempotent:
                return NeonApiError(f"Neon failed to answer {what} ({tag}){said}",
                                    retry_after=_retry_after(headers), **ids)
            return NeonPermanentError(
                f"Neon failed while handling {what} ({tag}){said}. It may or may not "
                "have been applied: look at the project's operations in the Neon console "
                "before running the step again", **ids)
        return NeonPermanentError(f"{refused}: {message or 'no reason given'} ({tag})", **ids)

    def _error_body(self, payload: bytes) -> tuple[str, str, str]:
        """code, message and request_id of Neon's error answer (GeneralError)."""
        text = payload.decode("utf-8", "replace")
        code, message, request_id = "", "", ""
        try:
            body = json.loads(text)
        except ValueError:
            message = text.strip()
        else:
            if isinstance(body, dict):
                code = str(body.get("code") or "")
                message = str(body.get("message") or "")
                request_id = self._checked_request_id(body.get("request_id"))
        message = " ".join(message.split())[:_MESSAGE_LIMIT]
        return code, self._scrub(message), request_id

    def _header_request_id(self, headers: Any) -> str:
        if headers is None:
            return ""
        for name in _REQUEST_ID_HEADERS:
            found = self._checked_request_id(headers.get(name))
            if found:
                return found
        return ""

    def _checked_request_id(self, value: Any) -> str:
        """A request id fit to show: a short token, never anything holding the key."""
        if not isinstance(value, str):
            return ""
        value = value.strip()
        if not _REQUEST_ID.fullmatch(value) or self._key in value:
            return ""
        return value

    def _scrub(self, text: str) -> str:
        # an echoing proxy must not put the key on screen
        return text.replace(self._key, "***") if self._key in text else text

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


def _still_going(operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operations that have not ended: scheduling, running, error, cancelling (or unknown)."""
    ended = OPERATION_DONE | OPERATION_FAILED
    return [op for op in operations if op.get("status") not in ended]


def _describe_operations(operations: list[dict[str, Any]]) -> str:
    shown = [f"{op.get('action') or 'operation'} {op.get('id') or '?'} "
             f"({op.get('status') or '?'})" for op in operations[:3]]
    more = f" and {len(operations) - 3} more" if len(operations) > 3 else ""
    return ("operation " if len(operations) == 1 else "operations ") + ", ".join(shown) + more


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stamp(value: datetime) -> str:
    """UTC with a Z, as Neon writes times."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


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


# --- the source -------------------------------------------------------------------------


class NeonSource(Source):
    """A Neon branch that holds a cluster's data: Neon keeps its history, so it can be
    restored to any moment of its history window (through neon-pitr); read, never
    written here.

        [clusters.NAME]
        neon = { project_id = "spring-example-302709", branch_id = "br-..." }

    The API key comes from the environment variable `api_key_env` names (NEON_API_KEY
    by default), never from the configuration.
    """

    kind = "neon"
    title = "Neon"
    settings = {"project_id": True, "branch_id": True, "api_key_env": False}
    example = '{ project_id = "spring-example-302709", branch_id = "br-..." }'
    restore_runbook = "neon-pitr"

    def __init__(self, project_id: str, branch_id: str, api_key_env: str = API_KEY_ENV,
                 environ: Mapping[str, str] | None = None) -> None:
        self.project_id, self.branch_id = project_id, branch_id
        self.api_key_env = api_key_env
        self.environ = environ if environ is not None else os.environ

    @classmethod
    def from_settings(cls, settings: dict[str, str], config: Any = None) -> NeonSource:
        return cls(settings["project_id"], settings["branch_id"],
                   settings.get("api_key_env") or API_KEY_ENV)

    @classmethod
    def check_settings(cls, settings: dict[str, str]) -> list[tuple[str, str]]:
        name = settings.get("api_key_env")
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return [("api_key_env", f"{name!r} is not an environment variable's name")]
        return []

    @classmethod
    def action_classes(cls) -> tuple[type, ...]:
        from tui.sources.neon_actions import NeonRestoreBranch

        return (NeonRestoreBranch,)

    def describe(self) -> str:
        return f"branch {self.branch_id} of project {self.project_id}"

    def read(self, read_commit_times: bool = True) -> dict[str, Any]:
        return asyncio.run(self._read())

    async def _read(self) -> dict[str, Any]:
        key = self.environ.get(self.api_key_env, "")
        if not key.strip():
            raise PermanentFailure(f"{self.api_key_env} is not set: export it with a Neon API "
                                   "key in the environment drdeck runs in")
        client = NeonClient(key, self.environ.get(API_URL_ENV) or None,
                            retry=Retry(attempts=2))
        project = await client.get_project(self.project_id)
        branch = await client.get_branch(self.project_id, self.branch_id)
        now = datetime.now(UTC)
        window = restore_window(project, branch, now)
        problems = [] if window.earliest is not None else [
            "Neon gives no bound for this branch's history: a target may be refused"]
        return {
            "kind": self.kind, "project_id": self.project_id, "branch_id": self.branch_id,
            "branch_name": _said(branch.get("name")),
            "history_retention_seconds": project.get("history_retention_seconds"),
            "backups": [],
            # every commit is in Neon's history: the window runs to now
            "window": {"start": window.earliest.isoformat() if window.earliest else None,
                       "end": now.isoformat()},
            "window_limit": window.limit or None,
            "plan_history_cap": PLAN_HISTORY_CAP,
            "gaps": [], "problems": problems,
        }

    def summary(self, report: dict[str, Any]) -> list[Line]:
        lines = super().summary(report)
        if not report.get("error"):
            lines.append(Line(PLAN_HISTORY_CAP))
        return lines

    def policy_lines(self) -> list[str]:
        return [f"- Neon keeps the history of {self.describe()}: `neon-pitr` restores it "
                "to any moment of its history window, through the Neon API."]


def _said(value: Any) -> str | None:
    """A name Neon gave, as a short string (it is shown on screen)."""
    return str(value)[:200] if isinstance(value, str) else None
