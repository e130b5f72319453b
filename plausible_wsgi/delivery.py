"""The delivery engine: a bounded buffer drained by a thread pool.

Any collector can reuse it: give it a ``send(item)`` function that makes one attempt
and returns an :class:`~plausible_wsgi.transport.Outcome` or raises
:class:`~plausible_wsgi.resilience.AttemptError`.

How it works, and why:

- ``put()`` appends to a ``deque`` under a lock and, only when the batch threshold is
  crossed, sets an :class:`threading.Event` — no syscall per event. When the buffer is
  full the *oldest* event is dropped and counted.
- One dispatcher thread (a daemon, started on first use) waits for ``batch_size``
  events or ``flush_interval`` seconds, then hands events to a
  :class:`~concurrent.futures.ThreadPoolExecutor`, never more than ``max_workers`` at a
  time. The backlog stays in our deque, not in the executor's queue: an executor with a
  backlog runs all of it at interpreter exit before any exit hook, with no timeout.
- Each worker delivers one event with its own retries, so a slow or retrying event
  holds one worker and never the others. ``Retry-After`` pauses every worker.
- While the circuit breaker is open nothing is sent; events wait in the buffer (up to
  its bound) and one probe goes out after the breaker's timeout.
- Exit: a hook registered with ``threading._register_atexit`` runs *before*
  ``concurrent.futures`` joins its workers, so the final flush can still use the pool;
  one deadline is shared by every engine in the process. What is left when the
  deadline passes is counted as dropped (``shutdown``), and open sockets are cut so
  no worker keeps the interpreter alive.
- Fork: ``os.register_at_fork`` plus a pid check on ``put()`` give the child a fresh
  lock, buffer, dispatcher, pool and HTTP connections; the events inherited from the
  parent are the parent's to deliver and are counted as dropped (``fork``).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref

# Importing concurrent.futures.thread registers its exit hook; ours is registered
# later, on the first engine, and so runs first (see _register).
from concurrent.futures.thread import ThreadPoolExecutor
from typing import Callable, Generic, Optional, TypeVar

from ._log import RateLimitedLog, logger
from .config import CircuitBreakerConfig, RetryConfig
from .resilience import Admission, AttemptError, Breaker, retrying_for
from .stats import CollectorStats, DropReason
from .transport import Outcome

__all__ = ["DeliveryEngine", "check_fork", "close_all"]

T = TypeVar("T")

_NO_RETRY = RetryConfig(max_retries=0)
#: Seconds between starting one more worker while a backlog remains.
_RAMP_INTERVAL = 0.01
_monotonic = time.monotonic
_getpid = os.getpid


class _Shutdown(Exception):
    """The close deadline passed while this event was being delivered."""


class _BreakerOpen(Exception):
    """The breaker does not admit a request now; the event goes back to the buffer."""


class DeliveryEngine(Generic[T]):
    """Buffers items and delivers them concurrently with retry and circuit breaking.

    :param send: makes one delivery attempt for an item.
    :param name: used in thread names and log messages.
    :param on_abort: called when the close deadline passes, to cut blocking I/O.
    :param on_fork: called in a forked child, before anything else; must not log.
    :param on_settle: called once per item that leaves the engine, with how it ended
        (``"sent"``, ``"server_dropped"``, ``"failed"`` or a :class:`DropReason`), outside
        the engine's lock; must not raise. [spool hook]
    """

    def __init__(
        self,
        send: Callable[[T], Outcome],
        *,
        name: str = "plausible",
        batch_size: int = 10,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_workers: int = 4,
        retry: Optional[RetryConfig] = None,
        circuit_breaker: Optional[CircuitBreakerConfig] = None,
        shutdown_timeout: float = 5.0,
        on_abort: Optional[Callable[[], None]] = None,
        on_fork: Optional[Callable[[], None]] = None,
        on_settle: Optional[Callable[[T, str], None]] = None,
    ) -> None:
        self.name = name
        self._send = send
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_workers = max_workers
        self.retry = retry
        self.circuit_breaker = circuit_breaker
        self.shutdown_timeout = shutdown_timeout
        self._on_abort = on_abort
        self._on_fork = on_fork
        self._on_settle = on_settle  # [spool hook]
        self._warnings = RateLimitedLog()
        self._closed = False
        self._fresh_state()
        _register(self)

    # -- state -------------------------------------------------------------------------

    def _fresh_state(self) -> None:
        """Everything that must not cross a fork, created anew."""
        self._pid = _getpid()
        self._lock = threading.Lock()
        self._settled_cond = threading.Condition(self._lock)
        self._queue: collections.deque[T] = collections.deque()
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._start_lock = threading.Lock()
        self._dispatcher: Optional[threading.Thread] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._breaker = Breaker(self.circuit_breaker) if self.circuit_breaker else None
        self._paused_until = 0.0
        self._in_flight = 0
        self._workers = 0
        #: thread id -> when its current delivery started, for the ramp-up decision.
        self._busy_since: dict[int, float] = {}
        self._flush_waiters = 0
        self._accepted = 0
        self._sent = 0
        self._failed = 0
        self._retried = 0
        self._dropped: collections.Counter[str] = collections.Counter()

    def _after_fork_in_child(self) -> None:
        """Replace the parent's locks, threads and connections; count what it owns.

        Runs in the child right after ``fork()``: it must not take any lock the
        parent may have held, and must not log (the logging lock may be held).
        """
        inherited = len(self._queue) + self._in_flight
        counters = (self._accepted, self._sent, self._failed, self._retried, self._dropped)
        self._fresh_state()
        self._accepted, self._sent, self._failed, self._retried, dropped = counters
        self._dropped = collections.Counter(dropped)
        if inherited:
            self._dropped[DropReason.FORK] += inherited
        self._warnings.reset()
        if self._on_fork is not None:
            self._on_fork()

    # -- the request path --------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Buffer ``item``; never blocks on the network. False when closed."""
        if self._pid != _getpid():  # forked without the at-fork hooks (uWSGI)
            self._after_fork_in_child()
        with self._lock:
            self._accepted += 1
            if self._closed:
                self._dropped[DropReason.CLOSED] += 1
                return False
            queue = self._queue
            evicted: Optional[T] = None
            if len(queue) >= self.max_queue_size:
                evicted = queue.popleft()
                self._dropped[DropReason.QUEUE_FULL] += 1
                full = True
            else:
                full = False
            queue.append(item)
            size = len(queue)
        if evicted is not None and self._on_settle is not None:  # [spool hook]
            self._on_settle(evicted, DropReason.QUEUE_FULL)
        if self._dispatcher is None:
            self._start()
        if size == self.batch_size:
            self._wake.set()
        if full:
            self._warnings.log(
                logging.WARNING,
                "queue_full",
                "%s: buffer full (%d events), dropping the oldest; is the endpoint reachable?",
                self.name,
                self.max_queue_size,
            )
        return True

    def count_dropped(self, reason: str) -> None:
        """Count an event that was accepted but will never be buffered."""
        with self._lock:
            self._accepted += 1
            self._dropped[reason] += 1

    # -- threads -----------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._dispatcher is not None:
                return
            thread = threading.Thread(
                target=self._dispatch_loop, name=f"{self.name}-dispatcher", daemon=True
            )
            thread.start()
            self._dispatcher = thread

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=f"{self.name}-worker"
            )
        return self._executor

    def _dispatch_loop(self) -> None:
        next_tick = _monotonic() + self.flush_interval
        draining = False
        abort, wake = self._abort, self._wake
        while not abort.is_set():
            now = _monotonic()
            timeout: Optional[float]
            with self._lock:
                pending = len(self._queue)
                if (
                    not draining
                    and pending
                    and (
                        pending >= self.batch_size
                        or now >= next_tick
                        or self._flush_waiters
                        or self._closed
                    )
                ):
                    draining = True
                if draining and not pending:
                    draining = False
                    next_tick = now + self.flush_interval
                if now >= next_tick:
                    next_tick = now + self.flush_interval
            if draining:
                timeout = self._submit_ready(now)
            else:
                timeout = max(0.0, next_tick - now)
            wake.wait(timeout)
            wake.clear()

    def _submit_ready(self, now: float) -> Optional[float]:
        """Start a drain worker if events wait; return how long to wait then.

        Another worker is added only while a backlog remains *and* every running
        worker has been waiting on the server for over ``_RAMP_INTERVAL``: against a
        fast server one worker keeps up and the others never start (threads contending
        for the GIL cost CPU for nothing); against a slow one every worker is busy
        within a few milliseconds.
        """
        if now < self._paused_until:
            return self._paused_until - now
        with self._lock:
            if not self._queue or self._workers >= self.max_workers:
                return None  # woken by put() or by a worker that finishes
            busy = self._busy_since
            if len(busy) == self._workers and self._workers:
                quickest = now - max(tuple(busy.values()))
                if quickest < _RAMP_INTERVAL:
                    return _RAMP_INTERVAL - quickest
            elif self._workers:
                return _RAMP_INTERVAL  # a worker is between events: it is keeping up
        admission = Admission.NORMAL
        if self._breaker is not None:
            admission = self._breaker.admit()
            if admission is Admission.DENIED:
                # Woken early when the probe answers; 50 ms floor against a race.
                return max(0.05, self._breaker.seconds_until_probe())
        with self._lock:
            self._workers += 1
        try:
            self._pool().submit(self._drain, admission)
        except RuntimeError:
            # The interpreter is past concurrent.futures' exit hook: nothing runs.
            with self._lock:
                self._workers -= 1
            if self._breaker is not None:
                self._breaker.release(admission)
            return None
        return None if admission is Admission.PROBE else _RAMP_INTERVAL

    def _drain(self, admission: Admission) -> None:
        """Worker task: deliver buffered events one after another until none is left.

        A worker takes the next event itself instead of being handed one per task:
        no executor round trip and no dispatcher wake-up per event.
        """
        me = threading.get_ident()
        busy = self._busy_since
        try:
            while not self._abort.is_set() and _monotonic() >= self._paused_until:
                with self._lock:
                    if not self._queue:
                        break
                    item = self._queue.popleft()
                    self._in_flight += 1
                busy[me] = _monotonic()
                try:
                    self._deliver(item, admission)
                finally:
                    del busy[me]
                if admission is Admission.PROBE:
                    break  # the dispatcher decides what follows a probe
                if self._breaker is not None:
                    admission = self._breaker.admit()
                    if admission is not Admission.NORMAL:
                        self._breaker.release(admission)
                        break
        except BaseException:
            if self._breaker is not None:
                self._breaker.release(admission)
            raise
        finally:
            with self._lock:
                self._workers -= 1
            self._wake.set()

    # -- one event ---------------------------------------------------------------------

    def _deliver(self, item: T, admission: Admission) -> None:
        """Worker: deliver one item with retries and settle it. Never raises."""
        result: Optional[str] = None
        try:
            result = self._attempt_with_retries(item, admission)
        except _BreakerOpen:
            result = "requeue"
        except _Shutdown:
            result = DropReason.SHUTDOWN
        except AttemptError as exc:
            if self._abort.is_set():
                result = DropReason.SHUTDOWN
            elif (
                self._breaker is not None
                and self._breaker.state != "closed"
                and self._is_transient(exc)
            ):
                # Unreachable or overloaded: keep it for after the outage.
                result = "requeue"
            else:
                result = "failed"
                self._warnings.log(
                    logging.WARNING,
                    f"failed:{exc.kind}:{exc.status}",
                    "%s: giving up on an event after retries: %s",
                    self.name,
                    exc,
                )
        except Exception as exc:
            result = "failed"
            # No traceback at ERROR: exception messages may quote the visitor's data.
            logger.error(
                "%s: unexpected %s while delivering an event", self.name, type(exc).__name__
            )
            logger.debug("delivery error", exc_info=True)
        finally:
            self._settle(item, result)

    def _settle(self, item: T, result: Optional[str]) -> None:
        settlement: Optional[str] = None  # [spool hook] set when a requeue was dropped
        if result != "requeue" and self._on_settle is not None:  # [spool hook]
            # Before the counters move: a flush() that returns has its rows deleted.
            self._on_settle(item, "failed" if result is None else result)
        with self._lock:
            self._in_flight -= 1
            if result == "requeue":
                if self._abort.is_set():
                    self._dropped[DropReason.SHUTDOWN] += 1
                    settlement = DropReason.SHUTDOWN
                elif len(self._queue) >= self.max_queue_size:
                    self._dropped[DropReason.QUEUE_FULL] += 1
                    settlement = DropReason.QUEUE_FULL
                else:
                    self._queue.appendleft(item)  # it is the oldest: first out again
            elif result == Outcome.SENT.value:
                self._sent += 1
            elif result == "failed" or result is None:
                self._failed += 1
            else:
                self._dropped[result] += 1
            self._settled_cond.notify_all()
        if settlement is not None and self._on_settle is not None:  # [spool hook]
            self._on_settle(item, settlement)

    def _attempt_with_retries(self, item: T, admission: Admission) -> str:
        started = _monotonic()
        try:
            return self._attempt(item, admission)
        except AttemptError as exc:
            if self.retry is None or not self._is_transient(exc):
                raise
            first_error = exc
        return self._retry(item, first_error, started)

    def _attempt(self, item: T, ticket: Admission) -> str:
        """One delivery attempt, reported to the breaker; its outcome or AttemptError."""
        try:
            outcome = self._send(item)
        except AttemptError as exc:
            if self._breaker is not None:
                self._breaker.record_failure(ticket, exc)
            if exc.retry_after:
                self._pause_all(exc.retry_after)
            raise
        except BaseException:
            if self._breaker is not None:
                self._breaker.release(ticket)
            raise
        if self._breaker is not None:
            self._breaker.record_success(ticket)
        return "failed" if outcome is Outcome.REJECTED else outcome.value

    def _retry(self, item: T, first_error: AttemptError, started: float) -> str:
        """The first attempt failed transiently: ``retrying`` runs the retries.

        Most events succeed at once, so the policy object is only built here. Its
        attempt 1 replays the failure we already had (nothing is sent again), so its
        stop and wait rules count from the first attempt, exactly as if it had made it.
        """
        policy = self.retry
        assert policy is not None
        errors = [first_error]
        replay = [first_error]

        def attempt() -> str:
            if replay:
                raise replay.pop()
            if self._abort.is_set():
                raise _Shutdown
            if _monotonic() - started >= policy.deadline:
                raise errors[-1]
            self._wait_for_pause()
            ticket = self._admit()
            with self._lock:
                self._retried += 1
            try:
                return self._attempt(item, ticket)
            except AttemptError as exc:
                errors.append(exc)
                raise

        def may_continue() -> bool:
            if self._abort.is_set():
                return False
            return self._breaker is None or self._breaker.state == "closed"

        def wait(seconds: float) -> bool:
            return not self._abort.wait(seconds)

        result: str = retrying_for(
            policy,
            is_retryable=lambda exc: isinstance(exc, AttemptError) and self._is_transient(exc),
            may_continue=may_continue,
            last_retry_after=lambda: errors[-1].retry_after,
            wait=wait,
            started=started,
        ).call(attempt)
        return result

    def _is_transient(self, exc: AttemptError) -> bool:
        """Whether sending ``exc``'s event again is safe and may succeed."""
        policy = self.retry or _NO_RETRY
        if exc.kind == "status":
            return exc.status in policy.retry_statuses
        if exc.kind == "read_timeout":
            return policy.retry_read_timeouts
        if exc.kind == "cut":
            return policy.retry_connection_cuts
        return exc.kind == "connect"

    def _admit(self) -> Admission:
        if self._breaker is None:
            return Admission.NORMAL
        admission = self._breaker.admit()
        if admission is Admission.DENIED:
            raise _BreakerOpen
        return admission

    def _pause_all(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, _monotonic() + seconds)

    def _wait_for_pause(self) -> None:
        remaining = self._paused_until - _monotonic()
        if remaining > 0 and self._abort.wait(remaining):
            raise _Shutdown

    # -- flush and close ---------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is buffered now; True when all of it settled within ``timeout``.

        ``None`` waits up to ``shutdown_timeout``. Events put after the call began are
        not waited for.
        """
        if self._pid != _getpid():
            self._after_fork_in_child()
        deadline = _monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        return self._wait_settled(deadline)

    def _wait_settled(self, deadline: float) -> bool:
        with self._lock:
            target = self._accepted
            if self._settled() >= target:
                return True
            self._flush_waiters += 1
        if self._dispatcher is None:
            self._start()
        self._wake.set()
        try:
            with self._lock:
                while self._settled() < target:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return False
                    self._settled_cond.wait(remaining)
                return True
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def _settled(self) -> int:
        return self._sent + self._failed + sum(self._dropped.values())

    def begin_close(self) -> bool:
        """Stop accepting events. Returns False if already closed."""
        if self._pid != _getpid():
            self._after_fork_in_child()
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        self._wake.set()
        return True

    def finish_close(self, deadline: float) -> None:
        """Flush until ``deadline``, then drop what is left and release the threads."""
        if self._dispatcher is not None:
            self._wait_settled(deadline)
        with self._lock:
            # Read before the sockets are cut: these are settled as dropped (shutdown)
            # by their workers unless an answer was already on its way.
            in_flight = self._in_flight
        self._abort.set()
        self._wake.set()
        if self._on_abort is not None:
            self._on_abort()
        with self._lock:
            left = len(self._queue)
            leftovers = list(self._queue) if self._on_settle is not None else []
            self._queue.clear()
            if left:
                self._dropped[DropReason.SHUTDOWN] += left
            self._settled_cond.notify_all()
        for item in leftovers:  # [spool hook]
            self._on_settle(item, DropReason.SHUTDOWN)  # type: ignore[misc]
        if left or in_flight:
            self._warnings.log(
                logging.WARNING,
                "shutdown",
                "%s: the close deadline passed with %d events still buffered (dropped) and "
                "%d being sent (cut off); a larger shutdown_timeout gives them more time",
                self.name,
                left,
                in_flight,
            )
        executor = self._executor
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, flush within ``timeout`` (default ``shutdown_timeout``)."""
        if self.begin_close():
            budget = self.shutdown_timeout if timeout is None else timeout
            self.finish_close(_monotonic() + budget)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> CollectorStats:
        if self._pid != _getpid():
            self._after_fork_in_child()
        with self._lock:
            return CollectorStats(
                queued=len(self._queue),
                in_flight=self._in_flight,
                sent=self._sent,
                failed=self._failed,
                retried=self._retried,
                dropped=dict(self._dropped),
                breaker_state=self._breaker.state if self._breaker is not None else "closed",
            )


# -- process-wide lifecycle ------------------------------------------------------------

_engines: weakref.WeakSet[DeliveryEngine[object]] = weakref.WeakSet()
_registry_lock = threading.Lock()
_hooks_installed = False


def _register(engine: DeliveryEngine[T]) -> None:
    global _hooks_installed
    with _registry_lock:
        _engines.add(engine)  # type: ignore[arg-type]
        if _hooks_installed:
            return
        _hooks_installed = True
    # concurrent.futures joins its workers from a threading exit hook, which runs before
    # atexit handlers; hooks run in reverse order of registration, and
    # concurrent.futures registered its own when it was imported, so ours runs first.
    register_threading_exit = getattr(threading, "_register_atexit", None)
    if register_threading_exit is not None:
        register_threading_exit(close_all)
    atexit.register(close_all)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for engine in list(_engines):
        engine._after_fork_in_child()


def check_fork() -> None:
    """Reset now every engine inherited from a parent process.

    ``os.register_at_fork`` and the pid check in ``put()`` already do this; server
    hooks (gunicorn ``post_fork``) call it to make it explicit and immediate.
    """
    pid = _getpid()
    for engine in list(_engines):
        if engine._pid != pid:
            engine._after_fork_in_child()


def close_all(timeout: Optional[float] = None) -> None:
    """Close every engine of this process within one shared deadline.

    ``timeout`` defaults to the largest ``shutdown_timeout`` among them: one budget
    for the whole process, not one per collector.
    """
    engines = [e for e in list(_engines) if e.begin_close()]
    if not engines:
        return
    budget = max(e.shutdown_timeout for e in engines) if timeout is None else timeout
    deadline = _monotonic() + budget
    for engine in engines:
        engine.finish_close(deadline)
