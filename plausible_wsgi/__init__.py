"""Server-side Plausible Analytics for WSGI applications.

Wrap your app once and every page view a person would count is recorded with the
visitor's URL, referrer, User-Agent and IP; call ``collector.track(...)`` in
handlers for goals, props and revenue. Delivery happens in the background: buffered,
concurrent, retried, circuit-broken, flushed at exit and safe across ``fork()``.

Usage::

    import plausible_wsgi as pw

    collector = pw.PlausibleCollector("example.com")
    app.wsgi_app = pw.PlausibleMiddleware(app.wsgi_app, collector)
"""

from __future__ import annotations

import importlib
import logging
import typing

from .collector import PlausibleCollector
from .delivery.policies import CircuitBreakerConfig, RetryConfig
from .errors import ConfigurationError, InvalidEventError, PlausibleError
from .events import Event, EventKind, Revenue
from .lifecycle import close_all as shutdown
from .stats import CollectorStats, DropReason, Settlement
from .tracking import Collector, Props, PropValue, RevenueLike, Tracker

if typing.TYPE_CHECKING:
    from .middleware import MiddlewareStats, PlausibleMiddleware

__version__ = "0.1.0"

__all__ = [
    "CircuitBreakerConfig",
    "Collector",
    "CollectorStats",
    "ConfigurationError",
    "DropReason",
    "Event",
    "EventKind",
    "InvalidEventError",
    "MiddlewareStats",
    "PlausibleCollector",
    "PlausibleError",
    "PlausibleMiddleware",
    "PropValue",
    "Props",
    "RetryConfig",
    "Revenue",
    "RevenueLike",
    "Settlement",
    "Tracker",
    "__version__",
    "shutdown",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


#: Imported on first use: the middleware brings werkzeug and the bot rules (half of
#: the package's import time), which a process that only tracks or relays never needs.
_LAZY = {"MiddlewareStats": ".middleware", "PlausibleMiddleware": ".middleware"}


def __getattr__(name: str) -> object:
    # ``pw.testing.MemoryCollector`` works after a plain ``import plausible_wsgi``.
    if name == "testing":
        return importlib.import_module(f"{__name__}.testing")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
