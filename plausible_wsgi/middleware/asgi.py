"""The ASGI 3 middleware: the same options and decisions as the WSGI one.

``PlausibleMiddleware(app, collectors, **options)`` wraps any ASGI 3 application
(Starlette, FastAPI, Quart, Django's ``get_asgi_application()``). It reads the
request from the scope, captures the status and headers from ``http.response.start``
and records when the response has completed -- the last ``http.response.body``
(``more_body`` false), trailers or ``pathsend`` -- or, if it never completes (the
client went away, the application returned early or raised), once when the
application returns. The rules are :func:`~.decision.decide`, shared with WSGI.

- ``track()`` inside the application picks up the request's visitor: the request is
  bound in a :mod:`contextvars` variable, which asyncio copies into the tasks the
  application starts and ``asyncio.to_thread`` / Starlette's ``run_in_threadpool``
  copy into their threads.
- ``lifespan.shutdown``: before the application's ``lifespan.shutdown.complete``
  reaches the server, the collectors are flushed and closed (see ``close_collectors``)
  in a worker thread, within their ``shutdown_timeout``; the loop never waits on it.
- ``websocket`` and other scopes pass through untouched.
- Nothing here blocks: recording is a deque append and a short counter lock.

``should_track(scope, status, headers)`` gets a copy of the scope and the response
headers as ``str`` pairs. The route template for server actions is FastAPI's
``scope["route"].path`` or ``scope["plausible_wsgi.route"]`` (set by
:class:`plausible_wsgi.django.RouteMiddleware` under Django ASGI).

Behind a proxy: uvicorn and hypercorn can rewrite ``scope["client"]`` from
``X-Forwarded-For`` themselves (uvicorn does by default for ``127.0.0.1``); then leave
``trusted_proxies`` at 0, otherwise set it as for WSGI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, MutableMapping, Sequence
from typing import Any, Callable, NamedTuple, Optional, Union

from ..agents import AgentMatch
from ..context import bind_request, unbind_request
from ..proxies import forwarded_ip
from ..request import referrer_origin, sendable_user_agent, valid_host
from ..tracking import Collector
from .exchange import Exchange
from .options import ROUTE_ENVIRON_KEY, MiddlewareOptions
from .pages import Page
from .recorder import Recorder
from .stats import MiddlewareStats

__all__ = ["ASGIApp", "Message", "PlausibleMiddleware", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PlausibleMiddleware:
    """Record page views (and the rest, as the WSGI middleware) for an ASGI app.

    :param app: the ASGI 3 application.
    :param collectors: a collector, or a sequence of them.
    :param close_collectors: ``False`` leaves the collectors to their owner at
        shutdown and exit.
    :param options: the keyword options of
        :class:`plausible_wsgi.PlausibleMiddleware` (``trusted_proxies``,
        ``exclude_paths``, ``bots``, ``track_actions``, ...).

    FastAPI / Starlette::

        app.add_middleware(PlausibleMiddleware, collectors=collector)
    """

    def __init__(
        self,
        app: ASGIApp,
        collectors: Union[Collector, Sequence[Collector]],
        *,
        close_collectors: bool = True,
        **options: Any,
    ) -> None:
        self.app = app
        #: The checked options.
        self.options = MiddlewareOptions.from_keywords(options)
        #: Decides, counts, records and closes (shared with the WSGI middleware).
        self.recorder = Recorder(collectors, self.options, close_collectors=close_collectors)

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return self.recorder.collectors

    def __repr__(self) -> str:
        return f"<asgi.PlausibleMiddleware app={self.app!r} collectors={list(self.recorder.names)}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            exchange = self._read(scope, send)
        except Exception as exc:
            self.recorder.error("reading the request", exc, request=True)
            await self.app(scope, receive, send)
            return
        token = bind_request(exchange) if exchange.visitor else None
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException:
            exchange.finish(failed=True)
            raise
        finally:
            if token is not None:
                unbind_request(token)
        exchange.finish()

    def _read(self, scope: Scope, send: Send) -> _Exchange:
        """What the request says, read from the scope when it starts."""
        headers = _RequestHeaders.of(scope)
        host = headers.host
        scheme = scope.get("scheme", "http")
        path = scope.get("path", "")
        query = scope.get("query_string", b"")
        key = (scheme, host, path, query)
        pages = self.recorder.pages
        try:
            page = pages.get(key)
        except TypeError:  # an unhashable value from a broken server
            page = None
        if page is None:
            server = scope.get("server")
            page = pages.build(
                scheme,
                valid_host(scheme, host, _address(server) if host is None else None),
                path,
                query.decode("latin-1") if isinstance(query, bytes) else query,
            )
            if host is not None and isinstance(query, bytes):
                pages.remember(key, page, len(host) + len(path) + len(query))
        agent = sendable_user_agent(headers.user_agent)
        referrer = address = None
        if page.url is not None:
            client = scope.get("client")
            referrer = referrer_origin(headers.referrer)
            address = forwarded_ip(
                client[0] if client else None, headers.forwarded, self.options.trusted_proxies
            )
        return _Exchange(
            self,
            scope,
            send,
            scope.get("method", ""),
            page,
            referrer,
            agent,
            address,
            self.options.classify(agent),
            headers.range if self.options.file_downloads else None,
        )

    def _lifespan_send(self, send: Send) -> Send:
        """``send`` for the lifespan scope: flush before shutdown completes."""

        async def lifespan_send(message: Message) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # close() waits on the network (up to shutdown_timeout): in a thread.
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self.recorder.close)
            await send(message)

        return lifespan_send

    def stats(self) -> MiddlewareStats:
        """A snapshot of the counters; see :class:`~plausible_wsgi.MiddlewareStats`."""
        return self.recorder.stats()

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the collectors this middleware owns (blocking: from a
        thread, or at the end of the program; lifespan shutdown does it by itself)."""
        self.recorder.close(timeout)


class _Exchange(Exchange):
    """One HTTP request in flight: the response as it is sent, recorded once."""

    __slots__ = ("finished", "middleware", "scope", "trailers")
    #: The server's ``send``.
    server: Send

    def __init__(  # noqa: PLR0917 (one per request: keyword passing costs)
        self,
        middleware: PlausibleMiddleware,
        scope: Scope,
        send: Send,
        method: str,
        page: Page,
        referrer: Optional[str],
        user_agent: Optional[str],
        client_ip: Optional[str],
        agent: Optional[AgentMatch],
        range_: Optional[str],
    ) -> None:
        Exchange.__init__(self, send, method, page, referrer, user_agent, client_ip, agent, range_)
        self.middleware = middleware
        self.scope = scope
        self.trailers = False
        self.finished = False

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self._started(message)
            await self.server(message)
            return
        if kind in ("http.response.body", "http.response.zerocopysend"):
            complete = not message.get("more_body", False) and not self.trailers
        elif kind == "http.response.trailers":
            complete = not message.get("more_trailers", False)
        else:  # the pathsend extension ends the response; other messages pass by
            complete = kind == "http.response.pathsend"
        try:
            await self.server(message)
        finally:
            if complete:
                self.finish()

    def _started(self, message: Message) -> None:
        """Note the status and headers; a malformed message is the server's to refuse."""
        status = message.get("status")
        self.status = status if isinstance(status, int) else None
        self.trailers = bool(message.get("trailers", False))
        try:
            self.headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        except (AttributeError, TypeError, ValueError) as exc:
            self.middleware.recorder.error("reading the response headers", exc)

    def finish(self, *, failed: bool = False) -> None:
        """Record the request, the first time only. Never raises."""
        if self.finished:
            return
        self.finished = True
        self.failed = failed
        options = self.middleware.options
        try:
            if options.track_actions:
                self.route = _route(self.scope)
            if options.should_track is not None:
                self.view = dict(self.scope)
        except Exception as exc:
            self.middleware.recorder.error("wrapping the response", exc, request=True)
            return
        self.middleware.recorder.finish(self)


class _RequestHeaders(NamedTuple):
    """The request headers the middleware reads, as ``str`` (latin-1, as in WSGI)."""

    host: Optional[str] = None
    user_agent: Optional[str] = None
    referrer: Optional[str] = None
    #: Several ``X-Forwarded-For`` headers are joined with commas, as in WSGI.
    forwarded: Optional[str] = None
    range: Optional[str] = None

    @classmethod
    def of(cls, scope: Scope) -> _RequestHeaders:
        found: list[Optional[str]] = [None] * len(_HEADER_FIELDS)
        for name, value in scope.get("headers", ()):
            index = _HEADER_FIELDS.get(name)
            if index is None:
                continue
            text = value.decode("latin-1")
            if found[index] is None:
                found[index] = text
            elif index == _FORWARDED:
                found[index] = f"{found[index]},{text}"
            elif index != _HOST:  # the first Host counts, the last of the others
                found[index] = text
        return cls(*found)


#: Where in :class:`_RequestHeaders` each header read goes (filled by position: a third
#: of the cost of keywords, for every request).
_HEADER_FIELDS = {
    name: _RequestHeaders._fields.index(field)
    for name, field in (
        (b"host", "host"),
        (b"user-agent", "user_agent"),
        (b"referer", "referrer"),
        (b"x-forwarded-for", "forwarded"),
        (b"range", "range"),
    )
}
_HOST, _FORWARDED = _HEADER_FIELDS[b"host"], _HEADER_FIELDS[b"x-forwarded-for"]


def _route(scope: Scope) -> Optional[str]:
    """The route template: set by an integration, or FastAPI's ``APIRoute.path``."""
    route = scope.get(ROUTE_ENVIRON_KEY)
    if isinstance(route, str):
        return route
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path.startswith("/") else None


def _address(server: object) -> Optional[tuple[str, int]]:
    """The scope's ``server`` as ``(host, port)``; ``None`` for a Unix socket or none."""
    if isinstance(server, (tuple, list)) and len(server) == 2:
        host, port = server
        if isinstance(host, str) and isinstance(port, int):
            return host, port
    return None
