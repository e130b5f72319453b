"""Events: the value types, and building them through the rules in
:mod:`plausible_wsgi.validation`.

Plausible's ``/api/event`` answers ``400`` for some bad input and *silently* mangles
other bad input (nested prop values dropped, only 30 props kept, bad revenue ignored).
Both are programmer errors best reported where they are made, so :func:`make_event`
raises :class:`~plausible_wsgi.InvalidEventError` naming the field and the limit, and
nothing Plausible would reject ever reaches the delivery queue.

The limits are Plausible's own (``lib/plausible/ingestion/request.ex``): byte limits are
UTF-8 bytes, not characters.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Optional, Union

from ._plausible import (
    CURRENCIES,
    MAX_NAME_LENGTH,
    MAX_PROP_KEY_BYTES,
    MAX_PROP_VALUE_BYTES,
    MAX_PROPS,
    MAX_REFERRER_LENGTH,
    MAX_URL_BYTES,
)
from .errors import InvalidEventError
from .validation import (
    PropValue,
    check_custom_name,
    header_value,
    url_parses,
    validate_name,
    validate_props,
    validate_referrer,
    validate_url,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PROPS",
    "MAX_PROP_KEY_BYTES",
    "MAX_PROP_VALUE_BYTES",
    "MAX_REFERRER_LENGTH",
    "MAX_URL_BYTES",
    "Event",
    "EventKind",
    "PropValue",
    "Revenue",
    "encode_event",
    "make_event",
    "url_parses",
    "validate_event",
    "validate_url",
]


class EventKind(str, enum.Enum):
    """How an event maps onto Plausible's event model."""

    #: A page view: Plausible name ``pageview``.
    PAGEVIEW = "pageview"
    #: Something the server did for the visitor: a custom event sent with
    #: ``interactive: false`` so it does not change the bounce rate.
    ACTION = "action"
    #: A custom event (a goal in Plausible).
    CUSTOM = "custom"


# The members as module constants, for code that runs per event: ``EventKind.X`` is
# an enum descriptor lookup, about 80 ns on Python 3.11.
PAGEVIEW, ACTION, CUSTOM = EventKind.PAGEVIEW, EventKind.ACTION, EventKind.CUSTOM


class Revenue:
    """A monetary value attached to a custom event (Plausible revenue goals).

    :param currency: an ISO 4217 code such as ``"USD"`` (case-insensitive).
    :param amount: a finite number; ``float`` is converted through its shortest
        ``repr`` so ``29.99`` is sent as ``"29.99"``, not a binary expansion.

    Plausible ignores invalid revenue silently; this raises
    :class:`~plausible_wsgi.InvalidEventError` instead.
    """

    __slots__ = ("amount", "currency")

    currency: str
    amount: Decimal

    def __init__(self, currency: str, amount: Union[Decimal, str, int, float]) -> None:
        if not isinstance(currency, str) or currency.upper() not in CURRENCIES:
            raise InvalidEventError(
                "revenue", f"currency must be an ISO 4217 code such as 'USD', got {currency!r}"
            )
        if isinstance(amount, bool) or not isinstance(amount, (Decimal, str, int, float)):
            raise InvalidEventError(
                "revenue",
                f"amount must be a Decimal, str, int or float, got {type(amount).__name__}",
            )
        try:
            value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
        except InvalidOperation:
            raise InvalidEventError("revenue", f"amount is not a number: {amount!r}") from None
        if not value.is_finite():
            raise InvalidEventError("revenue", f"amount must be finite, got {amount!r}")
        object.__setattr__(self, "currency", currency.upper())
        object.__setattr__(self, "amount", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Revenue is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Revenue):
            return NotImplemented
        return (self.currency, self.amount) == (other.currency, other.amount)

    def __hash__(self) -> int:
        return hash((self.currency, self.amount))

    def __repr__(self) -> str:
        return f"Revenue(currency={self.currency!r}, amount={str(self.amount)!r})"

    def to_json(self) -> dict[str, str]:
        """The ``revenue`` object of the request body; the amount as a decimal string."""
        return {"currency": self.currency, "amount": str(self.amount)}


class Event(NamedTuple):
    """One event, independent of any collector.

    Build events with :func:`make_event` (or the collectors' ``track*`` methods),
    which validate them; a hand-built ``Event`` is validated by ``collect()``.
    ``props`` holds the values already converted to the strings Plausible stores.
    """

    kind: EventKind
    #: Plausible event name: ``"pageview"`` for page views.
    name: str
    #: Absolute http(s) URL of the page.
    url: str
    referrer: Optional[str] = None
    props: Optional[Mapping[str, str]] = None
    revenue: Optional[Revenue] = None
    #: ``False`` for events that should not affect the bounce rate.
    interactive: bool = True
    #: The visitor's User-Agent, sent as the request's ``User-Agent`` header.
    user_agent: Optional[str] = None
    #: The visitor's IP, sent as ``X-Forwarded-For``.
    client_ip: Optional[str] = None


class ValidEvent(Event):
    """An :class:`Event` already known to meet every rule; ``collect()`` takes it as is.

    :func:`make_event` returns these, and the middleware builds its page views as these
    from parts it has made safe itself. It compares, prints and replaces like a plain
    :class:`Event`; a ``_replace()`` gives a plain one, to be validated again.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(Event(*self))

    def _replace(self, **changes: Any) -> Event:  # type: ignore[override]
        return Event(*self)._replace(**changes)


def make_event(
    kind: EventKind,
    name: str,
    *,
    url: object,
    referrer: object = None,
    props: object = None,
    revenue: object = None,
    interactive: bool = True,
    user_agent: object = None,
    client_ip: object = None,
) -> Event:
    """Validate the arguments and build an :class:`Event`.

    :raises InvalidEventError: for anything Plausible would reject or mangle.
    """
    if kind is not PAGEVIEW:
        check_custom_name(name)
    checked_revenue = None if revenue is None else _check_revenue(kind, revenue)
    return ValidEvent(
        kind,
        validate_name(name),
        validate_url(url),
        validate_referrer(referrer),
        validate_props(props),
        checked_revenue,
        bool(interactive),
        header_value("user_agent", user_agent),
        header_value("client_ip", client_ip),
    )


def _check_revenue(kind: EventKind, revenue: object) -> Revenue:
    if not isinstance(revenue, Revenue):
        raise InvalidEventError(
            "revenue", f"must be a plausible_wsgi.Revenue, got {type(revenue).__name__}"
        )
    if kind is PAGEVIEW:
        raise InvalidEventError("revenue", "is only recorded on custom events, not page views")
    return revenue


def validate_event(event: Event) -> Event:
    """Validate a hand-built :class:`Event` (``collect()`` uses this).

    The same rules as :func:`make_event`; an event that needs no conversion is
    returned as it is (the middleware's page views, on every request).
    """
    if type(event) is ValidEvent:
        return event
    if not isinstance(event, Event):
        raise InvalidEventError("event", f"must be a plausible_wsgi.Event, got {type(event)!r}")
    kind, name, url, referrer, props, revenue, interactive, user_agent, client_ip = event
    if not isinstance(kind, EventKind):
        raise InvalidEventError("kind", f"must be an EventKind, got {kind!r}")
    if kind is not PAGEVIEW:
        check_custom_name(name)
    validate_name(name)
    validate_url(url)
    if user_agent is not None:
        header_value("user_agent", user_agent)
    if client_ip is not None:
        header_value("client_ip", client_ip)
    if revenue is not None:
        _check_revenue(kind, revenue)
    checked_referrer = validate_referrer(referrer)
    checked_props = validate_props(props)
    if (
        checked_referrer is referrer
        and checked_props == props
        and (interactive is True or interactive is False)
        and type(event) is Event
    ):
        return event
    return Event(
        kind,
        name,
        url,
        checked_referrer,
        checked_props,
        revenue,
        bool(interactive),
        user_agent,
        client_ip,
    )


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: The string quoting the encoder above uses (C): the body is assembled from quoted
#: strings, which costs a quarter of a dict built and encoded whole (bench.delivery).
_quote = json.encoder.encode_basestring


def encode_event(event: Event, domain: str) -> bytes:
    """The JSON body of ``POST /api/event`` for ``event`` on site ``domain``.

    Long keys throughout; ``interactive`` only when false, because the server ignores
    the short ``i`` key and defaults to true. The same bytes as ``_encoder`` would
    make of the dict of these keys, in this order.
    """
    # One unpacking: a NamedTuple's field read is a descriptor call each.
    _, name, url, referrer, props, revenue, interactive, _, _ = event
    parts = ['{"domain":', _quote(domain), ',"name":', _quote(name), ',"url":', _quote(url)]
    if referrer:
        parts += (',"referrer":', _quote(referrer))
    if props:
        parts += (',"props":', _encoder.encode(props))
    if revenue is not None:
        parts += (',"revenue":', _encoder.encode(revenue.to_json()))
    if not interactive:
        parts.append(',"interactive":false')
    parts.append("}")
    # A lone surrogate would make the body invalid UTF-8 (a 400); "?" keeps the event.
    return "".join(parts).encode("utf-8", "replace")
