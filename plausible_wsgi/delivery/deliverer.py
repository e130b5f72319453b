"""One event's delivery: its attempts, its retries, the breaker's verdict.

:class:`Deliverer` makes the first attempt of an event directly (most succeed at
once), then lets :func:`~plausible_wsgi.delivery.retry.run_retries` resend it as the
:class:`~plausible_wsgi.delivery.policies.RetryConfig` allows. Every attempt is reported to the
:class:`~plausible_wsgi.delivery.breaker.Breaker`; a ``Retry-After`` pauses every worker of the
engine. The result is a :class:`~plausible_wsgi.stats.Settlement`, or ``None`` when
the event should go back to the buffer because the breaker opened during its
attempts.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Sequence
from typing import Callable, Generic, Optional, Protocol, TypeVar, Union

from .._log import RateLimitedLog, logger
from ..stats import Settlement
from .breaker import Admission, Breaker
from .buffer import Buffer
from .failure import AttemptError, FailureKind
from .policies import RetryConfig
from .retry import run_retries

__all__ = [
    "MAX_REQUEUES",
    "Deliverer",
    "Pipeline",
    "Requeue",
    "Requeues",
    "Shutdown",
    "all_sent",
]

T = TypeVar("T")


class Pipeline(Protocol[T]):
    """Sends several items at once (HTTP/1.1 pipelining): the engine's fast path."""

    @property
    def depth(self) -> int:
        """Items to send at once now; 1: one at a time."""

    @property
    def gap(self) -> Optional[float]:
        """Seconds between consecutive answers of the last batch sent at once that
        got two or more; None before one did."""

    def send_many(self, items: list[T]) -> list[Union[Settlement, Exception, None]]:
        """Per item: its settlement, the failure of its attempt (an
        :class:`AttemptError`, or another exception: nothing was sent), or None when
        it provably did not reach the server."""


_NO_RETRY = RetryConfig(max_retries=0)
#: Times an event may be put back in the buffer after an attempt went out.
MAX_REQUEUES = 3
_monotonic = time.monotonic


class Shutdown(Exception):
    """The close deadline passed while this event was being delivered."""


class Requeue(enum.Enum):
    """The breaker opened during the event's attempts: it goes back to the buffer."""

    #: Every attempt failed to connect: the server never saw it.
    UNSENT = "unsent"
    #: An attempt went out: the server may have recorded it (resends are capped).
    MAYBE_RECORDED = "maybe_recorded"


class Requeues(Generic[T]):
    """The events put back in the buffer because the breaker opened during their
    attempts, and how often each went back after an attempt that may have been
    recorded. Not thread-safe: the engine's lock guards it."""

    def __init__(self, name: str, warnings: RateLimitedLog) -> None:
        self.name = name
        self._warnings = warnings
        #: id(item) -> times put back after an attempt that may have been recorded.
        self._counts: dict[int, int] = {}

    def is_resend(self, item: T) -> bool:
        counts = self._counts
        return bool(counts) and id(item) in counts

    def resends(self, items: list[T]) -> Optional[list[bool]]:
        """Which of ``items`` were put back before; None when none was (the usual:
        nothing put back at all)."""
        if not self._counts:
            return None
        found = list(map(self.is_resend, items))
        return found if any(found) else None

    def forget(self, item: T) -> None:
        if self._counts:
            self._counts.pop(id(item), None)

    def put_back(self, item: T, size: int, why: Requeue, buffer: Buffer[T]) -> Optional[Settlement]:
        """Put ``item`` back in ``buffer`` as the oldest; or how it ends if it cannot."""
        key = id(item)
        requeues = self._counts.get(key, 0) + (why is Requeue.MAYBE_RECORDED)
        if requeues > MAX_REQUEUES:
            self._warnings.log(
                logging.WARNING,
                "requeue_cap",
                "%s: giving up on an event resent %d times while the breaker was open "
                "(the server may have recorded it)",
                self.name,
                requeues,
            )
            return Settlement.GAVE_UP
        if not buffer.push_front(item, size):
            return Settlement.QUEUE_FULL
        self._counts[key] = requeues
        return None


class _BreakerOpen(Exception):
    """The breaker does not admit a resend now; the event goes back to the buffer."""


def all_sent(results: Sequence[object], resends: Optional[list[bool]]) -> bool:
    """A batch counted whole at its first attempt (the usual): settled as one, with no
    item the requeues know."""
    return resends is None and results.count(Settlement.SENT) == len(results)


class Deliverer(Generic[T]):
    """Delivers one item at a time per calling thread; safe from many threads.

    :param abort: set when the close deadline passes; interrupts every wait.
    """

    def __init__(
        self,
        send: Callable[[T], Settlement],
        *,
        name: str,
        retry: Optional[RetryConfig],
        breaker: Optional[Breaker],
        abort: threading.Event,
        warnings: RateLimitedLog,
        pipeline: Optional[Pipeline[T]] = None,
    ) -> None:
        self.name = name
        self._send = send
        self.pipeline = pipeline
        self.retry = retry
        self.breaker = breaker
        self.abort = abort
        self._warnings = warnings
        self._lock = threading.Lock()
        #: Monotonic time until which every worker pauses (``Retry-After``).
        self.paused_until = 0.0
        self.retried = 0
        self.last_success_at: Optional[float] = None
        self.last_failure_at: Optional[float] = None

    def admit(self) -> Admission:
        return Admission.NORMAL if self.breaker is None else self.breaker.admit()

    def breaker_closed(self) -> bool:
        return self.breaker is None or self.breaker.closed

    def deliver(self, item: T, admission: Admission, resend: bool) -> Settlement | Requeue:
        """Deliver one item with retries: how it ended, or back to the buffer."""
        started = _monotonic()
        try:
            return self._attempt(item, admission, resend)  # most events: once, at once
        except AttemptError as failure:
            return self._after_failure(item, failure, started)
        except Exception as exc:
            return self._unexpected(exc)

    def _after_failure(
        self, item: T, failure: AttemptError, started: float
    ) -> Settlement | Requeue:
        """Retry after a failed first attempt, as the policy allows: how it ended."""
        attempts = [1]
        unsent = [failure.kind == "connect"]  # every failure so far refused to connect
        try:
            policy = self.retry
            if policy is None or not policy.is_retry(failure) or self.abort.is_set():
                raise failure

            def again() -> Settlement:
                attempts[0] += 1
                try:
                    return self._resend(item)
                except AttemptError as exc:
                    unsent[0] = unsent[0] and exc.kind == "connect"
                    raise

            return run_retries(
                policy, failure, started, again, wait=self.abort.wait, may_continue=self._may_retry
            )
        except _BreakerOpen:
            return Requeue.UNSENT if unsent[0] else Requeue.MAYBE_RECORDED
        except Shutdown:
            return Settlement.SHUTDOWN
        except AttemptError as last:
            if self.abort.is_set():
                return Settlement.SHUTDOWN
            if not self.breaker_closed() and (self.retry or _NO_RETRY).is_retry(last):
                # Unreachable or overloaded: keep it for after the outage.
                return Requeue.UNSENT if unsent[0] else Requeue.MAYBE_RECORDED
            return self._failed(last, attempts[0])
        except Exception as exc:
            return self._unexpected(exc)

    def _unexpected(self, exc: Exception) -> Settlement:
        # No traceback at ERROR: exception messages may quote the visitor's data.
        logger.error("%s: unexpected %s while delivering an event", self.name, type(exc).__name__)
        logger.debug("delivery error", exc_info=True)
        return Settlement.GAVE_UP

    def _failed(self, failure: AttemptError, attempts: int) -> Settlement:
        how = f"after {attempts} attempts" if attempts > 1 else "not retried"
        self._warnings.log(
            logging.WARNING,
            f"failed:{failure.kind}:{failure.status}:{attempts > 1}",
            "%s: giving up on an event (%s): %s",
            self.name,
            how,
            failure,
        )
        return Settlement.REJECTED if failure.kind == "invalid" else Settlement.GAVE_UP

    def _attempt(self, item: T, admission: Admission, resend: bool) -> Settlement:
        """One attempt, reported to the breaker; its settlement or AttemptError."""
        if resend:
            with self._lock:
                self.retried += 1
        try:
            settlement = self._send(item)
        except AttemptError as exc:
            self._attempt_failed(exc, admission)
            raise
        except BaseException:
            if self.breaker is not None:
                self.breaker.release(admission)
            raise
        return self._answered(settlement, admission)

    def _attempt_failed(self, exc: AttemptError, admission: Admission, count: bool = True) -> None:
        if exc.retry_after:
            with self._lock:
                self.paused_until = max(self.paused_until, _monotonic() + exc.retry_after)
        if self.breaker is not None and count:
            self.breaker.record_failure(admission, exc)
        # Last: whoever sees the failure (stats(), a health check) sees its pause too.
        self.last_failure_at = time.time()

    def _answered(self, settlement: Settlement, admission: Admission) -> Settlement:
        breaker = self.breaker
        if settlement is Settlement.VETOED:  # nothing went out: no verdict on the server
            if breaker is not None:
                breaker.release(admission)
            return settlement
        if breaker is not None:
            breaker.record_success(admission)
        if settlement is Settlement.REJECTED:
            self.last_failure_at = time.time()
        else:
            self.last_success_at = time.time()
        return settlement

    def deliver_all(
        self, items: list[T], admission: Admission, resends: Optional[list[bool]]
    ) -> list[Settlement | Requeue]:
        """:meth:`deliver` for one item; several (taken while the breaker is closed) are
        sent at once, then each settled as :meth:`deliver` would: a failed attempt goes
        through the retry policy, one that provably did not reach the server is
        delivered again alone, not counted as a retry.

        :param resends: per item, whether it was put back before (None: none was).
        """
        if len(items) == 1:
            return [self.deliver(items[0], admission, resends is not None and resends[0])]
        assert self.pipeline is not None
        started = _monotonic()
        try:
            results = self.pipeline.send_many(items)
        except Exception as exc:
            return [self._unexpected(exc) for _ in items]
        if all_sent(results, resends):
            # All counted at the first attempt (the usual): one verdict for the batch.
            if self.breaker is not None:
                self.breaker.record_success(Admission.NORMAL)
            self.last_success_at = time.time()
            return results  # type: ignore[return-value]
        out: list[Settlement | Requeue] = []
        cut_told = False
        for item, result, resend in zip(items, results, resends or [False] * len(items)):
            if result is None:
                out.append(self._unsent(item, resend))
                continue
            if resend:
                with self._lock:
                    self.retried += 1
            if isinstance(result, AttemptError):
                # One cut or timeout leaves every answer still owed in doubt: one fault
                # of the server for the breaker, not one per request (a single reset
                # would open it). An answered status counts as it does alone, and each
                # request's retries are its own attempts again.
                in_doubt = result.kind in (FailureKind.CUT, FailureKind.READ_TIMEOUT)
                self._attempt_failed(result, Admission.NORMAL, count=not (in_doubt and cut_told))
                cut_told = cut_told or in_doubt
                out.append(self._after_failure(item, result, started))
            elif isinstance(result, Exception):
                out.append(self._unexpected(result))
            else:
                out.append(self._answered(result, Admission.NORMAL))
        return out

    def _unsent(self, item: T, resend: bool) -> Settlement | Requeue:
        """A pipelined item the server did not process: alone now, or back to the buffer."""
        if self.abort.is_set():
            return Settlement.SHUTDOWN
        if not self.breaker_closed() or _monotonic() < self.paused_until:
            return Requeue.UNSENT
        return self.deliver(item, Admission.NORMAL, resend)

    def _resend(self, item: T) -> Settlement:
        if self.abort.is_set():
            raise Shutdown
        remaining = self.paused_until - _monotonic()
        if remaining > 0 and self.abort.wait(remaining):
            raise Shutdown
        admission = self.admit()
        if admission is Admission.DENIED:
            raise _BreakerOpen
        return self._attempt(item, admission, True)

    def _may_retry(self) -> bool:
        return not self.abort.is_set() and self.breaker_closed()
