"""HTTP delivery of one event to Plausible's ``POST /api/event``.

This is the only module that touches the network. It uses the connection pool of a
:class:`requests.adapters.HTTPAdapter` (keep-alive, sized to the workers, TLS verified
against requests' CA bundle) but calls the pool directly: ``Session.post`` spends
about six times the CPU of the request itself on cookies, hooks, proxy and netrc
look-ups that a fixed analytics endpoint does not need.

Outcomes are translated here, at one boundary: a 2xx is final (with or without
``x-plausible-dropped``), another 4xx means the event is invalid, everything else
raises :class:`~plausible_wsgi.resilience.AttemptError` for the retry policy to judge.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
import weakref
from typing import Any, Optional
from urllib.parse import urlsplit

import requests.adapters
import requests.utils
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from .resilience import AttemptError, parse_retry_after

__all__ = ["HttpTransport", "Outcome", "Response"]


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


class HttpTransport:
    """POSTs event bodies to ``{endpoint}/api/event`` over a keep-alive pool.

    :param endpoint: base URL of Plausible Cloud or a self-hosted instance.
    :param timeout: seconds to connect, and seconds to wait for the answer.
    :param max_connections: pool size; one per delivery worker.
    :param ca_bundle: path of a CA bundle for self-hosted instances with a private CA.
        TLS verification cannot be turned off.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 4,
        ca_bundle: Optional[str] = None,
        max_retry_after: float = 30.0,
    ) -> None:
        self.url = endpoint.rstrip("/") + "/api/event"
        parts = urlsplit(self.url)
        self._path = parts.path
        self._host_header = parts.netloc
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._max_connections = max_connections
        self._ca_bundle = ca_bundle or requests.utils.DEFAULT_CA_BUNDLE_PATH
        self._max_retry_after = max_retry_after
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pool: Any = None
        self._adapter: Optional[requests.adapters.HTTPAdapter] = None

    def _connection_pool(self) -> Any:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                adapter = requests.adapters.HTTPAdapter(
                    pool_connections=1, pool_maxsize=self._max_connections, max_retries=0
                )
                pool_kwargs: dict[str, Any] = {}
                if self.url.startswith("https:"):
                    pool_kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self._ca_bundle}
                pool = adapter.poolmanager.connection_from_url(self.url, pool_kwargs=pool_kwargs)
                pool.ConnectionCls = self._tracked(pool.ConnectionCls)
                self._adapter, self._pool = adapter, pool
            return self._pool

    def _tracked(self, base: type[Any]) -> type[Any]:
        """A connection class that remembers its sockets, so :meth:`abort` can cut them."""
        sockets = self._sockets

        class TrackedConnection(base):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                sockets.add(self)

        return TrackedConnection

    def send(self, body: bytes, user_agent: Optional[str], client_ip: Optional[str]) -> Response:
        """POST one event body.

        :raises AttemptError: connection problems, timeouts and non-final statuses.
        """
        # The visitor's User-Agent, never ours: Plausible classifies devices and bots by
        # it. An empty value keeps urllib3 from adding "python-urllib3/x", a bot UA.
        headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent or "",
        }
        if client_ip:
            headers["X-Forwarded-For"] = client_ip
        try:
            resp = self._connection_pool().urlopen(
                "POST",
                self._path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
                assert_same_host=False,
                preload_content=True,
            )
        except ReadTimeoutError as exc:
            raise AttemptError("read_timeout", f"no answer within {exc}") from None
        except (ConnectTimeoutError, SSLError) as exc:
            raise AttemptError("connect", f"cannot connect: {type(exc).__name__}") from None
        except (ProtocolError, HTTPError, OSError) as exc:
            raise AttemptError("connect", f"connection broken: {type(exc).__name__}") from None
        return classify(resp.status, resp.headers, resp.data, self._max_retry_after)

    def abort(self) -> None:
        """Cut every open connection, so requests blocked on a silent server end now."""
        for conn in list(self._sockets):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        """Forget the pool without touching it (after ``fork()``: the sockets are shared)."""
        self._lock = threading.Lock()
        self._sockets = weakref.WeakSet()
        self._pool = None
        self._adapter = None

    def close(self) -> None:
        """Close idle connections."""
        with self._lock:
            if self._adapter is not None:
                self._adapter.close()
            self._pool = None
            self._adapter = None
