"""The receiver's connections: keep-alive, a bound on their number, a body reader.

Werkzeug's development server closes every connection after one request and never
bounds them; :class:`RequestHandler` keeps HTTP/1.1 connections open like
Plausible's server does, and :class:`Connections` tracks them so an outage can cut
them all and a flood cannot hold a thread each forever.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import typing as t

from werkzeug.serving import WSGIRequestHandler

__all__ = ["MAX_HEADER_BYTES", "BodyReader", "Connections", "RequestHandler"]

_logger = logging.getLogger("plausible_wsgi.receiver.server")

_IDLE, _BUSY, _CUT = 0, 1, 2
#: Request headers larger than this in all are answered ``431``.
MAX_HEADER_BYTES = 64 * 1024


class Connections:
    """The sockets of open client connections: cut on an outage, bounded in number.

    Each is marked busy while it runs a request; past ``limit`` connections the
    oldest one that is not busy is cut (slowloris clients and idle keep-alives go
    first), or the newcomer when all are busy.
    """

    def __init__(self, limit: int) -> None:
        self._changed = threading.Condition()
        # Insertion order is age; the value is _IDLE, _BUSY or _CUT.
        self._open: dict[socket.socket, int] = {}
        self._closed = False
        self._limit = limit

    def add(self, sock: socket.socket) -> None:
        with self._changed:
            self._open[sock] = _IDLE
            victim: socket.socket | None = sock if self._closed else None
            live = sum(1 for state in self._open.values() if state != _CUT)
            if victim is None and live > self._limit:
                victim = next((s for s, state in self._open.items() if state == _IDLE), sock)
            if victim is not None:
                self._open[victim] = _CUT
        if victim is not None:
            # A cut before the listener stopped, or the oldest connection not running
            # a request (a slow or idle client) making room for a new one.
            _shutdown(victim)

    def busy(self, sock: socket.socket, busy: bool) -> None:
        with self._changed:
            if self._open.get(sock, _CUT) != _CUT:
                self._open[sock] = _BUSY if busy else _IDLE

    def count(self) -> int:
        """Open connections not cut yet."""
        with self._changed:
            return sum(1 for state in self._open.values() if state != _CUT)

    def discard(self, sock: socket.socket) -> None:
        with self._changed:
            self._open.pop(sock, None)
            self._changed.notify_all()

    def close_all(self) -> None:
        with self._changed:
            self._closed = True
            sockets = list(self._open)
        for sock in sockets:
            _shutdown(sock)

    def wait_closed(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._open, timeout)


class BodyReader(io.BufferedIOBase):
    """The request body: at most ``Content-Length`` bytes of the connection stream."""

    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        super().__init__()
        self._stream = stream
        self._remaining = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        if size == 0:
            return b""
        data = self._stream.read(size)
        # A short read means the client went away; nothing more will come.
        self._remaining = self._remaining - len(data) if data else 0
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def finish(self) -> None:
        """Read and discard what the app left unread."""
        while self.read(65536):
            pass


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with keep-alive, connection tracking and quiet logs."""

    protocol_version = "HTTP/1.1"
    # Werkzeug writes headers and body separately; with Nagle's algorithm the body
    # would wait for the client's delayed ACK (40 ms per keep-alive request).
    disable_nagle_algorithm = True
    connections: t.ClassVar[Connections]
    _keep_alive = False

    def setup(self) -> None:
        super().setup()
        self.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.connections.discard(self.connection)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # Plausible's HTTP server refuses oversized headers with a 431 too; here it
        # also keeps a 5 MB header block from ever reaching the app and its records.
        size = sum(len(key) + len(value) for key, value in self.headers.items())
        if size > MAX_HEADER_BYTES:
            self.close_connection = True
            self.send_error(431, "Request Header Fields Too Large")
            return False
        return True

    def run_wsgi(self) -> None:
        self.connections.busy(self.connection, True)
        try:
            self._run_wsgi()
        finally:
            self.connections.busy(self.connection, False)

    def _run_wsgi(self) -> None:
        length = self._body_length()
        if length is None:
            # No safe way to find the next request: werkzeug closes the connection.
            super().run_wsgi()
            return
        self._keep_alive = self.request_version == "HTTP/1.1" and not self.close_connection
        stream = self.rfile
        body = BodyReader(stream, length)
        self.rfile = body
        try:
            super().run_wsgi()
            body.finish()
        except OSError:
            self.close_connection = True
        finally:
            self.rfile = stream
            self._keep_alive = False

    def send_header(self, keyword: str, value: str) -> None:
        # Werkzeug always sends "Connection: close", which also ends the connection.
        if self._keep_alive and keyword.lower() == "connection" and value.lower() == "close":
            return
        super().send_header(keyword, value)

    def log(self, type: str, message: str, *args: t.Any) -> None:
        level = logging.WARNING if type == "error" else logging.DEBUG
        _logger.log(level, "%s - " + message, self.address_string(), *args)

    def _body_length(self) -> int | None:
        """The body length, or ``None`` when it is chunked or unknowable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        declared = self.headers.get("Content-Length")
        if declared is None:
            return 0
        try:
            length = int(declared)
        except ValueError:
            return None
        return length if length >= 0 else None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
