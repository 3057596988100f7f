"""The read-only web face of the journal: a page, and the JSON it is drawn from.

- `/`, `/runs/<id>`: the page (one document; its script draws the list or a run);
- `GET /api/runs`: the runs in progress and the recent ones, newest first;
- `GET /api/runs/<id>`: one run, as `drdeck drills show --format json` has it;
- `GET /api/runs/<id>/events`: server-sent events, each the object `drdeck run --json`
  prints for it, from the run's first (or after the `Last-Event-ID` a reconnecting browser
  sends), then each as it comes; an `end` event closes the stream once the run has ended.

Nothing here writes: each request opens the journal for what it reads, and the feeds
(tui.serve.feed) read each followed run's events once for all its viewers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tui.serve.auth import TokenGate
from tui.serve.feed import Ended, Feeds, Notice

RECENT = 50  # runs the list shows
PING_S = 15  # a comment line on a quiet stream, so proxies keep it open

# The page's own files and nothing else: output lines of a run are text, never markup.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
PAGE_FILES = {"app.js": "text/javascript", "app.css": "text/css"}


def build_app(open_journal: Callable[[], Any], token: str, *, secure_cookie: bool = False,
              poll_s: float | None = None) -> Starlette:
    feeds = Feeds(open_journal, **({"poll_s": poll_s} if poll_s else {}))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        feeds.close()

    def read(what: Callable[[Any], Any]) -> Any:
        journal = open_journal()
        try:
            return what(journal)
        finally:
            journal.close()

    async def page(request: Request) -> Response:
        return _page_file("index.html", "text/html; charset=utf-8")

    async def page_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in PAGE_FILES:
            return _error(404, f"no file {name!r}")
        return _page_file(name, f"{PAGE_FILES[name]}; charset=utf-8")

    async def runs(request: Request) -> Response:
        from tui.journal.report import run_summary

        rows = await _journal(read, lambda j: j.runs(limit=RECENT))
        if isinstance(rows, Response):
            return rows
        return _json([run_summary(row) | {"forecast": _forecast_of(row),
                                          "unheard": _unheard(row)} for row in rows])

    async def one_run(request: Request) -> Response:
        from tui.journal.report import run_report

        detail = await _journal(read, lambda j: j.run(request.path_params["run_id"]))
        if isinstance(detail, Response):
            return detail
        report = run_report(detail)
        report["run"]["forecast"] = _forecast_of(detail.run)
        report["run"]["unheard"] = _unheard(detail.run)
        return _json(report)

    async def events(request: Request) -> Response:
        found = await _journal(read, lambda j: j.run(request.path_params["run_id"]).run.id)
        if isinstance(found, Response):
            return found
        after = _last_event_id(request.headers.get("last-event-id"))
        return EventSourceResponse(_stream(feeds.follow(found, after)), ping=PING_S,
                                   headers=SECURITY_HEADERS)

    app = Starlette(routes=[
        Route("/", page),
        Route("/runs/{run_id}", page),
        Route("/page/{name}", page_file),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id}", one_run),
        Route("/api/runs/{run_id}/events", events),
    ], middleware=[Middleware(TokenGate, token=token, secure_cookie=secure_cookie)],
        lifespan=lifespan)
    return app


async def _stream(items: AsyncIterator[tuple[int, str] | Notice | Ended]
                  ) -> AsyncIterator[dict[str, Any]]:
    async for item in items:
        if isinstance(item, Ended):
            yield {"event": "end", "data": json.dumps({"status": item.status,
                                                       "error": item.error})}
            return
        if isinstance(item, Notice):
            yield {"event": "unheard", "data": json.dumps({"unheard": item.unheard})}
            continue
        seq, body = item
        yield {"id": str(seq), "data": body}


async def _journal(read: Callable[..., Any], what: Callable[[Any], Any]) -> Any:
    """What `what` reads from the journal, or the answer that says why it could not."""
    from tui.errors import DrdeckError, InvalidInput

    try:
        return await run_in_threadpool(read, what)
    except InvalidInput as exc:  # RunNotFound
        return _error(404, str(exc))
    except DrdeckError as exc:
        return _error(503, str(exc))


def _unheard(run: Any) -> str | None:
    """tui.journal.follow.unheard of a run row; None when it is heard from, or ended."""
    from tui.journal.follow import unheard

    return unheard(run.id, run.status, run.heartbeat_at, run.host, run.pid,
                   datetime.now(UTC)) or None


def _forecast_of(run: Any) -> dict[str, Any] | None:
    return json.loads(run.forecast_json) if run.forecast_json else None


def _last_event_id(header: str | None) -> int:
    try:
        return int(header) if header else -1
    except ValueError:
        return -1


def _json(value: Any) -> Response:
    return JSONResponse(value, headers=SECURITY_HEADERS)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def _page_file(name: str, media_type: str) -> Response:
    body = resources.files("tui.serve").joinpath("page", name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)
