"""The delivery engine: a bounded buffer drained by long-lived worker threads.

Any collector can reuse it: give it a ``send(item)`` that makes one attempt and
returns a :class:`~plausible_wsgi.stats.Settlement` (sent, server-dropped, rejected)
or raises :class:`~plausible_wsgi.delivery.retry_after.AttemptError`. It knows nothing of HTTP.

- ``put()`` appends under a lock and wakes a worker only when ``batch_size`` events
  wait (or a worker must be started): no syscall per event. The buffer is bounded in
  events and in bytes; when full, the *oldest* event goes, counted as ``queue_full``.
- The workers (:mod:`plausible_wsgi.delivery.workers`) deliver; one event's attempts, retries
  and breaker verdicts are :mod:`plausible_wsgi.delivery.deliverer`'; ``flush()`` and
  ``close()`` are :mod:`plausible_wsgi.delivery.closing`'s; fork and exit are
  :mod:`plausible_wsgi.lifecycle`'s.
- Locking is reentrant, and ``put()`` changes state in an order that a signal
  handler raising between two steps cannot break: ``track()``, ``stats()`` or
  ``close()`` from a signal handler neither deadlocks nor leaves a phantom event.
- ``on_settle(item, settlement)`` is called exactly once per buffered item, from a
  delivery thread (from ``close()``'s thread for events cut off by its deadline;
  never in a forked child for the parent's events), for a durable spool to forget
  the items that settled.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Optional, TypeVar

from .. import lifecycle
from .._log import RateLimitedLog
from ..stats import CollectorStats, DropReason, Ledger, Settlement
from .breaker import Breaker
from .buffer import Buffer
from .closing import Closing
from .deliverer import Deliverer, Pipeline
from .policies import CircuitBreakerConfig, RetryConfig

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "DeliveryEngine"]

T = TypeVar("T")

#: The default bound of the buffer in bytes (an estimate of each event's size).
DEFAULT_MAX_BUFFER_BYTES = 16 * 1024 * 1024
_monotonic = time.monotonic
_getpid = os.getpid


class DeliveryEngine(Closing[T]):
    """Buffers items and delivers them concurrently with retry and circuit breaking.

    :param send: makes one delivery attempt for an item.
    :param key: engines with the same key deliver to the same place (many live ones
        mean a collector built per request; see :func:`lifecycle.register`).
    :param size_of: an estimate, in bytes, of an item's memory (for ``max_buffer_bytes``).
    :param on_abort: called when the close deadline passes, to cut blocking I/O.
    :param on_fork: called in a forked child, before anything else; must not log.
    :param on_idle: called when the workers end (idle, or closed): release connections.
    :param on_settle: ``(item, settlement)``, once per buffered item (see above).
    :param pipeline: sends several items at once, taken together when answers are
        fast (see :mod:`plausible_wsgi.delivery.workers`).
    :param durable: the items outlive the engine (a spool keeps those not delivered):
        the close-deadline warning says they are kept, not dropped.
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
        durable: bool = False,
        pipeline: Optional[Pipeline[T]] = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self._send = send
        self._pipeline = pipeline
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
        self._ledger = Ledger()
        self._fresh_state()
        many = lifecycle.register(self, key if key is not None else name)
        # Many live engines alike: send at once and end the thread when idle, so a
        # collector built per request holds no thread or socket for long.
        self._eager = many
        if many:
            self._idle_exit = 0.0

    def _fresh_state(self) -> None:
        """Everything that must not cross a fork, created anew."""
        self._pid = _getpid()
        self._lock = threading.RLock()  # reentrant: see the module docstring
        self._work = threading.Condition(self._lock)
        self._settled_cv = threading.Condition(self._lock)
        self._buffer = Buffer(self.max_queue_size, self.max_buffer_bytes)
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
            pipeline=self._pipeline,
        )
        self._fresh_pool()

    def forked(self) -> bool:
        return self._pid != _getpid()

    def _check_fork(self) -> None:
        if self._pid != _getpid():  # forked without the at-fork hooks (uWSGI)
            self.after_fork_in_child()

    def after_fork_in_child(self) -> None:
        """Replace the parent's locks, threads, connections and counters.

        The child's counters start at zero: the events buffered at the fork are the
        parent's (it delivers them and counts them); counting them here too, as sent or
        as dropped, would make totals summed across workers lie. Runs in the child
        right after ``fork()``: it must not take any lock the parent may have held,
        and must not log (the logging lock may be held).
        """
        self._fresh_state()
        self._ledger = Ledger()
        self._warnings.after_fork_in_child()
        if self._on_fork is not None:
            self._on_fork()

    # -- the request path --------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Buffer ``item``; never blocks on the network. False when closed."""
        if self._pid != _getpid():  # forked without the at-fork hooks (uWSGI)
            self.after_fork_in_child()
        size = self._size_of(item) if self._size_of is not None else 0
        with self._lock:
            if self._closed:
                self._ledger.drop_unbuffered(DropReason.CLOSED)
                return False
            evicted = self._buffer.push(item, size)
            if evicted:
                self._ledger.settle(Settlement.QUEUE_FULL, len(evicted))
                if self._on_settle is not None:
                    self._evicted.extend(evicted)  # reported by a worker, not here
            if self._idle:  # the common case: a worker waits
                if not self._notified and self._should_wake():
                    self._notified = True
                    self._work.notify()
            # A first worker, or a spare to join if the busy ones wait on a slow server.
            elif self._threads <= 0 or (self._draining and self._threads < self.max_workers):
                self._start_worker()
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

    def count_dropped(self, reason: DropReason) -> None:
        """Count an event that was accepted but will never be buffered."""
        with self._lock:
            self._ledger.drop_unbuffered(reason)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_success_at(self) -> Optional[float]:
        """``time.time()`` of the last 2xx answer; None until one came."""
        return self._one.last_success_at

    def stats(self) -> CollectorStats:
        self._check_fork()
        with self._lock:
            return self._ledger.snapshot(
                queued=len(self._buffer),
                in_flight=self._in_flight,
                retried=self._one.retried,
                breaker_state=self._breaker.state if self._breaker is not None else "closed",
                last_success_at=self._one.last_success_at,
                last_failure_at=self._one.last_failure_at,
            )
