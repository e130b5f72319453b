"""HTTP delivery of one event to Plausible's ``POST /api/event``.

This is the only module that touches the network. Each delivery worker thread keeps
one keep-alive :class:`http.client.HTTPConnection` to the endpoint, so the pool is
exactly as large as the worker pool. TLS is verified against requests' CA bundle
(certifi) or a bundle you give; verification cannot be turned off.

Why not ``requests.Session.post``: measured on loopback against nginx it costs
about 6x the CPU of the request itself (cookies, hooks, proxy and netrc look-ups,
a ``PreparedRequest`` per call); even urllib3's ``urlopen`` alone costs 2x raw
``http.client``. Plausible's endpoint is fixed and needs none of that, and with
analytics the POST *is* the cost of the library (see ``bench/delivery.py``).

Outcomes are translated here, at one boundary: a 2xx is final (with or without
``x-plausible-dropped``), another 4xx means the event is invalid, everything else
raises :class:`~plausible_wsgi.resilience.AttemptError` for the retry policy to judge.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import http.client
import importlib
import socket
import ssl
import threading
import weakref
from typing import Any, Optional, Union
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from .resilience import AttemptError, parse_retry_after

__all__ = ["HttpTransport", "Outcome", "Response"]

# A reused keep-alive connection may have been closed by the server while idle; the
# request then fails before the server read it, and one immediate resend on a fresh
# connection is safe. On a fresh connection the same errors after the request went out
# are a "cut": the retry policy decides (RetryConfig.retry_connection_cuts).
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Outcome(enum.Enum):
    """How a delivered event ended."""

    #: 202 (any 2xx): counted by Plausible.
    SENT = "sent"
    #: 202 with ``x-plausible-dropped``: accepted but not counted (bot, unknown site, ...).
    SERVER_DROPPED = "server_dropped"
    #: 4xx other than 408/429: the event is invalid; retrying cannot help.
    REJECTED = "rejected"


class Response:
    """What the server answered, for logs and the ``send`` command."""

    __slots__ = ("body", "dropped", "outcome", "status")

    def __init__(self, outcome: Outcome, status: int, body: bytes, dropped: Optional[str]) -> None:
        self.outcome = outcome
        self.status = status
        self.body = body
        self.dropped = dropped


def classify(status: int, headers: Any, body: bytes, max_retry_after: float) -> Response:
    """Map an HTTP answer to a :class:`Response` or raise :class:`AttemptError`."""
    if 200 <= status < 300:
        dropped = headers.get("x-plausible-dropped")
        return Response(Outcome.SERVER_DROPPED if dropped else Outcome.SENT, status, body, dropped)
    if 400 <= status < 500 and status not in (408, 429):
        return Response(Outcome.REJECTED, status, body, None)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is not None:
        retry_after = min(retry_after, max_retry_after)
    raise AttemptError("status", f"HTTP {status}", status=status, retry_after=retry_after)


def _default_ca_bundle() -> str:
    """requests' CA bundle (certifi's), looked up on the first TLS connection only.

    Importing requests imports urllib3, which keeps direct references to ``ssl``
    classes: imported before gevent monkey-patches (a gunicorn.conf.py importing
    ``plausible_wsgi.gunicorn``), gevent warns in every worker.
    """
    path: str = importlib.import_module("requests.utils").DEFAULT_CA_BUNDLE_PATH
    return path


def _proxy_for(scheme: str, host: str) -> Optional[SplitResult]:
    """The proxy the environment names for ``scheme`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``, as requests reads them), or ``None``. Loopback is never proxied."""
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    proxy = getproxies().get(scheme)
    if not proxy or proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urlsplit(proxy)
    return parts if parts.scheme == "http" and parts.hostname else None


class HttpTransport:
    """POSTs event bodies to ``{endpoint}/api/event`` over keep-alive connections.

    An HTTP proxy named by the environment (``HTTPS_PROXY``/``HTTP_PROXY``, minus
    ``NO_PROXY``) is used as requests would: a ``CONNECT`` tunnel for https endpoints.

    :param endpoint: base URL of Plausible Cloud or a self-hosted instance.
    :param timeout: seconds to connect, and seconds to wait for the answer.
    :param ca_bundle: path of a CA bundle for self-hosted instances with a private CA.
    :param max_retry_after: clamp, in seconds, on a server's ``Retry-After``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        ca_bundle: Optional[str] = None,
        max_retry_after: float = 30.0,
    ) -> None:
        self.url = endpoint.rstrip("/") + "/api/event"
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        #: The request target: the path, or the whole URL through a plain-HTTP proxy.
        self._target = parts.path
        self._proxy = _proxy_for(parts.scheme, self._host)
        self._proxy_headers: dict[str, str] = {}
        if self._proxy is not None:
            if self._proxy.username is not None:
                credentials = (
                    f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
                )
                token = base64.b64encode(credentials.encode("latin-1")).decode("ascii")
                self._proxy_headers["Proxy-Authorization"] = f"Basic {token}"
            if not self._https:
                self._target = self.url
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._ssl_context: Optional[ssl.SSLContext] = None
        self._max_retry_after = max_retry_after
        self.reset()

    def reset(self) -> None:
        """Forget every connection without touching it (after ``fork()``, the sockets
        are shared with the parent)."""
        self._local = threading.local()
        self._connections: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()

    def _connect(self) -> http.client.HTTPConnection:
        conn: Union[http.client.HTTPConnection, http.client.HTTPSConnection]
        host, port = self._host, self._port
        proxy = self._proxy
        if proxy is not None:
            host, port = proxy.hostname or "", proxy.port or 80
        if self._https:
            if self._ssl_context is None:
                cafile = self._ca_bundle or _default_ca_bundle()
                self._ssl_context = ssl.create_default_context(cafile=cafile)
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._timeout, context=self._ssl_context
            )
            if proxy is not None:
                # CONNECT through the proxy; TLS (and its verification) is end to end.
                conn.set_tunnel(self._host, self._port or 443, headers=self._proxy_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeout)
        conn.connect()
        # Headers and body leave in one write (http.client joins them for bytes
        # bodies), but a server's ACK must not wait on Nagle either.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def send(self, body: bytes, user_agent: Optional[str], client_ip: Optional[str]) -> Response:
        """POST one event body on this thread's connection.

        :raises AttemptError: connection problems, timeouts and non-final statuses.
        """
        # The visitor's User-Agent, never ours: Plausible classifies devices and bots by
        # it. http.client adds no User-Agent of its own.
        headers = {"Content-Type": "application/json", "User-Agent": user_agent or ""}
        if self._proxy is not None and not self._https:
            headers.update(self._proxy_headers)
        if client_ip:
            headers["X-Forwarded-For"] = client_ip
        conn: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        reused = conn is not None
        while True:
            phase = "connect"
            try:
                if conn is None:
                    conn = self._connect()
                phase = "send"
                conn.request("POST", self._target, body, headers)
                phase = "answer"
                resp = conn.getresponse()
            except (ValueError, UnicodeError) as exc:
                # A header http.client refuses: the event can never be sent. Validation
                # in track() prevents this; a hand-built Event could still carry one.
                if conn is not None:
                    self._drop(conn)
                raise AttemptError("invalid", f"unsendable event: {type(exc).__name__}") from None
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    self._drop(conn)
                if reused and phase != "connect" and isinstance(exc, _STALE_CONNECTION):
                    conn, reused = None, False
                    continue
                if phase == "answer":
                    # The request went out whole and no answer came back: the server
                    # may have counted it. The retry policy decides (see RetryConfig).
                    if isinstance(exc, socket.timeout):
                        raise AttemptError(
                            "read_timeout", f"no answer within {self._timeout}s"
                        ) from None
                    raise AttemptError(
                        "cut", f"connection cut before the answer: {type(exc).__name__}"
                    ) from None
                raise AttemptError("connect", f"cannot connect: {type(exc).__name__}") from None
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException):
                # The status line is the server's answer; only the body was cut short.
                self._drop(conn)
                data = b""
            else:
                if resp.will_close:
                    self._drop(conn)
            return classify(resp.status, resp.headers, data, self._max_retry_after)

    def abort(self) -> None:
        """Cut every open connection, so requests blocked on a silent server end now."""
        for conn in list(self._connections):
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.close()
