"""Delivery policies: retry and circuit breaker, as immutable value objects.

Like urllib3's ``Retry``, each knob is documented with its unit, and the defaults
are safe for analytics: a read timeout is not retried (Plausible has no idempotency
key, so the event may already be counted), and every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Optional

from ..checks import check_number
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .failure import AttemptError

__all__ = ["JITTER", "CircuitBreakerConfig", "RetryConfig"]

#: Where the retry and breaker jitter comes from: the OS, not the ``random`` module's
#: shared generator. An app (or a test library) drawing from or seeding that one
#: must not see delivery threads draw from it too; and a generator of our own would be
#: copied into forked workers, whose waits would then fall in step.
JITTER = random.SystemRandom()


def _check_positive(owner: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    check_number(f"{owner}: {name}", value, allow_zero=allow_zero)


@dataclasses.dataclass(frozen=True)
class RetryConfig:
    """How one event is retried after a transient failure.

    Retried: connection errors (refused, reset, DNS), a keep-alive connection
    the server had closed, HTTP 429, 500, 502, 503 and 504.
    Never retried: any other 4xx (the event is invalid; retrying cannot help), a
    ``202`` (final, even with ``x-plausible-dropped``), a TLS certificate that does
    not verify, and by default a read timeout. :meth:`is_retry` is the rule.

    The wait before retry *n* (1-based) is a random value in
    ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]`` ("full jitter"), or the
    server's ``Retry-After`` when it is longer (clamped to ``max_retry_after``). A
    ``Retry-After`` pauses every worker of the collector, not just the one that saw it.

    :param max_retries: retries after the first attempt (0 = one attempt only).
    :param initial_backoff: seconds; the cap of the first wait.
    :param max_backoff: seconds; the cap of any computed wait.
    :param deadline: seconds; the whole sequence of attempts and waits for one event
        ends within this, whatever ``max_retries`` allows.
    :param retry_read_timeouts: also retry when the request went out and the server
        did not answer in time. Off by default: a slow server has often counted the
        event already, and Plausible has no idempotency key.
    :param retry_connection_cuts: retry when the request went out and the connection
        was cut (reset or closed) before any answer. On by default: a cut before the
        status line is mostly a server or proxy going down before handling the
        request. Turn it off for at-most-once delivery: a server that counted the
        event and then died would otherwise count it again. A cut *after* the status
        line is never retried: the status is the answer.
    :param retry_statuses: HTTP statuses that are retried.
    :param max_retry_after: seconds; the clamp on a server's ``Retry-After``.
    """

    max_retries: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    deadline: float = 30.0
    retry_read_timeouts: bool = False
    retry_connection_cuts: bool = True
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigurationError(
                f"RetryConfig: max_retries must be an int >= 0, got {self.max_retries!r}"
            )
        _check_positive("RetryConfig", "initial_backoff", self.initial_backoff, allow_zero=True)
        _check_positive("RetryConfig", "max_backoff", self.max_backoff, allow_zero=True)
        _check_positive("RetryConfig", "deadline", self.deadline)
        _check_positive("RetryConfig", "max_retry_after", self.max_retry_after, allow_zero=True)
        if self.max_backoff < self.initial_backoff:
            raise ConfigurationError(
                "RetryConfig: max_backoff must be >= initial_backoff, "
                f"got {self.max_backoff!r} < {self.initial_backoff!r}"
            )
        statuses = frozenset(self.retry_statuses)
        if any(not (isinstance(s, int) and 400 <= s <= 599) for s in statuses) or 400 in statuses:
            raise ConfigurationError(
                "RetryConfig: retry_statuses must be HTTP error statuses (not 400), "
                f"got {sorted(statuses)!r}"
            )
        object.__setattr__(self, "retry_statuses", statuses)

    def backoff_cap(self, retry_number: int) -> float:
        """The upper bound, in seconds, of the wait before retry ``retry_number`` (1-based)."""
        return min(self.max_backoff, self.initial_backoff * 2.0 ** (retry_number - 1))

    def backoff(self, retry_number: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based): full jitter under
        :meth:`backoff_cap`, or the server's (already clamped) ``Retry-After`` if longer."""
        delay = JITTER.uniform(0.0, self.backoff_cap(retry_number))
        return delay if retry_after is None else max(delay, retry_after)

    def is_retry(self, failure: AttemptError) -> bool:
        """Whether sending the event of ``failure`` again is safe and may succeed.

        A TLS failure (a certificate that does not verify) and an unsendable event are
        never retried: the next attempt would meet the same answer.
        """
        kind = failure.kind
        if kind == "connect":
            return True
        if kind == "status":
            return failure.status in self.retry_statuses
        if kind == "read_timeout":
            return self.retry_read_timeouts
        if kind == "cut":
            return self.retry_connection_cuts
        return False


@dataclasses.dataclass(frozen=True)
class CircuitBreakerConfig:
    """When to stop calling a server that keeps failing.

    After ``max_consecutive_failures`` failed attempts in a row (connection errors,
    timeouts, retryable statuses) the breaker opens: no request is made for about
    ``timeout`` seconds and events wait in the bounded buffer. Then one probe request
    is let through; its success closes the breaker, its failure opens it again.

    :param max_consecutive_failures: failures in a row that open the breaker.
    :param timeout: seconds the breaker stays open before the probe.
    :param jitter: the open time varies by up to this fraction of ``timeout`` either
        way, drawn anew each time the breaker opens (``0.2``: 24-36 s for 30 s). The
        workers of a pre-forked server then probe at different moments, and a fault
        that recurs with a fixed period (a restart every minute) cannot meet every
        probe and keep the breaker open for as long as it lasts. ``0`` disables it.
    """

    max_consecutive_failures: int = 5
    timeout: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        n = self.max_consecutive_failures
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigurationError(
                f"CircuitBreakerConfig: max_consecutive_failures must be an int >= 1, got {n!r}"
            )
        _check_positive("CircuitBreakerConfig", "timeout", self.timeout)
        _check_positive("CircuitBreakerConfig", "jitter", self.jitter, allow_zero=True)
        if self.jitter >= 1:
            raise ConfigurationError(
                f"CircuitBreakerConfig: jitter must be below 1 (a fraction of timeout), "
                f"got {self.jitter!r}"
            )
