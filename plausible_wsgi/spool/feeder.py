"""Between a :class:`~plausible_wsgi.spool.Spool` and a delivery engine.

The engine needs to offer only two things: ``put(item) -> bool`` and a call back once
per item when its fate is settled (``settled(record, settlement)``). The feeder:

- on the request path, commits each event to the spool before ``track()`` returns,
  claimed by this process, and hands it to the engine (``deliver=True``), or leaves it
  free for a relay (``deliver=False``: no threads, no sockets);
- deletes a row when its POST settled (sent, dropped by Plausible, failed for good) and
  gives it back to the spool when it was not sent (close deadline, buffer full);
- in a delivering process, runs one "pump" thread (started on first use) that renews
  this process's leases and claims the spool's backlog — rows of processes that died,
  rows written by ``deliver=False`` processes — as the engine has room;
- falls back to the engine's memory buffer, with one WARNING, while the spool file
  cannot be written (full disk, permissions), and tries the file again later.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import weakref
from typing import Callable, Optional, Union

from .._log import RateLimitedLog, logger
from ..stats import CollectorStats, DropReason, Settlement
from .kept import KeptRows
from .store import Spool, SpoolError, SpoolRecord

__all__ = ["SpoolFeeder", "feeders"]

#: Settlements after which a row is given back unsent (kept for a later delivery);
#: after any other the POST was answered, gave up for good or was vetoed: deleted.
_KEPT = frozenset({Settlement.QUEUE_FULL, Settlement.SHUTDOWN})
#: Seconds a process's claim lasts without renewal; renewed every pump tick.
LEASE_SECONDS = 60.0
#: Seconds between pump ticks (claiming backlog, renewing leases).
POLL_INTERVAL = 0.5
#: Pump ticks between sweeps (leases renewed, rows of dead processes freed): each scans
#: the claimed rows, so not every tick. The first tick of a process sweeps.
SWEEP_TICKS = 20
#: Seconds before a broken spool file is tried again.
_RETRY_BROKEN = 30.0


_feeders: weakref.WeakSet[SpoolFeeder] = weakref.WeakSet()


def feeders() -> list[SpoolFeeder]:
    """The feeders (collectors with a spool) open in this process."""
    return [feeder for feeder in list(_feeders) if not feeder.closed]


# About 290 lines, over the usual ~250: the request path, the settle callback, the
# pump and the counters share one lock and one view of what this process holds.
class SpoolFeeder:
    """Feeds a delivery engine from a spool file and settles rows back into it.

    :param spool: a :class:`Spool` or the path of its file (opened on first use).
    :param put: the engine's ``put``; False when it no longer accepts items.
    :param capacity: items the engine holds at most (its buffer bound).
    :param deliver: False writes rows only; nothing is claimed, no thread runs.
    :param resend_in_doubt: whether a row whose POST went out unanswered before its
        owner died is sent again (``RetryConfig.retry_connection_cuts``).
    :param on_gone: called in the pump thread for each row the spool deleted unsent
        (``expired``, or ``in_doubt`` when not resent): the collector's ``on_drop``.
    """

    def __init__(
        self,
        spool: Union[Spool, str],
        put: Callable[[SpoolRecord], bool],
        *,
        name: str,
        capacity: int,
        max_age: float = 1800.0,
        deliver: bool = True,
        resend_in_doubt: bool = True,
        on_gone: Optional[Callable[[SpoolRecord, DropReason], None]] = None,
    ) -> None:
        self.name = name
        self.on_gone = on_gone
        self._spool_or_path = spool
        self._put = put
        self.capacity = capacity
        self.max_age = max_age
        self.deliver = deliver
        self.resend_in_doubt = resend_in_doubt
        self._warnings = RateLimitedLog()
        self._closed = False
        self._fresh_state()
        _feeders.add(self)

    def _fresh_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._spool: Optional[Spool] = (
            self._spool_or_path if isinstance(self._spool_or_path, Spool) else None
        )
        self._broken_until = 0.0
        self._warned_broken = False
        self._outstanding = 0
        self._more_waiting = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pump: Optional[threading.Thread] = None
        self._ticks = 0
        self._expired = 0
        self._in_doubt = 0
        self._in_doubt_dropped = 0
        #: Rows written for another deliverer, or given back unsent.
        self._kept = KeptRows(remember=self.deliver)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # The parent's rows and threads stay the parent's. No logging here.
            self._fresh_state()

    # -- the spool file, or why not --------------------------------------------------

    def _open(self) -> Optional[Spool]:
        spool = self._spool
        if spool is not None:
            return spool
        path = self._spool_or_path
        assert isinstance(path, str)
        try:
            spool = Spool(path, max_age=self.max_age)
        except SpoolError as exc:
            self._broken(exc)
            return None
        self._spool = spool
        return spool

    def _broken(self, exc: SpoolError) -> None:
        """The file failed: memory until ``_RETRY_BROKEN`` has passed; warn once."""
        self._broken_until = time.monotonic() + _RETRY_BROKEN
        if not isinstance(self._spool_or_path, Spool):
            self._spool = None  # reopen from the path next time
        if not self._warned_broken:
            self._warned_broken = True
            logger.warning(
                "%s: the spool is unusable (%s); events are kept in memory only until "
                "it works again",
                self.name,
                exc,
            )

    def _usable(self) -> Optional[Spool]:
        if self._broken_until:
            if time.monotonic() < self._broken_until:
                return None
            self._broken_until = 0.0  # try the file again
        return self._spool or self._open()

    # -- the request path ------------------------------------------------------------

    def append(self, body: bytes, user_agent: Optional[str], client_ip: Optional[str]) -> bool:
        """Commit one event; False when the spool cannot take it (use memory instead)."""
        self._check_fork()
        if self._closed:
            return False
        spool = self._usable()
        if spool is None:
            return False
        own = self.deliver and self._outstanding < self.capacity
        try:
            record = spool.append(
                body, user_agent, client_ip, lease_seconds=LEASE_SECONDS if own else None
            )
        except SpoolError as exc:
            self._broken(exc)
            return False
        if not own:
            with self._lock:
                self._kept.left(record)
                self._more_waiting = True
            if self.deliver:
                self._start()  # this process takes the row later
            return True
        with self._lock:
            self._outstanding += 1
        if not self._put(record):
            self._refused([(record, True)])  # committed: track() succeeded
        self._start()
        return True

    def mark_attempt(self, record: SpoolRecord) -> None:
        """A POST of ``record`` is about to go out (a delivery thread)."""
        spool = self._spool
        if spool is not None:
            try:
                spool.mark_attempt(record.id)
            except SpoolError as exc:
                self._warn("spool_write", exc)

    def settled(self, record: SpoolRecord, settlement: Settlement) -> bool:
        """The engine is done with ``record``: delete it, or give it back unsent.

        Returns whether the spool keeps the row (for a later delivery).
        """
        if self._pid != os.getpid():
            return False  # an item of the parent's engine; never ours
        keep = settlement in _KEPT
        spool = self._spool
        try:
            if spool is not None:
                if keep:
                    spool.release((record.id,))
                else:
                    spool.delete((record.id,))
        except SpoolError as exc:
            self._warn("spool_write", exc)
        with self._lock:
            self._outstanding -= 1
            if keep:
                self._kept.left(record, settlement.drop_reason)
            wake = self._more_waiting and self._outstanding <= self.capacity // 2
        if wake:
            self._wake.set()
        return keep

    def _refused(self, refused: list[tuple[SpoolRecord, bool]]) -> None:
        """The engine, closed, refused these rows (each: whether it counts as spooled).

        They go back to the spool, not dropped: a row just appended, or one this
        process had left before, counts as spooled; a backlog row of another process
        is simply not taken.
        """
        spool = self._spool
        try:
            if spool is not None:
                spool.release([record.id for record, _ in refused])
        except SpoolError as exc:
            self._warn("spool_write", exc)
        with self._lock:
            self._outstanding -= len(refused)
            for record, spooled in refused:
                self._kept.refused(record, spooled)

    def _warn(self, key: str, exc: Exception) -> None:
        self._warnings.log(logging.WARNING, key, "%s: spool: %s", self.name, exc)

    # -- the pump --------------------------------------------------------------------

    def start(self) -> None:
        """Start the pump thread (once per process) of a delivering feeder."""
        self._check_fork()
        if not self.deliver or self._closed:
            return
        with self._lock:
            if self._pump is not None:
                return
            thread = threading.Thread(target=self._run, name=f"{self.name}-spool", daemon=True)
            self._pump = thread
        thread.start()

    def _start(self) -> None:
        if self._pump is None:  # the request path: no lock when it runs already
            self.start()

    def _run(self) -> None:
        stop, wake = self._stop, self._wake
        while not stop.is_set():
            try:
                self.pump_once()
            except SpoolError as exc:
                self._warn("spool_claim", exc)
            except Exception as exc:  # never let the pump die silently
                logger.error("%s: spool pump: unexpected %s", self.name, type(exc).__name__)
                logger.debug("spool pump error", exc_info=True)
            wake.wait(POLL_INTERVAL)
            wake.clear()

    def pump_once(self) -> int:
        """Renew leases and claim backlog as the engine has room; rows handed over."""
        spool = self._usable()
        if spool is None or self._closed:
            return 0  # closed: the engine takes nothing more, the rows stay free
        with self._lock:
            outstanding = self._outstanding
            room = self.capacity - outstanding
        sweep = self._ticks % SWEEP_TICKS == 0
        self._ticks += 1
        spool.checkpoint()  # here, not in a request's commit (see Spool)
        if sweep and outstanding:
            spool.renew(LEASE_SECONDS)
        if room < max(1, self.capacity // 2):
            return 0
        claim = spool.claim(room, LEASE_SECONDS, resend_in_doubt=self.resend_in_doubt, sweep=sweep)
        kept = self._kept
        with self._lock:
            self._expired += claim.expired
            self._in_doubt += claim.in_doubt
            self._in_doubt_dropped += claim.in_doubt_dropped
            self._outstanding += len(claim.records)
            self._more_waiting = len(claim.records) == room
            # A row this process left and takes again is counted by the engine anew,
            # or as expired/in doubt: it is not spooled any more.
            for gone in claim.expired_rows + claim.in_doubt_dropped_rows:
                kept.retaken(gone)
            retaken = [kept.retaken(record) for record in claim.records]
            if sweep:
                kept.forget_older_than(time.time() - 2 * spool.max_age)
        if claim.expired:
            self._warnings.log(
                logging.WARNING,
                "expired",
                "%s: %d spooled events were older than %.0f s and were not sent",
                self.name,
                claim.expired,
                spool.max_age,
            )
        if self.on_gone is not None:
            for gone in claim.expired_rows:
                self.on_gone(gone, DropReason.EXPIRED)
            for gone in claim.in_doubt_dropped_rows:
                self.on_gone(gone, DropReason.IN_DOUBT)
        refused = [
            (record, was_left)
            for record, was_left in zip(claim.records, retaken)
            if not self._put(record)
        ]
        if refused:  # closed meanwhile
            self._refused(refused)
        return len(claim.records)

    # -- close and stats -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def begin_close(self) -> None:
        """Stop taking events (they go to the engine, which counts them closed)."""
        self._closed = True

    def close(self) -> None:
        """Stop the pump and give back any row still held. Call after the engine closed."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(timeout=5.0)
        spool = self._spool
        if spool is not None and self._pid == os.getpid():
            try:
                spool.release_mine()
            except SpoolError as exc:
                self._warn("spool_write", exc)
            spool.close()

    def backlog(self) -> Optional[int]:
        """Rows in the spool file now; None when it cannot be read."""
        spool = self._spool
        if spool is None:
            return None
        try:
            return spool.backlog()
        except SpoolError:
            return None

    def adjust(self, stats: CollectorStats) -> CollectorStats:
        """The engine's counters, corrected for what the spool keeps.

        Items the engine gave up unsent (``shutdown``, ``queue_full``, ``closed``) are
        still in the spool: they move from ``dropped`` to ``spooled``, as long as this
        process has not taken them again.
        """
        self._check_fork()
        with self._lock:
            cancelled = dict(self._kept.cancelled)
            spooled = self._kept.spooled
            expired, in_doubt, in_doubt_dropped = (
                self._expired,
                self._in_doubt,
                self._in_doubt_dropped,
            )
        dropped = dict(stats.dropped)
        for reason, count in cancelled.items():
            if reason in dropped:
                dropped[reason] -= count
                if not dropped[reason]:
                    del dropped[reason]
        _add(dropped, DropReason.EXPIRED, expired)
        _add(dropped, DropReason.IN_DOUBT, in_doubt_dropped)
        _add(dropped, DropReason.QUEUE_FULL, self._spool.evicted if self._spool else 0)
        last = stats.last_drop_reason
        return dataclasses.replace(
            stats,
            dropped=dropped,
            # What the spool kept was not dropped after all.
            last_drop_reason=last if last in dropped else None,
            spooled=spooled,
            in_doubt=in_doubt,
            spool_backlog=self.backlog(),
        )


def _add(counts: dict[str, int], key: str, value: int) -> None:
    if value:
        counts[key] = counts.get(key, 0) + value
