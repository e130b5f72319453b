"""Serve a :class:`~plausible_wsgi.receiver.ReceiverApp` on loopback for tests.

:class:`PlausibleReceiver` runs werkzeug's threaded development server in a daemon
thread on a free port, with two changes a delivery test needs:

- HTTP/1.1 keep-alive works. Werkzeug (since 2.1) answers every request with
  ``Connection: close`` because its handler cannot find the end of an unread request
  body; here each body is read through a reader bounded by ``Content-Length`` and
  finished after the app returns, so the connection can be reused safely. Chunked
  request bodies still close the connection.
- :meth:`~PlausibleReceiver.down` makes the port refuse connections *and* cuts the
  open ones, so a pooled keep-alive connection cannot sneak a request past an outage;
  :meth:`~PlausibleReceiver.up` listens on the same port again.

Not for production: it is werkzeug's development server underneath.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import socket
import threading
import typing as t
from collections.abc import Iterable

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..errors import ConfigurationError
from .app import MAX_BYTES, Attempt, Fault, ReceivedEvent, ReceiverApp

__all__ = ["PlausibleReceiver"]

_logger = logging.getLogger(__name__)

#: Seconds :meth:`PlausibleReceiver.stop` waits for handler threads to finish.
_STOP_TIMEOUT = 5.0
_IDLE, _BUSY, _CUT = 0, 1, 2
#: Request headers larger than this in all are answered ``431``.
MAX_HEADER_BYTES = 64 * 1024
#: Default bound on open connections (and so on handler threads).
MAX_CONNECTIONS = 128
#: Default seconds a connection may stay silent (between requests, or mid-request)
#: before it is closed.
IDLE_TIMEOUT = 30.0


class PlausibleReceiver:
    """A Plausible Events API on ``http://127.0.0.1:<free port>``, for tests.

    - ``url`` is the base URL to configure a client with (``/api/event`` is appended by
      the client); ``events`` are the accepted events, ``dropped`` the ``202`` +
      ``x-plausible-dropped`` ones, ``rejected`` the ``400``/``413`` ones, ``all``
      everything in arrival order.
    - :meth:`wait_for` blocks until events arrived (background delivery), on a
      condition notified per request — no polling.
    - :meth:`enqueue_faults` scripts failures; :meth:`down`/:meth:`up` simulate an
      outage (connections refused) and the recovery, on the same port.

    :param host: the address to listen on.
    :param port: ``0`` picks a free port at :meth:`start`.
    :param domains: passed to :class:`ReceiverApp`: events for other domains are dropped.
    :param drop_private_ips: passed to :class:`ReceiverApp`.
    :param max_events: passed to :class:`ReceiverApp`: records kept in memory.
    :param max_bytes: passed to :class:`ReceiverApp`: bytes of records kept (estimated).
    :param max_connections: open connections at most. A new connection past it
        closes the oldest one that is not running a request (a slow or idle client),
        so slow clients cannot lock real ones out; when every connection is busy the
        new one is closed instead.
    :param idle_timeout: seconds a connection may stay silent before it is closed.

    Usage::

        with PlausibleReceiver(domains=["example.com"]) as receiver:
            collector = PlausibleCollector("example.com", endpoint=receiver.url)
            ...
            [event] = receiver.wait_for(1)
            assert event.pathname == "/signup"
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        domains: Iterable[str] | None = None,
        drop_private_ips: bool = False,
        max_events: int = 10_000,
        max_bytes: int = MAX_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections}")
        if not idle_timeout > 0:
            raise ConfigurationError(f"idle_timeout must be > 0 seconds, got {idle_timeout}")
        #: The WSGI app doing the work; its faults, delay and records are shared.
        self.app = ReceiverApp(
            domains=domains,
            drop_private_ips=drop_private_ips,
            max_events=max_events,
            max_bytes=max_bytes,
        )
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.host = host
        #: The port, known once started; kept across :meth:`down`/:meth:`up`.
        self.port = port
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: _Connections | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PlausibleReceiver:
        """Listen and serve in a daemon thread (no-op when already serving)."""
        with self._lock:
            if self._server is not None:
                return self
            bound = connections = _Connections(self.max_connections)

            class _BoundHandler(_RequestHandler):
                connections = bound
                timeout = self.idle_timeout

            listener = socket.socket(_family(self.host), socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # Binding here rather than in make_server: werkzeug calls sys.exit()
                # when the port is taken; we want the OSError.
                listener.bind((self.host, self.port))
                listener.listen(128)
                server = make_server(
                    self.host,
                    self.port,
                    self.app,
                    threaded=True,
                    request_handler=_BoundHandler,
                    fd=listener.fileno(),
                )
            finally:
                listener.close()
            self.port = server.port
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"plausible-receiver-{self.port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread, self._connections = server, thread, connections
            return self

    def stop(self) -> None:
        """Stop listening, cut open connections, end delays; wait for the threads."""
        with self._lock:
            server, thread, connections = self._server, self._thread, self._connections
            self._server = self._thread = self._connections = None
        if server is None or thread is None or connections is None:
            return
        server.shutdown()
        thread.join(_STOP_TIMEOUT)
        connections.close_all()
        self.app.interrupt_delays()
        if not connections.wait_closed(_STOP_TIMEOUT):
            _logger.warning("receiver handler threads still running after stop()")

    def down(self) -> None:
        """Simulate an outage: new connections are refused, open ones are cut.

        Requests in flight get no answer. :meth:`up` listens on the same port again.
        """
        self.stop()

    def up(self) -> None:
        """End an outage: listen again on the same port."""
        self.start()

    @property
    def running(self) -> bool:
        """Whether the receiver is listening."""
        with self._lock:
            return self._server is not None

    def __enter__(self) -> PlausibleReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what arrived ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123`` (no trailing slash)."""
        if self.port == 0:
            raise RuntimeError("the receiver has no port yet: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def events(self) -> list[ReceivedEvent]:
        """The accepted events: what Plausible would count."""
        return self.app.events

    @property
    def open_connections(self) -> int:
        """Client connections open now (at most ``max_connections``, once the cut
        ones have closed)."""
        with self._lock:
            connections = self._connections
        return 0 if connections is None else connections.count()

    @property
    def dropped(self) -> list[ReceivedEvent]:
        """Events answered ``202`` with ``x-plausible-dropped``."""
        return self.app.dropped

    @property
    def rejected(self) -> list[ReceivedEvent]:
        """Requests answered ``400`` or ``413``."""
        return self.app.rejected

    @property
    def all(self) -> list[ReceivedEvent]:
        """Every record, oldest first."""
        return self.app.records

    @property
    def attempts(self) -> list[Attempt]:
        """Every ``POST /api/event``, faulted ones included."""
        return self.app.attempts

    @property
    def request_count(self) -> int:
        """``POST /api/event`` requests received, faulted ones included."""
        return self.app.request_count

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedEvent]:
        """Wait until at least ``n`` events were accepted and return the accepted events.

        :raises TimeoutError: listing every record that did arrive.
        """
        return self.app.wait_for(n, timeout)

    def wait_for_attempts(self, n: int, timeout: float = 5.0) -> list[Attempt]:
        """Wait until at least ``n`` requests reached ``/api/event``, faulted or not."""
        return self.app.wait_for_attempts(n, timeout)

    def enqueue_faults(self, *faults: Fault) -> None:
        """Answer the next ``len(faults)`` event POSTs with these faults, in order."""
        self.app.enqueue_faults(*faults)

    def clear(self) -> None:
        """Forget every record and attempt."""
        self.app.clear()


class _Connections:
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


class _BodyReader(io.BufferedIOBase):
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


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with keep-alive, connection tracking and quiet logs."""

    protocol_version = "HTTP/1.1"
    # Werkzeug writes headers and body separately; with Nagle's algorithm the body
    # would wait for the client's delayed ACK (40 ms per keep-alive request).
    disable_nagle_algorithm = True
    connections: t.ClassVar[_Connections]
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
        body = _BodyReader(stream, length)
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


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET
