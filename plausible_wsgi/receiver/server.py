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

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable

from werkzeug.serving import BaseWSGIServer, make_server

from ..errors import ConfigurationError
from .app import MAX_BYTES, Attempt, Fault, ReceivedEvent, ReceiverApp
from .connections import Connections, RequestHandler

__all__ = ["PlausibleReceiver"]

_logger = logging.getLogger(__name__)

#: Seconds :meth:`PlausibleReceiver.stop` waits for handler threads to finish.
_STOP_TIMEOUT = 5.0
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
        self._connections: Connections | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PlausibleReceiver:
        """Listen and serve in a daemon thread (no-op when already serving)."""
        with self._lock:
            if self._server is not None:
                return self
            bound = connections = Connections(self.max_connections)

            class _BoundHandler(RequestHandler):
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


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET
