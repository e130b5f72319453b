"""One buffered item, one POST: the ``send`` a collector gives its delivery engine.

:class:`Poster` turns what the engine hands a worker — an :class:`~plausible_wsgi.events.Event`
or a spooled row — into the request body (encoding the event, or the row's stored
bytes), runs the ``before_send`` hook, sends it with the
:class:`~plausible_wsgi.delivery.transport.HttpTransport` and turns the answer into a
:class:`~plausible_wsgi.stats.Settlement`, keeping the health counters and the
rate-limited rejection log. :meth:`Poster.settled` tells the spool and the hooks
how each item ended. The engine knows none of this: it only counts settlements.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Union

from ._log import RateLimitedLog
from .delivery.failure import AttemptError
from .delivery.health import Health
from .delivery.hooks import Hooks
from .delivery.transport import HttpTransport, Outcome, Request, Response
from .events import Event, encode_event
from .spool.feeder import SpoolFeeder
from .spool.store import SpoolRecord
from .stats import Settlement

__all__ = ["Item", "Poster"]

#: What a collector's engine buffers: an event, or a row of its spool.
Item = Union[Event, SpoolRecord]

_SETTLEMENTS = {
    Outcome.SENT: Settlement.SENT,
    Outcome.SERVER_DROPPED: Settlement.SERVER_DROPPED,
    Outcome.REJECTED: Settlement.REJECTED,
}


class Poster:
    """Sends one item per call, from any delivery thread.

    :param feeder: the collector's spool feeder, set once it exists (it needs the
        engine, which needs this).
    """

    def __init__(
        self,
        name: str,
        domain: str,
        transport: HttpTransport,
        *,
        health: Health,
        hooks: Optional[Hooks],
        rejections: RateLimitedLog,
    ) -> None:
        self.name = name
        self.domain = domain
        self.transport = transport
        self.health = health
        self.hooks = hooks
        self.rejections = rejections
        self.feeder: Optional[SpoolFeeder] = None

    @property
    def send(self) -> Callable[[Item], Settlement]:
        """The engine's ``send``: the plain path unless a hook needs the details."""
        return self._send_plain if self.hooks is None else self._send_hooked

    def _send_plain(self, item: Item) -> Settlement:
        return self._post(item, self._body(item), item.user_agent, item.client_ip)

    def _send_hooked(self, item: Item) -> Settlement:
        """``_send_plain`` with the hooks: ``before_send`` once per event, details kept."""
        hooks = self.hooks
        assert hooks is not None
        if hooks.before_send is None:
            return self._send_plain(item)
        prepared = hooks.prepare(item)
        if prepared is None:
            return Settlement.VETOED
        event, body = prepared
        return self._post(item, body, event.user_agent, event.client_ip)

    def _body(self, item: Item) -> bytes:
        """A spooled row's stored bytes, or the event encoded now."""
        if type(item) is SpoolRecord:
            return item.body
        return encode_event(item, self.domain)  # type: ignore[arg-type]

    @property
    def depth(self) -> int:
        """Items :meth:`send_many` sends at once now; 1 with hooks (one at a time, each
        with its ``before_send`` and details) or when the transport does not pipeline."""
        return 1 if self.hooks is not None else self.transport.depth

    @property
    def gap(self) -> Optional[float]:
        """The transport's time between consecutive answers of a pipelined batch."""
        return self.transport.gap

    def send_many(self, items: list[Item]) -> list[Union[Settlement, Exception, None]]:
        """Pipeline ``items`` on one connection (no hooks): per item its settlement, the
        failure of its attempt, or None when it was not sent."""
        results: list[Union[Settlement, Exception, None]] = [None] * len(items)
        requests: list[Request] = []
        sent: list[int] = []
        for i, item in enumerate(items):
            try:
                body = self._body(item)
                self._attempting(item)
            except Exception as exc:  # not sent; the engine logs it as unexpected
                results[i] = exc
                continue
            requests.append((body, item.user_agent, item.client_ip))
            sent.append(i)
        counted = 0  # the usual answer, counted once for the batch
        for i, result in zip(sent, self.transport.send_many(requests)):
            if isinstance(result, Response):
                if result.outcome is Outcome.SENT:
                    results[i] = Settlement.SENT
                    counted += 1
                else:
                    results[i] = self._settlement(result)
            elif result is not None:
                self.health.failed(result.kind)
                results[i] = result
        self.health.answers += counted
        return results

    def _post(
        self, item: Item, body: bytes, user_agent: Optional[str], client_ip: Optional[str]
    ) -> Settlement:
        self._attempting(item)
        hooks = self.hooks
        try:
            response = self.transport.send(body, user_agent, client_ip)
        except AttemptError as exc:
            self.health.failed(exc.kind)
            if hooks is not None:
                hooks.detail(str(exc)[:200])
            raise
        return self._settlement(response)

    def _attempting(self, item: Item) -> None:
        """Before ``item``'s request is written: a spooled row is marked as attempted
        (after a crash it is in doubt, not unsent)."""
        if type(item) is SpoolRecord:
            assert self.feeder is not None
            self.feeder.mark_attempt(item)

    def _settlement(self, response: Response) -> Settlement:
        """What an answer means, counted in the health figures and logged if rejected."""
        hooks = self.hooks
        outcome = response.outcome
        if outcome is Outcome.SENT:
            self.health.answers += 1
            return Settlement.SENT
        if outcome is Outcome.SERVER_DROPPED:
            self.health.dropped(response.dropped)
            if hooks is not None:
                hooks.detail(f"x-plausible-dropped: {response.dropped}")
        else:
            if hooks is not None:
                hooks.detail(
                    f"HTTP {response.status}: " + response.body[:200].decode("utf-8", "replace")
                )
            self.rejections.log(
                logging.WARNING,
                f"rejected:{response.status}",
                "%s: Plausible rejected an event (HTTP %d): %s",
                self.name,
                response.status,
                response.body[:500].decode("utf-8", "replace"),
            )
        return _SETTLEMENTS[outcome]

    def settled(self, item: Item, settlement: Settlement) -> None:
        """The engine's ``on_settle``: tell the spool and the hooks how ``item`` ended."""
        kept = False  # given back unsent: the spool keeps it for a later delivery
        if type(item) is SpoolRecord and self.feeder is not None:
            kept = self.feeder.settled(item, settlement)
        if self.hooks is not None:
            self.hooks.settled(item, settlement, kept)
