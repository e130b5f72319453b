"""The retries of one event, run by ``retrying`` under a :class:`RetryConfig`.

The policy's decisions are :class:`~plausible_wsgi.delivery.policies.RetryConfig`'s own
(``is_retry``, ``backoff``, ``deadline``); this module only drives them:

- The first attempt is made by the engine without any of this: most events succeed
  at once. Only after a failure the policy says is worth retrying does
  :func:`run_retries` build a :class:`retrying.Retrying` whose attempt *n* is retry *n*.
- ``retrying`` sleeps with ``time.sleep``, which ``close()`` could not interrupt, so
  its own wait is zero and the backoff is waited in ``before_attempts``, on the
  caller's ``wait`` (an :class:`threading.Event` wait in the engine).
- Its stop rule is the policy's: ``max_retries``, the ``deadline`` counted on the
  monotonic clock from the first attempt, and the caller's ``may_continue`` (the
  breaker still closed, not shutting down).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from .failure import AttemptError
from .policies import RetryConfig

__all__ = ["run_retries"]

T = TypeVar("T")


def run_retries(
    policy: RetryConfig,
    first: AttemptError,
    started: float,
    resend: Callable[[], T],
    *,
    wait: Callable[[float], object],
    may_continue: Callable[[], bool],
) -> T:
    """Resend after ``first`` failed, as ``policy`` allows; the result or the last error.

    :param started: ``time.monotonic()`` of the first attempt.
    :param resend: makes one attempt; raises :class:`AttemptError` when it fails, and
        anything else (not retried) to stop at once.
    :param wait: waits up to the given seconds; may return early (``close()``), in
        which case ``resend`` is expected to raise.
    """
    last = [first]

    def time_left() -> float:
        return policy.deadline - (time.monotonic() - started)

    def stop(retries_made: int, _ms_since_first: int) -> bool:
        return retries_made >= policy.max_retries or time_left() <= 0 or not may_continue()

    def before(retry_number: int) -> None:
        delay = policy.backoff(retry_number, last[0].retry_after)
        wait(max(0.0, min(delay, time_left())))

    def attempt() -> T:
        try:
            return resend()
        except AttemptError as exc:
            last[0] = exc
            raise

    if policy.max_retries == 0 or time_left() <= 0 or not may_continue():
        raise first
    # Loaded at the first retry: a process whose events all go through never needs it.
    import retrying  # noqa: PLC0415

    runner = retrying.Retrying(
        stop_func=stop,
        wait_fixed=0,
        retry_on_exception=lambda exc: isinstance(exc, AttemptError) and policy.is_retry(exc),
        before_attempts=before,
    )
    result: T = runner.call(attempt)
    return result
