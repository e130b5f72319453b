"""The collector protocol and the ``track*`` methods any collector can have.

:class:`Collector` is what :class:`~plausible_wsgi.PlausibleMiddleware` talks to.
:class:`Tracker` gives a collector ``track()``, ``track_pageview()`` and
``track_action()``: they validate their arguments (raising
:class:`~plausible_wsgi.InvalidEventError`), fill in the current request's visitor
data, and hand the event to :meth:`Tracker.accept` — the one method a custom
collector implements::

    class ListCollector(Tracker):
        name = "list"

        def __init__(self) -> None:
            self.events: list[Event] = []

        def accept(self, event: Event) -> bool:
            self.events.append(event)
            return True
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Optional, Protocol, Union, runtime_checkable

from . import notices
from .context import current_request
from .events import ACTION, CUSTOM, PAGEVIEW, Event, Revenue, make_event
from .stats import CollectorStats
from .validation import PropValue, check_custom_name

__all__ = ["Collector", "PropValue", "Props", "RevenueLike", "Tracker", "visitor_defaults"]

#: What ``props=`` takes: string keys, values str/int/float/bool (``None`` omitted).
Props = Mapping[str, PropValue]
#: What ``revenue=`` takes: a :class:`~plausible_wsgi.Revenue`, or a mapping with
#: exactly ``currency`` and ``amount`` (``{"currency": "EUR", "amount": "9.99"}``).
RevenueLike = Union[Revenue, Mapping[str, Union[str, int, float, Decimal]]]


@runtime_checkable
class Collector(Protocol):
    """What :class:`~plausible_wsgi.PlausibleMiddleware` needs from a collector."""

    #: A short label for logs and ``stats()`` reports.
    name: str

    def collect(self, event: Event) -> bool:
        """Accept one event; never raises for delivery problems. False when dropped."""

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is buffered; True when all of it settled in time."""

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, flush, release resources. Idempotent."""

    def stats(self) -> CollectorStats:
        """A snapshot of the collector's counters."""


def _warn_no_visitor(owner: object) -> None:
    # Once per collector, and nothing of the visitor in it (the message may reach stderr).
    notices.warn_once(
        owner,
        "no-visitor",
        "an event was tracked outside a request without user_agent= and client_ip=: "
        "Plausible counts it as a visitor of its own (no User-Agent, this server's "
        "address), not the visitor of the page views; pass the visitor's User-Agent "
        "and IP (warned once per collector)",
    )


def visitor_defaults(
    owner: object,
    url: Optional[str],
    referrer: Optional[str],
    user_agent: Optional[str],
    client_ip: Optional[str],
) -> tuple[Optional[str], Optional[str], Optional[str], Optional[str]]:
    """The explicit arguments, with the current request's values where they are None.

    Outside a request without a User-Agent or IP, warns once per ``owner``.
    """
    request = current_request()
    if request is None:
        if user_agent is None or client_ip is None:
            _warn_no_visitor(owner)
        return url, referrer, user_agent, client_ip
    return (
        request.url if url is None else url,
        request.referrer if referrer is None else referrer,
        request.user_agent if user_agent is None else user_agent,
        request.client_ip if client_ip is None else client_ip,
    )


def _revenue(revenue: Optional[RevenueLike]) -> Optional[Revenue]:
    if revenue is None or isinstance(revenue, Revenue):
        return revenue
    if isinstance(revenue, Mapping) and set(revenue) == {"currency", "amount"}:
        currency, amount = revenue["currency"], revenue["amount"]
        return Revenue(currency, amount)  # type: ignore[arg-type]  # validated there
    return revenue  # type: ignore[return-value]  # make_event names the problem


class Tracker:
    """The ``track*`` methods, on top of :meth:`accept`.

    Inside a request handled by :class:`~plausible_wsgi.PlausibleMiddleware`, ``url``,
    ``referrer``, ``user_agent`` and ``client_ip`` default to the current request's.
    """

    def accept(self, event: Event) -> bool:
        """Take one event the ``track*`` methods built and validated.

        Override this in a custom collector: True when kept, False when dropped.
        (A subclass that overrides the former private ``_accept`` instead keeps
        working: that name is a deprecated alias.)
        """
        if type(self)._accept is not Tracker._accept:
            return self._accept(event)
        raise NotImplementedError(f"{type(self).__name__} must implement accept()")

    def _accept(self, event: Event) -> bool:
        """Deprecated alias of :meth:`accept`."""
        return self.accept(event)

    def track(
        self,
        name: str,
        *,
        props: Optional[Props] = None,
        revenue: Optional[RevenueLike] = None,
        interactive: bool = True,
        url: Optional[str] = None,
        referrer: Optional[str] = None,
        user_agent: Optional[str] = None,
        client_ip: Optional[str] = None,
    ) -> bool:
        """Record a custom event (a goal in Plausible).

        :param props: custom properties; values str/int/float/bool, ``None`` omitted.
        :param revenue: a :class:`~plausible_wsgi.Revenue` (or ``{"currency": ...,
            "amount": ...}``) for revenue goals.
        :param interactive: ``False`` keeps the event out of the bounce rate.
        :returns: True when queued, False when dropped (closed).
        :raises InvalidEventError: for input Plausible would reject or change.
        """
        check_custom_name(name)
        url, referrer, user_agent, client_ip = visitor_defaults(
            self, url, referrer, user_agent, client_ip
        )
        return self.accept(
            make_event(
                CUSTOM,
                name,
                url=url,
                referrer=referrer,
                props=props,
                revenue=_revenue(revenue),
                interactive=interactive,
                user_agent=user_agent,
                client_ip=client_ip,
            )
        )

    def track_pageview(
        self,
        *,
        url: Optional[str] = None,
        referrer: Optional[str] = None,
        props: Optional[Props] = None,
        user_agent: Optional[str] = None,
        client_ip: Optional[str] = None,
    ) -> bool:
        """Record a page view (Plausible event name ``pageview``)."""
        url, referrer, user_agent, client_ip = visitor_defaults(
            self, url, referrer, user_agent, client_ip
        )
        return self.accept(
            make_event(
                PAGEVIEW,
                "pageview",
                url=url,
                referrer=referrer,
                props=props,
                user_agent=user_agent,
                client_ip=client_ip,
            )
        )

    def track_action(
        self,
        name: str,
        *,
        props: Optional[Props] = None,
        url: Optional[str] = None,
        user_agent: Optional[str] = None,
        client_ip: Optional[str] = None,
    ) -> bool:
        """Record something the server did for the visitor (``interactive: false``)."""
        check_custom_name(name)
        url, referrer, user_agent, client_ip = visitor_defaults(
            self, url, None, user_agent, client_ip
        )
        return self.accept(
            make_event(
                ACTION,
                name,
                url=url,
                referrer=referrer,
                props=props,
                interactive=False,
                user_agent=user_agent,
                client_ip=client_ip,
            )
        )
