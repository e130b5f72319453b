"""The request a ``track()`` call belongs to.

:class:`~plausible_wsgi.PlausibleMiddleware` binds a :class:`RequestInfo` for the
duration of each request, so handlers can call ``collector.track("Signup")`` and the
event carries the visitor's URL, referrer, User-Agent and IP. A :mod:`contextvars`
variable keeps this correct under threaded servers (gunicorn gthread, waitress) and
inside ``copy_context()`` tasks.
"""

from __future__ import annotations

import contextvars
from typing import Optional

__all__ = ["RequestInfo", "bind_request", "current_request", "unbind_request"]


class RequestInfo:
    """What an event needs to know about the visitor's request.

    A slotted class, not a NamedTuple: the middlewares' record of a request in flight
    (:class:`~plausible_wsgi.middleware.exchange.Exchange`) is one and is bound itself,
    so a request makes one object instead of two (~3k instructions per request).
    """

    __slots__ = ("client_ip", "referrer", "url", "user_agent")

    def __init__(
        self,
        url: str,
        referrer: Optional[str] = None,
        user_agent: Optional[str] = None,
        client_ip: Optional[str] = None,
    ) -> None:
        #: The page URL as Plausible should see it (scrubbed and masked).
        self.url = url
        #: The ``Referer`` header, if any.
        self.referrer = referrer
        #: The visitor's User-Agent.
        self.user_agent = user_agent
        #: The visitor's IP address (after the trusted-proxy rules).
        self.client_ip = client_ip


_current: contextvars.ContextVar[Optional[RequestInfo]] = contextvars.ContextVar(
    "plausible_wsgi.request", default=None
)

#: The request being handled in this context, or ``None`` outside a request.
current_request = _current.get


#: Make a :class:`RequestInfo` current; returns the token for :func:`unbind_request`.
#: (Plain aliases: this runs twice per request.)
bind_request = _current.set
#: Restore the request that was current before :func:`bind_request`.
unbind_request = _current.reset
