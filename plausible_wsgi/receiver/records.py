"""The records a :class:`~plausible_wsgi.receiver.ReceiverApp` keeps and the faults it
can be scripted with."""

from __future__ import annotations

import json
import typing as t
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ..errors import ConfigurationError
from . import rules
from .rules import NormalisedEvent

__all__ = [
    "DROP_REASONS",
    "Attempt",
    "Fault",
    "ReceivedEvent",
    "Verdict",
    "describe_timeout",
    "event_fields",
    "record_size",
    "rejected_fields",
]

Verdict = t.Literal["accepted", "dropped", "rejected"]

#: Why Plausible (or this receiver's options) would drop an event, answering ``202``
#: with ``x-plausible-dropped``: ``"spam_referrer"``, ``"unknown_domain"``,
#: ``"verification_agent"``, ``"dc_ip"``, ``"bot"``, ``"private_ip"`` (an option),
#: ``"no_session"`` (an ``engagement``/``pageleave`` without an earlier event).
DROP_REASONS = (
    "spam_referrer",
    "unknown_domain",
    "verification_agent",
    "dc_ip",
    "bot",
    "private_ip",
    "no_session",
)
#: Bytes of a request body kept on an :class:`Attempt` (and, as text, on a rejected
#: :class:`ReceivedEvent`); the rest is cut so memory stays bounded.
KEPT_BODY_BYTES = 64 * 1024
#: Bytes of request headers kept on an :class:`Attempt`; later headers are left out.
KEPT_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Fault:
    """A scripted answer to one ``POST /api/event``, given before normal processing.

    A faulted request is counted as an :class:`Attempt` but never recorded as an event.

    :param status: the HTTP status to answer with.
    :param headers: extra response headers, e.g. ``{"Retry-After": "2"}``.
    :param body: the response body (plain text).
    :param delay: seconds to wait before answering (or resetting). Cut short when the
        receiver stops or goes down.
    :param reset: close the connection abruptly instead of answering: the client sees
        a connection error and no HTTP response at all. Needs werkzeug's server (which
        :class:`~plausible_wsgi.receiver.PlausibleReceiver` uses).

    Usage::

        receiver.enqueue_faults(Fault(503, {"Retry-After": "1"}), Fault(reset=True))
    """

    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    body: str = ""
    delay: float = 0.0
    reset: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ConfigurationError(f"Fault status must be 100-599, got {self.status}")
        if self.delay < 0:
            raise ConfigurationError(f"Fault delay must be >= 0 seconds, got {self.delay}")


@dataclass(frozen=True)
class Attempt:
    """One ``POST /api/event`` as it arrived, faulted or not: what retry tests count."""

    #: 1 for the first request since start (or :meth:`ReceiverApp.clear`), then 2, 3...
    number: int
    #: Arrival time, seconds since the epoch.
    received_at: float
    #: The fault that answered it, or ``None`` when it was processed normally.
    fault: Fault | None
    #: The request body (at most :data:`KEPT_BODY_BYTES`; empty when over 8 MB).
    body: bytes = field(repr=False)
    #: The request headers.
    headers: dict[str, str] = field(hash=False, repr=False)
    #: The client's source port: requests sharing it shared a keep-alive connection.
    remote_port: int | None


@dataclass(frozen=True)
class ReceivedEvent(NormalisedEvent):
    """One event as the receiver judged it — one per domain of a request.

    The event fields (``name``, ``url``, ``pathname``, ``hostname``, ``domain``,
    ``referrer``, ``referrer_ignored``, ``props``, ``revenue``, ``interactive``,
    ``query_params``) are :class:`~plausible_wsgi.receiver.rules.NormalisedEvent`'s.
    A rejected request (``400``/``406``/``413``/``500``) gives one record with
    ``errors`` set and the event fields filled from the body as far as they could be
    read (``""`` otherwise).
    """

    #: Sequence number, unique per app, increasing in arrival order.
    id: int
    #: Arrival time, seconds since the epoch (Plausible stamps events on arrival too).
    received_at: float
    #: ``"accepted"`` (Plausible would count it), ``"dropped"`` (``202`` with
    #: ``x-plausible-dropped``) or ``"rejected"`` (any other status).
    outcome: Verdict
    #: The HTTP status answered: 202, 400, 406, 413 or 500.
    status: int
    #: Why a ``"dropped"`` event was dropped: one of :data:`DROP_REASONS`.
    drop_reason: str | None
    #: The ``errors`` object of a rejection.
    errors: dict[str, list[str]] | None = field(hash=False)
    #: The ``User-Agent`` header (``""`` when absent).
    user_agent: str
    #: The visitor IP Plausible would use (``X-Plausible-IP``, ``CF-Connecting-IP``,
    #: ``B-Forwarded-For``, ``X-Forwarded-For``, ``Forwarded``, else the socket).
    client_ip: str
    #: A daily visitor hash (hex); ``""`` for a rejected request.
    visitor_id: str
    #: This library's bot kind for the User-Agent (``"ai_training"``...), ``None`` for
    #: a browser. Informational: a missing UA, curl or python-requests are
    #: ``"other_bot"`` here but counted by Plausible (``outcome`` says what it does).
    agent_kind: str | None
    #: The bot's name, e.g. ``"GPTBot"``.
    agent_name: str | None
    #: Who runs the bot, e.g. ``"OpenAI"`` (``""`` when unknown).
    agent_operator: str | None
    #: The request body as text, for rejected requests only (cut to 64 KiB).
    body: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, t.Any]:
        """The record as a JSON-ready dict (what the inspector feed serves)."""
        return asdict(self)


def record_size(record: ReceivedEvent | Attempt) -> int:
    """An estimate of the bytes a record holds, for the receiver's memory bound."""
    if isinstance(record, Attempt):
        return 400 + len(record.body) + sum(len(k) + len(v) for k, v in record.headers.items())
    size = 600 + len(record.url) + len(record.pathname) + len(record.user_agent)
    size += len(record.referrer or "") + len(record.body or "")
    size += sum(len(k) + len(v) for k, v in record.props.items())
    return size


def kept_headers(headers: t.Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request headers to keep on an :class:`Attempt`, at most
    :data:`KEPT_HEADER_BYTES` in all."""
    kept: dict[str, str] = {}
    budget = KEPT_HEADER_BYTES
    for key, value in headers:
        budget -= len(key) + len(value)
        if budget < 0:
            break
        kept[key] = value
    return kept


def event_fields(event: rules.NormalisedEvent) -> dict[str, t.Any]:
    return {
        "name": event.name,
        "url": event.url,
        "pathname": event.pathname,
        "hostname": event.hostname,
        "domain": event.domain,
        "referrer": event.referrer,
        "referrer_ignored": event.referrer_ignored,
        "props": event.props,
        "revenue": event.revenue,
        "interactive": event.interactive,
        "query_params": event.query_params,
    }


def rejected_fields(
    rejection: rules.Rejection, payload: Mapping[str, t.Any], body: str
) -> dict[str, t.Any]:
    def loose(short: str, long: str) -> str:
        value = payload.get(short, payload.get(long))
        return str(value) if isinstance(value, (str, int)) else ""

    return {
        "outcome": "rejected",
        "status": rejection.status,
        "drop_reason": None,
        "errors": rejection.errors,
        "name": loose("n", "name")[:1000],
        "url": loose("u", "url")[:4000],
        "pathname": "",
        "hostname": "",
        "domain": loose("d", "domain")[:1000],
        "referrer": None,
        "referrer_ignored": True,
        "props": {},
        "revenue": None,
        "interactive": True,
        "query_params": {},
        "visitor_id": "",
        "body": body,
    }


def describe_timeout(
    n: int, timeout: float, records: list[ReceivedEvent], attempts: list[Attempt]
) -> str:
    lines = [f"expected {n} accepted events within {timeout}s; received:"]
    for record in records:
        detail = record.drop_reason or (json.dumps(record.errors) if record.errors else "")
        lines.append(
            f"  #{record.id} {record.outcome} {record.status} {record.name!r}"
            f" {record.domain}{record.pathname} {detail}".rstrip()
        )
    faulted = sum(1 for attempt in attempts if attempt.fault is not None)
    if not records:
        lines.append("  nothing")
    lines.append(f"({len(attempts)} requests to /api/event, {faulted} answered by faults)")
    return "\n".join(lines)
