"""Delivery of one event to Plausible's ``POST /api/event``: connections, TLS, proxy,
deadline, abort.

This is the only module that touches the network; the bytes on the wire are
:mod:`plausible_wsgi.delivery.http11`'s (why a purpose-built HTTP/1.1 path, with figures, is
written there). Each delivery worker thread keeps one keep-alive connection, so the
pool is exactly as large as the worker pool.

- **One deadline per attempt**: connect, proxy tunnel, TLS handshake, write and answer
  together finish within ``timeout`` seconds, however slowly a server drips bytes.
- **Cuttable at once**: a socket is registered before ``connect()``, and connecting
  polls in short slices, so :meth:`HttpTransport.abort` from another thread ends a
  worker stuck on a SYN-dropping endpoint or a TLS handshake that never answers.
  (Name resolution is the exception: ``getaddrinfo`` cannot be interrupted; the
  resolver's own timeouts bound it.)
- **No silent resend**: only when a reused connection is seen dead *before* writing,
  or the very first write fails with nothing accepted, is the request sent again on a
  fresh connection; anything later is an :class:`~plausible_wsgi.delivery.failure.AttemptError`
  for the retry policy (``cut`` = the server may have recorded it).
- TLS is verified (certifi's bundle, or ``ca_bundle``); verification cannot be turned
  off. An HTTP proxy named by the environment is used as requests would.

Outcomes are translated here, at one boundary: a 2xx is final (with or without
``x-plausible-dropped``), another 4xx means the event is invalid, everything else
raises :class:`~plausible_wsgi.delivery.failure.AttemptError` for the retry policy to judge.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import errno
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import weakref
from typing import Any, Optional
from urllib.parse import SplitResult, unquote, urlsplit

from .failure import AttemptError, FailureKind
from .http11 import AnswerReader, BrokenAnswer, RequestTemplate, UnsafeHeader, connect_request
from .retry_after import parse_retry_after

__all__ = ["HttpTransport", "Outcome", "Response", "classify"]

#: A socket timeout within this many seconds of the attempt's remaining time is kept:
#: re-arming it costs a system call, and most attempts take microseconds.
_SLACK = 0.05
#: Connecting waits in slices this long, checking for abort() between them.
_CONNECT_SLICE = 0.25
#: A connection idle longer than this is checked for a close by the server before it is
#: written to (a ``poll``, 5 % of an event's CPU). Servers close idle connections after
#: seconds (nginx 75 s, Cowboy and Bandit 60 s, proxies >= 100 ms); a server that closes
#: sooner without ``Connection: close`` makes the next event a counted ``cut``, never a
#: silent resend.
_IDLE_CHECK_AFTER = 0.05
#: Where SO_RCVTIMEO/SO_SNDTIMEO take a ``struct timeval`` (not Windows).
_KERNEL_TIMEOUTS = sys.platform != "win32"


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
    """Map an HTTP answer to a :class:`Response` or raise :class:`AttemptError`.

    ``headers`` needs ``get(lower_case_name)``.
    """
    if 200 <= status < 300:
        dropped = headers.get("x-plausible-dropped")
        return Response(Outcome.SERVER_DROPPED if dropped else Outcome.SENT, status, body, dropped)
    if 400 <= status < 500 and status not in (408, 429):
        return Response(Outcome.REJECTED, status, body, None)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is not None:
        retry_after = min(retry_after, max_retry_after)
    raise AttemptError(FailureKind.STATUS, f"HTTP {status}", status=status, retry_after=retry_after)


def _proxy_for(scheme: str, host: str) -> Optional[SplitResult]:
    """The proxy the environment names for ``scheme`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``, as requests reads them), or ``None``. Loopback is never proxied."""
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    # urllib.request pulls in http.client and email: only here, once per transport.
    from urllib.request import getproxies, proxy_bypass  # noqa: PLC0415

    proxy = getproxies().get(scheme)
    if not proxy or proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urlsplit(proxy)
    return parts if parts.scheme == "http" and parts.hostname else None


class _SendFailed(Exception):
    def __init__(self, sent: int, error: OSError) -> None:
        super().__init__(type(error).__name__)
        self.sent = sent
        self.error = error


class _NothingSent(Exception):
    """A reused connection failed before a byte of the request left (internal)."""


class _Connection:
    """One socket (plain, or TLS once the handshake started) with its answer buffer and
    the deadline of the attempt using it."""

    __slots__ = (
        "__weakref__",
        "deadline",
        "idle_since",
        "kernel_timeouts",
        "poller",
        "reader",
        "sock",
        "timeout_set",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        #: When the last answer was read (monotonic); a new connection is not idle.
        self.idle_since = time.monotonic()
        self.timeout_set = -1.0
        #: A blocking socket bounded by SO_RCVTIMEO/SO_SNDTIMEO instead of Python's
        #: timeout mode, which polls before every send and recv: two system calls of
        #: the five per event on plain HTTP. Not for TLS: with a blocking socket,
        #: CPython's SSL read retries a kernel timeout forever.
        self.kernel_timeouts = False
        self.reader = AnswerReader()
        self.poller: Optional[_Poller] = None

    def __del__(self) -> None:
        # A worker thread that ended drops its connection with its thread-local.
        self.sock.close()

    def arm(self) -> None:
        """Give the next socket call the attempt's remaining time at most."""
        remaining = _deadline_left(self.deadline)
        if abs(remaining - self.timeout_set) > _SLACK:
            if self.kernel_timeouts:
                seconds = int(remaining)
                timeval = struct.pack("@ll", seconds, max(1, int((remaining - seconds) * 1e6)))
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            else:
                self.sock.settimeout(remaining)
            self.timeout_set = remaining

    def recv_into(self, view: memoryview) -> int:
        self.arm()
        return self.sock.recv_into(view)

    def send_all(self, data: bytes) -> None:
        """Write all of ``data``; :class:`_SendFailed` tells how much was accepted."""
        sent = 0
        try:
            while sent < len(data):
                self.arm()
                sent += self.sock.send(data[sent:] if sent else data)
        except OSError as exc:
            raise _SendFailed(sent, exc) from None

    def closed_while_idle(self) -> bool:
        """Whether the server closed (or wrote to) this idle connection, or ``close()``
        closed it under this thread (its poller would then watch a stale fd number)."""
        if self.sock.fileno() < 0:
            return True
        if self.poller is None:
            self.poller = _Poller(self.sock)
        if not self.poller.readable():
            return False
        if isinstance(self.sock, ssl.SSLSocket):
            # TLS 1.3 session tickets arrive after the handshake: readable, yet usable.
            self.sock.settimeout(0.0)
            self.timeout_set = -1.0  # the next arm() sets the attempt's timeout again
            try:
                self.sock.recv(1)
            except ssl.SSLWantReadError:
                return False
            except OSError:
                return True
        return True


class _Poller:
    """Is a socket readable right now? (kept per connection: asked once per event)"""

    __slots__ = ("_poll", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll: Any = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)

    def readable(self) -> bool:
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([self._sock], [], [], 0)[0])  # pragma: no cover (Windows)


def _writable(sock: socket.socket, timeout: float) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([], [sock], [sock], timeout)[1])  # pragma: no cover


class HttpTransport:
    """POSTs event bodies to ``{endpoint}/api/event`` over keep-alive connections.

    An HTTP proxy named by the environment (``HTTPS_PROXY``/``HTTP_PROXY``, minus
    ``NO_PROXY``) is used as requests would: a ``CONNECT`` tunnel for https endpoints.

    :param endpoint: base URL of Plausible Cloud or a self-hosted instance.
    :param timeout: seconds for a whole attempt: connect, TLS, send and answer.
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
        self._port = parts.port or (443 if self._https else 80)
        target = parts.path
        self._proxy = _proxy_for(parts.scheme, self._host)
        proxy_headers: tuple[tuple[str, str], ...] = ()
        if self._proxy is not None and self._proxy.username is not None:
            credentials = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
            token = base64.b64encode(credentials.encode("latin-1")).decode("ascii")
            proxy_headers = (("Proxy-Authorization", f"Basic {token}"),)
        self._tunnel: Optional[bytes] = None
        if self._proxy is not None and self._https:
            # CONNECT through the proxy; TLS (and its verification) is end to end.
            authority = f"[{self._host}]" if ":" in self._host else self._host
            self._tunnel = connect_request(f"{authority}:{self._port}", proxy_headers)
            proxy_headers = ()
        elif self._proxy is not None:
            target = self.url  # a plain-HTTP proxy gets the absolute URL
        host_header = parts.netloc.rpartition("@")[2]
        self._template = RequestTemplate(target, host_header, proxy_headers)
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._ssl_context: Optional[ssl.SSLContext] = None
        self._max_retry_after = max_retry_after
        self.reset()

    def reset(self) -> None:
        """Forget every connection without shutting it down (after ``fork()``, the
        sockets are shared with the parent), and renew the lock."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._aborted = False

    # -- one event ---------------------------------------------------------------------

    def send(self, body: bytes, user_agent: Optional[str], client_ip: Optional[str]) -> Response:
        """POST one event body on this thread's connection, within ``timeout``.

        :raises AttemptError: connection problems, timeouts and non-final statuses.
        """
        try:
            request = self._template.render(body, user_agent, client_ip)
        except UnsafeHeader as exc:
            # Validation in track() prevents this; a hand-built Event could still.
            raise AttemptError(FailureKind.INVALID, f"unsendable event: {exc}") from None
        now = time.monotonic()
        deadline = now + self._timeout
        conn: Optional[_Connection] = getattr(self._local, "conn", None)
        if conn is not None:
            if now - conn.idle_since > _IDLE_CHECK_AFTER and conn.closed_while_idle():
                self._discard(conn)
            else:
                try:
                    return self._exchange(conn, request, deadline, fresh=False)
                except _NothingSent:
                    pass  # not one byte left: the same request on a fresh connection
        return self._exchange(self._connect(deadline), request, deadline, fresh=True)

    def _exchange(
        self, conn: _Connection, request: bytes, deadline: float, *, fresh: bool
    ) -> Response:
        conn.deadline = deadline
        try:
            conn.send_all(request)
        except _SendFailed as exc:
            self._discard(conn)
            if exc.sent == 0 and not fresh:
                raise _NothingSent from None
            raise AttemptError(
                FailureKind.CONNECT,
                f"connection broke before the request went out: {_reason(exc.error)}",
            ) from exc.error
        try:
            answer = conn.reader.read(conn.recv_into)
        except BrokenAnswer as exc:
            self._discard(conn)
            if exc.status is None:
                raise AttemptError(FailureKind.CUT, f"no readable answer: {exc}") from None
            # The status is the server's answer; only the body was cut or unreadable.
            return classify(exc.status, exc.headers, b"", self._max_retry_after)
        except (socket.timeout, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO
            self._discard(conn)
            raise AttemptError(
                FailureKind.READ_TIMEOUT, f"no answer within {self._timeout}s"
            ) from None
        except OSError as exc:
            self._discard(conn)
            raise AttemptError(
                FailureKind.CUT, f"connection cut before the answer: {_reason(exc)}"
            ) from exc
        if answer.keep_alive:
            conn.idle_since = time.monotonic()
        else:
            self._discard(conn)
        return classify(answer.status, answer.headers, answer.body, self._max_retry_after)

    # -- connections -------------------------------------------------------------------

    def _connect(self, deadline: float) -> _Connection:
        """A new connection to the endpoint (or through the proxy), ready to write."""
        proxy = self._proxy
        host, port = (proxy.hostname or "", proxy.port or 80) if proxy else (self._host, self._port)
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AttemptError(FailureKind.CONNECT, f"cannot resolve {host}: {exc}") from exc
        error: OSError = ConnectionError("no address")
        for family, kind, proto, _, address in addresses:
            conn = self._register(socket.socket(family, kind, proto))
            conn.deadline = deadline
            try:
                self._connect_socket(conn, address)
                break
            except OSError as exc:
                self._discard(conn)
                error = exc
        else:
            raise AttemptError(FailureKind.CONNECT, f"cannot connect: {_reason(error)}") from error
        try:
            if self._tunnel is not None:
                self._open_tunnel(conn, self._tunnel)
            if self._https:
                self._start_tls(conn)
        except BaseException:
            self._discard(conn)
            raise
        self._local.conn = conn
        return conn

    def _register(self, sock: socket.socket) -> _Connection:
        conn = _Connection(sock)
        with self._lock:
            self._open.add(conn)
            aborted = self._aborted
        if aborted:
            self._discard(conn)
            raise AttemptError(FailureKind.CONNECT, "the transport was aborted")
        return conn

    def _connect_socket(self, conn: _Connection, address: Any) -> None:
        """TCP connect within the deadline, in slices so abort() is seen promptly."""
        sock = conn.sock
        sock.setblocking(False)
        err = sock.connect_ex(address)
        while err:
            if err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                raise OSError(err, os.strerror(err))
            if self._aborted:
                raise ConnectionAbortedError("the transport was aborted")
            remaining = _deadline_left(conn.deadline)
            if _writable(sock, min(remaining, _CONNECT_SLICE)):
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
        if self._aborted:
            raise ConnectionAbortedError("the transport was aborted")
        conn.timeout_set = -1.0
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Only the standard library's socket: a green one (gevent) waits in its hub,
        # where a kernel timeout never fires; it keeps its own timeout mode.
        if not self._https and _KERNEL_TIMEOUTS and type(sock).__module__ == "socket":
            sock.setblocking(True)
            conn.kernel_timeouts = True

    def _open_tunnel(self, conn: _Connection, request: bytes) -> None:
        try:
            conn.send_all(request)
            answer = conn.reader.read(conn.recv_into, tunnel=True)
        except (_SendFailed, BrokenAnswer, OSError) as exc:
            raise AttemptError(
                FailureKind.CONNECT, f"proxy tunnel failed: {type(exc).__name__}"
            ) from None
        if not 200 <= answer.status < 300:
            raise AttemptError(
                FailureKind.CONNECT, f"proxy refused the tunnel: HTTP {answer.status}"
            )

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            cafile = self._ca_bundle
            if cafile is None:
                import certifi  # noqa: PLC0415  (requests' CA bundle, without requests)

                cafile = certifi.where()
            self._ssl_context = ssl.create_default_context(cafile=cafile)
        return self._ssl_context

    def _start_tls(self, conn: _Connection) -> None:
        try:
            context = self._context()
            tls = context.wrap_socket(
                conn.sock, server_hostname=self._host, do_handshake_on_connect=False
            )
            conn.sock = tls
            if self._aborted:  # abort() may have shut the socket down before the swap
                raise ConnectionAbortedError("the transport was aborted")
            conn.timeout_set = -1.0
            conn.arm()
            tls.do_handshake()
        except ssl.SSLCertVerificationError as exc:
            raise AttemptError(
                FailureKind.TLS, f"TLS certificate not accepted: {exc.verify_message}"
            ) from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
            raise AttemptError(
                FailureKind.CONNECT, f"connection closed in the TLS handshake: {exc}"
            ) from exc
        except ssl.SSLError as exc:
            raise AttemptError(FailureKind.TLS, f"TLS handshake failed: {exc.reason}") from exc
        except OSError as exc:
            raise AttemptError(
                FailureKind.CONNECT, f"TLS handshake not completed: {_reason(exc)}"
            ) from exc

    def _discard(self, conn: _Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    # -- shutdown ----------------------------------------------------------------------

    def abort(self) -> None:
        """Cut every connection, open or being opened, so blocked workers end now.

        Sticky until :meth:`reset`: no new connection is opened afterwards.
        """
        with self._lock:
            self._aborted = True
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.close()


def _reason(exc: BaseException) -> str:
    """``Connection refused`` rather than a class name, when the error tells."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _deadline_left(deadline: float) -> float:
    """Seconds until ``deadline``; :class:`socket.timeout` when it passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("the attempt's deadline passed")
    return remaining
