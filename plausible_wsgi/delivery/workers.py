"""The engine's delivery threads: when to wake, what to take, how to settle.

Workers are daemon threads started on demand (see :mod:`plausible_wsgi.lifecycle` for
why daemon). A woken worker delivers event after event until the buffer is empty,
taking each under the lock acquisition that settles the previous one: at steady
traffic one wake-up per batch and one lock round per event, with no per-event
future, closure, task or hand-off.

- An idle worker wakes when ``batch_size`` events wait (``put()`` notifies it), at
  each ``flush_interval`` tick while events wait, or when ``flush()``/``close()`` ask.
- While traffic is fast, a batch lingers (:mod:`plausible_wsgi.delivery.pacing`): the
  worker that drained the buffer wakes on its own timer and ``put()`` wakes nobody.
  ``flush()`` and ``close()`` cut through it; ``batch_size=1`` never lingers.
- One worker keeps up with a fast server; another joins only while events wait and
  every draining worker has waited on the server for over ``RAMP``, or attempts take
  that long, and leaves once they are fast (the ramp, in the same module). An idle
  spare checks on the drainers with growing patience (up to ``_PATIENCE``); ``put()``
  and a slow answer wake it when it must join. Against a slow server all
  ``max_workers`` are busy within tens of milliseconds.
- While the breaker is open nothing is taken; one worker takes the probe when due.
  An event put back because the breaker opened after it went out is resent at most
  ``MAX_REQUEUES`` times (:class:`~plausible_wsgi.delivery.deliverer.Requeues`):
  Plausible may have recorded it already.
- A worker idle for ``_IDLE_EXIT`` seconds ends; the last one releases the
  transport's connections (``on_idle``); the next ``put()`` starts one again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Optional, TypeVar

from .. import lifecycle
from .._log import RateLimitedLog, logger
from ..stats import Ledger, Settlement
from .breaker import Admission, Breaker
from .buffer import Buffer
from .deliverer import Deliverer, Pipeline, Requeue, Requeues, all_sent
from .pacing import RAMP, Linger, Ramp

__all__ = ["WorkerPool"]

T = TypeVar("T")

#: Seconds an idle worker lingers before it ends (and the connections are released).
_IDLE_EXIT = 30.0
#: Seconds at most between an idle spare's looks at a drain that keeps up.
_PATIENCE = 0.25
_monotonic = time.monotonic


# A few lines over 250: the halves of one lock protocol (wake, take, settle) read
# together; split, they would share every field.
class WorkerPool(Generic[T]):
    """The worker half of :class:`~plausible_wsgi.delivery.engine.DeliveryEngine`.

    One lock guards the buffer, the ledger and the fields below; the engine creates
    them (``_fresh_state``) and holds the request-path half of the protocol.
    """

    name: str
    batch_size: int
    flush_interval: float
    max_workers: int
    _lock: threading.RLock
    _work: threading.Condition
    _settled_cv: threading.Condition
    _buffer: Buffer[T]
    _ledger: Ledger
    _one: Deliverer[T]
    _breaker: Optional[Breaker]
    _abort: threading.Event
    _closing_done: threading.Event
    _warnings: RateLimitedLog
    _closed: bool
    _eager: bool
    _idle_exit: float = _IDLE_EXIT
    _on_idle: Optional[Callable[[], None]]
    _on_settle: Optional[Callable[[T, Settlement], None]]
    _pipeline: Optional[Pipeline[T]]

    def _fresh_pool(self) -> None:
        self._in_flight = self._threads = self._idle = self._draining = 0
        self._ramp = Ramp(self._pipeline)
        self._next_tick = _monotonic() + self.flush_interval
        #: The settled count each flush() waits for: woken when the lowest is reached,
        #: not at every event (a flush during a burst would take the GIL per event).
        self._flush_waiters: list[int] = []
        self._notified = False
        self._linger = Linger()
        #: Items pushed out of the full buffer, to report to on_settle from a worker.
        self._evicted: list[T] = []
        self._requeues: Requeues[T] = Requeues(self.name, self._warnings)

    def _start_worker(self) -> None:
        """Start a worker thread; under the lock.

        Counted only once started: a signal handler raising in the main thread (or a
        failed start) leaves the count low, so a later put() starts one more worker;
        never high, which would leave a phantom that no put() replaces.
        """
        lifecycle.install_exit_hook()
        thread = threading.Thread(target=self._run, name=f"{self.name}-worker", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down, or no thread left
            return
        self._threads += 1

    def _run(self) -> None:
        me = threading.get_ident()
        while True:
            first = self._next(me)
            if first is None:
                break
            self._drain(first, me)
        if self._abort.is_set():
            # Closing: this thread's connection must be closed before the thread ends
            # and drops it; finish_close() closes them all, then sets this.
            self._closing_done.wait()

    def _next(self, me: int) -> Optional[tuple[list[tuple[T, int]], Admission]]:
        """Wait until an event should go out; take it. None: this worker ends."""
        with self._lock:
            idle_since = _monotonic()
            patience = RAMP
            while not self._abort.is_set():
                now = _monotonic()
                delay = self._delay(now)
                if delay is None:
                    admission = self._one.admit()
                    if admission is not Admission.DENIED:
                        if not self._draining:
                            self._linger.batch_started(now, len(self._buffer), self.batch_size)
                        self._draining += 1
                        taken = self._take(admission)
                        if self._buffer and not self._idle and self._threads < self.max_workers:
                            self._start_worker()  # a spare: joins after RAMP if needed
                        return taken, admission
                    assert self._breaker is not None  # only a breaker denies
                    delay = max(0.005, self._breaker.seconds_until_probe())
                if not self._buffer and not self._in_flight:
                    idle_left = self._idle_exit - (now - idle_since)
                    if idle_left <= 0:
                        break
                    delay = min(delay, idle_left)
                elif self._draining:  # a spare watching a drain that keeps up
                    delay, patience = max(delay, patience), min(2 * patience, _PATIENCE)
                timer = self._linger.timer(me, now)
                if timer is not None:
                    delay = min(delay, timer)
                self._idle += 1
                try:
                    self._work.wait(delay)
                finally:
                    self._idle -= 1
                    self._notified = False
            self._threads -= 1
            # A worker ending idle (nothing buffered or in flight) releases the
            # connections: one left to the garbage collector with its thread is an
            # unclosed socket, and the other idle workers reconnect when needed. Under
            # the lock, so that no put() starts a worker meanwhile. At close,
            # finish_close() does it.
            if self._on_idle is not None and not self._abort.is_set():
                self._on_idle()
            return None

    def _delay(self, now: float) -> Optional[float]:
        """None when an event should go out now, else seconds to wait before looking."""
        if not self._buffer:
            self._linger.nothing_came(now)
            if now >= self._next_tick:
                self._next_tick = now + self.flush_interval
            return self._next_tick - now
        if now < self._one.paused_until:
            return self._one.paused_until - now
        breaker = self._breaker
        if breaker is not None and not breaker.closed:
            wait = breaker.seconds_until_probe()
            return None if wait <= 0 else wait  # woken early when a probe settles
        if self._draining:
            return self._ramp.join_in(now, self._draining)
        return self._batch_wait(now)

    def _batch_wait(self, now: float) -> Optional[float]:
        """Nobody drains, events wait: None when they are due, else the wait."""
        if now >= self._next_tick or self._flush_waiters or self._closed or self._eager:
            return None
        due = self._linger.due(now, self._buffer.half_full)
        if due is None:
            due = len(self._buffer) >= self.batch_size
        return None if due else self._next_tick - now

    def _should_wake(self) -> bool:
        """put(): must an idle worker be woken for what is buffered now?"""
        if self._draining:  # the drainers take it; a spare joins drainers stuck on the server
            return self._ramp.join_in(_monotonic(), self._draining) is None
        if self._eager:
            return True
        if self._linger.until:  # the lingering worker wakes by its timer
            return self._buffer.half_full
        return len(self._buffer.items) >= self.batch_size  # len(Buffer): a Python call

    def _take(self, admission: Admission) -> list[tuple[T, int]]:
        """The next item; while answers are fast, up to the pipeline's depth of them."""
        n, backlog = 1, len(self._buffer)  # not empty
        if self._pipeline is not None and admission is Admission.NORMAL:
            n = self._ramp.depth(min(self._pipeline.depth, backlog), backlog // self._draining)
        self._in_flight += n
        pop = self._buffer.pop
        return [pop() for _ in range(n)]

    def _drain(self, first: tuple[list[tuple[T, int]], Admission], me: int) -> None:
        """Deliver events, one or a pipelined batch at a time, until none is due."""
        batch, admission = first
        ramp = self._ramp
        requeues = self._requeues
        while True:
            items = [item for item, _ in batch]
            resends = requeues.resends(items)
            started = ramp.started(me)
            try:
                results = self._one.deliver_all(items, admission, resends)
            finally:
                ramp.ended(me, started, len(items))
            if self._on_settle is not None:
                # Reported before it is counted: once flush() returns, a spool has heard
                # of every item it waited for.
                for item, result in zip(items, results):
                    if not isinstance(result, Requeue):
                        self._report(item, result)
            with self._lock:
                finals: list[Optional[Settlement]] = []  # all sent: no item put back
                if all_sent(results, resends):
                    self._settled(Settlement.SENT, len(results))
                else:
                    finals = [self._settle(*taken, result) for taken, result in zip(batch, results)]
                evicted = self._evicted
                if evicted:
                    self._evicted = []
                nxt = self._carry_on(me, admission)
            for item, result, final in zip(items, results, finals):
                if final is not None and isinstance(result, Requeue):
                    self._report(item, final)  # could not go back: how it ended instead
            for old in evicted:
                self._report(old, Settlement.QUEUE_FULL)
            if nxt is None:
                return
            batch, admission = nxt, Admission.NORMAL

    def _carry_on(self, me: int, admission: Admission) -> Optional[list[tuple[T, int]]]:
        """After an event (under the lock): the next one to take, or None to stop."""
        nxt = self._next_in_drain(admission)
        if nxt is None:
            self._draining -= 1
            if not self._draining:
                may_linger = not self._buffer and self.batch_size > 1 and not self._eager
                self._linger.batch_ended(me, may_linger)
        elif self._buffer and not self._idle and self._threads < self.max_workers:
            self._start_worker()  # joins if this one waits on a slow server
        elif self._idle and self._buffer and self._ramp.took >= RAMP:
            self._work.notify_all()  # the server is slow: the idle spares join
        if admission is Admission.PROBE:
            self._work.notify_all()  # the probe settled: the others look again
        return nxt

    def _next_in_drain(self, admission: Admission) -> Optional[list[tuple[T, int]]]:
        paused_until = self._one.paused_until
        if (
            not self._buffer
            or admission is Admission.PROBE  # the next look decides what follows a probe
            or self._abort.is_set()
            or (paused_until and _monotonic() < paused_until)
            or not self._one.breaker_closed()
            or self._ramp.crowded(self._draining)  # fast answers: one worker is enough
        ):
            return None
        return self._take(Admission.NORMAL)

    def _report(self, item: T, settlement: Settlement) -> None:
        if self._on_settle is None:
            return
        try:
            self._on_settle(item, settlement)
        except Exception:
            logger.error("%s: on_settle raised", self.name, exc_info=True)

    def _settle(self, item: T, size: int, result: Settlement | Requeue) -> Optional[Settlement]:
        """Count the end of an attempt (under the lock); the final settlement, if any."""
        if isinstance(result, Requeue):
            settlement = (
                Settlement.SHUTDOWN
                if self._abort.is_set()
                else self._requeues.put_back(item, size, result, self._buffer)
            )
            if settlement is None:
                self._in_flight -= 1
                return None
        else:
            settlement = result
        self._requeues.forget(item)
        self._settled(settlement, 1)
        return settlement

    def _settled(self, settlement: Settlement, n: int) -> None:
        """``n`` items in flight ended as ``settlement`` (under the lock; the requeues
        know none of them)."""
        self._in_flight -= n
        self._ledger.settle(settlement, n)
        waiters = self._flush_waiters
        if waiters and self._ledger.settled >= min(waiters):
            self._settled_cv.notify_all()
        if not self._one.breaker_closed():
            self._work.notify_all()  # a probe settled: the waiting workers look again
