"""`drdeck serve [--listen HOST:PORT]`: the journal as a read-only web page and JSON API, for
everyone on the incident bridge who is not at the keyboard (tui.serve.web)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from argparse import Namespace

from tui.errors import InvalidInput

DEFAULT_LISTEN = "127.0.0.1:8765"
TOKEN_ENV = "DRDECK_SERVE_TOKEN"
MIN_TOKEN = 16  # characters: a short token is guessed over a network


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (every address), with PORT 0 for any free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInput(f"--listen {text!r}: write it as HOST:PORT, e.g. {DEFAULT_LISTEN} "
                           "(0.0.0.0:8765 for every address, port 0 for any free one)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port_text)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here, so a port in use or a bad address is our clear
    message and the port printed is the real one (port 0)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name: resolved by bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _token() -> tuple[str, bool]:
    """The token, and whether it came from the environment (then it is not printed)."""
    from tui.serve.auth import new_token

    given = os.environ.get(TOKEN_ENV, "").strip()
    if not given:
        return new_token(), False
    if len(given) < MIN_TOKEN:
        raise InvalidInput(f"{TOKEN_ENV} is {len(given)} characters: give at least "
                           f"{MIN_TOKEN} (or unset it, and drdeck makes one)")
    return given, True


def serve_command(args: Namespace) -> int:
    import uvicorn

    from tui.config import load_config
    from tui.journal.store import open_journal
    from tui.serve.web import build_app

    config = load_config(args.config)
    host, port = parse_listen(args.listen)
    token, from_env = _token()
    journal = open_journal(config)  # a journal that cannot be opened stops us here, clearly
    where = journal.where
    journal.close()
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    base = f"http://{shown_host}:{bound_port}/"
    print(f"drdeck serve: the journal at {where}, read only", flush=True)
    if from_env:
        print(f"  open {base}?token=… with the token in ${TOKEN_ENV}", flush=True)
    else:
        print(f"  open {base}?token={token}", flush=True)
        print(f"  or send  Authorization: Bearer {token}", flush=True)
    if bound_host not in ("127.0.0.1", "::1") and not bound_host.startswith("127."):
        print("  plain HTTP on a network: the token travels in the clear; put it behind "
              "TLS (a reverse proxy) or an SSH tunnel beyond a trusted network",
              file=sys.stderr, flush=True)
    print("  ctrl+c stops it", flush=True)
    app = build_app(lambda: open_journal(config), token)
    # no access log: a browser's first request carries the token in its address
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=2, lifespan="on"))
    server.run(sockets=[sock])
    return 0
