"""The retry policy on its own: RetryConfig's decisions and run_retries."""

from __future__ import annotations

import random
import threading
import time

import pytest

import plausible_wsgi as pw
from plausible_wsgi.delivery.breaker import Admission, Breaker
from plausible_wsgi.delivery.failure import AttemptError
from plausible_wsgi.delivery.retry import run_retries


@pytest.mark.parametrize(
    ("failure", "default", "at_most_once"),
    [
        (AttemptError("connect", "refused"), True, True),
        (AttemptError("tls", "bad certificate"), False, False),
        (AttemptError("invalid", "unsendable"), False, False),
        (AttemptError("read_timeout", "slow"), False, False),
        (AttemptError("cut", "reset"), True, False),
        (AttemptError("status", "HTTP 503", status=503), True, True),
        (AttemptError("status", "HTTP 501", status=501), False, False),
    ],
)
def test_is_retry(failure: AttemptError, default: bool, at_most_once: bool) -> None:
    assert pw.RetryConfig().is_retry(failure) is default
    strict = pw.RetryConfig(retry_connection_cuts=False)
    assert strict.is_retry(failure) is at_most_once


def test_backoff_is_full_jitter_under_the_cap_or_the_server_delay() -> None:
    policy = pw.RetryConfig(initial_backoff=0.5, max_backoff=2.0)
    for n, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 2.0)]:
        draws = [policy.backoff(n) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > cap / 2  # spread over the range, not a constant
    assert policy.backoff(1, retry_after=7.0) == 7.0


def test_run_retries_stops_at_max_retries_and_raises_the_last_error() -> None:
    policy = pw.RetryConfig(max_retries=3, initial_backoff=0, max_backoff=0)
    calls: list[int] = []

    def resend() -> str:
        calls.append(1)
        raise AttemptError("status", f"HTTP 503 #{len(calls)}", status=503)

    with pytest.raises(AttemptError, match="#3"):
        run_retries(
            policy,
            AttemptError("connect", "first"),
            time.monotonic(),
            resend,
            wait=lambda s: None,
            may_continue=lambda: True,
        )
    assert len(calls) == 3


def test_run_retries_returns_the_first_success_and_skips_unretryable() -> None:
    policy = pw.RetryConfig(max_retries=5, initial_backoff=0, max_backoff=0)
    answers = iter([AttemptError("connect", "x"), "ok"])

    def resend() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    first = AttemptError("connect", "first")
    assert (
        run_retries(
            policy, first, time.monotonic(), resend, wait=lambda s: None, may_continue=lambda: True
        )
        == "ok"
    )

    def rejected() -> str:
        raise AttemptError("status", "HTTP 400", status=400)

    with pytest.raises(AttemptError, match="HTTP 400"):
        run_retries(
            policy,
            first,
            time.monotonic(),
            rejected,
            wait=lambda s: None,
            may_continue=lambda: True,
        )


def test_run_retries_honours_the_deadline_and_may_continue() -> None:
    policy = pw.RetryConfig(max_retries=100, initial_backoff=0, max_backoff=0, deadline=1.0)
    first = AttemptError("connect", "first")
    calls: list[int] = []

    def resend() -> str:
        calls.append(1)
        raise first

    # The deadline counts from the first attempt: nothing is left of it.
    with pytest.raises(AttemptError):
        run_retries(
            policy,
            first,
            time.monotonic() - 2.0,
            resend,
            wait=lambda s: None,
            may_continue=lambda: True,
        )
    assert calls == []
    with pytest.raises(AttemptError):
        run_retries(
            policy,
            first,
            time.monotonic(),
            resend,
            wait=lambda s: None,
            may_continue=lambda: len(calls) < 2,
        )
    assert len(calls) == 2


def test_the_wait_is_the_callers_and_can_be_interrupted() -> None:
    policy = pw.RetryConfig(max_retries=3, initial_backoff=60, max_backoff=60, deadline=600)
    stop = threading.Event()
    waited: list[float] = []

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        return stop.wait(seconds)

    class Stopped(Exception):
        pass

    def resend() -> str:
        if stop.is_set():
            raise Stopped
        raise AttemptError("connect", "again")

    threading.Timer(0.1, stop.set).start()
    with pytest.raises(Stopped):
        run_retries(
            policy,
            AttemptError("connect", "first"),
            time.monotonic(),
            resend,
            wait=wait,
            may_continue=lambda: not stop.is_set(),
        )
    assert waited
    assert all(0 <= w <= 60 for w in waited)


def test_jitter_leaves_the_random_module_alone() -> None:
    """Delivery threads draw their jitter elsewhere: an app or a test library that
    seeds ``random`` (hypothesis refuses draws behind its back) sees no draw of ours."""
    random.seed(12345)
    state = random.getstate()
    backoffs = {pw.RetryConfig(initial_backoff=1, max_backoff=10).backoff(3) for _ in range(20)}
    breaker = Breaker(pw.CircuitBreakerConfig(max_consecutive_failures=1, jitter=0.5))
    breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    assert breaker.state == "open"
    assert random.getstate() == state
    assert len(backoffs) > 1  # still jittered
