"""A TCP relay on 127.0.0.1 that cuts HTTP responses short, as a dropped link does.

Put it between a client and an S3-protocol server (its ``url`` as the endpoint)
and the client sees exactly what it sees when a network breaks mid-body: no
mocks, real sockets, real botocore.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")


def request_line(data: bytes) -> str | None:
    """A request's first line (without the HTTP version) and its Range header, when `data`
    starts a request; None for the rest of a body."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    if not head or head[0].split(" ")[0] not in _METHODS:
        return None
    ranges = [line for line in head if line.lower().startswith("range:")]
    return " ".join([head[0].rsplit(" ", 1)[0], *ranges])


class CuttingRelay:
    """Forwards TCP connections to ``upstream`` and cuts the first ``cuts`` responses.

    A cut response gets its first ``cut_at`` bytes (headers included), or, with
    ``cut_at=None``, exactly its headers; then the connection closes, as when a
    link drops. Later responses pass untouched. ``requests`` keeps each
    request's first line (without the HTTP version) and Range header.

    Without ``cut_when``, the first response of each of the first ``cuts``
    connections is cut. With it, only responses to requests whose recorded line
    satisfies ``cut_when`` count (say, the GETs of one object), whichever
    connection they come on: the listings and HEADs around them pass. ``cuts``
    can be changed (``arm``) while the relay runs.
    """

    def __init__(self, upstream: str, cut_at: int | None, cuts: int,
                 cut_when: Callable[[str], bool] | None = None):
        address = urlsplit(upstream)
        self.upstream = (address.hostname or "127.0.0.1", address.port or 80)
        self.cut_at = cut_at
        self.cuts_left = cuts
        self.cut_when = cut_when
        self.requests: list[str] = []
        self.cut_requests: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cuts: int) -> None:
        """Cut the next ``cuts`` eligible responses."""
        with self._lock:
            self.cuts_left = cuts

    def stop_listening(self) -> None:
        """From now on, connections are refused: the server is gone."""
        # close() alone leaves the socket listening while accept() blocks on it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def close(self) -> None:
        self.stop_listening()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _take_cut(self, request: str | None) -> bool:
        with self._lock:
            cut = self.cuts_left > 0
            self.cuts_left -= cut
            if cut and request is not None:
                self.cut_requests.append(request)
            return cut

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            # The cut waiting for this connection's next response: set by the
            # request side (before the request goes on), read by the response side.
            # HTTP/1.1 clients do not pipeline, so what the server sends after a
            # request is forwarded belongs to that request's response.
            pending = {"cut": False}
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server, pending),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client, pending),
                             daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket,
                  pending: dict[str, bool]) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                request = request_line(data)
                if request is not None:
                    self.requests.append(request)
                    if self.cut_when is not None and self.cut_when(request):
                        pending["cut"] = self._take_cut(request)
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _responses(self, server: socket.socket, client: socket.socket,
                   pending: dict[str, bool]) -> None:
        if self.cut_when is None:
            pending["cut"] = self._take_cut(None)
        received = b""
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if pending["cut"]:
                    received += data
                    limit = self.cut_at
                    if limit is None and b"\r\n\r\n" in received:
                        limit = received.index(b"\r\n\r\n") + 4
                    if limit is not None and len(received) >= limit:
                        client.sendall(received[len(received) - len(data):limit])
                        break
                client.sendall(data)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
