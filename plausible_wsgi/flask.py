"""Flask integration: configure from ``app.config``, track from views.

The extension wraps ``app.wsgi_app`` in :class:`~plausible_wsgi.PlausibleMiddleware`
with a collector built from ``app.config``, and records each request's URL rule so
server-action events are named after the route (``POST /items/<int:id>``) rather
than the concrete path.

Every keyword argument of :class:`~plausible_wsgi.PlausibleCollector` and of
:class:`~plausible_wsgi.PlausibleMiddleware` is read from ``app.config`` as
``PLAUSIBLE_`` + the argument name in upper case; absent keys keep the documented
defaults:

============================  ==============================================
``PLAUSIBLE_DOMAIN``          ``domain`` (required unless ``PLAUSIBLE_COLLECTOR``)
``PLAUSIBLE_ENDPOINT``        ``endpoint``
``PLAUSIBLE_BATCH_SIZE``      ``batch_size``, and so on for ``FLUSH_INTERVAL``,
                              ``MAX_QUEUE_SIZE``, ``MAX_WORKERS``, ``TIMEOUT``,
                              ``SHUTDOWN_TIMEOUT``, ``CA_BUNDLE``
``PLAUSIBLE_RETRY``           ``retry``: a ``RetryConfig``, a dict of its
                              arguments, or ``None``/``False`` to disable
``PLAUSIBLE_CIRCUIT_BREAKER`` ``circuit_breaker``: likewise
``PLAUSIBLE_TRUSTED_PROXIES`` ``trusted_proxies``, and so on for every middleware
                              option (``METHODS``, ``EXCLUDE_PATHS``,
                              ``SHOULD_TRACK``, ``BOTS``, ``TRACK_ACTIONS``, ...)
``PLAUSIBLE_COLLECTOR``       a ready collector or a list of them, instead of
                              the options above (e.g. a ``MemoryCollector`` in
                              tests)
============================  ==============================================

An unknown ``PLAUSIBLE_*`` key raises :class:`~plausible_wsgi.ConfigurationError`
naming the closest known key, since a typo would otherwise silently keep a default
(``PLAUSIBLE_TRUSTED_PROXY = 1``: every visitor recorded with the proxy's IP). Django's
``PLAUSIBLE`` dict is checked the same way.

In tests, set ``PLAUSIBLE_COLLECTOR`` to a
:class:`~plausible_wsgi.testing.MemoryCollector`. The middleware records a page view
when the server closes the response; Flask's test client does that for
``client.get(..., buffered=True)`` or once the response is closed.

Usage::

    from plausible_wsgi.flask import Plausible

    plausible = Plausible()

    def create_app():
        app = Flask(__name__)
        app.config["PLAUSIBLE_DOMAIN"] = "example.com"
        plausible.init_app(app)
        return app

    @bp.post("/signup")
    def signup():
        plausible.track("Signup", props={"plan": "pro"})
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import NamedTuple, Optional

import flask

from ._options import all_options, build, read_options, wrap
from .events import Event
from .middleware import ROUTE_ENVIRON_KEY, PlausibleMiddleware
from .tracking import Collector, Tracker

__all__ = ["CONFIG_PREFIX", "ROUTE_ENVIRON_KEY", "Plausible", "config_keys"]

#: Prefix of the extension's keys in ``app.config``.
CONFIG_PREFIX = "PLAUSIBLE_"
#: The key of the extension in ``app.extensions``.
EXTENSION_KEY = "plausible"


def config_keys() -> dict[str, str]:
    """``app.config`` key → the collector or middleware argument it sets."""
    return {CONFIG_PREFIX + name.upper(): name for name in all_options()}


class _AppState(NamedTuple):
    middleware: PlausibleMiddleware
    collectors: tuple[Collector, ...]


def _read_config(config: Mapping[str, object]) -> dict[str, object]:
    items = [
        (key, config[key])
        for key in config
        if isinstance(key, str) and key.startswith(CONFIG_PREFIX)
    ]
    return read_options(items, config_keys(), spell=lambda key: f"app.config[{key!r}]")


def _remember_route(sender: flask.Flask, **extra: object) -> None:
    """``request_started``: put the URL rule where the middleware finds it at close."""
    rule = flask.request.url_rule
    if rule is not None:
        flask.request.environ[ROUTE_ENVIRON_KEY] = rule.rule


class Plausible(Tracker):
    """The Flask extension: ``Plausible(app)`` or ``Plausible()`` + ``init_app(app)``.

    - Builds the collector and the middleware from ``app.config`` (see the module
      docs for the keys) and wraps ``app.wsgi_app``.
    - Registers itself as ``app.extensions["plausible"]``.
    - Names server actions after the Flask URL rule.
    - ``track()``, ``track_pageview()`` and ``track_action()`` record into the
      current app's collectors, with the current request's URL, referrer,
      User-Agent and IP as defaults.

    One extension object may serve several apps (an app factory); its properties
    then refer to the app of the current app context.

    :param app: the app to set up now; or call :meth:`init_app` later.
    """

    def __init__(self, app: Optional[flask.Flask] = None) -> None:
        self._states: weakref.WeakKeyDictionary[flask.Flask, _AppState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Plausible apps={len(self._states)}>"

    def init_app(self, app: flask.Flask) -> None:
        """Read ``app.config``, wrap ``app.wsgi_app`` and register the extension.

        :raises ConfigurationError: for a missing ``PLAUSIBLE_DOMAIN`` or an invalid
            setting; the message names it.
        :raises RuntimeError: when the app already has a Plausible extension.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "this Flask app already has a Plausible extension "
                "(app.extensions['plausible']); call init_app() once per app"
            )
        source = "app.config (PLAUSIBLE_* keys)"
        built = build(_read_config(app.config), source=source)
        middleware = wrap(app.wsgi_app, built, source=source)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        if middleware.options.track_actions:
            # The route names actions only: without them, no signal on every request.
            flask.request_started.connect(_remember_route, app, weak=False)
        with self._lock:
            self._states[app] = _AppState(middleware, built.collectors)
        app.extensions[EXTENSION_KEY] = self

    def _state(self) -> _AppState:
        if flask.has_app_context():
            app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
            state = self._states.get(app)
            if state is None:
                raise RuntimeError(
                    f"Plausible.init_app() was not called for the current app {app.name!r}"
                )
            return state
        with self._lock:
            states = list(self._states.values())
        if len(states) == 1:
            return states[0]
        if not states:
            raise RuntimeError("Plausible is not set up: call Plausible(app) or init_app(app)")
        raise RuntimeError(
            "Plausible serves several apps: use it inside an app context "
            "(a request, or `with app.app_context():`)"
        )

    @property
    def middleware(self) -> PlausibleMiddleware:
        """The current app's :class:`~plausible_wsgi.PlausibleMiddleware`."""
        return self._state().middleware

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """Every collector of the current app."""
        return self._state().collectors

    @property
    def collector(self) -> Collector:
        """The current app's collector (the first, when several were configured)."""
        return self._state().collectors[0]

    def accept(self, event: Event) -> bool:
        results = [collector.collect(event) for collector in self._state().collectors]
        return all(results)
