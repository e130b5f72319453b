"""The rules: from what a request and its response were to what gets recorded.

:func:`decide` is pure -- no environ, no ASGI scope, no I/O, no counters, no visitor
-- so the WSGI and the ASGI middleware share it, a test can call it with two small
records, and the :class:`~.recorder.Recorder` can remember its answer for requests
alike. The visitor's fields join the event afterwards (:meth:`EventPlan.event`).
``should_track`` is not asked here: it is the user's code and sees the server's own
view of the request; the middlewares ask it for every decision that records.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import NamedTuple, Optional

from ..agents import AgentMatch
from ..context import RequestInfo
from ..events import (
    ACTION,
    CUSTOM,
    MAX_NAME_LENGTH,
    MAX_PROP_VALUE_BYTES,
    PAGEVIEW,
    Event,
    EventKind,
    ValidEvent,
)
from .options import CheckedOptions
from .pages import Page

__all__ = ["Decision", "EventPlan", "RequestFacts", "ResponseFacts", "Skip", "Tracked", "decide"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class Skip(str, enum.Enum):
    """Why a request is not recorded (the keys of ``MiddlewareStats.skipped``)."""

    HOST = "host"
    EXCLUDED = "excluded"
    METHOD = "method"
    #: A bot with ``bots="skip"``: counted as ``bot:<kind>``.
    BOT = "bot"
    STATUS = "status"
    CONTENT_TYPE = "content_type"
    #: A range request that does not start a download.
    PARTIAL = "partial"
    SHOULD_TRACK = "should_track"
    #: The application raised.
    EXCEPTION = "exception"
    #: The application never started a response.
    NO_STATUS = "no_status"


class Tracked(str, enum.Enum):
    """What a recorded event is (the keys of ``MiddlewareStats.tracked``)."""

    PAGEVIEW = "pageview"
    NOT_FOUND = "404"
    FILE_DOWNLOAD = "file_download"
    ACTION = "action"
    BOT = "bot"


class RequestFacts(NamedTuple):
    """What the middleware read from the request, the visitor aside."""

    method: str
    #: The target; its ``url`` is ``None`` when the scheme or ``Host`` is unusable.
    page: Page
    #: The User-Agent's classification; ``None`` for a browser (and always with
    #: ``bots="pageview"``, where agents are not classified).
    agent: Optional[AgentMatch] = None
    #: The ``Range`` header (only read with ``file_downloads``).
    range: Optional[str] = None
    #: The framework's route template (``/users/<int:id>``), for action names.
    route: Optional[str] = None


class ResponseFacts(NamedTuple):
    """How the application answered."""

    #: The status code; ``None`` when no response was started.
    status: Optional[int]
    content_type: Optional[str] = None
    content_disposition: Optional[str] = None
    #: The application raised (before or during the body).
    failed: bool = False


# EventPlan and Decision are read on every request (a decision is remembered per
# target): frozen dataclasses, whose field reads 3.11 specialises (a NamedTuple's cost
# ~220 instructions each). They are made only when a decision is not remembered.
@dataclasses.dataclass(frozen=True)
class EventPlan:
    """An event to record, but for the visitor's fields, which :meth:`event` adds."""

    kind: EventKind
    name: str
    url: str
    props: Optional[Mapping[str, str]] = None
    interactive: bool = True
    #: Sent instead of the visitor's User-Agent, and then without a referrer: the
    #: ``bots="event"`` events (Plausible drops bots' own User-Agents).
    user_agent: Optional[str] = None
    #: Every part of the event is known safe once the visitor's fields are in (they
    #: were made safe when the request was read): the collectors need not validate it.
    valid: bool = False

    def event(self, info: RequestInfo) -> Event:
        """The event of this plan for one visitor's request."""
        props = None if self.props is None else dict(self.props)  # each event its own
        referrer: Optional[str] = info.referrer
        user_agent = info.user_agent
        if self.user_agent is not None:
            referrer, user_agent = None, self.user_agent
        # Positional: keywords cost twice as much, on every page view. The order is
        # Event's, which test_middleware_decision checks against keyword-built events.
        return (ValidEvent if self.valid else Event)(
            self.kind, self.name, self.url, referrer, props, None, self.interactive,
            user_agent, info.client_ip,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Decision:
    """Either a :class:`Skip` reason or what was tracked with the event to record."""

    skip: Optional[Skip] = None
    tracked: Optional[Tracked] = None
    plan: Optional[EventPlan] = None
    #: The agent's kind for :attr:`Skip.BOT`.
    bot_kind: Optional[str] = None

    @property
    def counter(self) -> str:
        """The key this decision is counted under in ``MiddlewareStats``."""
        if self.tracked is not None:
            key: str = self.tracked.value
        elif self.skip is Skip.BOT:
            key = f"bot:{self.bot_kind}"
        else:
            assert self.skip is not None
            key = self.skip.value
        return key


#: One Decision per skip reason, made once (most requests of a busy site are skips).
_SKIPPED = {reason: Decision(skip=reason) for reason in Skip if reason is not Skip.BOT}


# 16 branches, one per rule, in the order a request is refused: the order is the
# behaviour (which skip reason counts it), so it stays readable in one place.
def decide(request: RequestFacts, response: ResponseFacts, options: CheckedOptions) -> Decision:
    """What to record for a finished request (``should_track`` aside).

    The order matters: a request is counted under the first rule that refuses it.
    """
    status, page = response.status, request.page
    url = page.url
    if response.failed:
        return _SKIPPED[Skip.EXCEPTION]
    if status is None:
        return _SKIPPED[Skip.NO_STATUS]
    if url is None:  # no usable scheme or Host
        return _SKIPPED[Skip.HOST]
    refused = _refused(request, options)
    if refused is not None:
        return refused
    agent = request.agent
    if agent is not None and options.bots != "pageview":
        if options.bots == "skip":
            return Decision(skip=Skip.BOT, bot_kind=agent.kind)
        return Decision(tracked=Tracked.BOT, plan=_bot_event(url, agent, page, status, options))
    if request.method not in options.methods:  # let through by _refused(): an action
        if not 200 <= status < 400:
            return _SKIPPED[Skip.STATUS]
        name = f"{request.method} {request.route or page.url_path}"[:MAX_NAME_LENGTH]
        plan = EventPlan(ACTION, name, url, interactive=False)
        return Decision(tracked=Tracked.ACTION, plan=plan)
    if (
        options.file_downloads
        and 200 <= status < 300
        and (page.download or _is_attachment(response))
    ):
        if status == 206 and not (request.range or "").replace(" ", "").startswith("bytes=0-"):
            return _SKIPPED[Skip.PARTIAL]
        plan = EventPlan(CUSTOM, "File Download", url, props={"url": url})
        return Decision(tracked=Tracked.FILE_DOWNLOAD, plan=plan)
    return _page_decision(url, page, status, response.content_type, options)


def _refused(request: RequestFacts, options: CheckedOptions) -> Optional[Decision]:
    """The rules about where the request went and its method."""
    if not request.page.host_ok:
        return _SKIPPED[Skip.HOST]
    if request.page.excluded:
        return _SKIPPED[Skip.EXCLUDED]
    method = request.method
    if method not in options.methods and not (
        options.track_actions and method not in _SAFE_METHODS
    ):
        return _SKIPPED[Skip.METHOD]
    return None


def _page_decision(
    url: str,
    page: Page,
    status: int,
    content_type: Optional[str],
    options: CheckedOptions,
) -> Decision:
    """A page view, a 404 goal, or why not."""
    is_page = _media_type(content_type) in options.content_types
    if status == 404 and options.track_404 and is_page:
        plan = EventPlan(CUSTOM, "404", url, props={"path": _fit_prop(page.url_path)})
        return Decision(tracked=Tracked.NOT_FOUND, plan=plan)
    if status not in options.statuses:
        return _SKIPPED[Skip.STATUS]
    if not is_page:
        return _SKIPPED[Skip.CONTENT_TYPE]
    # Every part of a page view was made safe when the request was read (URL built,
    # escaped and fitted; referrer cut; UA sendable; IP parsed) except whether the URL
    # splits, known from the Page: so the collectors need not validate it again.
    plan = EventPlan(PAGEVIEW, "pageview", url, valid=page.url_valid)
    return Decision(tracked=Tracked.PAGEVIEW, plan=plan)


def _bot_event(
    url: str, agent: AgentMatch, page: Page, status: int, options: CheckedOptions
) -> EventPlan:
    """A ``bots="event"`` event: sent with an ordinary browser User-Agent (Plausible
    drops bots' own) and no referrer; the real agent is in the props."""
    props = {
        "agent": agent.agent,
        "operator": agent.operator,
        "kind": agent.kind,
        "path": _fit_prop(page.url_path),
        "status": str(status),
    }
    return EventPlan(
        CUSTOM,
        options.bot_event_name,
        url,
        props={key: value for key, value in props.items() if value},
        user_agent=options.bot_user_agent,
    )


def _media_type(content_type: Optional[str]) -> Optional[str]:
    return None if content_type is None else content_type.partition(";")[0].strip().lower()


def _is_attachment(response: ResponseFacts) -> bool:
    disposition = response.content_disposition
    return disposition is not None and disposition.lstrip()[:10].lower() == "attachment"


def _fit_prop(value: str) -> str:
    if len(value) > MAX_PROP_VALUE_BYTES // 4:
        value = value.encode("utf-8")[:MAX_PROP_VALUE_BYTES].decode("utf-8", "ignore")
    return value
