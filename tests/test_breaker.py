"""The breaker: the pybreaker behaviours it relies on, and its monotonic open time."""

from __future__ import annotations

import datetime

import pybreaker
import pytest
from sink import wait_until

import plausible_wsgi as pw
from plausible_wsgi.delivery.breaker import Admission, Breaker


class Boom(Exception):
    pass


def _raise() -> None:
    raise Boom


class Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def state_change(self, cb: object, old: object, new: pybreaker.CircuitBreakerState) -> None:
        self.seen.append(new.name)


def test_pybreaker_contract() -> None:
    """Each pybreaker behaviour breaker.py relies on, through its public API only.

    A pybreaker release that changes one of these must fail here, not in production
    (setup.py pins the major version).
    """
    listener = Transitions()
    cb = pybreaker.CircuitBreaker(
        fail_max=2, reset_timeout=3600, throw_new_error_on_trip=False, listeners=[listener]
    )
    assert cb.current_state == pybreaker.STATE_CLOSED == "closed"
    # A failure below fail_max is re-raised and counted; a success resets the count.
    with pytest.raises(Boom):
        cb.call(_raise)
    assert cb.fail_counter == 1
    cb.call(lambda: None)
    assert cb.fail_counter == 0
    # The failure that trips it re-raises the original error (throw_new_error_on_trip).
    for _ in range(2):
        with pytest.raises(Boom):
            cb.call(_raise)
    assert cb.current_state == pybreaker.STATE_OPEN == "open"
    assert listener.seen == ["open"]  # the listener hears of the transition
    # half_open() lets the next call through: a success closes it ...
    cb.half_open()
    assert cb.current_state == pybreaker.STATE_HALF_OPEN == "half-open"
    cb.call(lambda: None)
    assert cb.current_state == "closed"
    # ... a failure opens it again, at once.
    for _ in range(2):
        with pytest.raises(Boom):
            cb.call(_raise)
    cb.half_open()
    with pytest.raises(Boom):
        cb.call(_raise)
    assert cb.current_state == "open"
    # close() from open, and open() from half-open, are public and heard.
    cb.close()
    assert cb.current_state == "closed"
    cb.half_open()
    cb.open()
    assert cb.current_state == "open"
    assert listener.seen == [
        "open",
        "half-open",
        "closed",
        "open",
        "half-open",
        "open",
        "closed",
        "half-open",
        "open",
    ]


def test_open_time_is_monotonic_a_wall_clock_step_back_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-hour backward step of the wall clock kept pybreaker's breaker open for an
    hour (it stamps its open time with datetime.now)."""
    breaker = Breaker(pw.CircuitBreakerConfig(max_consecutive_failures=1, timeout=0.2, jitter=0))
    breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    assert breaker.state == "open"

    class HourBack(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> HourBack:  # type: ignore[override]
            real = datetime.datetime.now(tz)
            return cls.fromtimestamp(real.timestamp() - 3600, tz)

    monkeypatch.setattr(pybreaker, "datetime", HourBack)
    wait_until(lambda: breaker.seconds_until_probe() == 0, timeout=5)
    admission = breaker.admit()
    assert admission is Admission.PROBE
    breaker.record_success(admission)
    assert breaker.state == "closed"


def test_a_success_while_closed_and_clean_does_not_call_pybreaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    breaker = Breaker(pw.CircuitBreakerConfig(max_consecutive_failures=3))
    calls: list[object] = []
    real_call = pybreaker.CircuitBreaker.call

    def counting(self: pybreaker.CircuitBreaker, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pybreaker.CircuitBreaker, "call", counting)
    for _ in range(100):
        breaker.record_success(Admission.NORMAL)
    assert calls == []
    breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    breaker.record_success(Admission.NORMAL)  # forgets the failure: one call
    breaker.record_success(Admission.NORMAL)
    assert len(calls) == 2
    for _ in range(2):
        breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    assert breaker.state == "closed"  # the success reset the count: 2 < 3


def test_an_unused_probe_is_given_back_and_due_again() -> None:
    breaker = Breaker(pw.CircuitBreakerConfig(max_consecutive_failures=1, timeout=0.05, jitter=0))
    breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    wait_until(lambda: breaker.seconds_until_probe() == 0, timeout=5)
    probe = breaker.admit()
    assert probe is Admission.PROBE
    assert breaker.admit() is Admission.DENIED  # one probe at a time
    breaker.release(probe)
    assert breaker.state == "open"
    assert breaker.admit() is Admission.PROBE
