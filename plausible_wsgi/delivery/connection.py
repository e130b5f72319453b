"""Keep-alive connections to the endpoint: opened within an attempt's deadline, cuttable
at once, TLS verified, checked before reuse.

One connection per delivery thread (:class:`ConnectionPool`), so the pool is exactly as
large as the worker pool. Nothing here knows HTTP beyond a proxy's ``CONNECT`` tunnel:
the bytes on the wire are :mod:`~plausible_wsgi.delivery.http11`'s, what an answer means
is :mod:`~plausible_wsgi.delivery.transport`'s.

- **Cuttable at once**: a socket is registered before ``connect()``, and connecting
  polls in short slices, so :meth:`ConnectionPool.abort` from another thread ends a
  thread stuck on a SYN-dropping endpoint or a TLS handshake that never answers.
  (Name resolution is the exception: ``getaddrinfo`` cannot be interrupted; the
  resolver's own timeouts bound it.)
- **Within the deadline**: every socket call gets the attempt's remaining time at most.
- TLS is verified (certifi's bundle, or ``ca_bundle``); verification cannot be turned
  off. An HTTP proxy named by the environment is used as requests would.
"""

from __future__ import annotations

import contextlib
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
from urllib.parse import SplitResult, urlsplit

from .failure import AttemptError, FailureKind
from .http11 import AnswerReader, BrokenAnswer
from .tls import TlsSession, client_context

__all__ = [
    "IDLE_CHECK_AFTER",
    "Connection",
    "ConnectionPool",
    "SendFailed",
    "deadline_left",
    "proxy_for",
    "reason",
]

#: A connection idle longer than this is checked for a close by the server before it is
#: written to (a ``poll``, 5 % of an event's CPU). Servers close idle connections after
#: seconds (nginx 75 s, Cowboy and Bandit 60 s, proxies >= 100 ms); a server that closes
#: sooner without ``Connection: close`` makes the next event a counted ``cut``, never a
#: silent resend.
IDLE_CHECK_AFTER = 0.05
#: A socket timeout within this many seconds of the attempt's remaining time is kept:
#: re-arming it costs a system call, and most attempts take microseconds.
_SLACK = 0.05
#: Connecting waits in slices this long, checking for abort() between them.
_CONNECT_SLICE = 0.25
#: Bytes asked of the socket per read: a TLS record whole (16 KiB and its framing).
_RECV_SIZE = 17408
#: Where SO_RCVTIMEO/SO_SNDTIMEO take a ``struct timeval`` (not Windows).
_KERNEL_TIMEOUTS = sys.platform != "win32"


def proxy_for(scheme: str, host: str) -> Optional[SplitResult]:
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


class SendFailed(Exception):
    """A write failed; ``sent`` bytes of it were accepted before."""

    def __init__(self, sent: int, error: OSError) -> None:
        super().__init__(type(error).__name__)
        self.sent = sent
        self.error = error


class Connection:
    """One socket (with its TLS session over https) with its answer reader and the
    deadline of the attempt using it."""

    __slots__ = (
        "__weakref__",
        "deadline",
        "idle_since",
        "kernel_timeouts",
        "poller",
        "reader",
        "sock",
        "timeout_set",
        "tls",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        #: When the last answer was read (monotonic); a new connection is not idle.
        self.idle_since = time.monotonic()
        self.timeout_set = -1.0
        #: A blocking socket bounded by SO_RCVTIMEO/SO_SNDTIMEO instead of Python's
        #: timeout mode, which polls before every send and recv: two system calls of
        #: the four per event.
        self.kernel_timeouts = False
        self.reader = AnswerReader()
        self.poller: Optional[_Poller] = None
        self.tls: Optional[TlsSession] = None

    def __del__(self) -> None:
        # A worker thread that ended drops its connection with its thread-local.
        self.sock.close()

    def arm(self) -> None:
        """Give the next socket call the attempt's remaining time at most."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("the attempt's deadline passed")
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
        """Answer bytes into ``view``; 0 at the end of the stream."""
        if self.tls is not None:
            return self.tls.read_into(view, self.recv)
        self.arm()
        return self.sock.recv_into(view)

    def recv(self) -> bytes:
        """The next bytes on the socket (TLS records over https)."""
        self.arm()
        return self.sock.recv(_RECV_SIZE)

    def send_all(self, data: bytes) -> None:
        """Write all of ``data``; :class:`SendFailed` tells how many bytes the socket
        accepted."""
        sent = 0
        try:
            if self.tls is not None:
                data = self.tls.encrypt(data)
            self.arm()
            sent = self.sock.send(data)
            while sent < len(data):
                self.arm()
                sent += self.sock.send(data[sent:])
        except OSError as exc:
            raise SendFailed(sent, exc) from None

    def closed_while_idle(self) -> bool:
        """Whether the server closed (or wrote to) this idle connection, or ``close()``
        closed it under this thread (its poller would then watch a stale fd number).

        Asked after :data:`IDLE_CHECK_AFTER` of idleness only; a connection closed by
        ``close()`` sooner fails its write with nothing sent, and is replaced then."""
        if self.sock.fileno() < 0:
            return True
        if self.poller is None:
            self.poller = _Poller(self.sock)
        if not self.poller.readable():
            return False
        if self.tls is None:
            return True
        try:
            data = self.sock.recv(_RECV_SIZE)  # readable: returns at once
        except OSError:
            return True
        return self.tls.closed_by(data)


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


class ConnectionPool:
    """This thread's connection to ``address``, and the means to cut them all.

    :param address: ``(host, port)`` to connect to: the endpoint's, or the proxy's.
    :param tls_host: the endpoint's host name for a verified TLS connection, or ``None``.
    :param tunnel: a ``CONNECT`` request to send first (an https endpoint via a proxy).
    :param ca_bundle: path of a CA bundle instead of certifi's.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        tls_host: Optional[str],
        tunnel: Optional[bytes] = None,
        ca_bundle: Optional[str] = None,
    ) -> None:
        self._address = address
        self._tls_host = tls_host
        self._tunnel = tunnel
        self._ca_bundle = ca_bundle
        self._ssl_context: Optional[ssl.SSLContext] = None
        self.reset()

    def reset(self) -> None:
        """Forget every connection without shutting it down (after ``fork()``, the
        sockets are shared with the parent), and renew the lock."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._aborted = False

    @property
    def open_count(self) -> int:
        """Connections open or being opened, across threads."""
        with self._lock:
            return len(self._open)

    def current(self) -> Optional[Connection]:
        """This thread's connection, if it has one."""
        conn: Optional[Connection] = getattr(self._local, "conn", None)
        return conn

    def reusable(self, now: float) -> Optional[Connection]:
        """This thread's connection, unless it idled past :data:`IDLE_CHECK_AFTER` and
        the server closed it meanwhile (then forgotten)."""
        conn = self.current()
        if conn is None or now - conn.idle_since <= IDLE_CHECK_AFTER:
            return conn
        if conn.closed_while_idle():
            self.discard(conn)
            return None
        return conn

    def connect(self, deadline: float) -> Connection:
        """A new connection for this thread (through the proxy if any), ready to write.

        :raises AttemptError: ``connect`` or ``tls`` kind.
        """
        host, port = self._address
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
                self.discard(conn)
                error = exc
        else:
            raise AttemptError(FailureKind.CONNECT, f"cannot connect: {reason(error)}") from error
        try:
            if self._tunnel is not None:
                _open_tunnel(conn, self._tunnel)
            if self._tls_host is not None:
                self._start_tls(conn, self._tls_host)
        except BaseException:
            self.discard(conn)
            raise
        self._local.conn = conn
        return conn

    def _register(self, sock: socket.socket) -> Connection:
        conn = Connection(sock)
        with self._lock:
            self._open.add(conn)
            aborted = self._aborted
        if aborted:
            self.discard(conn)
            raise AttemptError(FailureKind.CONNECT, "the transport was aborted")
        return conn

    def _connect_socket(self, conn: Connection, address: Any) -> None:
        """TCP connect within the deadline, in slices so abort() is seen promptly."""
        sock = conn.sock
        sock.setblocking(False)
        err = sock.connect_ex(address)
        while err:
            if err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                raise OSError(err, os.strerror(err))
            if self._aborted:
                raise ConnectionAbortedError("the transport was aborted")
            remaining = deadline_left(conn.deadline)
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
        if _KERNEL_TIMEOUTS and type(sock).__module__ == "socket":
            sock.setblocking(True)
            conn.kernel_timeouts = True

    def _start_tls(self, conn: Connection, host: str) -> None:
        try:
            if self._ssl_context is None:
                self._ssl_context = client_context(self._ca_bundle)
            tls = TlsSession(self._ssl_context, host)
            tls.handshake(conn.send_all, conn.recv)
            conn.tls = tls
        except SendFailed as exc:
            raise AttemptError(
                FailureKind.CONNECT, f"TLS handshake not completed: {reason(exc.error)}"
            ) from exc.error
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
                FailureKind.CONNECT, f"TLS handshake not completed: {reason(exc)}"
            ) from exc

    def discard(self, conn: Connection) -> None:
        """Close ``conn`` and forget it (it is not this thread's connection any more)."""
        with self._lock:
            self._open.discard(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def abort(self) -> None:
        """Cut every connection, open or being opened, so blocked threads end now.

        Sticky until :meth:`reset`: no new connection is opened afterwards.
        """
        with self._lock:
            self._aborted = True
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every connection (a thread sees its own closed before reusing it)."""
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.close()


def _open_tunnel(conn: Connection, request: bytes) -> None:
    try:
        conn.send_all(request)
        answer = conn.reader.read(conn.recv_into, tunnel=True)
    except (SendFailed, BrokenAnswer, OSError) as exc:
        raise AttemptError(
            FailureKind.CONNECT, f"proxy tunnel failed: {type(exc).__name__}"
        ) from None
    if not 200 <= answer.status < 300:
        raise AttemptError(FailureKind.CONNECT, f"proxy refused the tunnel: HTTP {answer.status}")


def reason(exc: BaseException) -> str:
    """``Connection refused`` rather than a class name, when the error tells."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def deadline_left(deadline: float) -> float:
    """Seconds until ``deadline``; :class:`socket.timeout` when it passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("the attempt's deadline passed")
    return remaining
