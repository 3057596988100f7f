"""A stand-in for the Neon API v2 on 127.0.0.1: the one third-party SaaS drdeck tests fake.

It implements the documented contract of the calls drdeck makes (paths,
bodies, the shapes of projects, branches and operations, and the
`{"code", "message"}` error answers) with state behind it:

- projects with branches, databases and roles; ids shaped like Neon's
  (`spring-example-302709`, `br-...`, `ep-...`, operation UUIDs);
- `POST .../branches/{id}/restore` validates the body, keeps the branch's
  current state as a new branch named `preserve_under_name`, and starts two
  operations (`create_timeline`, then `start_compute`) that move
  scheduling -> running -> finished as they are polled;
- `GET .../connection_uri` answers a URI that points at a real PostgreSQL
  server given to the stand-in, so a runbook's checks really connect;
- bearer-token auth (401 for a wrong or missing key), 404 for unknown
  projects, branches, databases, roles and operations, 400/422 for bad or
  unreachable restore targets, and on request a 429 with Retry-After or an
  operation that fails.

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

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform_id": "aws",
            "region_id": "aws-us-east-2",
            "name": self.name,
            "provisioner": "k8s-neonvm",
            "pg_version": 16,
            "proxy_host": "us-east-2.aws.neon.tech",
            "store_passwords": True,
            "history_retention_seconds": self.history_retention_seconds,
            "owner_id": "f8e4a3b2-0000-4000-8000-000000000001",
            "created_at": _stamp(self.created_at),
            "updated_at": _stamp(_now()),
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
    failure: str | None = None  # the error to show once it has failed
    after: Operation | None = None  # does not start before this one finished
    failures_count: int = 0
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)

    def advance(self) -> None:
        if self.after is not None and self.after.status != "finished":
            return
        if self.ahead:
            self.status = self.ahead.pop(0)
            self.updated_at = _now()
            if self.status == "failed":
                self.error, self.failures_count = self.failure, self.failures_count + 1

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
                 uri_query: str = "sslmode=disable"):
        self.api_key = api_key
        self.postgres_host, self.postgres_port = postgres_host, postgres_port
        self.uri_query = uri_query
        self.projects: dict[str, Project] = {}
        self.operations: dict[str, Operation] = {}
        #: (method, path) of every request, in order
        self.requests: list[tuple[str, str]] = []
        self._throttles: list[tuple[str, float, int]] = []
        self._failing_action: tuple[str, str] | None = None
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

    def throttle(self, times: int = 1, retry_after: float = 1, on: str = "/restore",
                 status: int = 429) -> None:
        """Answer the next `times` requests whose path contains `on` with `status` and
        Retry-After: 429 (rate limit), 423 (Neon's "conflicting operations" lock), 5xx."""
        self._throttles += [(on, retry_after, status)] * times

    def fail_next_operation(self, action: str = "start_compute",
                            error: str = "compute failed to start: out of capacity") -> None:
        """The next restore's operation `action` fails instead of finishing."""
        self._failing_action = (action, error)

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
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="neon-standin")
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
                status, headers = exc.status, exc.headers
                body = {"code": exc.code, "message": exc.message}
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
                message = {
                    423: "project already has running conflicting operations, scheduling of "
                         "new ones is prohibited",
                    429: "rate limit exceeded",
                }.get(status, "internal server error")
                raise ApiError(status, message, "", {"Retry-After": f"{retry_after:g}"})
        for route_method, pattern, handler in self._ROUTES:
            match = re.fullmatch(pattern, path)
            if match:
                if route_method != method:
                    raise ApiError(405, f"method {method} not allowed")
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                return getattr(self, f"_{handler}")(**match.groupdict(), query=query, raw=raw)
        raise ApiError(404, "not found")

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
            if self._failing_action and self._failing_action[0] == operation.action:
                operation.ahead = ["running", "failed"]
                operation.failure = self._failing_action[1]
                self._failing_action = None
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
        earliest = max(now - timedelta(seconds=project.history_retention_seconds),
                       source.created_at)
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
        branch = proj.branches.get(found.branch_id)
        ops = [o for o in self.operations.values() if o.branch_id == found.branch_id]
        if branch is not None and all(o.status == "finished" for o in ops):
            branch.current_state = "ready"
        return {"operation": found.as_json()}

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
