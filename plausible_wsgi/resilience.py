"""Retry and circuit breaking for one event's delivery.

- :class:`Breaker` drives a :mod:`pybreaker` state machine *outside* the guarded call:
  pybreaker holds its lock for the whole of ``call()``, so guarding each POST with it
  would let only one POST run at a time. Here the POST runs unguarded and its outcome
  is reported to pybreaker through a trivial call that holds the lock for microseconds.
  While open, no request is made; after the timeout exactly one probe is admitted.
- :func:`retrying_for` builds the :class:`retrying.Retrying` policy of one event:
  full-jitter exponential backoff, capped, inside a deadline, waiting on a
  :class:`threading.Event` so ``close()`` interrupts it (retrying's own waits are
  blocking ``time.sleep`` calls, so the wait happens in our ``wait_func``).
- :func:`parse_retry_after` reads ``Retry-After`` in both of its forms.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import random
import threading
import time
from typing import Callable, Optional

import pybreaker
import retrying

from .attempt import AttemptError
from .config import CircuitBreakerConfig, RetryConfig

__all__ = ["Admission", "AttemptError", "Breaker", "parse_retry_after", "retrying_for"]


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns ``None`` for a missing or unreadable value and ``0.0`` for a date in the
    past; clamping to a sane maximum is the caller's job.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Admission(enum.Enum):
    """What :meth:`Breaker.admit` allows."""

    #: Closed: send as usual.
    NORMAL = "normal"
    #: The single trial request after the open timeout.
    PROBE = "probe"
    #: Open (or a probe is already out): do not send.
    DENIED = "denied"


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


class Breaker:
    """A circuit breaker whose lock is never held across network I/O."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self._cb = pybreaker.CircuitBreaker(
            fail_max=config.max_consecutive_failures,
            # The open time is ours to decide (seconds_until_probe, with jitter);
            # pybreaker must let the probe through however short the draw was, or
            # it refuses it without calling, stays open and the probe repeats at once.
            reset_timeout=config.timeout * (1.0 - config.jitter),
            throw_new_error_on_trip=False,
        )
        self._lock = threading.Lock()
        self._probing = False
        # (the opening it was drawn for, seconds open): a new draw per opening.
        self._open_time: tuple[Optional[datetime.datetime], float] = (None, config.timeout)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        if self._probing:
            return "half-open"
        return str(self._cb.current_state)

    def seconds_until_probe(self) -> float:
        """0 when a request may be admitted now, else the wait until the probe."""
        if self._cb.current_state == pybreaker.STATE_CLOSED:
            return 0.0
        if self._probing:
            return self.config.timeout
        opened_at = self._cb._state_storage.opened_at
        if opened_at is None:
            return 0.0
        drawn_for, open_for = self._open_time
        if drawn_for != opened_at:
            # Opened (again) since the last look. Two threads may both draw here; one
            # of the draws is kept, either is as good.
            jitter = self.config.jitter
            open_for = self.config.timeout * (1.0 + random.uniform(-jitter, jitter))
            self._open_time = (opened_at, open_for)
        elapsed = (datetime.datetime.now(datetime.timezone.utc) - opened_at).total_seconds()
        return max(0.0, open_for - elapsed)

    def admit(self) -> Admission:
        """May a request go out now? A ``PROBE`` must be settled with ``record_*``."""
        if self._cb.current_state == pybreaker.STATE_CLOSED:
            return Admission.NORMAL
        with self._lock:
            if self._probing or self.seconds_until_probe() > 0:
                return Admission.DENIED
            self._probing = True
            return Admission.PROBE

    def record_success(self, admission: Admission) -> None:
        try:
            self._cb.call(_succeed)
        except pybreaker.CircuitBreakerError:
            # A request sent before the breaker opened came back fine: the server is up.
            self._cb.close()
        finally:
            self._end_probe(admission)

    def record_failure(self, admission: Admission, exc: BaseException) -> None:
        try:
            self._cb.call(_fail, exc)
        except BaseException:  # the outcome is reported, not raised
            pass
        finally:
            self._end_probe(admission)

    def release(self, admission: Admission) -> None:
        """Give back an admission that was not used (the event was not sent)."""
        self._end_probe(admission)

    def _end_probe(self, admission: Admission) -> None:
        if admission is Admission.PROBE:
            with self._lock:
                self._probing = False


def retrying_for(
    config: RetryConfig,
    *,
    is_retryable: Callable[[BaseException], bool],
    may_continue: Callable[[], bool],
    last_retry_after: Callable[[], Optional[float]],
    wait: Callable[[float], bool],
    started: float,
) -> retrying.Retrying:
    """The :class:`retrying.Retrying` policy for one event.

    :param is_retryable: whether an attempt's exception deserves another attempt.
    :param may_continue: checked before each retry (breaker closed, not shutting down).
    :param last_retry_after: the clamped ``Retry-After`` of the last attempt, if any.
    :param wait: sleeps up to the given seconds; returns False if interrupted.
    :param started: ``time.monotonic()`` of the first attempt; the deadline counts from it.
    """

    def stop(attempt_number: int, _delay_ms: int) -> bool:
        if attempt_number > config.max_retries or not may_continue():
            return True
        return time.monotonic() - started >= config.deadline

    def wait_func(attempt_number: int, _delay_ms: int) -> int:
        delay = random.uniform(0.0, config.backoff_cap(attempt_number))
        server_delay = last_retry_after()
        if server_delay is not None:
            delay = max(delay, server_delay)
        remaining = config.deadline - (time.monotonic() - started)
        wait(max(0.0, min(delay, remaining)))
        return 0  # we waited ourselves; retrying's own sleep would not be interruptible

    return retrying.Retrying(
        stop_func=stop,
        wait_func=wait_func,
        retry_on_exception=is_retryable,
        wrap_exception=False,
    )
