"""The user's delivery hooks: ``before_send``, ``on_error`` and ``on_drop``.

They run in delivery threads (or in ``close()``'s thread for events its deadline cut
off), never in ``track()``: a slow or failing hook cannot slow a request. A hook that
raises is logged (rate-limited) and counted in ``stats().hook_errors``; the event goes
on as if the hook were absent (``before_send``: sent unchanged).

- ``on_error(event, reason, detail)``: ``Settlement.REJECTED`` (a 4xx; ``detail``
  quotes the answer) or ``Settlement.GAVE_UP`` (out of retries; the last failure).
- ``on_drop(event, reason, detail)``: a :class:`~plausible_wsgi.DropReason` —
  ``server_dropped`` (``202`` with ``x-plausible-dropped``), ``queue_full``,
  ``shutdown``, ``vetoed``; with a spool also ``expired`` and ``in_doubt`` (a row
  whose POST went out unanswered, not resent), reported from the spool's pump thread.
  With a spool, ``queue_full``/``shutdown`` events stay in the spool (not dropped: no
  call).
  Events refused by ``track()`` itself (``closed``, ``invalid``) are not reported:
  ``track()`` returned False.

A collector without hooks builds none of this and pays nothing per event.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from typing import Callable, Optional, Union, cast

from .._log import RateLimitedLog, logger
from ..errors import ConfigurationError, InvalidEventError
from ..events import (
    ACTION,
    CUSTOM,
    PAGEVIEW,
    Event,
    Revenue,
    ValidEvent,
    encode_event,
    validate_event,
)
from ..spool.store import SpoolRecord
from ..stats import DropReason, Settlement

__all__ = ["BeforeSend", "Hooks", "OnDrop", "OnError", "make_hooks"]

#: ``before_send(event) -> event | None``: the event to send instead; None vetoes it.
BeforeSend = Callable[[Event], Optional[Event]]
#: ``on_error(event, reason, detail)``: the event failed for good (rejected, gave up).
OnError = Callable[[Event, Settlement, str], object]
#: ``on_drop(event, reason, detail)``: the event was dropped, and why.
OnDrop = Callable[[Event, DropReason, str], object]

Item = Union[Event, SpoolRecord]

#: The fixed details of settlements that have no answer to quote.
_DETAILS = {
    Settlement.QUEUE_FULL: "the buffer was full; the oldest event made room",
    Settlement.SHUTDOWN: "the close deadline passed before it was delivered",
    Settlement.VETOED: "before_send returned None",
}
#: The details of drops a spool makes.
_DROP_DETAILS = {
    DropReason.EXPIRED: "spooled longer than spool_max_age; Plausible would start a new session",
    DropReason.IN_DOUBT: "its POST went out unanswered before its process died; not resent",
}


def event_of(item: Item) -> Event:
    """The event a buffered item stands for (a spooled row is decoded from its body)."""
    if not isinstance(item, SpoolRecord):
        return item
    record = item
    data = json.loads(record.body)
    name = data["name"]
    revenue = data.get("revenue")
    interactive = data.get("interactive", True)
    return Event(
        PAGEVIEW if name == "pageview" else (CUSTOM if interactive else ACTION),
        name,
        data["url"],
        referrer=data.get("referrer"),
        props=data.get("props"),
        revenue=Revenue(revenue["currency"], revenue["amount"]) if revenue else None,
        interactive=interactive,
        user_agent=record.user_agent,
        client_ip=record.client_ip,
    )


def make_hooks(
    name: str,
    domain: str,
    *,
    before_send: Optional[BeforeSend],
    on_error: Optional[OnError],
    on_drop: Optional[OnDrop],
) -> Optional[Hooks]:
    """The collector's :class:`Hooks`; None when it has none (nothing to pay per event)."""
    given = {"before_send": before_send, "on_error": on_error, "on_drop": on_drop}
    for hook_name, hook in given.items():
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"{hook_name} must be callable or None, got {hook!r}")
    if before_send is None and on_error is None and on_drop is None:
        return None
    return Hooks(name, domain, before_send=before_send, on_error=on_error, on_drop=on_drop)


class Hooks:
    """The hooks of one collector, and what it needs to call them."""

    def __init__(
        self,
        name: str,
        domain: str,
        *,
        before_send: Optional[BeforeSend],
        on_error: Optional[OnError],
        on_drop: Optional[OnDrop],
    ) -> None:
        self.name = name
        self.domain = domain
        self.before_send = before_send
        self.on_error = on_error
        self.on_drop = on_drop
        #: Hook calls that raised.
        self.errors = 0
        self._count = itertools.count(1)
        self._log = RateLimitedLog()
        # id(item) -> (event as sent, body), so that before_send runs once per event
        # however many attempts it takes; forgotten when the item settles.
        self._prepared: dict[int, tuple[Event, bytes]] = {}
        # The last attempt's detail per delivery thread, read when its item settles.
        self._local = threading.local()

    def prepare(self, item: Item) -> Optional[tuple[Event, bytes]]:
        """The event to send and its body after ``before_send``; None when vetoed."""
        key = id(item)
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        event = event_of(item)
        assert self.before_send is not None
        changed: object
        try:
            changed = cast(object, self.before_send(event))  # checked below: user code
        except Exception:
            self._raised("before_send")
            changed = event
        if changed is None:
            return None
        if not isinstance(changed, Event):  # a user's function: checked at run time
            self._raised("before_send", f"returned a {type(changed).__name__}, not an Event")
            changed = event
        elif changed is not event and type(changed) is not ValidEvent:
            try:
                changed = validate_event(changed)
            except InvalidEventError as exc:
                self._raised("before_send", f"returned an invalid event (field {exc.field})")
                changed = event
        body = encode_event(changed, self.domain)
        self._prepared[key] = prepared = (changed, body)
        return prepared

    def detail(self, text: str) -> None:
        """What the current thread's last attempt ended with (for the hooks' ``detail``)."""
        self._local.detail = text

    def settled(self, item: Item, settlement: Settlement, keeps: bool) -> None:
        """Call ``on_error``/``on_drop`` for ``item``; ``keeps``: a spool keeps it."""
        prepared = self._prepared.pop(id(item), None)
        if settlement is Settlement.SENT or keeps:
            return
        failed = settlement is Settlement.REJECTED or settlement is Settlement.GAVE_UP
        if (self.on_error if failed else self.on_drop) is None:
            return
        event = prepared[0] if prepared is not None else event_of(item)
        detail = _DETAILS.get(settlement) or str(getattr(self._local, "detail", ""))
        if not failed:
            reason = settlement.drop_reason
            assert reason is not None
            self._call_on_drop(event, reason, detail)
            return
        try:
            assert self.on_error is not None
            self.on_error(event, settlement, detail)
        except Exception:
            self._raised("on_error")

    def dropped(self, item: Item, reason: DropReason) -> None:
        """Call ``on_drop`` for an item dropped outside the engine (a spool's row)."""
        if self.on_drop is not None:
            self._call_on_drop(event_of(item), reason, _DROP_DETAILS.get(reason, ""))

    def _call_on_drop(self, event: Event, reason: DropReason, detail: str) -> None:
        assert self.on_drop is not None
        try:
            self.on_drop(event, reason, detail)
        except Exception:
            self._raised("on_drop")

    def _raised(self, hook: str, why: str = "raised") -> None:
        self.errors = next(self._count)  # next() is atomic: no lock to renew at fork
        # No traceback at ERROR: the exception may quote the visitor's data.
        logger.debug("%s hook error", hook, exc_info=True)
        self._log.log(
            logging.ERROR,
            hook,
            "%s: the %s hook %s; delivery goes on without it",
            self.name,
            hook,
            why,
        )
