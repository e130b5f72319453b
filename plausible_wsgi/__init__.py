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

from .collector import PlausibleCollector
from .delivery.policies import CircuitBreakerConfig, RetryConfig
from .errors import ConfigurationError, InvalidEventError, PlausibleError
from .events import Event, EventKind, Revenue
from .lifecycle import close_all as shutdown
from .middleware import MiddlewareStats, PlausibleMiddleware
from .stats import CollectorStats, DropReason, Settlement
from .tracking import Collector, Props, PropValue, RevenueLike, Tracker

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


def __getattr__(name: str) -> object:
    # ``pw.testing.MemoryCollector`` works after a plain ``import plausible_wsgi``.
    if name == "testing":
        return importlib.import_module(f"{__name__}.testing")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
