"""The request a ``track()`` call belongs to.

:class:`~plausible_wsgi.PlausibleMiddleware` binds a :class:`RequestInfo` for the
duration of each request, so handlers can call ``collector.track("Signup")`` and the
event carries the visitor's URL, referrer, User-Agent and IP. A :mod:`contextvars`
variable keeps this correct under threaded servers (gunicorn gthread, waitress) and
inside ``copy_context()`` tasks.
"""

from __future__ import annotations

import contextvars
from typing import NamedTuple, Optional

__all__ = ["RequestInfo", "bind_request", "current_request", "unbind_request"]


class RequestInfo(NamedTuple):
    """What an event needs to know about the visitor's request."""

    #: The page URL as Plausible should see it (scrubbed and masked).
    url: str
    #: The ``Referer`` header, if any.
    referrer: Optional[str] = None
    #: The visitor's User-Agent.
    user_agent: Optional[str] = None
    #: The visitor's IP address (after the trusted-proxy rules).
    client_ip: Optional[str] = None


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
