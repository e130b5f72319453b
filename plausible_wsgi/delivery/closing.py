"""Flush and close: wait for what is buffered to settle, then cut off what is left.

The third layer of :class:`~plausible_wsgi.delivery.engine.DeliveryEngine`, over the
:class:`~plausible_wsgi.delivery.workers.WorkerPool`:

- ``flush()`` waits until the events buffered or in flight when it was called have
  settled; the workers wake the waiter when the lowest target is reached, not at
  every event.
- ``close()`` stops accepting, flushes until its deadline, then cuts the sockets
  (``on_abort``), closes every connection (``on_idle``), settles what is left as
  ``shutdown`` and logs one warning saying how many were cut off.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, TypeVar

from ..stats import Settlement
from .workers import WorkerPool

__all__ = ["Closing"]

T = TypeVar("T")

_monotonic = time.monotonic


class Closing(WorkerPool[T]):
    """``flush()`` and ``close()`` of :class:`~plausible_wsgi.delivery.engine.DeliveryEngine`."""

    durable: bool
    shutdown_timeout: float
    _on_abort: Optional[Callable[[], None]]
    #: Replaces the parent's state when called in a forked child (the engine's).
    _check_fork: Callable[[], None]

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is buffered now; True when all of it settled within ``timeout``.

        ``None`` waits up to ``shutdown_timeout``. Events put after the call began are
        not waited for.
        """
        self._check_fork()
        deadline = _monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        return self._wait_settled(deadline)

    def _wait_settled(self, deadline: float) -> bool:
        with self._lock:
            outstanding = len(self._buffer) + self._in_flight
            if not outstanding:
                return True
            target = self._ledger.settled + outstanding
            self._flush_waiters.append(target)
            if self._threads <= 0 and not self._abort.is_set():
                self._start_worker()
            self._work.notify_all()
        try:
            with self._lock:
                while self._ledger.settled < target:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return False
                    self._settled_cv.wait(remaining)
                return True
        finally:
            with self._lock:
                self._flush_waiters.remove(target)

    def begin_close(self) -> bool:
        """Stop accepting events. Returns False if already closed."""
        self._check_fork()
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
            # Cut first (shutdown wakes a recv() blocked on a socket; close does not),
            # then close every connection before the workers wake and end: one left to
            # the garbage collector when its thread ends would be an unclosed socket.
            if self._on_abort is not None:
                self._on_abort()
            if self._on_idle is not None:
                self._on_idle()
            with self._lock:
                self._work.notify_all()
                left = self._buffer.clear()
                if left:
                    self._ledger.settle(Settlement.SHUTDOWN, len(left))
                self._settled_cv.notify_all()
            for item in left:
                self._report(item, Settlement.SHUTDOWN)
            if left or in_flight:
                self._warnings.log(
                    logging.WARNING,
                    "shutdown",
                    "%s: the close deadline passed with %d events still buffered (%s) "
                    "and %d being sent (cut off); a larger shutdown_timeout gives them more "
                    "time",
                    self.name,
                    len(left),
                    "kept for a later delivery" if self.durable else "dropped",
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
