"""The WSGI middleware: read the environ, wrap the response, record at ``close()``.

The middleware only observes: it never changes the response, never raises into the
server (its own failures are logged and counted in :meth:`PlausibleMiddleware.stats`),
and re-raises the application's exceptions unchanged. Nothing here touches the
network; collectors deliver in the background.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from ..agents import AgentClassifier
from ..context import bind_request, unbind_request
from ..proxies import client_ip
from ..request import (
    PathPattern,
    decode_path,
    referrer_origin,
    request_host,
    sendable_user_agent,
)
from ..tracking import Collector
from .options import (
    DEFAULT_BOT_USER_AGENT,
    DEFAULT_DOWNLOAD_EXTENSIONS,
    ROUTE_ENVIRON_KEY,
    BotMode,
    MiddlewareOptions,
    ShouldTrack,
)
from .pages import Page
from .recorder import Recorder
from .response import ResponseBody, SizedResponseBody, WSGIExchange
from .stats import MiddlewareStats

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["PlausibleMiddleware"]


class PlausibleMiddleware:
    """Record page views (and optionally downloads, 404s, actions, bots) in Plausible.

    - A page view is a ``GET`` answered ``2xx`` with an HTML body, for an allowed
      ``Host``, outside the excluded paths, from a browser (not a bot), that
      ``should_track`` (if given) agrees to. Each rule is an option below.
    - The event is recorded when the server closes the response (after the last
      byte, or when the client went away), exactly once, even if the inner
      ``close()`` raises. Responses of the server's ``wsgi.file_wrapper`` are
      returned untouched (so ``sendfile`` still works) and recorded right away.
    - The URL sent is the request URL with the query string cut to the parameters
      Plausible reads (``utm_*``, ``ref``, ``source``, click ids), the ``url_masks``
      applied and, if needed, shortened to Plausible's 2000-byte limit. The site is
      always the collector's ``domain``, never the request's ``Host``.
    - While the request is handled -- including the iteration of a streaming
      response -- ``collector.track(...)`` takes the URL, referrer, User-Agent and IP
      of the request (a :mod:`contextvars` variable, safe under threaded servers).
    - Every event goes to every collector independently.
    - The middleware owns its collectors: :meth:`close` (and interpreter exit)
      flushes and closes them -- unless ``close_collectors=False``.

    :param app: the WSGI application to wrap.
    :param collectors: a collector, or a sequence of them (fan-out).
    :param trusted_proxies: reverse proxies in front that append to
        ``X-Forwarded-For``: the client IP is the N-th entry from the right (werkzeug
        ``ProxyFix(x_for=N)`` semantics; not applied twice behind ``ProxyFix``). ``0``:
        ``REMOTE_ADDR``. Trusting the header without such a proxy lets clients pick
        their IP.
    :param methods: request methods that can be page views.
    :param statuses: response statuses that can be page views.
    :param content_types: response media types that are pages.
    :param exclude_paths: never tracked: a ``str`` is a prefix of the decoded path
        (``SCRIPT_NAME + PATH_INFO``, before masking), a compiled pattern is searched.
    :param should_track: ``should_track(environ, status, headers) -> bool``, asked
        last for every event, with a shallow copy of the environ; raising counts as
        an error and the request is not tracked.
    :param keep_query_params: query parameters kept besides those Plausible reads;
        ``("*",)`` keeps the whole query string.
    :param url_masks: ``(regex, replacement)`` pairs applied to the path in order.
    :param allowed_hosts: only these hosts are tracked (``".example.com"``: and its
        subdomains; ports ignored); ``None``: any valid host.
    :param bots: automated User-Agents (a missing one counts): ``"skip"`` (counted
        as ``skipped["bot:<kind>"]``), ``"event"`` (a ``bot_event_name`` event with
        ``agent``, ``operator``, ``kind``, ``path``, ``status`` props, whatever the
        status or content type) or ``"pageview"``.
    :param bot_event_name: the custom event name for ``bots="event"``.
    :param bot_domain: another Plausible site for bot events (collectors with
        ``for_domain()`` get a sibling for it, owned by the middleware).
    :param bot_user_agent: sent with bot events: an ordinary browser's, since
        Plausible drops a bot's (the real one is in the props; the IP is the bot's).
    :param classifier: an :class:`~plausible_wsgi.agents.AgentClassifier`.
    :param track_404: record ``404`` HTML responses as the ``404`` goal (``path``).
    :param track_actions: record ``2xx``/``3xx`` answers to ``POST``, ``PUT``, ...
        as actions (``interactive: false``) named ``"<METHOD> <route>"``: the route
        from ``environ["plausible_wsgi.route"]`` (the integrations set it), else the
        masked path.
    :param file_downloads: record ``2xx`` with ``Content-Disposition: attachment``
        or a path ending in ``download_extensions`` as ``File Download`` (``url``
        prop); a ``206`` only when it starts at byte 0.
    :param download_extensions: extensions (without dot) that mark a download.
    :param close_collectors: ``False`` leaves the collectors open at :meth:`close`
        and exit, for their owner (the integrations pass it for a collector you made).

    Usage::

        collector = pw.PlausibleCollector("example.com")
        app.wsgi_app = pw.PlausibleMiddleware(
            app.wsgi_app, collector, trusted_proxies=1, exclude_paths=("/static/",)
        )
    """

    def __init__(
        self,
        app: WSGIApplication,
        collectors: Union[Collector, Sequence[Collector]],
        *,
        trusted_proxies: int = 0,
        methods: Iterable[str] = ("GET",),
        statuses: Container[int] = range(200, 300),
        content_types: Iterable[str] = ("text/html", "application/xhtml+xml"),
        exclude_paths: Iterable[PathPattern] = (),
        should_track: Optional[ShouldTrack] = None,
        keep_query_params: Iterable[str] = (),
        url_masks: Iterable[tuple[PathPattern, str]] = (),
        allowed_hosts: Optional[Iterable[str]] = None,
        bots: BotMode = "skip",
        bot_event_name: str = "Bot Visit",
        bot_domain: Optional[str] = None,
        bot_user_agent: str = DEFAULT_BOT_USER_AGENT,
        classifier: Optional[AgentClassifier] = None,
        track_404: bool = False,
        track_actions: bool = False,
        file_downloads: bool = False,
        download_extensions: Iterable[str] = DEFAULT_DOWNLOAD_EXTENSIONS,
        close_collectors: bool = True,
    ) -> None:
        #: The wrapped application.
        self.app = app
        options = MiddlewareOptions(
            trusted_proxies=trusted_proxies,
            methods=methods,
            statuses=statuses,
            content_types=content_types,
            exclude_paths=exclude_paths,
            should_track=should_track,
            keep_query_params=keep_query_params,
            url_masks=url_masks,
            allowed_hosts=allowed_hosts,
            bots=bots,
            bot_event_name=bot_event_name,
            bot_domain=bot_domain,
            bot_user_agent=bot_user_agent,
            classifier=classifier,
            track_404=track_404,
            track_actions=track_actions,
            file_downloads=file_downloads,
            download_extensions=download_extensions,
        ).check()
        #: Decides, counts, records and closes (shared with the ASGI middleware).
        self.recorder = Recorder(collectors, options, close_collectors=close_collectors)
        #: The checked options.
        self.options = options
        # Resolved once: read for every request.
        self._finish = self.recorder.finish
        self._after_app = options.track_actions or options.should_track is not None

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """Where every event goes."""
        return self.recorder.collectors

    def __repr__(self) -> str:
        return f"<PlausibleMiddleware app={self.app!r} collectors={list(self.recorder.names)}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        recorder = self.recorder
        try:
            exchange = self._read(environ, start_response)
        except Exception as exc:
            recorder.error("reading the request", exc, request=True)
            return self.app(environ, start_response)
        token = bind_request(exchange) if exchange.visitor else None
        try:
            iterable = self.app(environ, exchange.start_response)
        except BaseException:
            if token is not None:
                unbind_request(token)
            exchange.failed = True
            recorder.finish(exchange)
            raise
        if token is not None:
            unbind_request(token)
        try:
            if self._after_app:
                self._read_after_app(environ, exchange)
            file_wrapper = environ.get("wsgi.file_wrapper")
            if isinstance(file_wrapper, type) and isinstance(iterable, file_wrapper):
                recorder.finish(exchange)
                return iterable
            body = SizedResponseBody if hasattr(iterable, "__len__") else ResponseBody
            return body(self._finish, exchange, iterable)
        except Exception as exc:
            recorder.error("wrapping the response", exc)
            return iterable

    def _read(self, environ: WSGIEnvironment, start_response: StartResponse) -> WSGIExchange:
        """What the request says, read now: the environ itself is never kept."""
        get = environ.get
        host_header = get("HTTP_HOST")
        query = get("QUERY_STRING", "")
        key = (
            get("wsgi.url_scheme"),
            host_header,
            get("SCRIPT_NAME", ""),
            get("PATH_INFO", ""),
            query,
        )
        try:
            page = self.recorder.pages.get(key)
        except TypeError:  # an unhashable value from a broken server
            page = None
        if page is None:
            page = self._page(environ, key)
        options = self.options
        agent = sendable_user_agent(get("HTTP_USER_AGENT"))
        referrer = address = None
        if page.url is not None:
            referrer = referrer_origin(get("HTTP_REFERER"))
            address = client_ip(environ, options.trusted_proxies)
        return WSGIExchange(
            start_response,
            get("REQUEST_METHOD", ""),
            page,
            referrer,
            agent,
            address,
            options.classify(agent),
            get("HTTP_RANGE") if options.file_downloads else None,
        )

    def _read_after_app(self, environ: WSGIEnvironment, exchange: WSGIExchange) -> None:
        """What the application left in the environ: the route (``track_actions``) and
        the environ itself for ``should_track``."""
        options = self.options
        if options.track_actions:
            route = environ.get(ROUTE_ENVIRON_KEY)
            exchange.route = route if isinstance(route, str) else None
        if options.should_track is not None:
            exchange.view = dict(environ)

    def _page(self, environ: WSGIEnvironment, key: tuple[Any, ...]) -> Page:
        scheme, host_header, script_name, path_info, query = key
        page = self.recorder.pages.build(
            scheme, request_host(environ), decode_path(script_name, path_info), query
        )
        # Without a Host header the host comes from SERVER_NAME/SERVER_PORT, which
        # are not in the key: such targets are not remembered.
        if isinstance(host_header, str) and isinstance(query, str):
            length = len(host_header) + len(page.path) + len(query)
            self.recorder.pages.remember(key, page, length)
        return page

    def stats(self) -> MiddlewareStats:
        """A snapshot of the counters; see :class:`MiddlewareStats`."""
        return self.recorder.stats()

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the collectors this middleware owns, within one deadline.

        :param timeout: seconds for all of them together; ``None`` uses the largest
            ``shutdown_timeout`` among them (5 seconds for collectors without one).

        Idempotent; also runs at interpreter exit. A collector that raises is
        logged and counted and does not keep the others from closing. Requests
        still pass through afterwards, untracked by the closed collectors.
        """
        self.recorder.close(timeout)
