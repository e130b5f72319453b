"""Counters every collector reports, as an immutable snapshot."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Optional

__all__ = ["CollectorStats", "DropReason"]


class DropReason:
    """The reasons an accepted event is not delivered, as used in ``stats().dropped``."""

    #: The buffer was full; the oldest event made room for a newer one.
    QUEUE_FULL = "queue_full"
    #: A hand-built event failed validation in ``collect()``.
    INVALID = "invalid"
    #: Plausible answered ``202`` with ``x-plausible-dropped`` (bot, unknown site, ...).
    SERVER_DROPPED = "server_dropped"
    #: Still buffered or in flight when ``close()`` or interpreter exit ran out of time.
    SHUTDOWN = "shutdown"
    #: Inherited from the parent process by a forked child; the parent delivers them.
    FORK = "fork"
    #: ``track()`` after ``close()``.
    CLOSED = "closed"
    #: A spooled event older than ``spool_max_age``: Plausible would start a new session.
    EXPIRED = "expired"
    #: A spooled event whose POST went out unanswered before its process died, not sent
    #: again because ``RetryConfig.retry_connection_cuts`` is off.
    IN_DOUBT = "in_doubt"


@dataclasses.dataclass(frozen=True)
class CollectorStats:
    """A snapshot of a collector's counters.

    The counts always add up: ``sent + failed + queued + in_flight + spooled +
    sum(dropped.values())`` equals the number of events the collector accepted. With a
    spool, a row this process gave back and took again later counts each time.
    """

    #: Events buffered, waiting for a worker.
    queued: int = 0
    #: Events a worker is delivering right now (including their retries).
    in_flight: int = 0
    #: Events answered ``202`` without ``x-plausible-dropped``.
    sent: int = 0
    #: Events that failed for good: rejected (4xx) or out of retries.
    failed: int = 0
    #: Retry attempts made (an event retried twice counts 2).
    retried: int = 0
    #: Events not delivered, by reason (see :class:`DropReason`).
    dropped: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: ``"closed"``, ``"open"`` or ``"half-open"`` (``"closed"`` when disabled).
    breaker_state: str = "closed"
    #: Events committed to the spool and left there for another deliverer (a relay, the
    #: next process): written with ``deliver=False``, or given back unsent at close.
    spooled: int = 0
    #: Spooled events taken over from a process that died mid-POST: they may already be
    #: counted by Plausible (resent unless ``retry_connection_cuts`` is off).
    in_doubt: int = 0
    #: Rows in the spool file (every process's) at the snapshot; None without a spool.
    spool_backlog: Optional[int] = None

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
