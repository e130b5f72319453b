"""The delivery engine: a bounded buffer drained by long-lived worker threads.

Any collector can reuse it: give it a ``send(item)`` that makes one attempt and
returns a :class:`~plausible_wsgi.stats.Settlement` (sent, server-dropped, rejected)
or raises :class:`~plausible_wsgi.resilience.AttemptError`. It knows nothing of HTTP.

How it works, and why (figures in ``bench/steady.py``):

- ``put()`` appends to a ``deque`` under a lock; it wakes a worker only when
  ``batch_size`` events wait (or a worker must be started): no syscall per event.
  The buffer is bounded in events and in bytes; when full, the *oldest* event goes.
- Workers are daemon threads started on demand. A woken worker delivers event after
  event until the buffer is empty, taking each under the same lock acquisition that
  settles the previous one: at steady traffic one wake-up per batch and one lock
  round per event, no per-event future, closure, task or hand-off. An idle worker
  wakes every ``flush_interval`` while events wait; ``flush()`` cuts through.
- One worker keeps up with a fast server; another joins only while events wait and
  every running worker has been waiting on the server for over ``_RAMP`` (threads
  contending for the GIL cost CPU for nothing). Against a slow server all
  ``max_workers`` are busy within a few tens of milliseconds.
- Each event is retried by its own worker (``retry.run_retries``), so a slow or
  retrying event holds one worker and never the others. ``Retry-After`` pauses them
  all. While the breaker is open nothing is sent; events wait in the buffer and one
  probe goes out when it is due. An event put back because the breaker opened is
  resent at most ``_MAX_REQUEUES`` times (it may have been recorded already).
- Workers that stay idle for ``_IDLE_EXIT`` seconds end and the transport's
  connections are released (``on_idle``); the next ``put()`` starts one again.
- Locking is reentrant: ``track()``, ``stats()`` or ``close()`` from a signal
  handler that interrupted the same thread inside ``put()`` cannot deadlock.
- Exit and fork: see :mod:`plausible_wsgi.lifecycle`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Callable, Generic, Optional, TypeVar

from . import lifecycle
from ._log import RateLimitedLog, logger
from .attempts import Deliverer, Requeue
from .breaker import Admission, Breaker
from .config import CircuitBreakerConfig, RetryConfig
from .stats import CollectorStats, DropReason, Settlement

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "DeliveryEngine"]

T = TypeVar("T")

#: The default bound of the buffer in bytes (an estimate of each event's size).
DEFAULT_MAX_BUFFER_BYTES = 16 * 1024 * 1024
#: Seconds every running worker must have waited on the server before another joins.
_RAMP = 0.01
#: Seconds an idle worker lingers before it ends (and the connections are released).
_IDLE_EXIT = 30.0
#: Times an event may be put back in the buffer after an attempt (breaker opened).
_MAX_REQUEUES = 3
#: Live engines for one endpoint and site beyond which a collector is built per request.
_MANY_ENGINES = 16
_monotonic = time.monotonic
_getpid = os.getpid
_misuse_warned = False


class DeliveryEngine(Generic[T]):
    """Buffers items and delivers them concurrently with retry and circuit breaking.

    :param send: makes one delivery attempt for an item.
    :param key: engines with the same key deliver to the same place (many live ones
        mean a collector built per request: warned about once, and they then send at
        once and release their thread as soon as they are idle).
    :param size_of: an estimate, in bytes, of an item's memory (for ``max_buffer_bytes``).
    :param on_abort: called when the close deadline passes, to cut blocking I/O.
    :param on_fork: called in a forked child, before anything else; must not log.
    :param on_idle: called when the last worker ends, idle (release connections).
    :param on_settle: ``(item, settlement)``, exactly once per buffered item, from a
        delivery thread (from ``close()``'s thread for events cut off by its deadline;
        never in a forked child for the parent's events).
    """

    def __init__(
        self,
        send: Callable[[T], Settlement],
        *,
        name: str = "plausible",
        key: object = None,
        batch_size: int = 10,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        size_of: Optional[Callable[[T], int]] = None,
        max_workers: int = 4,
        retry: Optional[RetryConfig] = None,
        circuit_breaker: Optional[CircuitBreakerConfig] = None,
        shutdown_timeout: float = 5.0,
        on_abort: Optional[Callable[[], None]] = None,
        on_fork: Optional[Callable[[], None]] = None,
        on_idle: Optional[Callable[[], None]] = None,
        on_settle: Optional[Callable[[T, Settlement], None]] = None,
    ) -> None:
        self.name = name
        self._send = send
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_buffer_bytes = max_buffer_bytes
        self._size_of = size_of
        self.max_workers = max_workers
        self.retry = retry
        self.circuit_breaker = circuit_breaker
        self.shutdown_timeout = shutdown_timeout
        self._on_abort = on_abort
        self._on_fork = on_fork
        self._on_idle = on_idle
        self._on_settle = on_settle
        self._warnings = RateLimitedLog()
        self._closed = False
        self._eager = False
        self._idle_exit = _IDLE_EXIT
        self._sent = self._failed = 0
        self._dropped: collections.Counter[DropReason] = collections.Counter()
        self._fresh_state()
        if lifecycle.register(self, key if key is not None else name) > _MANY_ENGINES:
            self._many_alike()

    def _many_alike(self) -> None:
        global _misuse_warned
        self._eager, self._idle_exit = True, 0.0
        if not _misuse_warned:
            _misuse_warned = True
            logger.warning(
                "%s: more than %d collectors for the same site are alive; build one "
                "collector at startup and share it (a collector per request leaks "
                "threads and connections). These now send at once and release their "
                "thread when idle.",
                self.name,
                _MANY_ENGINES,
            )

    # -- state -------------------------------------------------------------------------

    def _fresh_state(self) -> None:
        """Everything that must not cross a fork, created anew."""
        self._pid = _getpid()
        self._lock = threading.RLock()  # reentrant: see the module docstring
        self._work = threading.Condition(self._lock)
        self._settled_cv = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._evicted: list[T] = []
        self._requeued: dict[int, int] = {}
        self._abort = threading.Event()
        self._closing_done = threading.Event()
        self._breaker = Breaker(self.circuit_breaker) if self.circuit_breaker else None
        self._one = Deliverer(
            self._send,
            name=self.name,
            retry=self.retry,
            breaker=self._breaker,
            abort=self._abort,
            warnings=self._warnings,
        )
        self._in_flight = self._threads = self._idle = self._draining = 0
        #: thread id -> when its current attempt started, for the ramp-up decision.
        self._busy: dict[int, float] = {}
        self._next_tick = _monotonic() + self.flush_interval
        self._flush_waiters = 0
        self._notified = False
        #: Buffered items settled so far (flush() waits on it).
        self._settled_n = 0

    def forked(self) -> bool:
        return self._pid != _getpid()

    def after_fork_in_child(self) -> None:
        """Replace the parent's locks, threads and connections; count what it owns.

        Runs in the child right after ``fork()``: it must not take any lock the
        parent may have held, and must not log (the logging lock may be held).
        """
        inherited = len(self._queue) + self._in_flight
        old = self._one
        self._fresh_state()
        self._one.retried = old.retried
        self._one.last_success_at, self._one.last_failure_at = (
            old.last_success_at,
            old.last_failure_at,
        )
        if inherited:
            self._dropped[DropReason.FORK] += inherited
        self._warnings.after_fork_in_child()
        if self._on_fork is not None:
            self._on_fork()

    # -- the request path --------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Buffer ``item``; never blocks on the network. False when closed.

        The state changes in an order that leaves the counts exact even if a signal
        handler raises between two of them.
        """
        if self._pid != _getpid():  # forked without the at-fork hooks (uWSGI)
            self.after_fork_in_child()
        size = self._size_of(item) if self._size_of is not None else 0
        with self._lock:
            if self._closed:
                self._dropped[DropReason.CLOSED] += 1
                return False
            queue = self._queue
            evicted = 0
            if len(queue) >= self.max_queue_size or self._bytes + size > self.max_buffer_bytes:
                evicted = self._make_room(size)
            queue.append((item, size))
            self._bytes += size
            # A first worker, or a spare to join if the busy ones wait on a slow server.
            if self._threads <= 0 or (
                not self._idle and self._draining and self._threads < self.max_workers
            ):
                self._start_worker()
            elif (
                self._idle and not self._notified and (len(queue) >= self.batch_size or self._eager)
            ):
                self._notified = True
                self._work.notify()
        if evicted:
            self._warnings.log(
                logging.WARNING,
                "queue_full",
                "%s: buffer full (%d events or %d bytes), dropping the oldest; "
                "is the endpoint reachable?",
                self.name,
                self.max_queue_size,
                self.max_buffer_bytes,
            )
        return True

    def _make_room(self, size: int) -> int:
        queue, evicted = self._queue, 0
        while queue and (
            len(queue) >= self.max_queue_size or self._bytes + size > self.max_buffer_bytes
        ):
            old, old_size = queue.popleft()
            self._bytes -= old_size
            self._dropped[DropReason.QUEUE_FULL] += 1
            self._settled_n += 1
            if self._on_settle is not None:
                self._evicted.append(old)  # settled by a worker, off the request path
            evicted += 1
        return evicted

    def count_dropped(self, reason: DropReason) -> None:
        """Count an event that was accepted but will never be buffered."""
        with self._lock:
            self._dropped[reason] += 1

    # -- threads -----------------------------------------------------------------------

    def _start_worker(self) -> None:
        """Start a worker thread; under the lock.

        Counted only once started: a signal handler raising in the main thread (or a
        failed start) leaves the count low, so a later put() starts one more worker,
        never high, which would leave a phantom no put() replaces.
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
            first = self._next()
            if first is None:
                return
            self._drain(first, me)

    def _next(self) -> Optional[tuple[T, int, Admission]]:
        """Wait until an event should go out; take it. None: this worker ends."""
        with self._lock:
            idle_since = _monotonic()
            while not self._abort.is_set():
                now = _monotonic()
                delay = self._delay(now)
                if delay is None:
                    admission = self._one.admit()
                    if admission is not Admission.DENIED:
                        self._draining += 1
                        return (*self._pop(), admission)
                    assert self._breaker is not None  # only a breaker denies
                    delay = max(0.005, self._breaker.seconds_until_probe())
                if not self._queue:
                    idle_left = self._idle_exit - (now - idle_since)
                    if idle_left <= 0:
                        break
                    delay = min(delay, idle_left)
                self._idle += 1
                try:
                    self._work.wait(delay)
                finally:
                    self._idle -= 1
                    self._notified = False
            self._threads -= 1
            # Under the lock: no put() starts a worker meanwhile. At close every worker
            # closes the connections before it ends: a connection left to the garbage
            # collector when its thread ends would be an unclosed socket.
            last = self._threads == 0 and not self._queue
            if self._on_idle is not None and (last or self._abort.is_set()):
                self._on_idle()
            return None

    def _delay(self, now: float) -> Optional[float]:
        """None when an event should go out now, else seconds to wait before looking."""
        if not self._queue:
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
            busy = tuple(self._busy.values())
            if len(busy) < self._draining:
                return _RAMP  # a worker is between events: it is keeping up
            newest = now - max(busy)
            if newest < _RAMP:
                return _RAMP - newest
            return None
        if (
            len(self._queue) >= self.batch_size
            or now >= self._next_tick
            or self._flush_waiters
            or self._closed
            or self._eager
        ):
            return None
        return self._next_tick - now

    def _pop(self) -> tuple[T, int]:
        item, size = self._queue.popleft()
        self._bytes = self._bytes - size if self._queue else 0
        self._in_flight += 1
        return item, size

    def _drain(self, first: tuple[T, int, Admission], me: int) -> None:
        """Deliver events one after another until there is nothing to do."""
        item, size, admission = first
        busy = self._busy
        while True:
            resend = id(item) in self._requeued
            busy[me] = _monotonic()
            try:
                settlement = self._one.deliver(item, admission, resend)
            finally:
                del busy[me]
            with self._lock:
                final = self._settle(item, size, settlement)
                evicted, self._evicted = self._evicted, []
                nxt = self._next_in_drain(admission)
                if nxt is None:
                    self._draining -= 1
                if (
                    nxt is not None
                    and self._queue
                    and not self._idle
                    and self._threads < self.max_workers
                ):
                    self._start_worker()  # joins if this one waits on a slow server
                if admission is Admission.PROBE:
                    self._work.notify_all()  # the probe settled: the others look again
            if final is not None:
                self._report(item, final)
            for old in evicted:
                self._report(old, Settlement.QUEUE_FULL)
            if nxt is None:
                return
            item, size = nxt
            admission = Admission.NORMAL

    def _next_in_drain(self, admission: Admission) -> Optional[tuple[T, int]]:
        if (
            not self._queue
            or admission is Admission.PROBE  # the next look decides what follows a probe
            or self._abort.is_set()
            or _monotonic() < self._one.paused_until
            or not self._one.breaker_closed()
        ):
            return None
        return self._pop()

    def _report(self, item: T, settlement: Settlement) -> None:
        if self._on_settle is None:
            return
        try:
            self._on_settle(item, settlement)
        except Exception:
            logger.error("%s: on_settle raised", self.name, exc_info=True)

    # -- settling ----------------------------------------------------------------------

    def _settle(self, item: T, size: int, result: Settlement | Requeue) -> Optional[Settlement]:
        """Count the end of an attempt (under the lock); the final settlement, if any."""
        self._in_flight -= 1
        key = id(item)
        if isinstance(result, Requeue):
            requeues = self._requeued.get(key, 0)
            if result is Requeue.MAYBE_RECORDED:
                requeues += 1
            settlement: Optional[Settlement] = None
            if self._abort.is_set():
                settlement = Settlement.SHUTDOWN
            elif requeues > _MAX_REQUEUES:
                settlement = Settlement.GAVE_UP  # it may have been recorded already
            elif len(self._queue) >= self.max_queue_size:
                settlement = Settlement.QUEUE_FULL
            else:
                self._requeued[key] = requeues
                self._queue.appendleft((item, size))  # it is the oldest: first out again
                self._bytes += size
                return None
        else:
            settlement = result
        self._requeued.pop(key, None)
        if settlement is Settlement.SENT:
            self._sent += 1
        elif settlement is Settlement.REJECTED or settlement is Settlement.GAVE_UP:
            self._failed += 1
        else:
            reason = settlement.drop_reason
            assert reason is not None
            self._dropped[reason] += 1
        self._settled_n += 1
        if self._flush_waiters:
            self._settled_cv.notify_all()
        if not self._one.breaker_closed():
            self._work.notify_all()  # a probe settled: the waiting workers look again
        return settlement

    # -- flush and close ---------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is buffered now; True when all of it settled within ``timeout``.

        ``None`` waits up to ``shutdown_timeout``. Events put after the call began are
        not waited for.
        """
        if self._pid != _getpid():
            self.after_fork_in_child()
        deadline = _monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        return self._wait_settled(deadline)

    def _wait_settled(self, deadline: float) -> bool:
        with self._lock:
            outstanding = len(self._queue) + self._in_flight
            if not outstanding:
                return True
            target = self._settled_n + outstanding
            self._flush_waiters += 1
            if self._threads <= 0 and not self._abort.is_set():
                self._start_worker()
            self._work.notify_all()
        try:
            with self._lock:
                while self._settled_n < target:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return False
                    self._settled_cv.wait(remaining)
                return True
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def begin_close(self) -> bool:
        """Stop accepting events. Returns False if already closed."""
        if self._pid != _getpid():
            self.after_fork_in_child()
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._work.notify_all()
        return True

    def finish_close(self, deadline: float) -> None:
        """Flush until ``deadline``, then drop what is left and release the threads."""
        try:
            self._wait_settled(deadline)
            with self._lock:
                # Read before the sockets are cut: these are settled as dropped (shutdown)
                # by their workers unless an answer was already on its way.
                in_flight = self._in_flight
                self._abort.set()
                self._work.notify_all()
            if self._on_abort is not None:
                self._on_abort()
            with self._lock:
                left = [item for item, _ in self._queue]
                self._queue.clear()
                self._bytes = 0
                if left:
                    self._dropped[DropReason.SHUTDOWN] += len(left)
                    self._settled_n += len(left)
                self._settled_cv.notify_all()
            for item in left:
                self._report(item, Settlement.SHUTDOWN)
            if left or in_flight:
                self._warnings.log(
                    logging.WARNING,
                    "shutdown",
                    "%s: the close deadline passed with %d events still buffered (dropped) "
                    "and %d being sent (cut off); a larger shutdown_timeout gives them more "
                    "time",
                    self.name,
                    len(left),
                    in_flight,
                )
        finally:
            self._closing_done.set()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, flush within ``timeout`` (default ``shutdown_timeout``).

        Every caller, concurrent ones included, returns once the engine is closed
        and settled, or when its own ``timeout`` has passed.
        """
        deadline = _monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        if self.begin_close():
            self.finish_close(deadline)
        else:
            self._closing_done.wait(max(0.0, deadline - _monotonic()))

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> CollectorStats:
        if self._pid != _getpid():
            self.after_fork_in_child()
        with self._lock:
            return CollectorStats(
                queued=len(self._queue),
                in_flight=self._in_flight,
                sent=self._sent,
                failed=self._failed,
                retried=self._one.retried,
                dropped={reason.value: n for reason, n in self._dropped.items()},
                breaker_state=self._breaker.state if self._breaker is not None else "closed",
                last_success_at=self._one.last_success_at,
                last_failure_at=self._one.last_failure_at,
            )
