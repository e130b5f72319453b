"""PlausibleMiddleware: page views, and the request context for ``track()``.

Wrap any WSGI application (Flask's ``app.wsgi_app``, Django's WSGI handler, a bare
callable) and every response a person would count as a page view is recorded, with
the visitor's URL, referrer, User-Agent and IP, in one or more collectors. While a
request is being handled, ``collector.track("Signup")`` picks those up by itself.

The middleware only observes: it never changes the response, never raises into the
server (its own failures are logged and counted in :meth:`PlausibleMiddleware.stats`),
and re-raises the application's exceptions unchanged. Nothing here touches the
network; collectors deliver in the background.

Behind a reverse proxy, say how many proxies you trust (``trusted_proxies``) or put
werkzeug's :class:`~werkzeug.middleware.proxy_fix.ProxyFix` in front: trusting
``X-Forwarded-For`` without a proxy that sets it lets every client pick its own IP.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Literal, NamedTuple, Optional, TypeVar, Union

from ._log import RateLimitedLog, logger
from .agents import AgentClassifier, AgentMatch, classify_user_agent
from .collector import Collector
from .context import RequestInfo, bind_request, unbind_request
from .errors import ConfigurationError
from .events import (
    ACTION,
    CUSTOM,
    MAX_NAME_LENGTH,
    MAX_PROP_VALUE_BYTES,
    MAX_URL_BYTES,
    PAGEVIEW,
    Event,
    ValidEvent,
    url_parses,
)
from .request import (
    HostPolicy,
    PathPattern,
    PathRules,
    QueryPolicy,
    client_ip,
    decode_path,
    escape_path,
    fit_url,
    normalize_ip,
    referrer_origin,
    request_host,
    sendable_user_agent,
)

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_BOT_USER_AGENT",
    "DEFAULT_DOWNLOAD_EXTENSIONS",
    "MiddlewareStats",
    "PlausibleMiddleware",
]

#: Sent as the User-Agent of ``bots="event"`` events: a current desktop Chrome on
#: Windows, an ordinary browser string, so that Plausible's own bot filter keeps the
#: event. The real agent travels in the event's props.
DEFAULT_BOT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

#: File extensions recorded as ``File Download`` when ``file_downloads=True``.
#: ``txt`` is left out on purpose: ``robots.txt``, ``ads.txt`` and ``security.txt``
#: are fetched constantly and are not downloads; add it if you serve text files.
DEFAULT_DOWNLOAD_EXTENSIONS = frozenset(
    {
        # documents
        "pdf", "csv", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "pps", "odt", "ods",
        "odp", "rtf", "key", "epub",
        # archives and installers
        "zip", "gz", "tgz", "tar", "bz2", "xz", "7z", "rar", "dmg", "pkg", "exe", "msi",
        "apk", "deb", "rpm", "iso",
        # media
        "mp3", "wav", "wma", "flac", "ogg", "midi", "mid", "mp4", "m4v", "mov", "avi",
        "wmv", "mkv", "mpg", "mpeg", "webm",
    }
)  # fmt: skip

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_BOT_MODES = ("skip", "event", "pageview")
_RESERVED_NAMES = frozenset({"pageview", "engagement"})
_DEFAULT_CLOSE_TIMEOUT = 5.0
_ROUTE_KEY = "plausible_wsgi.route"
_CACHE_LIMIT = 256
# Request targets and User-Agents remembered per middleware (see _Page), and the
# longest one remembered: about 2 MB at most, whatever the traffic.
_MEMO_SIZE = 1024
_MEMO_MAX_LENGTH = 512
# Outcomes are counted in batches of this many (see PlausibleMiddleware._fold).
_FOLD_AT = 1024
# Shorter URLs are below Plausible's 2000-byte limit whatever their characters.
_SHORT_URL = MAX_URL_BYTES // 4
# ``tuple.__new__(SomeNamedTuple, values)`` builds the tuple without the NamedTuple's
# Python-level ``__new__``: about 0.4 µs less per request. Only used where every
# value is already what the field expects.
_new = tuple.__new__

BotMode = Literal["skip", "event", "pageview"]
ShouldTrack = Callable[["WSGIEnvironment", int, "list[tuple[str, str]]"], bool]


@dataclasses.dataclass(frozen=True)
class MiddlewareStats:
    """A snapshot of a :class:`PlausibleMiddleware`'s counters.

    A request is counted when it is over: its response closed, or the application
    raised. Then ``requests == sum(tracked.values()) + sum(skipped.values())`` plus
    the requests whose bookkeeping failed (counted in ``errors`` too).
    """

    #: Requests finished.
    requests: int = 0
    #: Events recorded, by what they are: ``pageview``, ``404``, ``file_download``,
    #: ``action``, ``bot``.
    tracked: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: Requests not recorded, by reason: ``host``, ``excluded``, ``method``,
    #: ``bot:<kind>``, ``status``, ``content_type``, ``partial`` (a range request that
    #: does not start a download), ``should_track``, ``exception`` (the application
    #: raised), ``no_status`` (``start_response`` was never called).
    skipped: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: The middleware's own failures (a raising collector or ``should_track``, ...).
    errors: int = 0


class _Page(NamedTuple):
    """What a request's target says, worked out once per distinct target.

    Requests for the same scheme, ``Host``, path and query share one (the
    middleware keeps the recent ones): page URLs repeat, and building one means
    decoding, masking, escaping, scrubbing and checking it.
    """

    #: ``SCRIPT_NAME + PATH_INFO``, decoded, before masking: what the path rules see.
    path: str
    #: The masked, escaped path as it appears in the URL.
    url_path: str
    #: The URL sent, or ``None`` when the scheme or ``Host`` is unusable.
    url: Optional[str]
    #: ``url`` splits cleanly (Plausible refuses those that do not).
    url_valid: bool
    #: The ``Host`` passes ``allowed_hosts``.
    host_ok: bool
    #: The path matches ``exclude_paths``.
    excluded: bool
    #: The path ends in one of ``download_extensions`` (with ``file_downloads``).
    download: bool


class _Response:
    """One request in flight: the status it gets and the iterable that sends it.

    The server iterates and closes this wrapper; the request context is bound around
    every step so that ``track()`` works inside streaming responses too, and the
    event is recorded exactly once, when the server closes the response.
    """

    __slots__ = (
        "_iterator",
        "agent",
        "closed",
        "environ",
        "failed",
        "headers",
        "info",
        "iterable",
        "method",
        "middleware",
        "page",
        "range",
        "route",
        "server_start_response",
        "status",
    )

    def __init__(  # noqa: PLR0917 (one per request: keyword passing costs)
        self,
        middleware: PlausibleMiddleware,
        server_start_response: StartResponse,
        method: str,
        page: _Page,
        info: Optional[RequestInfo],
        agent: Optional[AgentMatch],
    ) -> None:
        self.middleware = middleware
        self.server_start_response = server_start_response
        self.method = method
        self.page = page
        self.info = info
        self.agent = agent
        self.status: Optional[str] = None
        self.headers: list[tuple[str, str]] = []
        self.failed = False
        self.closed = False
        self.route: Optional[str] = None
        self.range: Optional[str] = None
        self.environ: Optional[WSGIEnvironment] = None
        self.iterable: Iterable[bytes] = ()
        self._iterator: Optional[Iterator[bytes]] = None

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Optional[OptExcInfo] = None,
        /,
    ) -> Callable[[bytes], object]:
        self.status = status
        self.headers = headers
        if exc_info is None:
            return self.server_start_response(status, headers)
        return self.server_start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:
            iterable = self.iterable
            if type(iterable) in (list, tuple):
                # No application code runs while a list is iterated: skip the wrapper.
                self._iterator = iter(iterable)
                return self._iterator
            info = self.info
            token = bind_request(info) if info is not None else None
            try:
                self._iterator = iter(iterable)
            except BaseException:
                self.failed = True
                raise
            finally:
                if token is not None:
                    unbind_request(token)
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iter(self)
            iterator = self._iterator
            assert iterator is not None
        info = self.info
        token = bind_request(info) if info is not None else None
        try:
            return next(iterator)
        except StopIteration:
            raise
        except BaseException:
            self.failed = True
            raise
        finally:
            if token is not None:
                unbind_request(token)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                info = self.info
                token = bind_request(info) if info is not None else None
                try:
                    close()
                finally:
                    if token is not None:
                        unbind_request(token)
        finally:
            self.middleware._finish(self)


class _SizedResponse(_Response):
    """For iterables with a length: servers use ``len() == 1`` to set Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]


class PlausibleMiddleware:
    """Record page views (and optionally downloads, 404s, actions, bots) in Plausible.

    - A page view is a ``GET`` answered ``2xx`` with an HTML body, for an allowed
      ``Host``, outside the excluded paths, from a browser (not a bot), that
      ``should_track`` (if given) agrees to. Each rule is an option below.
    - The status and headers are captured through a wrapped ``start_response``; the
      event is recorded when the server closes the response (after the last byte, or
      when the client went away), exactly once, even if the inner ``close()`` raises.
      Responses of the server's ``wsgi.file_wrapper`` are returned untouched (so
      ``sendfile`` still works) and recorded right away.
    - What the middleware needs from the environ is read when the request starts;
      the environ itself is never kept.
    - The URL sent is the request URL with the query string cut to the parameters
      Plausible reads (``utm_*``, ``ref``, ``source``, click ids), the ``url_masks``
      applied and, if needed, shortened to Plausible's 2000-byte limit. The site is
      always the collector's ``domain``, never the request's ``Host``.
    - While the request is handled -- including the iteration of a streaming
      response -- ``collector.track(...)`` takes the URL, referrer, User-Agent and IP
      of the request (a :mod:`contextvars` variable, safe under threaded servers).
    - Every event goes to every collector independently: one raising collector does
      not stop the others.
    - The middleware owns its collectors: :meth:`close` (and interpreter exit) flushes
      and closes them.

    :param app: the WSGI application to wrap.
    :param collectors: a collector, or a sequence of them (fan-out).
    :param trusted_proxies: how many reverse proxies in front of the app append to
        ``X-Forwarded-For``. ``0``: the client IP is ``REMOTE_ADDR``. ``N``: the N-th
        entry from the right (werkzeug ``ProxyFix(x_for=N)`` semantics); entries
        further left were written by the client and are never used. With
        ``ProxyFix`` already in front it is not applied twice.
    :param methods: request methods that can be page views.
    :param statuses: response statuses that can be page views.
    :param content_types: response media types that are pages (parameters such as
        ``charset`` are ignored).
    :param exclude_paths: paths never tracked, matched against the full path
        (``SCRIPT_NAME + PATH_INFO``, decoded, before masking). A ``str`` is a literal
        prefix, a compiled pattern is searched. For example static files and health
        checks: ``("/static/", "/healthz", re.compile(r"\\.(?:css|js|map|ico)$"))``.
    :param should_track: ``should_track(environ, status, headers) -> bool``, asked
        last, for every event the middleware would record. ``environ`` is a shallow
        copy taken when the application returned. A raising callable counts as an
        error and the request is not tracked.
    :param keep_query_params: query parameters kept in the URL in addition to the
        ones Plausible reads; ``("*",)`` keeps the whole query string.
    :param url_masks: ``(regex, replacement)`` pairs applied to the path in order,
        e.g. ``[(r"/users/\\d+", "/users/:id")]``.
    :param allowed_hosts: only requests for these hosts are tracked (others are
        counted as ``skipped["host"]``), so that a forged ``Host`` header cannot add
        pages to your stats. Exact names, or ``".example.com"`` for ``example.com``
        and all its subdomains; ports are ignored. ``None`` allows any valid host.
        Events a handler records itself with ``track()`` are not filtered.
    :param bots: what to do with requests whose User-Agent is automated (see
        :mod:`plausible_wsgi.agents`; a missing User-Agent counts as a bot).
        ``"skip"``: no page view, counted by kind as ``skipped["bot:<kind>"]``
        (Plausible would drop them anyway; this saves the POST). ``"event"``: record
        a custom event ``bot_event_name`` with props ``agent``, ``operator``,
        ``kind``, ``path``, ``status`` (and no referrer) for every bot request that
        passes the host, path, method and ``should_track`` rules, whatever its status
        or content type (crawlers fetch ``robots.txt``, feeds and sitemaps). ``"pageview"``: treat
        bots like people.
    :param bot_event_name: the custom event name for ``bots="event"``.
    :param bot_domain: record bot events on this Plausible site instead of the
        main one, so bots never create visitors there: each collector with a
        ``for_domain()`` method (:class:`~plausible_wsgi.PlausibleCollector`) gets a
        sibling for that site, owned and closed by the middleware; other collectors
        receive bot events themselves.
    :param bot_user_agent: the User-Agent bot events are sent with. Plausible
        drops events whose User-Agent is a bot's, so the event uses an ordinary
        browser string (:data:`DEFAULT_BOT_USER_AGENT`); the real one is in the
        props. The IP sent is the bot's real IP, determined like a visitor's. That is
        the honest choice, and it gives each crawler address its own "visitor" and
        country. The trade-off: Plausible Cloud drops events from known datacenter
        ranges, where most crawlers live, so some bot events will be dropped there
        (the collector counts them as ``dropped["server_dropped"]``). Sending no IP
        would not help (Plausible then uses your server's address, also a datacenter
        one) and a made-up residential address would be false data.
    :param classifier: an :class:`~plausible_wsgi.agents.AgentClassifier` with your
        own rules, instead of the default table.
    :param track_404: record ``404`` responses with an HTML body as Plausible's
        "404" goal: a custom event named ``404`` with a ``path`` prop.
    :param track_actions: record successful (``2xx``/``3xx``, so that
        post-redirect-get counts) requests with a method that changes something
        (``POST``, ``PUT``, ``PATCH``, ``DELETE``, ...) as server-action events
        (``interactive: false``) named ``"<METHOD> <route>"``. Integrations put the
        route template in ``environ["plausible_wsgi.route"]`` (Flask:
        ``/users/<int:id>``); without it the masked path is used.
    :param file_downloads: record downloads as Plausible's standard
        ``File Download`` event (with a ``url`` prop) instead of a page view,
        whatever their content type: ``2xx`` responses with
        ``Content-Disposition: attachment`` or a path ending in one of
        ``download_extensions``. A ``206`` range response counts only when it starts
        at byte 0 (players fetch files in many ranges).
    :param download_extensions: extensions (without dot, case-insensitive) that
        mark a download.

    Usage::

        import plausible_wsgi as pw

        collector = pw.PlausibleCollector("example.com")
        app.wsgi_app = pw.PlausibleMiddleware(
            app.wsgi_app,
            collector,
            trusted_proxies=1,                       # one nginx in front
            exclude_paths=("/static/", "/healthz"),
            url_masks=[(r"/users/\\d+", "/users/:id")],
            allowed_hosts=[".example.com"],
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
    ) -> None:
        #: The wrapped application.
        self.app = app
        #: Where every event goes.
        self.collectors: tuple[Collector, ...] = _check_collectors(collectors)
        if isinstance(trusted_proxies, bool) or not isinstance(trusted_proxies, int):
            raise ConfigurationError(f"trusted_proxies must be an int, got {trusted_proxies!r}")
        if trusted_proxies < 0:
            raise ConfigurationError(f"trusted_proxies must be >= 0, got {trusted_proxies}")
        self.trusted_proxies = trusted_proxies
        self.methods = frozenset(_strings("methods", methods, str.upper))
        self.statuses = statuses
        self.content_types = frozenset(_strings("content_types", content_types, str.lower))
        self.should_track = should_track
        if should_track is not None and not callable(should_track):
            raise ConfigurationError(f"should_track must be callable, got {should_track!r}")
        self.track_404 = bool(track_404)
        self.track_actions = bool(track_actions)
        self.file_downloads = bool(file_downloads)
        self.download_extensions = frozenset(
            _strings("download_extensions", download_extensions, lambda e: e.lower().lstrip("."))
        )
        if bots not in _BOT_MODES:
            raise ConfigurationError(f"bots must be one of {_BOT_MODES}, got {bots!r}")
        self.bots: BotMode = bots
        self.bot_event_name = _check_event_name("bot_event_name", bot_event_name)
        if not isinstance(bot_user_agent, str) or not bot_user_agent.strip():
            raise ConfigurationError(
                f"bot_user_agent must be a non-blank string: {bot_user_agent!r}"
            )
        self.bot_user_agent = bot_user_agent
        self.bot_domain = bot_domain
        if classifier is not None and not isinstance(classifier, AgentClassifier):
            raise ConfigurationError(f"classifier must be an AgentClassifier, got {classifier!r}")
        self._classify: Callable[[Optional[str]], Optional[AgentMatch]] = (
            classify_user_agent if classifier is None else classifier.classify
        )
        self._page_types: dict[Optional[str], bool] = {}
        self._paths = PathRules(exclude_paths, url_masks)
        self._mask = self._paths.mask if self._paths.masks else None
        self._excluded = (
            self._paths.excluded if self._paths.prefixes or self._paths.patterns else None
        )
        self._query = QueryPolicy(keep_query_params)
        self._hosts = HostPolicy(allowed_hosts)
        self._host_allowed = self._hosts.check
        # Recent request targets and User-Agents, worked out once each (see _Page).
        self._pages: dict[tuple[object, ...], _Page] = {}
        self._visitors: dict[object, tuple[Optional[str], Optional[AgentMatch]]] = {}
        self._bot_collectors = self._collectors_for_bots(bot_domain)
        self._names = tuple(_collector_name(c) for c in self.collectors)
        self._bot_names = tuple(_collector_name(c) for c in self._bot_collectors)

        self._lock = threading.Lock()
        self._requests = 0
        self._tracked: dict[str, int] = {}
        self._skipped: dict[str, int] = {}
        # Outcomes not yet added to the counters: a deque append is atomic, so the
        # request path takes no lock; _fold() counts them (in stats(), and every
        # _FOLD_AT requests).
        self._tracks: collections.deque[str] = collections.deque()
        self._skips: collections.deque[str] = collections.deque()
        self._errors = 0
        self._closed = False
        self._log = RateLimitedLog()
        _register_for_exit(self)

    def _collectors_for_bots(self, bot_domain: Optional[str]) -> tuple[Collector, ...]:
        if bot_domain is None or self.bots != "event":
            return self.collectors
        if not isinstance(bot_domain, str) or not bot_domain.strip():
            raise ConfigurationError(f"bot_domain must be a site domain, got {bot_domain!r}")
        siblings: list[Collector] = []
        for collector in self.collectors:
            for_domain = getattr(collector, "for_domain", None)
            siblings.append(for_domain(bot_domain) if callable(for_domain) else collector)
        return tuple(siblings)

    def __repr__(self) -> str:
        return f"<PlausibleMiddleware app={self.app!r} collectors={list(self._names)}>"

    # -- the request path --------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self._start(environ, start_response)
        except Exception as exc:
            self._error("reading the request", exc, request=True)
            return self.app(environ, start_response)
        info = response.info
        token = bind_request(info) if info is not None else None
        try:
            iterable = self.app(environ, response.start_response)
        except BaseException:
            if token is not None:
                unbind_request(token)
            response.failed = True
            self._finish(response)
            raise
        if token is not None:
            unbind_request(token)
        try:
            if self.track_actions:
                route = environ.get(_ROUTE_KEY)
                response.route = route if isinstance(route, str) else None
            if self.should_track is not None:
                response.environ = dict(environ)
            file_wrapper = environ.get("wsgi.file_wrapper")
            if isinstance(file_wrapper, type) and isinstance(iterable, file_wrapper):
                self._finish(response)
                return iterable
            response.iterable = iterable
            if hasattr(iterable, "__len__"):
                response.__class__ = _SizedResponse
        except Exception as exc:
            self._error("wrapping the response", exc)
            response.iterable = iterable
        return response

    def _start(self, environ: WSGIEnvironment, start_response: StartResponse) -> _Response:
        get = environ.get
        key = (
            get("wsgi.url_scheme"),
            get("HTTP_HOST"),
            get("SCRIPT_NAME", ""),
            get("PATH_INFO", ""),
            get("QUERY_STRING", ""),
        )
        raw_agent = get("HTTP_USER_AGENT")
        try:
            page = self._pages.get(key)
            visitor = self._visitors.get(raw_agent)
        except TypeError:  # an unhashable value from a broken server
            page = visitor = None
        if page is None:
            page = self._page(environ, key)
        if visitor is None:
            visitor = self._visitor(raw_agent)
        url = page.url
        info: Optional[RequestInfo] = None
        if url is not None:
            if self.trusted_proxies:
                ip = client_ip(environ, self.trusted_proxies)
            else:  # client_ip()'s first case, inline
                remote = get("REMOTE_ADDR")
                ip = normalize_ip(remote) if isinstance(remote, str) else None
            info = _new(RequestInfo, (url, referrer_origin(get("HTTP_REFERER")), visitor[0], ip))
        method = get("REQUEST_METHOD", "")
        response = _Response(self, start_response, method, page, info, visitor[1])
        if self.file_downloads:
            response.range = get("HTTP_RANGE")
        return response

    def _page(self, environ: WSGIEnvironment, key: tuple[object, ...]) -> _Page:
        """Work out a request target's :class:`_Page` (and remember it when small)."""
        scheme, host_header, script_name, path_info, query = key
        path = decode_path(script_name, path_info)  # type: ignore[arg-type]
        mask = self._mask
        url_path = escape_path(path if mask is None else mask(path))
        host = request_host(environ)
        url: Optional[str] = None
        url_valid = host_ok = False
        if host and scheme in ("https", "http"):
            url = f"{scheme}://{host}{url_path}"
            query_start = -1
            if query and isinstance(query, str) and (query := self._query.scrub(query)):
                query_start = len(url)
                url = f"{url}?{query}"
            if len(url) > _SHORT_URL:
                url = fit_url(url, query_start)
            url_valid = url_parses(url)
            host_ok = self._host_allowed(host)
        page = _Page(
            path,
            url_path,
            url,
            url_valid,
            host_ok,
            self._excluded is not None and self._excluded(path),
            self.file_downloads and _has_extension(path, self.download_extensions),
        )
        # Without a Host header the host comes from SERVER_NAME/SERVER_PORT, which
        # are not in the key; long targets are not kept (bounded memory).
        if (
            isinstance(host_header, str)
            and isinstance(query, str)
            and len(host_header) + len(path) + len(query) <= _MEMO_MAX_LENGTH
        ):
            _remember(self._pages, key, page)
        return page

    def _visitor(self, raw_agent: object) -> tuple[Optional[str], Optional[AgentMatch]]:
        """The sendable User-Agent and, unless ``bots="pageview"``, what agent it is."""
        agent = sendable_user_agent(raw_agent)
        visitor = (agent, None if self.bots == "pageview" else self._classify(agent))
        if raw_agent is None or (isinstance(raw_agent, str) and len(raw_agent) <= _MEMO_MAX_LENGTH):
            _remember(self._visitors, raw_agent, visitor)
        return visitor

    def _finish(self, response: _Response) -> None:
        """Decide what the finished request was and record it. Never raises."""
        try:
            decision = self._decide(response)
        except Exception as exc:
            self._error("deciding", exc, request=True)
            return
        finally:
            response.environ = None
        if isinstance(decision, str):
            outcomes = self._skips
            outcomes.append(decision)
            if len(outcomes) >= _FOLD_AT:
                self._fold()
            return
        category, event = decision
        outcomes = self._tracks
        outcomes.append(category)
        if len(outcomes) >= _FOLD_AT:
            self._fold()
        if category == "bot":
            targets, names = self._bot_collectors, self._bot_names
        else:
            targets, names = self.collectors, self._names
        for collector, name in zip(targets, names):
            try:
                collector.collect(event)
            except Exception as exc:
                self._error(f"collector {name}", exc)

    def _decide(self, response: _Response) -> Union[str, tuple[str, Event]]:
        """A skip reason, or what to record: ``(category, event)``."""
        if response.failed:
            return "exception"
        status = _status_codes.get(response.status) or _status_code(response.status)
        if status is None:
            return "no_status"
        info = response.info
        page = response.page
        if info is None or not page.host_ok:
            return "host"
        if page.excluded:
            return "excluded"
        method = response.method
        if method in self.methods:
            action = False
        elif self.track_actions and method not in _SAFE_METHODS:
            action = True
        else:
            return "method"
        url = info.url
        agent = response.agent  # None with bots="pageview"
        if agent is not None:
            if self.bots == "skip":
                return f"bot:{agent.kind}"
            return self._asked(
                response, status, "bot", self._bot_event(info, agent, response, status)
            )
        content_type, disposition = _content_headers(response.headers)
        if action:
            if not 200 <= status < 400:
                return "status"
            route = response.route or page.url_path
            name = f"{method} {route}"[:MAX_NAME_LENGTH]
            event = _new(
                Event,
                (
                    ACTION, name, url, info.referrer, None, None, False,
                    info.user_agent, info.client_ip,
                ),
            )  # fmt: skip
            return self._asked(response, status, "action", event)
        if (
            self.file_downloads
            and 200 <= status < 300
            and (page.download or _is_attachment(disposition))
        ):
            if status == 206 and not (response.range or "").replace(" ", "").startswith("bytes=0-"):
                return "partial"
            event = _new(
                Event,
                (
                    CUSTOM, "File Download", url, info.referrer,
                    {"url": url}, None, True, info.user_agent, info.client_ip,
                ),
            )  # fmt: skip
            return self._asked(response, status, "file_download", event)
        is_page = self._page_types.get(content_type)
        if is_page is None:
            is_page = self._is_page(content_type)
        if status == 404 and self.track_404 and is_page:
            event = _new(
                Event,
                (
                    CUSTOM, "404", url, info.referrer,
                    {"path": _fit_prop(page.url_path)}, None, True,
                    info.user_agent, info.client_ip,
                ),
            )  # fmt: skip
            return self._asked(response, status, "404", event)
        if status not in self.statuses:
            return "status"
        if not is_page:
            return "content_type"
        # Every part of a page view was made safe in _start (URL built, escaped and fitted;
        # referrer cut; UA sendable; IP parsed) but whether the URL splits: checked here,
        # once, instead of a full re-validation in every collector.
        event = _new(
            ValidEvent if page.url_valid else Event,
            (
                PAGEVIEW, "pageview", url, info.referrer, None, None, True,
                info.user_agent, info.client_ip,
            ),
        )  # fmt: skip
        if self.should_track is None:
            return "pageview", event
        return self._asked(response, status, "pageview", event)

    def _asked(
        self, response: _Response, status: int, category: str, event: Event
    ) -> Union[str, tuple[str, Event]]:
        """``(category, event)`` unless ``should_track`` says no."""
        should_track = self.should_track
        if should_track is not None:
            try:
                wanted = should_track(response.environ or {}, status, response.headers)
            except Exception as exc:
                self._error("should_track", exc)
                return "should_track"
            if not wanted:
                return "should_track"
        return category, event

    def _bot_event(
        self, info: RequestInfo, agent: AgentMatch, response: _Response, status: int
    ) -> Event:
        props = {
            "agent": agent.agent,
            "operator": agent.operator,
            "kind": agent.kind,
            "path": _fit_prop(response.page.url_path),
            "status": str(status),
        }
        return _new(
            Event,
            (
                CUSTOM,
                self.bot_event_name,
                info.url,
                None,
                {key: value for key, value in props.items() if value},
                None,
                True,
                self.bot_user_agent,
                info.client_ip,
            ),
        )

    def _is_page(self, content_type: Optional[str]) -> bool:
        is_page = (
            content_type is not None
            and content_type.partition(";")[0].strip().lower() in self.content_types
        )
        # Apps send a handful of distinct values; the bound keeps a hostile app's
        # variety from growing the cache.
        _remember(self._page_types, content_type, is_page, _CACHE_LIMIT)
        return is_page

    def _error(self, where: str, exc: BaseException, *, request: bool = False) -> None:
        with self._lock:
            self._errors += 1
            if request:
                self._requests += 1
        # The exception type only: messages may quote visitor data (URLs, headers).
        self._log.log(
            logging.WARNING,
            where,
            "PlausibleMiddleware: error while %s (%s); the request was not tracked",
            where,
            type(exc).__name__,
        )
        logger.debug("PlausibleMiddleware: error while %s", where, exc_info=exc)

    # -- reporting and lifecycle -------------------------------------------------------

    def _fold(self) -> None:
        """Move the noted outcomes into the counters."""
        with self._lock:
            for outcomes, counts in ((self._tracks, self._tracked), (self._skips, self._skipped)):
                # Appends may continue meanwhile: take what is there now, oldest first.
                for _ in range(len(outcomes)):
                    outcome = outcomes.popleft()
                    counts[outcome] = counts.get(outcome, 0) + 1
                    self._requests += 1

    def stats(self) -> MiddlewareStats:
        """A snapshot of the counters; see :class:`MiddlewareStats`."""
        self._fold()
        with self._lock:
            return MiddlewareStats(
                requests=self._requests,
                tracked=MappingProxyType(dict(self._tracked)),
                skipped=MappingProxyType(dict(self._skipped)),
                errors=self._errors,
            )

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close every collector of this middleware within one deadline.

        :param timeout: seconds for all of them together; ``None`` uses the largest
            ``shutdown_timeout`` among them (5 seconds for collectors without one).

        Idempotent; also runs at interpreter exit. A collector that raises is
        logged and counted and does not keep the others from closing. Requests
        still pass through afterwards, untracked by the closed collectors.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        owned: list[Collector] = []
        for collector in (*self.collectors, *self._bot_collectors):
            if not any(collector is seen for seen in owned):
                owned.append(collector)
        if timeout is None:
            timeout = max(
                (_shutdown_timeout(collector) for collector in owned),
                default=_DEFAULT_CLOSE_TIMEOUT,
            )
        deadline = time.monotonic() + timeout
        for step in ("flush", "close"):
            for collector in owned:
                try:
                    getattr(collector, step)(max(0.0, deadline - time.monotonic()))
                except Exception as exc:
                    self._error(f"{step}ing collector {_collector_name(collector)}", exc)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V, limit: int = _MEMO_SIZE) -> None:
    """Keep ``value`` in a bounded memo; a full memo starts over (cheaper than LRU
    bookkeeping on every hit, and what repeats comes back within a few requests)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


_status_codes: dict[Optional[str], int] = {}


def _status_code(status: Optional[str]) -> Optional[int]:
    """The code of a status line (``"404 Not Found"`` → 404); remembered per line."""
    try:
        code = int(status[:3])  # type: ignore[index]
    except (TypeError, ValueError):
        return None
    _remember(_status_codes, status, code, _CACHE_LIMIT)
    return code


def _content_headers(headers: list[tuple[str, str]]) -> tuple[Optional[str], Optional[str]]:
    content_type = disposition = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        elif lowered == "content-disposition":
            disposition = value
    return content_type, disposition


def _is_attachment(disposition: Optional[str]) -> bool:
    return disposition is not None and disposition.lstrip()[:10].lower() == "attachment"


def _has_extension(path: str, extensions: Container[str]) -> bool:
    name = path.rpartition("/")[2]
    return "." in name and name.rpartition(".")[2].lower() in extensions


def _fit_prop(value: str) -> str:
    if len(value) > MAX_PROP_VALUE_BYTES // 4:
        value = value.encode("utf-8")[:MAX_PROP_VALUE_BYTES].decode("utf-8", "ignore")
    return value


def _shutdown_timeout(collector: Collector) -> float:
    value = getattr(collector, "shutdown_timeout", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return _DEFAULT_CLOSE_TIMEOUT


def _collector_name(collector: object) -> str:
    name = getattr(collector, "name", None)
    return name if isinstance(name, str) else type(collector).__name__


def _check_collectors(collectors: object) -> tuple[Collector, ...]:
    items = (
        (collectors,)
        if isinstance(collectors, Collector) or not isinstance(collectors, Sequence)
        else tuple(collectors)
    )
    if not items:
        raise ConfigurationError("collectors must name at least one collector")
    for item in items:
        if not isinstance(item, Collector):
            raise ConfigurationError(
                f"collectors must be Collector objects (collect, flush, close, stats, name), "
                f"got {item!r}"
            )
    return items


def _strings(name: str, values: Iterable[str], normalize: Callable[[str], str]) -> list[str]:
    if isinstance(values, str):
        raise ConfigurationError(f"{name} must be an iterable of strings, not a string: {values!r}")
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{name} must hold non-blank strings, got {value!r}")
        out.append(normalize(value.strip()))
    return out


def _check_event_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"{name} must be a non-blank string of at most {MAX_NAME_LENGTH} characters, "
            f"got {value!r}"
        )
    if value in _RESERVED_NAMES:
        raise ConfigurationError(f"{name} must not be {value!r}: Plausible reserves it")
    return value


# -- interpreter exit ------------------------------------------------------------------

_live: weakref.WeakSet[PlausibleMiddleware] = weakref.WeakSet()
_live_lock = threading.Lock()
_exit_hook_installed = False


def _register_for_exit(middleware: PlausibleMiddleware) -> None:
    """Close ``middleware``'s collectors at exit, without keeping it alive.

    PlausibleCollectors are flushed at exit by the delivery engine anyway (before
    this hook runs); this covers every other collector (memory, logging, your own).
    """
    global _exit_hook_installed
    with _live_lock:
        _live.add(middleware)
        if _exit_hook_installed:
            return
        _exit_hook_installed = True
    atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    for middleware in list(_live):
        try:
            middleware.close()
        except Exception:
            logger.debug("PlausibleMiddleware: close at exit failed", exc_info=True)
