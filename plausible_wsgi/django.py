"""Django integration: settings-driven middleware and ``track()`` for views.

Two ways to set it up:

1. **Settings** (recommended). Add the middleware and a ``PLAUSIBLE`` dict::

       MIDDLEWARE = [
           "plausible_wsgi.django.PlausibleMiddleware",
           ...
       ]
       PLAUSIBLE = {
           "DOMAIN": "example.com",
           "ENDPOINT": "https://plausible.io",
           "TRUSTED_PROXIES": 1,
           "TRACK_ACTIONS": True,
       }

   The keys are the keyword arguments of :class:`~plausible_wsgi.PlausibleCollector`
   and :class:`~plausible_wsgi.PlausibleMiddleware` in upper case (``BATCH_SIZE``,
   ``EXCLUDE_PATHS``, ``BOTS``, ...; ``RETRY`` and ``CIRCUIT_BREAKER`` also take a
   dict of their arguments), plus ``COLLECTOR``: a ready collector or list of them
   instead of ``DOMAIN``/``ENDPOINT``/... (e.g. a ``MemoryCollector`` in tests).
   An unknown key raises :class:`PlausibleSettingsError` (both Django's
   ``ImproperlyConfigured`` and :class:`~plausible_wsgi.ConfigurationError`) naming the
   closest valid key. Add ``"plausible_wsgi.django.PlausibleConfig"`` to
   ``INSTALLED_APPS`` and ``manage.py check`` reports a bad ``PLAUSIBLE`` too.

   Put it near the top of ``MIDDLEWARE``: responses made by middleware above it are
   not seen. Server actions are named after the URL pattern
   (``request.resolver_match.route``, e.g. ``POST /items/<int:pk>/``).

2. **WSGI wrapping**, as for any WSGI app, in ``wsgi.py``::

       application = PlausibleMiddleware(get_wsgi_application(), collector)

   (the package's :class:`plausible_wsgi.PlausibleMiddleware`). Add
   ``"plausible_wsgi.django.RouteMiddleware"`` to ``MIDDLEWARE`` to get route names
   for server actions in this setup too.

Both decide what to record with the same code — the Django middleware runs
:class:`plausible_wsgi.PlausibleMiddleware` over ``request.META``, which under WSGI
is the request's WSGI environ — so URL scrubbing, trusted proxies, bot handling and
the rest behave identically.

In views, :func:`track` records a goal with the visitor's URL, referrer, User-Agent
and IP::

    from plausible_wsgi.django import track

    def signup(request):
        track("Signup", props={"plan": request.POST["plan"]})
"""

from __future__ import annotations

import contextvars
import threading
import typing as t
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, NamedTuple, Optional

# Django ships no type information (django-stubs is a separate, optional package).
from django.apps import AppConfig  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core import checks  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponseBase  # type: ignore[import-untyped]

from ._options import all_options, build, read_options, wrap
from .errors import ConfigurationError
from .events import Event
from .middleware import ROUTE_ENVIRON_KEY
from .middleware import PlausibleMiddleware as WSGIPlausibleMiddleware
from .tracking import Collector, Tracker

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "SETTING",
    "PlausibleConfig",
    "PlausibleMiddleware",
    "PlausibleSettingsError",
    "RouteMiddleware",
    "collector",
    "reset",
    "track",
    "track_action",
    "track_pageview",
]

#: The name of the settings dict.
SETTING = "PLAUSIBLE"

GetResponse = Callable[[HttpRequest], HttpResponseBase]


class _State(NamedTuple):
    middleware: WSGIPlausibleMiddleware
    collectors: tuple[Collector, ...]
    owned: bool


_state: Optional[_State] = None
_state_lock = threading.Lock()

# The Django request being handled, for the WSGI app the shared middleware wraps.
_call: contextvars.ContextVar[tuple[GetResponse, HttpRequest, list[HttpResponseBase]]] = (
    contextvars.ContextVar("plausible_wsgi.django.call")
)


def _run_django(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The "WSGI app" inside the shared middleware: the rest of Django's chain.

    The body stays with Django; the middleware only needs the status and headers.
    """
    get_response, request, out = _call.get()
    response = get_response(request)
    out.append(response)
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return ()


class PlausibleSettingsError(ImproperlyConfigured, ConfigurationError):  # type: ignore[misc]
    """A bad ``settings.PLAUSIBLE``: Django's ``ImproperlyConfigured`` and the package's
    :class:`~plausible_wsgi.ConfigurationError` at once, so code catching either sees it
    (Flask raises ``ConfigurationError`` for the same mistakes)."""


def _read_settings() -> dict[str, object]:
    raw = getattr(settings, SETTING, None)
    if raw is None:
        raise PlausibleSettingsError(
            f"settings.{SETTING} is missing: add {SETTING} = "
            '{"DOMAIN": "example.com"} to use plausible_wsgi.django'
        )
    if not isinstance(raw, Mapping):
        raise PlausibleSettingsError(f"settings.{SETTING} must be a dict, got {type(raw).__name__}")
    known = {name.upper(): name for name in all_options()}
    items = [(str(key).upper(), value) for key, value in raw.items()]
    try:
        return read_options(items, known, spell=lambda key: f"settings.{SETTING}[{key!r}]")
    except ConfigurationError as exc:
        raise PlausibleSettingsError(str(exc)) from None


def _get_state() -> _State:
    global _state
    state = _state
    if state is not None:
        return state
    with _state_lock:
        if _state is None:
            source = f"settings.{SETTING}"
            try:
                built = build(_read_settings(), source=source)
                middleware = wrap(_run_django, built, source=source)
            except PlausibleSettingsError:
                raise
            except ConfigurationError as exc:
                raise PlausibleSettingsError(str(exc)) from exc
            _state = _State(middleware, built.collectors, built.owned)
        return _state


def check_settings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """``manage.py check``: ``settings.PLAUSIBLE`` builds (keys, domain, endpoint, values).

    Registered when this module is imported: add ``"plausible_wsgi.django.PlausibleConfig"``
    to ``INSTALLED_APPS`` so that ``manage.py check`` imports it (the middleware alone
    is loaded only when a request handler is made).
    """
    if getattr(settings, SETTING, None) is None and _state is None:
        return [
            checks.Warning(
                f"settings.{SETTING} is missing: nothing is recorded",
                hint=f'add {SETTING} = {{"DOMAIN": "example.com"}}',
                id="plausible_wsgi.W001",
            )
        ]
    try:
        _get_state()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="plausible_wsgi.E001")]
    return []


checks.register(check_settings)


class PlausibleConfig(AppConfig):  # type: ignore[misc]
    """Add ``"plausible_wsgi.django.PlausibleConfig"`` to ``INSTALLED_APPS`` for the
    ``manage.py check`` system checks of ``settings.PLAUSIBLE``."""

    name = "plausible_wsgi.django"
    label = "plausible_wsgi"
    verbose_name = "Plausible Analytics (plausible_wsgi)"
    path = str(Path(__file__).resolve().parent)


def reset() -> None:
    """Forget the collectors built from settings; the next use reads settings again.

    Collectors built here are flushed and closed; a ``COLLECTOR`` you passed is left
    open. Runs by itself when ``PLAUSIBLE`` changes (``override_settings``).
    """
    global _state
    with _state_lock:
        state, _state = _state, None
    if state is not None:
        state.middleware.close()  # closes only what it owns (see _options.wrap)


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING:
        reset()


setting_changed.connect(_on_setting_changed, weak=False)


def _set_route(request: HttpRequest) -> None:
    match = request.resolver_match
    if match is not None and match.route is not None:
        route = match.route if match.route.startswith("/") else "/" + match.route
        request.META[ROUTE_ENVIRON_KEY] = route
        scope = getattr(request, "scope", None)  # under ASGI, for plausible_wsgi.asgi
        if isinstance(scope, dict):
            scope[ROUTE_ENVIRON_KEY] = route


class RouteMiddleware:
    """Only names the route, for the WSGI-wrapping setup.

    Stores ``request.resolver_match.route`` in the environ, where
    :class:`plausible_wsgi.PlausibleMiddleware` wrapped around
    ``get_wsgi_application()`` reads it to name server actions.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[object, ...],
        view_kwargs: dict[str, object],
    ) -> None:
        _set_route(request)


class PlausibleMiddleware(RouteMiddleware):
    """Django middleware recording page views and actions, configured by ``PLAUSIBLE``.

    - Settings are read (and checked) when Django loads the middleware; the
      collectors are shared by every middleware instance of the process.
    - While the view runs, :func:`track` and ``collector.track()`` default to this
      request's URL, referrer, User-Agent and IP.
    - The response is returned unchanged; recording never raises into Django.

    Synchronous only (Django adapts it under ASGI, but ``request.META`` then is not
    a WSGI environ: run Django under WSGI). Names the route as
    :class:`RouteMiddleware` does.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        _get_state()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        environ = request.META
        out: list[HttpResponseBase] = []
        token = _call.set((self.get_response, request, out))
        try:
            body = _get_state().middleware(environ, _discard_start_response)
            try:
                for _ in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        finally:
            _call.reset(token)
        return out[0]


def _discard_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], object]:
    return _no_write


def _no_write(data: bytes) -> None:
    raise RuntimeError("the Django response body is not written through WSGI here")


class _SettingsTracker(Tracker):
    """``track*`` into the collectors configured by ``settings.PLAUSIBLE``."""

    def accept(self, event: Event) -> bool:
        results = [item.collect(event) for item in _get_state().collectors]
        return all(results)


_tracker = _SettingsTracker()

#: Record a custom event (a goal); see :meth:`plausible_wsgi.PlausibleCollector.track`.
track = _tracker.track
#: Record a server action (``interactive: false``).
track_action = _tracker.track_action
#: Record a page view by hand (e.g. for a non-HTML response you want counted).
track_pageview = _tracker.track_pageview


def collector() -> Collector:
    """The collector configured by ``settings.PLAUSIBLE`` (the first, if several)."""
    return _get_state().collectors[0]
