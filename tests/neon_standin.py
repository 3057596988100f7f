"""A stand-in for the Neon API v2 on 127.0.0.1: the one third-party SaaS drdeck tests fake.

It implements the documented contract of the calls drdeck makes (paths,
bodies, the shapes of projects, branches and operations, and the
`{"code", "message"}` error answers) with state behind it:

- projects with branches, databases and roles; ids shaped like Neon's
  (`spring-example-302709`, `br-...`, `ep-...`, operation UUIDs);
- `POST .../branches/{id}/restore` validates the body, keeps the branch's
  current state as a new branch named `preserve_under_name`, and starts two
  operations (`create_timeline`, then `start_compute`) that move
  scheduling -> running -> finished as they are polled; on request one of them
  takes another road: through `error` (each time with `failures_count` one up
  and `retry_at` set, as Neon does while it retries), to `failed`, or through
  `cancelling` to `cancelled`;
- `GET .../operations` lists a project's operations newest first, with
  `limit` and `cursor` pagination; each listing is a tick for the operations
  still going;
- a project with an operation still going is locked: a request that would
  start another (POST, PATCH, DELETE) gets 423 "conflicting operations", as
  Neon answers, until it ends (`lock_project` starts one that ends after a
  number of listings);
- `GET .../connection_uri` answers a URI that points at a real PostgreSQL
  server given to the stand-in, so a runbook's checks really connect;
- bearer-token auth (401 for a wrong or missing key), 404 for unknown
  projects, branches, databases, roles and operations, 400/422 for bad or
  unreachable restore targets (before the history window, before the source
  branch was created, or before what the plan's history cap kept), and on
  request a 429 with Retry-After;
- every error answer is Neon's GeneralError: `code`, `message` and the
  optional `request_id` (the client's X-Request-ID when it sent one); on
  request the id travels in an `X-Neon-Request-Id` header instead.

Projects, branches and operations carry the fields the OpenAPI v2 document
marks required (ProjectResponse, BranchResponse, OperationResponse).

Neon's own URIs end in `sslmode=require&channel_binding=require`; the throwaway
clusters serve no TLS, so the stand-in says `sslmode=disable` unless told otherwise.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

_ADJECTIVES = ("spring", "floral", "bitter", "wispy", "silent", "shiny", "cool", "dark")
_NOUNS = ("example", "king", "sound", "meadow", "smoke", "wind", "darkness", "snowflake")
_counter = itertools.count(100001)


def _neon_name(prefix: str = "") -> str:
    n = next(_counter)
    name = f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_NOUNS[(n // 7) % len(_NOUNS)]}-{n:06d}"
    return prefix + name


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC)


#: statuses in which an operation no longer runs, so it conflicts with nothing (Neon answers
#: 423 to a request "that conflicts with a running operation"); the stand-in retries none
ENDED = frozenset({"finished", "skipped", "failed", "cancelled"})
OPERATION_DONE = frozenset({"finished", "skipped"})
_LOCKED = ("project already has running conflicting operations, scheduling of new ones is "
           "prohibited")


@dataclass
class Branch:
    id: str
    project_id: str
    name: str
    created_at: datetime
    parent_id: str | None = None
    parent_timestamp: datetime | None = None
    current_state: str = "ready"
    default: bool = False
    endpoint_id: str = field(default_factory=lambda: _neon_name("ep-"))

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "current_state": self.current_state,
            "state_changed_at": _stamp(self.created_at),
            "logical_size": 30_351_360,
            "creation_source": "console",
            "primary": self.default,
            "default": self.default,
            "protected": False,
            "cpu_used_sec": 0,
            "compute_time_seconds": 0,
            "active_time_seconds": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "created_at": _stamp(self.created_at),
            "updated_at": _stamp(_now()),
        }
        if self.parent_id:
            body["parent_id"] = self.parent_id
            body["parent_lsn"] = "0/1F0C4B8"
        if self.parent_timestamp:
            body["parent_timestamp"] = _stamp(self.parent_timestamp)
        return body


@dataclass
class Project:
    id: str
    name: str
    history_retention_seconds: int
    created_at: datetime
    branches: dict[str, Branch] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)  # name -> owner role
    roles: dict[str, str] = field(default_factory=dict)  # name -> password
    #: history the plan really keeps, when its cap (the Free plan's 1 GB) cut it shorter than
    #: history_retention_seconds; not in any answer, as with Neon
    history_kept: timedelta | None = None

    def as_json(self) -> dict[str, Any]:
        now = _now()
        period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        period_end = (period_start + timedelta(days=32)).replace(day=1)
        return {  # every field Project marks required, then some optional ones
            "id": self.id,
            "platform_id": "aws",
            "region_id": "aws-us-east-2",
            "name": self.name,
            "provisioner": "k8s-neonvm",
            "pg_version": 16,
            "proxy_host": "us-east-2.aws.neon.tech",
            "branch_logical_size_limit": 0,
            "branch_logical_size_limit_bytes": 10_800_000_000,
            "store_passwords": True,
            "creation_source": "console",
            "history_retention_seconds": self.history_retention_seconds,
            "owner_id": "f8e4a3b2-0000-4000-8000-000000000001",
            "consumption_period_start": _stamp(period_start),
            "consumption_period_end": _stamp(period_end),
            "active_time_seconds": 0,
            "compute_time_seconds": 0,
            "cpu_used_sec": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "data_storage_bytes_hour": 0,
            "created_at": _stamp(self.created_at),
            "updated_at": _stamp(now),
            "default_endpoint_settings": {"autoscaling_limit_min_cu": 0.25,
                                          "autoscaling_limit_max_cu": 2,
                                          "suspend_timeout_seconds": 0},
        }


@dataclass
class Operation:
    id: str
    project_id: str
    branch_id: str
    endpoint_id: str | None
    action: str
    #: the statuses still to come, one per poll
    ahead: list[str]
    status: str = "scheduling"
    error: str | None = None
    failure: str | None = None  # the error it shows in `error` and `failed`
    after: Operation | None = None  # does not start before this one finished (or skipped)
    failures_count: int = 0
    retry_at: datetime | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)

    @property
    def going(self) -> bool:
        return self.status not in ENDED

    def advance(self) -> None:
        """One tick: the next status ahead; `error` at the end stays, Neon retrying it."""
        if self.after is not None and self.after.status not in OPERATION_DONE:
            return
        if self.ahead or self.status == "error":
            self.status = self.ahead.pop(0) if self.ahead else self.status
            self.updated_at = _now()
            if self.status in ("error", "failed"):
                self.error, self.failures_count = self.failure, self.failures_count + 1
            if self.status == "error":
                self.retry_at = self.updated_at

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "branch_id": self.branch_id,
            "action": self.action,
            "status": self.status,
            "failures_count": self.failures_count,
            "created_at": _stamp(self.created_at),
            "updated_at": _stamp(self.updated_at),
            "total_duration_ms": int((self.updated_at - self.created_at).total_seconds() * 1000),
        }
        if self.endpoint_id:
            body["endpoint_id"] = self.endpoint_id
        if self.error:
            body["error"] = self.error
        if self.retry_at:
            body["retry_at"] = _stamp(self.retry_at)
        return body


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


class NeonStandin:
    """The server and its state. Use as a context manager; `url` is the API base URL."""

    def __init__(self, api_key: str, *, postgres_port: int, postgres_host: str = "127.0.0.1",
                 uri_query: str = "sslmode=disable", request_id_in: str = "body"):
        self.api_key = api_key
        self.postgres_host, self.postgres_port = postgres_host, postgres_port
        self.uri_query = uri_query
        #: where an error's request id goes: "body" (GeneralError.request_id) or "header"
        self.request_id_in = request_id_in
        self.projects: dict[str, Project] = {}
        self.operations: dict[str, Operation] = {}
        #: (method, path) of every request, in order
        self.requests: list[tuple[str, str]] = []
        #: the request id of every error answered, in order
        self.error_request_ids: list[str] = []
        self._throttles: list[tuple[str, float | None, int]] = []
        #: action -> (statuses after scheduling, error text) for the next restore
        self._scripts: dict[str, tuple[list[str], str]] = {}
        #: operation id -> the Retry-After its lock's 423 answers carry (None: no header)
        self._lock_retry_after: dict[str, float | None] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- arranging a scene ------------------------------------------------------------

    def add_project(self, *, name: str = "shop", branch_name: str = "production",
                    history_retention_seconds: int = 86_400,
                    branch_age: timedelta = timedelta(hours=6),
                    database: str = "neondb", role: str = "neondb_owner",
                    password: str = "npg_s3cretPassw0rd") -> tuple[Project, Branch]:
        """A project with its default branch (created `branch_age` ago), a database and role."""
        created = _now() - branch_age
        project = Project(_neon_name(), name, history_retention_seconds, created)
        branch = Branch(_neon_name("br-"), project.id, branch_name, created, default=True)
        project.branches[branch.id] = branch
        project.databases[database] = role
        project.roles[role] = password
        self.projects[project.id] = project
        return project, branch

    def throttle(self, times: int = 1, retry_after: float | None = 1, on: str = "/restore",
                 status: int = 429) -> None:
        """Answer the next `times` requests whose path contains `on` with `status` and
        Retry-After (none when None): 429 (rate limit), 5xx, or 423 (Neon's "conflicting
        operations" lock) with no operation to show for it, as when a lock just ended."""
        self._throttles += [(on, retry_after, status)] * times

    def add_branch(self, project: Project, name: str, *, age: timedelta,
                   parent: Branch | None = None) -> Branch:
        """A branch created `age` ago (from `parent`, if given)."""
        created = _now() - age
        branch = Branch(_neon_name("br-"), project.id, name, created,
                        parent_id=parent.id if parent else None,
                        parent_timestamp=created if parent else None)
        project.branches[branch.id] = branch
        return branch

    def script_next_operation(self, action: str, statuses: list[str],
                              error: str = "compute failed to start: out of capacity") -> None:
        """The next restore's operation `action` goes through `statuses`, one per poll.

        Each `error` counts a failure and stamps retry_at; a script that ends in
        `error` stays there, failing again at every poll, as a retry that never works.
        """
        self._scripts[action] = (list(statuses), error)

    def fail_next_operation(self, action: str = "start_compute",
                            error: str = "compute failed to start: out of capacity") -> None:
        """The next restore's operation `action` fails instead of finishing."""
        self.script_next_operation(action, ["running", "failed"], error)

    def lock_project(self, project: Project, *, action: str = "apply_config", listings: int = 2,
                     retry_after: float | None = None) -> Operation:
        """Start an operation that locks `project` until it has been listed `listings` times.

        Neon's docs do not promise a Retry-After with a 423; give `retry_after`
        to send one anyway.
        """
        branch = next(b for b in project.branches.values() if b.default)
        operation = Operation(str(uuid.uuid4()), project.id, branch.id, None, action,
                              ["running"] * (listings - 1) + ["finished"], status="running")
        self.operations[operation.id] = operation
        self._lock_retry_after[operation.id] = retry_after
        return operation

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p in self.requests if m == method and path_part in p)

    # --- running ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v2"

    def __enter__(self) -> NeonStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def do_PATCH(self) -> None:
                standin._handle(self, "PATCH")

            def do_DELETE(self) -> None:
                standin._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a short poll makes shutdown() quick: it waits for the serving loop to look
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="neon-standin")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the API ----------------------------------------------------------------------

    _ROUTES = [
        ("GET", r"/projects/(?P<project>[^/]+)", "get_project"),
        ("GET", r"/projects/(?P<project>[^/]+)/branches/(?P<branch>[^/]+)", "get_branch"),
        ("GET", r"/projects/(?P<project>[^/]+)/branches/(?P<branch>[^/]+)/databases/"
                r"(?P<name>[^/]+)", "get_database"),
        ("GET", r"/projects/(?P<project>[^/]+)/branches/(?P<branch>[^/]+)/roles/(?P<name>[^/]+)",
         "get_role"),
        ("POST", r"/projects/(?P<project>[^/]+)/branches/(?P<branch>[^/]+)/restore", "restore"),
        ("GET", r"/projects/(?P<project>[^/]+)/operations", "list_operations"),
        ("GET", r"/projects/(?P<project>[^/]+)/operations/(?P<operation>[^/]+)", "get_operation"),
        ("GET", r"/projects/(?P<project>[^/]+)/connection_uri", "connection_uri"),
    ]

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, parts.path))
            try:
                status, body, headers = 200, self._route(request, method, parts, raw), {}
            except ApiError as exc:
                status, headers = exc.status, dict(exc.headers)
                body = {"code": exc.code, "message": exc.message}
                request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
                self.error_request_ids.append(request_id)
                if self.request_id_in == "header":
                    headers["X-Neon-Request-Id"] = request_id
                else:
                    body["request_id"] = request_id
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(payload)

    def _route(self, request: BaseHTTPRequestHandler, method: str, parts: Any,
               raw: bytes) -> dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise ApiError(401, "authentication required", "")
        if not parts.path.startswith("/api/v2/"):
            raise ApiError(404, "not found")
        path = parts.path[len("/api/v2"):]
        for index, (on, retry_after, status) in enumerate(self._throttles):
            if on in path:
                del self._throttles[index]
                message = {423: _LOCKED, 429: "rate limit exceeded"}.get(
                    status, "internal server error")
                raise ApiError(status, message, "", {} if retry_after is None
                               else {"Retry-After": f"{retry_after:g}"})
        if method != "GET":
            self._refuse_if_locked(path)
        for route_method, pattern, handler in self._ROUTES:
            match = re.fullmatch(pattern, path)
            if match:
                if route_method != method:
                    raise ApiError(405, f"method {method} not allowed")
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                return getattr(self, f"_{handler}")(**match.groupdict(), query=query, raw=raw)
        raise ApiError(404, "not found")

    def _refuse_if_locked(self, path: str) -> None:
        """423 while an operation of the project is still going, as Neon answers."""
        match = re.match(r"/projects/([^/]+)", path)
        if match is None:
            return
        going = [o for o in self.operations.values() if o.project_id == match.group(1)
                 and o.going]
        if going:
            waits = [self._lock_retry_after.get(o.id) for o in going]
            given = [w for w in waits if w is not None]
            headers = {"Retry-After": f"{max(given):g}"} if given else {}
            raise ApiError(423, _LOCKED, "", headers)

    def _project(self, project_id: str) -> Project:
        project = self.projects.get(project_id)
        if project is None:
            raise ApiError(404, f"project {project_id} not found", "")
        return project

    def _branch(self, project: Project, branch_id: str, what: str = "branch") -> Branch:
        branch = project.branches.get(branch_id)
        if branch is None:
            raise ApiError(404, f"{what} {branch_id} not found", "")
        return branch

    def _get_project(self, project: str, **_: Any) -> dict[str, Any]:
        return {"project": self._project(project).as_json()}

    def _get_branch(self, project: str, branch: str, **_: Any) -> dict[str, Any]:
        found = self._branch(self._project(project), branch)
        return {"branch": found.as_json(), "annotation": {"object": {"type": "console/branch",
                                                                      "id": found.id},
                                                           "value": {}}}

    def _get_database(self, project: str, branch: str, name: str, **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        found = self._branch(proj, branch)
        if name not in proj.databases:
            raise ApiError(404, f"database {name} not found", "")
        return {"database": {"id": 1_139_149, "branch_id": found.id, "name": name,
                             "owner_name": proj.databases[name],
                             "created_at": _stamp(found.created_at),
                             "updated_at": _stamp(found.created_at)}}

    def _get_role(self, project: str, branch: str, name: str, **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        found = self._branch(proj, branch)
        if name not in proj.roles:
            raise ApiError(404, f"role {name} not found", "")
        return {"role": {"branch_id": found.id, "name": name, "protected": False,
                         "created_at": _stamp(found.created_at),
                         "updated_at": _stamp(found.created_at)}}

    def _restore(self, project: str, branch: str, raw: bytes, **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        target = self._branch(proj, branch)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "request body is not valid JSON", "") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be an object", "")
        source_id = body.get("source_branch_id")
        if not source_id:
            raise ApiError(400, "source_branch_id is required", "")
        source = self._branch(proj, source_id, "source branch")
        stamp, lsn = body.get("source_timestamp"), body.get("source_lsn")
        if stamp and lsn:
            raise ApiError(400, "specify either source_timestamp or source_lsn, not both", "")
        if source.id == target.id and not (stamp or lsn):
            raise ApiError(400, "source_timestamp or source_lsn is required when restoring "
                           "a branch from its own history", "")
        preserve = body.get("preserve_under_name") or ""
        has_children = any(b.parent_id == target.id for b in proj.branches.values())
        if (source.id == target.id or has_children) and not preserve:
            raise ApiError(400, "preserve_under_name is required when the branch has children "
                           "or is restored from its own history", "")
        when: datetime | None = None
        if stamp:
            when = self._reachable(proj, source, stamp)
        now = _now()
        kept = None
        if preserve:
            kept = Branch(_neon_name("br-"), proj.id, preserve, now, parent_id=target.parent_id,
                          parent_timestamp=target.parent_timestamp)
            for child in proj.branches.values():
                if child.parent_id == target.id:
                    child.parent_id = kept.id
            proj.branches[kept.id] = kept
        target.parent_id = kept.id if kept else source.id
        target.parent_timestamp = when
        target.current_state = "init"
        timeline = Operation(str(uuid.uuid4()), proj.id, target.id, None, "create_timeline",
                             ["running", "finished"])
        compute = Operation(str(uuid.uuid4()), proj.id, target.id, target.endpoint_id,
                            "start_compute", ["running", "finished"], after=timeline)
        for operation in (timeline, compute):
            if operation.action in self._scripts:
                operation.ahead, operation.failure = self._scripts.pop(operation.action)
            self.operations[operation.id] = operation
        return {"branch": target.as_json(),
                "operations": [timeline.as_json(), compute.as_json()]}

    def _reachable(self, project: Project, source: Branch, stamp: str) -> datetime:
        try:
            when = datetime.fromisoformat(stamp)
        except (TypeError, ValueError):
            raise ApiError(400, f"source_timestamp {stamp!r} is not a valid date-time", "") \
                from None
        if when.tzinfo is None:
            raise ApiError(400, "source_timestamp must include a time zone", "")
        now = _now()
        bounds = [now - timedelta(seconds=project.history_retention_seconds), source.created_at]
        if project.history_kept is not None:
            bounds.append(now - project.history_kept)
        earliest = max(bounds)
        if when > now:
            raise ApiError(422, f"timestamp {_stamp(when)} is in the future", "")
        if when < earliest:
            raise ApiError(422, f"timestamp {_stamp(when)} precedes the branch's history: "
                           f"the earliest restorable point is {_stamp(earliest)}", "")
        return when

    def _get_operation(self, project: str, operation: str, **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        found = self.operations.get(operation)
        if found is None or found.project_id != proj.id:
            raise ApiError(404, f"operation {operation} not found", "")
        found.advance()
        self._settle_branches(proj)
        return {"operation": found.as_json()}

    def _list_operations(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        try:
            limit = int(query.get("limit") or 10)
        except ValueError:
            raise ApiError(400, "limit must be an integer", "") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000", "")
        mine = [o for o in self.operations.values() if o.project_id == proj.id]
        for operation in mine:  # a listing is a tick for what is still going
            if operation.going:
                operation.advance()
        self._settle_branches(proj)
        newest = sorted(mine, key=lambda o: o.created_at, reverse=True)
        if query.get("cursor"):
            try:
                cursor = datetime.fromisoformat(query["cursor"])
            except ValueError:
                raise ApiError(400, "cursor is not valid", "") from None
            newest = [o for o in newest if o.created_at < cursor]
        page = newest[:limit]
        body: dict[str, Any] = {"operations": [o.as_json() for o in page]}
        if page:
            body["pagination"] = {
                "cursor": page[-1].created_at.isoformat().replace("+00:00", "Z")}
        return body

    def _settle_branches(self, project: Project) -> None:
        for branch in project.branches.values():
            ops = [o for o in self.operations.values() if o.branch_id == branch.id]
            if ops and all(o.status in OPERATION_DONE for o in ops):
                branch.current_state = "ready"

    def _connection_uri(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        proj = self._project(project)
        for required in ("database_name", "role_name"):
            if not query.get(required):
                raise ApiError(400, f"missing required query parameter {required}", "")
        branch_id = query.get("branch_id") or next(
            b.id for b in proj.branches.values() if b.default)
        self._branch(proj, branch_id)
        database, role = query["database_name"], query["role_name"]
        if database not in proj.databases:
            raise ApiError(404, f"database {database} not found", "")
        if role not in proj.roles:
            raise ApiError(404, f"role {role} not found", "")
        password = quote(proj.roles[role], safe="")
        uri = (f"postgresql://{quote(role, safe='')}:{password}@{self.postgres_host}:"
               f"{self.postgres_port}/{quote(database, safe='')}")
        return {"uri": uri + (f"?{self.uri_query}" if self.uri_query else "")}
