"""The circuit breaker: pybreaker's state machine, outside the guarded call.

- pybreaker holds its lock for the whole of ``call()``, so guarding each POST with it
  would let one POST run at a time. Here the POST runs unguarded and only its outcome
  is reported to pybreaker, through a call that holds the lock for microseconds.
- While the breaker is closed and nothing failed since the last success, a success
  changes nothing, and reporting it costs one attribute read, not a pybreaker call.
- pybreaker stamps its open time on the wall clock (a backward step of one hour kept
  it open for an hour), so the open-until deadline is ours, on ``time.monotonic()``,
  drawn with jitter each time pybreaker reports the transition to open (through its
  public listener API). We move it to half-open ourselves (``half_open()``) when our
  deadline passes, and never ``call()`` it while it is open, so its own wall-clock
  ``reset_timeout`` never decides anything. ``tests/test_breaker.py`` pins each
  pybreaker behaviour relied on here.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Callable, Optional

import pybreaker

from .policies import JITTER, CircuitBreakerConfig

__all__ = ["Admission", "Breaker"]


class Admission(enum.Enum):
    """What :meth:`Breaker.admit` allows."""

    #: Closed: send as usual.
    NORMAL = "normal"
    #: The single trial request after the open time.
    PROBE = "probe"
    #: Open (or a probe is already out): do not send.
    DENIED = "denied"


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


class _Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(self, cb: object, old: object, new: pybreaker.CircuitBreakerState) -> None:
        self._breaker._on_state(new.name)


class Breaker:
    """A circuit breaker whose lock is never held across network I/O.

    :param clock: a monotonic clock (tests pass their own).
    """

    def __init__(
        self, config: CircuitBreakerConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        #: Monotonic time the probe may go out; None while closed.
        self._open_until: Optional[float] = None
        self._probing = False
        #: No failure reported since the last success: a success has nothing to reset.
        self._clean = True
        self._cb = pybreaker.CircuitBreaker(
            fail_max=config.max_consecutive_failures,
            reset_timeout=config.timeout,
            throw_new_error_on_trip=False,
            listeners=[_Transitions(self)],
        )

    def _on_state(self, name: str) -> None:
        # Runs inside pybreaker's lock, from record_*() or admit().
        if name == pybreaker.STATE_OPEN:
            jitter = self.config.jitter
            open_for = self.config.timeout * (1.0 + JITTER.uniform(-jitter, jitter))
            self._open_until = self._clock() + open_for
        elif name == pybreaker.STATE_CLOSED:
            self._open_until = None

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        if self._probing:
            return "half-open"
        return "closed" if self._open_until is None else "open"

    @property
    def closed(self) -> bool:
        return self._open_until is None and not self._probing

    def seconds_until_probe(self) -> float:
        """0 when a request may be admitted now, else the wait until the probe."""
        open_until = self._open_until
        if open_until is None:
            return 0.0
        if self._probing:
            return self.config.timeout  # woken earlier when the probe settles
        return max(0.0, open_until - self._clock())

    def admit(self) -> Admission:
        """May a request go out now? A ``PROBE`` must be settled with ``record_*``."""
        if self.closed:
            return Admission.NORMAL
        with self._lock:
            open_until = self._open_until
            if open_until is None:
                return Admission.NORMAL
            if self._probing or self._clock() < open_until:
                return Admission.DENIED
            self._probing = True
        self._cb.half_open()  # the next reported outcome closes or reopens it
        return Admission.PROBE

    def record_success(self, admission: Admission) -> None:
        if self._clean and admission is Admission.NORMAL and self._open_until is None:
            return  # closed with no failure to forget: the common case, kept cheap
        try:
            if self._cb.current_state == pybreaker.STATE_OPEN:
                # A request sent before the breaker opened came back fine: the server
                # is up. (Calling pybreaker while open would consult its wall clock.)
                self._cb.close()
            else:
                self._cb.call(_succeed)
            self._clean = True
        finally:
            self._end_probe(admission)

    def record_failure(self, admission: Admission, exc: BaseException) -> None:
        self._clean = False
        try:
            if admission is Admission.PROBE or self._cb.current_state != pybreaker.STATE_OPEN:
                self._cb.call(_fail, exc)
        except BaseException:  # the outcome is reported, not raised
            pass
        finally:
            self._end_probe(admission)

    def release(self, admission: Admission) -> None:
        """Give back an admission that was not used (the event was not sent)."""
        if admission is Admission.PROBE and self._cb.current_state == pybreaker.STATE_HALF_OPEN:
            # No verdict: back to open, with the probe due at once.
            with self._lock:
                self._cb.open()
                self._open_until = self._clock()
        self._end_probe(admission)

    def _end_probe(self, admission: Admission) -> None:
        if admission is Admission.PROBE:
            with self._lock:
                self._probing = False
