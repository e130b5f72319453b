"""One event to Plausible's ``POST /api/event``: one attempt within its deadline, and
what the answer means.

The connections (proxy tunnel, TLS, abort) are :mod:`~plausible_wsgi.delivery.connection`'s,
the bytes on the wire :mod:`~plausible_wsgi.delivery.http11`'s (why a purpose-built
HTTP/1.1 path, with figures, is written there).

- **One deadline per attempt**: connect, proxy tunnel, TLS handshake, write and answer
  together finish within ``timeout`` seconds, however slowly a server drips bytes.
- **No silent resend**: only when a reused connection is seen dead *before* writing,
  or the very first write fails with nothing accepted, is the request sent again on a
  fresh connection; anything later is an :class:`~plausible_wsgi.delivery.failure.AttemptError`
  for the retry policy (``cut`` = the server may have recorded it).

- **Pipelining** (:meth:`HttpTransport.send_many`, :mod:`~plausible_wsgi.delivery.pipelining`):
  a batch in one write, its answers read in order, each request's outcome its own; the
  collector's CPU per event in a burst halves (0.37x -> 0.20x ``http.client``, figures
  in :mod:`~plausible_wsgi.delivery.http11`), delivery threads in the gunicorn hello
  app 71 -> 29 µs per page (docs/reliability.md).

Outcomes are translated here, at one boundary: a 2xx is final (with or without
``x-plausible-dropped``), another 4xx means the event is invalid, everything else
raises :class:`~plausible_wsgi.delivery.failure.AttemptError` for the retry policy to judge.
"""

from __future__ import annotations

import base64
import enum
import time
from collections.abc import Sequence
from typing import Any, Optional, Union
from urllib.parse import unquote, urlsplit

from .connection import (
    Connection,
    ConnectionPool,
    SendFailed,
    proxy_for,
    reason,
)
from .failure import AttemptError, FailureKind, NothingSent
from .http11 import Answer, BrokenAnswer, RequestTemplate, UnsafeHeader, connect_request
from .pipelining import MAX_PIPELINE_DEPTH, Pipeliner, read_failure
from .retry_after import parse_retry_after

__all__ = [
    "MAX_PIPELINE_DEPTH",
    "HttpTransport",
    "Outcome",
    "Request",
    "Response",
    "Result",
    "classify",
]

#: The visitor's request to send: body, User-Agent, IP.
Request = tuple[bytes, Optional[str], Optional[str]]
#: What a pipelined request came to: the answer, how its attempt failed, or ``None``
#: when it provably did not reach the server (it is sent again, not counted as a retry).
Result = Union["Response", AttemptError, None]


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


#: The :class:`Response` of a counted answer in a pipelined batch, per status.
_COUNTED = {status: Response(Outcome.SENT, status, b"", None) for status in range(200, 300)}


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
        pipeline_depth: int = 1,
    ) -> None:
        self.url = endpoint.rstrip("/") + "/api/event"
        parts = urlsplit(self.url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        target = parts.path
        proxy = proxy_for(parts.scheme, host)
        proxy_headers: tuple[tuple[str, str], ...] = ()
        if proxy is not None and proxy.username is not None:
            credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
            token = base64.b64encode(credentials.encode("latin-1")).decode("ascii")
            proxy_headers = (("Proxy-Authorization", f"Basic {token}"),)
        tunnel: Optional[bytes] = None
        if proxy is not None and https:
            # CONNECT through the proxy; TLS (and its verification) is end to end.
            authority = f"[{host}]" if ":" in host else host
            tunnel = connect_request(f"{authority}:{port}", proxy_headers)
            proxy_headers = ()
        elif proxy is not None:
            target = self.url  # a plain-HTTP proxy gets the absolute URL
        self._template = RequestTemplate(target, parts.netloc.rpartition("@")[2], proxy_headers)
        self._pool = ConnectionPool(
            (proxy.hostname or "", proxy.port or 80) if proxy else (host, port),
            tls_host=host if https else None,
            tunnel=tunnel,
            ca_bundle=ca_bundle,
        )
        self._timeout = timeout
        self._max_retry_after = max_retry_after
        self._pipeliner: Pipeliner[Response] = Pipeliner(self._pool, timeout, pipeline_depth)

    @property
    def depth(self) -> int:
        """Requests :meth:`send_many` writes at once now (1: one at a time)."""
        return self._pipeliner.depth

    @property
    def gap(self) -> Optional[float]:
        """Seconds between consecutive answers of the last pipelined batch (None: not
        measured yet); see :mod:`~plausible_wsgi.delivery.pipelining`."""
        return self._pipeliner.gap

    @property
    def pool(self) -> ConnectionPool:
        """The connections (one per thread that sent)."""
        return self._pool

    def reset(self) -> None:
        """Forget every connection without shutting it down (after ``fork()``, the
        sockets are shared with the parent)."""
        self._pool.reset()
        self._pipeliner.reset()

    def abort(self) -> None:
        """Cut every connection, open or being opened, so blocked workers end now.

        Sticky until :meth:`reset`: no new connection is opened afterwards.
        """
        self._pool.abort()

    def close(self) -> None:
        """Close every connection."""
        self._pool.close()

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
        conn = self._pool.reusable(now)
        if conn is not None:
            try:
                return self._exchange(conn, request, deadline, False)
            except NothingSent:
                pass  # not one byte left: the same request on a fresh connection
        return self._exchange(self._pool.connect(deadline), request, deadline, True)

    def _exchange(self, conn: Connection, request: bytes, deadline: float, fresh: bool) -> Response:
        conn.deadline = deadline
        try:
            conn.send_all(request)
        except SendFailed as exc:
            self._pool.discard(conn)
            if exc.sent == 0 and not fresh:
                raise NothingSent from None
            raise AttemptError(
                FailureKind.CONNECT,
                f"connection broke before the request went out: {reason(exc.error)}",
            ) from exc.error
        try:
            answer = conn.reader.read(conn.recv_into)
        except (BrokenAnswer, OSError) as exc:
            self._pool.discard(conn)
            if isinstance(exc, BrokenAnswer) and exc.status is not None:
                # The status is the server's answer; only the body was cut or unreadable.
                return classify(exc.status, exc.headers, b"", self._max_retry_after)
            raise read_failure(exc, self._timeout) from exc
        if answer.keep_alive:
            conn.idle_since = time.monotonic()
        else:
            self._pool.discard(conn)
        return classify(answer.status, answer.headers, answer.body, self._max_retry_after)

    def send_many(self, requests: Sequence[Request]) -> list[Result]:
        """POST several event bodies in one write on this thread's connection and read
        the answers in order, all within one ``timeout`` (see
        :mod:`~plausible_wsgi.delivery.pipelining`): per request its answer, the
        :class:`AttemptError` its attempt came to, or None when it was not sent."""
        results: list[Result] = [None] * len(requests)
        wire: list[bytes] = []
        where: list[int] = []
        render = self._template.render
        for i, (body, user_agent, client_ip) in enumerate(requests):
            try:
                wire.append(render(body, user_agent, client_ip))
                where.append(i)
            except UnsafeHeader as exc:
                results[i] = AttemptError(FailureKind.INVALID, f"unsendable event: {exc}")
        if wire:
            self._pipeliner.send(wire, where, results, self._judge, self._exchange)
        return results

    def _judge(self, answer: Answer) -> Response | AttemptError:
        status = answer.status
        if 200 <= status < 300 and not answer.headers.get("x-plausible-dropped"):
            # classify()'s SENT, as one shared record per status: nobody reads a counted
            # answer's body in a batch (send() keeps it for the ``send`` command).
            return _COUNTED[status]
        try:
            return classify(answer.status, answer.headers, answer.body, self._max_retry_after)
        except AttemptError as exc:
            return exc
