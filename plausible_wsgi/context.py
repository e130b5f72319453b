"""The request a ``track()`` call belongs to.

:class:`~plausible_wsgi.PlausibleMiddleware` binds a :class:`RequestInfo` for the
duration of each request, so handlers can call ``collector.track("Signup")`` and the
event carries the visitor's URL, referrer, User-Agent and IP. A :mod:`contextvars`
variable keeps this correct under threaded servers (gunicorn gthread, waitress) and
inside ``copy_context()`` tasks.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Callable, NamedTuple, Optional, cast

__all__ = [
    "RequestInfo",
    "bind_request",
    "current_request",
    "new_request_info",
    "unbind_request",
]


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


#: ``new_request_info((url, referrer, user_agent, client_ip))``: a :class:`RequestInfo`
#: from its fields in order. The middlewares make one per request this way: the
#: NamedTuple's generated ``__new__`` costs ~2k instructions a call on 3.11.
new_request_info = cast(
    "Callable[[tuple[str, Optional[str], Optional[str], Optional[str]]], RequestInfo]",
    functools.partial(tuple.__new__, RequestInfo),
)

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
