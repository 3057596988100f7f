"""The token every request of `drdeck serve` needs.

A script sends it as `Authorization: Bearer TOKEN`. A browser cannot put a
header on a page it is sent to, so the address drdeck prints carries it once,
as `?token=`: the answer sets it as a cookie the page's own requests then
carry (HttpOnly, SameSite=Strict: no script reads it, no other site sends it)
and sends the browser on to the same address without it, out of its history.
Anything else is refused with 401, before any route sees the request.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "drdeck_serve"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class TokenGate:
    """ASGI middleware: lets through HTTP requests that carry the token, refuses the rest."""

    def __init__(self, app: Any, token: str, secure_cookie: bool = False):
        self.app = app
        self._token = token.encode()
        self._secure = secure_cookie

    def _valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", [])}
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer " and self._valid(bearer[7:].strip()):
            await self.app(scope, receive, send)
            return
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no token
            cookie = SimpleCookie()
        if COOKIE in cookie and self._valid(cookie[COOKIE].value):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = next((value for name, value in query if name == "token"), None)
        if scope["method"] == "GET" and self._valid(given):
            await self._set_cookie_and_return(scope, query, send)
            return
        await _refuse(send)

    async def _set_cookie_and_return(self, scope: dict[str, Any], query: list[tuple[str, str]],
                                     send: Any) -> None:
        rest = urlencode([(name, value) for name, value in query if name != "token"])
        location = scope.get("path", "/") + (f"?{rest}" if rest else "")
        cookie = (f"{COOKIE}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict"
                  + ("; Secure" if self._secure else ""))
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode()),
            (b"cache-control", b"no-store"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Any) -> None:
    body = (b'{"error": "this needs the token drdeck serve printed at start (or '
            b'DRDECK_SERVE_TOKEN): Authorization: Bearer TOKEN"}')
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="drdeck"'),
        (b"cache-control", b"no-store"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
