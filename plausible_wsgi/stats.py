"""How an accepted event ends, and the counters every collector reports."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Optional

__all__ = ["CollectorStats", "DropReason", "Ledger", "Settlement"]


class DropReason(str, enum.Enum):
    """The reasons an accepted event is not delivered, the keys of ``stats().dropped``.

    A ``str`` enum: ``stats().dropped == {"queue_full": 3}`` holds.
    """

    #: The buffer was full (in events or in bytes); the oldest event made room.
    QUEUE_FULL = "queue_full"
    #: A hand-built event failed validation in ``collect()``.
    INVALID = "invalid"
    #: Plausible answered ``202`` with ``x-plausible-dropped`` (bot, unknown site, ...).
    SERVER_DROPPED = "server_dropped"
    #: Still buffered or in flight when ``close()`` or interpreter exit ran out of time.
    SHUTDOWN = "shutdown"
    #: ``before_send`` returned None.
    VETOED = "vetoed"
    #: ``track()`` after ``close()``.
    CLOSED = "closed"
    #: A spooled event older than ``spool_max_age``: Plausible would start a new session.
    EXPIRED = "expired"
    #: A spooled event whose POST went out unanswered before its process died, not sent
    #: again because ``RetryConfig.retry_connection_cuts`` is off.
    IN_DOUBT = "in_doubt"


class Settlement(enum.Enum):
    """How the delivery of one buffered event ended (``on_settle``'s argument)."""

    #: Answered 2xx without ``x-plausible-dropped``: counted by Plausible.
    SENT = "sent"
    #: Answered 2xx with ``x-plausible-dropped``: received, not counted.
    SERVER_DROPPED = "server_dropped"
    #: Answered 4xx (not 408/429), or unsendable: retrying cannot help.
    REJECTED = "rejected"
    #: Failed, and the retry policy (or the per-event probe cap) allows no more attempts.
    GAVE_UP = "gave_up"
    #: Made room for a newer event in the full buffer.
    QUEUE_FULL = "queue_full"
    #: Cut off by the close deadline.
    SHUTDOWN = "shutdown"
    #: ``before_send`` returned None: never sent.
    VETOED = "vetoed"

    @property
    def answered(self) -> bool:
        """Whether the server took the event (a 2xx)."""
        return self is Settlement.SENT or self is Settlement.SERVER_DROPPED

    @property
    def drop_reason(self) -> Optional[DropReason]:
        """The ``stats().dropped`` key this settlement is counted under, if any."""
        return _DROPS.get(self)


_DROPS = {
    Settlement.SERVER_DROPPED: DropReason.SERVER_DROPPED,
    Settlement.QUEUE_FULL: DropReason.QUEUE_FULL,
    Settlement.SHUTDOWN: DropReason.SHUTDOWN,
    Settlement.VETOED: DropReason.VETOED,
}


@dataclasses.dataclass(frozen=True)
class CollectorStats:
    """A snapshot of a collector's counters.

    The counts always add up: ``sent + failed + queued + in_flight + spooled +
    sum(dropped.values())`` equals the number of events the collector accepted, each
    once: with a spool, a row this process gave back and took again later counts as
    what became of it the second time (rows taken over from other processes count as
    accepted here).
    """

    #: Events buffered, waiting for a worker.
    queued: int = 0
    #: Events a worker is delivering right now (including their retries).
    in_flight: int = 0
    #: Events answered ``202`` without ``x-plausible-dropped``.
    sent: int = 0
    #: Events that failed for good: rejected (4xx) or out of retries.
    failed: int = 0
    #: Resends: every attempt after an event's first (retries, and resends of an event
    #: put back while the breaker was open). An event sent three times counts 2.
    retried: int = 0
    #: Events not delivered, by reason (see :class:`DropReason`).
    dropped: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: ``"closed"``, ``"open"`` or ``"half-open"`` (``"closed"`` when disabled).
    breaker_state: str = "closed"
    #: Wall-clock time (``time.time()``) of the last 2xx answer; None until one came.
    last_success_at: Optional[float] = None
    #: Wall-clock time of the last failed attempt or rejection; None until one happened.
    last_failure_at: Optional[float] = None
    #: Events committed to the spool and left there for another deliverer (a relay, the
    #: next process): written with ``deliver=False``, or given back unsent (buffer
    #: full, close) and not taken again by this process.
    spooled: int = 0
    #: Spooled events taken over from a process that died mid-POST: they may already be
    #: counted by Plausible (resent unless ``retry_connection_cuts`` is off).
    in_doubt: int = 0
    #: Rows in the spool file (every process's) at the snapshot; None without a spool.
    spool_backlog: Optional[int] = None
    #: The ``dropped`` key most recently counted; None until a drop.
    last_drop_reason: Optional[str] = None
    #: Calls of the ``before_send``/``on_error``/``on_drop`` hooks that raised.
    hook_errors: int = 0

    @property
    def accepted(self) -> int:
        """Every event the collector took in, however it ended."""
        return (
            self.sent
            + self.failed
            + self.queued
            + self.in_flight
            + self.spooled
            + sum(self.dropped.values())
        )


class Ledger:
    """The counters behind ``stats()``; the caller serialises access."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        # Plain str keys and no call between the read and the write of a count: a
        # signal handler runs only at a Python call (Counter.__missing__, an Enum's
        # __hash__) or a loop, and one running there could lose a count. (Python 3.9
        # runs handlers between almost any two bytecodes: a handler's count can be lost.)
        self.dropped: dict[str, int] = {}
        #: Buffered items settled so far, however (``flush()`` waits on it).
        self.settled = 0
        self.last_drop: Optional[str] = None

    def settle(self, settlement: Settlement, n: int = 1) -> None:
        """Count ``n`` buffered items that ended as ``settlement``."""
        if settlement is Settlement.SENT:
            self.sent += n
        elif settlement is Settlement.REJECTED or settlement is Settlement.GAVE_UP:
            self.failed += n
        else:
            reason = settlement.drop_reason
            assert reason is not None
            self._add(reason.value, n)
        self.settled += n

    def drop_unbuffered(self, reason: DropReason, n: int = 1) -> None:
        """Count items accepted but never buffered (closed, invalid)."""
        self._add(reason.value, n)

    def _add(self, key: str, n: int) -> None:
        dropped = self.dropped
        dropped[key] = dropped[key] + n if key in dropped else n
        self.last_drop = key

    def snapshot(self, **live: object) -> CollectorStats:
        """A :class:`CollectorStats` of these counts plus the ``live`` fields."""
        return CollectorStats(
            sent=self.sent,
            failed=self.failed,
            dropped=dict(self.dropped),
            last_drop_reason=self.last_drop,
            **live,  # type: ignore[arg-type]
        )
