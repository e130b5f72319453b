"""One request in flight: what it said when it started and how the application answered.

Both middlewares make an :class:`Exchange` when a request starts and fill in the
response as it goes by; the :class:`~.recorder.Recorder` decides at the end. The
typed facts :func:`~.decision.decide` reads are made from it only when a decision is
not already known (see :meth:`~.recorder.Recorder.decision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Union

from ..agents import AgentMatch
from ..context import RequestInfo
from .decision import RequestFacts
from .pages import Page

__all__ = ["Exchange", "status_code"]


class Exchange(RequestInfo):
    """The facts of one request, as the middleware reads and observes them.

    It is the request's :class:`~plausible_wsgi.context.RequestInfo` too: bound as the
    current request while the application runs (when :attr:`visitor`), so a request
    makes one object, not two.
    """

    __slots__ = (
        "agent",
        "failed",
        "headers",
        "method",
        "page",
        "range",
        "route",
        "server",
        "status",
        "view",
        "visitor",
    )

    def __init__(  # noqa: PLR0917 (one per request: keyword passing costs)
        self,
        server: Any,
        method: str,
        page: Page,
        referrer: Optional[str],
        user_agent: Optional[str],
        client_ip: Optional[str],
        agent: Optional[AgentMatch],
        range_: Optional[str],
    ) -> None:
        url = page.url
        #: The page's URL is usable (a valid scheme and host): only then is the request
        #: bound for ``track()`` and recorded, with its visitor's fields.
        self.visitor = url is not None
        self.url = url or ""
        self.referrer = referrer
        self.user_agent = user_agent
        self.client_ip = client_ip
        #: How the response goes on to the server: WSGI's ``start_response``, ASGI's
        #: ``send`` (each subclass says which).
        self.server = server
        self.method = method
        self.page = page
        #: The User-Agent's classification; ``None`` for a browser.
        self.agent = agent
        #: The ``Range`` header (only read with ``file_downloads``).
        self.range = range_
        #: The framework's route template, for action names (with ``track_actions``).
        self.route: Optional[str] = None
        #: As the application gave it: the WSGI status line or the ASGI code.
        self.status: Union[str, int, None] = None
        #: The response headers as ``str`` pairs.
        self.headers: list[tuple[str, str]] = []
        #: The application raised (before or during the body).
        self.failed = False
        #: What ``should_track`` gets (the environ copy or the scope), when it is set.
        self.view: Optional[Mapping[str, Any]] = None

    def request_facts(self) -> RequestFacts:
        return RequestFacts(
            method=self.method, page=self.page, agent=self.agent, range=self.range, route=self.route
        )


def status_code(status: object) -> Optional[int]:
    """The code of a status: an ASGI ``int``, or a WSGI line (``"404 Not Found"`` → 404)."""
    if type(status) is int:
        return status
    try:
        return int(status[:3])  # type: ignore[index]
    except (TypeError, ValueError):
        return None
