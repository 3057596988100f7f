"""Webhook notifications: a failed run, an RPO breach, an overdue drill.

    [notify]
    webhooks = [
      { url = "https://hooks.slack.com/services/...", events = ["run_failed", "rpo_breach"] },
      { url = "https://alerts.internal/drdeck" },            # no events: all of them
    ]

Each notification is one JSON POST: a Slack-compatible `text` (Slack, Mattermost,
Rocket.Chat, Teams workflows and most chat webhooks show it as is) plus the same
facts as structured fields (`event`, `runbook`, `run_id`, `cluster`, ...) for
anything that routes alerts.

A webhook URL is a secret (whoever has it can post to the channel): drdeck shows
only its scheme and host. Delivery is best effort: each webhook gets `timeout`
seconds in all (connecting, sending, and reading the answer, however slowly it
trickles in), all webhooks at once, and a failure is reported on stderr but
never changes a run's result or a command's exit code.

Runs notify through `RunNotifier`, one more subscriber of the run's events:

    runner.subscribe(RunNotifier(runner))                      # headless: stderr
    runner.subscribe(RunNotifier(runner, report=app.notify))   # the app: a toast

`drdeck status --notify` posts `rpo_breach` and `drill_overdue` for what it finds.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

EVENTS = ("run_failed", "rpo_breach", "drill_overdue")
TIMEOUT_S = 5.0  # for each webhook, everything included
EXIT_GRACE_S = 1.0  # what a headless run waits past that before it exits anyway
FAILED_STATUSES = ("failed", "aborted")

Report = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- URLs are secrets ---------------------------------------------------------------------


def shown_url(url: str) -> str:
    """Scheme and host only: the path and query of a webhook URL are its credential."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<webhook>"
    if not parts.scheme or not host:
        return "<webhook>"
    return f"{parts.scheme}://{host}{port}/…"


def _scrub(text: str, url: str) -> str:
    """`text` without the URL or any long piece of its path or query."""
    from urllib.parse import urlsplit

    text = text.replace(url, shown_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    for piece in (parts.path, parts.query, parts.fragment, parts.netloc,
                  *parts.path.split("/"), *parts.query.split("&")):
        if len(piece) >= 4 and piece not in ("http", "https"):
            text = text.replace(piece, "…")
    return text


# --- the configured webhooks --------------------------------------------------------------


def webhook_url(webhook: Any) -> str | None:
    """The URL: `url`, or the variable named by `url_env` when the configuration has one."""
    name = getattr(webhook, "url_env", None)
    if name:
        return os.environ.get(name) or None
    return getattr(webhook, "url", None) or None


def webhooks_for(config: Any, event: str) -> list[Any]:
    """The configured webhooks that want `event` (one without events wants all)."""
    notify = getattr(config, "notify", None)
    hooks = getattr(notify, "webhooks", ()) or ()
    return [w for w in hooks if not w.events or event in w.events]


# --- delivery -----------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """Posting to one webhook failed; the message never holds the URL."""


def payload(event: str, text: str, **fields: Any) -> dict[str, Any]:
    """The JSON body: Slack's `text`, then the structured facts."""
    return {
        "text": slack_escape(text),
        "event": event,
        "source": "drdeck",
        "host": socket.gethostname(),
        "at": datetime.now(UTC).isoformat(),
        **fields,
    }


def slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions: escape them, as its docs ask
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post(url: str, body: dict[str, Any], timeout: float = TIMEOUT_S) -> None:
    """POST `body` as JSON to `url`; DeliveryFailed (URL masked) unless it answers 2xx
    within `timeout` seconds in all."""
    delivery = Delivery(url, body, timeout)
    delivery.start()
    delivery.finish()


class Delivery:
    """One POST on a daemon thread of its own, given up at its deadline.

    urllib's timeout bounds each socket operation, so a server that answers a byte
    every few seconds would hold a POST (and the process waiting for it) for ever. At
    the deadline the connection is shut down, which ends the POST, and the caller is
    told at once either way; a thread stuck where no socket is (a name lookup) is left
    behind, and a daemon never keeps drdeck from exiting.
    """

    def __init__(self, url: str, body: dict[str, Any], timeout: float = TIMEOUT_S):
        self.url, self.body, self.timeout = url, body, timeout
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._given_up = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drdeck-webhook", daemon=True)
        self._deadline = 0.0

    def start(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        self._thread.start()

    def finish(self) -> None:
        """Wait until the answer or the deadline; DeliveryFailed unless it was a 2xx."""
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        if self._thread.is_alive():
            self._give_up()
            raise DeliveryFailed(f"webhook {shown_url(self.url)} did not answer within "
                                 f"{self.timeout:g}s")
        if self._failure is not None:
            raise self._failure

    def _give_up(self) -> None:
        with self._lock:
            self._given_up = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def opened(self, sock: socket.socket) -> None:
        """A connection of this POST (to the server, or to a proxy)."""
        with self._lock:
            self._sockets.append(sock)
            if self._given_up:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        try:
            _post_once(self.url, self.body, self.timeout, self)
        except BaseException as exc:  # told to the caller by finish()
            self._failure = exc


def _opener(delivery: Delivery) -> Any:
    """urllib's usual opener (proxies from the environment included), its connections
    reported to `delivery`."""
    import http.client
    import urllib.request

    class Watched(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            delivery.opened(self.sock)

    class WatchedTLS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            delivery.opened(self.sock)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Watched, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(WatchedTLS, req, context=self._context)

    return urllib.request.build_opener(HTTP(), HTTPS())


def _post_once(url: str, body: dict[str, Any], timeout: float, delivery: Delivery) -> None:
    import urllib.error
    import urllib.request

    from tui import __version__

    shown = shown_url(url)
    data = json.dumps(body, default=str).encode()
    try:
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"drdeck/{__version__}"})
        if request.type not in ("http", "https"):
            raise DeliveryFailed(f"webhook {shown}: only http:// and https:// URLs can be used")
        with _opener(delivery).open(request, timeout=timeout) as response:
            response.read(65536)
    except DeliveryFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"webhook {shown} answered HTTP {exc.code} "
                             f"{_scrub(str(exc.reason), url)}") from None
    except urllib.error.URLError as exc:
        raise DeliveryFailed(f"webhook {shown} unreachable: "
                             f"{_scrub(str(exc.reason), url)}") from None
    except TimeoutError:
        raise DeliveryFailed(f"webhook {shown} did not answer within {timeout:g}s") from None
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(f"webhook {shown}: {_scrub(str(exc), url)}") from None


def send(config: Any, event: str, text: str, *, report: Report | None = None,
         timeout: float = TIMEOUT_S, **fields: Any) -> int:
    """Post one notification to every webhook that wants `event`; how many received it.

    Failures go to `report` (stderr by default), one line each, and are never raised.
    """
    report = report or _stderr
    body = payload(event, text, **fields)
    delivered = 0
    deliveries = []
    for webhook in webhooks_for(config, event):
        url = webhook_url(webhook)
        if url is None:
            report(f"drdeck: notification {event} not sent: the webhook's URL is not set")
            continue
        deliveries.append(Delivery(url, body, timeout))
        deliveries[-1].start()  # all at once: one slow webhook does not delay the others
    for delivery in deliveries:
        url = delivery.url
        try:
            delivery.finish()
        except DeliveryFailed as exc:
            report(f"drdeck: notification {event} not delivered: {exc}")
        except Exception as exc:  # never let a notification break what it reports on
            report(f"drdeck: notification {event} not delivered: webhook {shown_url(url)}: "
                   f"{type(exc).__name__}: {_scrub(str(exc), url)}")
        else:
            delivered += 1
    return delivered


def send_all(config: Any, notifications: Iterable[tuple[str, str, dict[str, Any]]], *,
             report: Report | None = None, timeout: float = TIMEOUT_S) -> int:
    """Several (event, text, fields) notifications; how many deliveries succeeded."""
    return sum(send(config, event, text, report=report, timeout=timeout, **fields)
               for event, text, fields in notifications)


# --- runs ---------------------------------------------------------------------------------


_at_exit: list[tuple[threading.Thread, float]] = []


def _wait_at_exit(thread: threading.Thread, bound: float) -> None:
    """Give a delivery thread (a daemon) up to `bound` seconds when the process exits, so
    quitting the app just after a failure still notifies, and a hung webhook cannot keep
    it alive."""
    if not _at_exit:
        atexit.register(_finish_deliveries)
    _at_exit.append((thread, time.monotonic() + bound))


def _finish_deliveries() -> None:
    for thread, deadline in _at_exit:
        thread.join(max(0.0, deadline - time.monotonic()))


class RunNotifier:
    """A subscriber of a run's events that posts `run_failed` when the run fails or aborts.

    Delivery happens on a thread of its own, so neither the app's screen nor the
    run waits for a slow webhook. The thread is a daemon, waited for when the process
    exits (and by wait()) a little longer than a webhook's deadline, no more.
    """

    def __init__(self, runner: Any, *, report: Report | None = None,
                 timeout: float = TIMEOUT_S):
        self.runner = runner
        self.config = getattr(runner, "config", None)
        self.report = report or _stderr
        self.timeout = timeout
        self.started: Any = None
        self.failed_step: tuple[str, str | None] | None = None
        self.thread: threading.Thread | None = None
        self.delivered = 0

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "run_started":
            self.started = event
        elif kind == "step_finished" and event.status == "failed" and not event.replayed:
            self.failed_step = (event.step, event.error)
        elif kind == "run_finished" and event.status in FAILED_STATUSES:
            if getattr(self.runner, "dry_run", False):
                return
            if not webhooks_for(self.config, "run_failed"):
                return
            text, fields = self.describe(event)
            self.thread = threading.Thread(target=self._deliver, args=(text, fields),
                                           name="drdeck-notify", daemon=True)
            self.thread.start()
            _wait_at_exit(self.thread, self.timeout + EXIT_GRACE_S)

    def describe(self, finished: Any) -> tuple[str, dict[str, Any]]:
        """The message and its fields for a failed or aborted run."""
        from tui.durations import format_duration

        runner = self.runner
        runbook = runner.runbook
        started = self.started
        params = dict(getattr(started, "params", None) or {})
        cluster = params.get("cluster") or None
        mode = getattr(started, "mode", None) or getattr(runner, "mode", "drill")
        step, step_error = self.failed_step or (None, None)
        error = finished.error or step_error
        where = f" on {cluster}" if cluster else ""
        target = finished.rto_target_s
        against = f" (target {format_duration(target)})" if target else ""
        rto = (f"RTO {format_duration(finished.rto_s)}{against}" if finished.rto_s is not None
               else f"Not restored{against}")
        text = (f"drdeck: {runbook.name}{where} {finished.status.upper()} "
                f"({mode}, run {runner.run_id}, on {socket.gethostname()}) after "
                f"{format_duration(finished.duration_s)}"
                + (f" at step {step}" if step else "")
                + (f": {error}" if error else "") + f". {rto}.")
        fields = {
            "run_id": runner.run_id, "runbook": runbook.name, "title": runbook.title,
            "scenario": runbook.scenario, "mode": mode, "cluster": cluster,
            "status": finished.status, "error": error, "failed_step": step,
            "duration_s": finished.duration_s, "rto_s": finished.rto_s,
            "rto_target_s": target,
        }
        return text, fields

    def _deliver(self, text: str, fields: dict[str, Any]) -> None:
        self.delivered = send(self.config, "run_failed", text, report=self._report,
                              timeout=self.timeout, **fields)

    def _report(self, message: str) -> None:
        try:
            self.report(message)
        except Exception:  # the app may be gone by the time a slow webhook gives up
            _stderr(message)

    def wait(self, timeout: float | None = None) -> None:
        """Until the notification is delivered or given up (tests, a clean exit); by
        default a little longer than one webhook's deadline (they are posted at once)."""
        if self.thread is not None:
            self.thread.join(self.timeout + EXIT_GRACE_S if timeout is None else timeout)
