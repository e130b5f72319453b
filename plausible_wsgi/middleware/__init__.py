"""PlausibleMiddleware: page views, and the request context for ``track()``.

Read in data-flow order: :mod:`.options` (the checked options), :mod:`.pages` (what a
request target says, remembered), :mod:`.decision` (the rules, a pure function shared
with :mod:`plausible_wsgi.asgi`, and the event they plan), :mod:`.exchange` (one request
in flight), :mod:`.recorder` (decisions remembered per target, counting, fan-out,
closing), :mod:`.response` and :mod:`.wsgi` (the environ and the response wrapper).
"""

from __future__ import annotations

from .decision import Decision, EventPlan, RequestFacts, ResponseFacts, Skip, Tracked, decide
from .options import (
    DEFAULT_BOT_USER_AGENT,
    DEFAULT_DOWNLOAD_EXTENSIONS,
    ROUTE_ENVIRON_KEY,
    MiddlewareOptions,
)
from .stats import MiddlewareStats
from .wsgi import PlausibleMiddleware

__all__ = [
    "DEFAULT_BOT_USER_AGENT",
    "DEFAULT_DOWNLOAD_EXTENSIONS",
    "ROUTE_ENVIRON_KEY",
    "Decision",
    "EventPlan",
    "MiddlewareOptions",
    "MiddlewareStats",
    "PlausibleMiddleware",
    "RequestFacts",
    "ResponseFacts",
    "Skip",
    "Tracked",
    "decide",
]
