"""The pool's pacing: when a batch is due (the linger), when another worker joins a
drain and when it leaves it (the ramp). Small records of state with their decisions,
guarded by the engine's lock unless said otherwise.

- **Linger**: while traffic fills a batch faster than every :data:`LINGER` seconds,
  the worker that drained the buffer sleeps ``LINGER`` on its own timer and ``put()``
  does not wake it (unless half the buffer fills, in events or bytes): at one event
  per millisecond it takes batches of ~500 rather than ``batch_size`` (10), with no
  wake-up from the request thread. Each drain pays a wake-up and cold caches once,
  and while it runs the delivery thread and a busy request thread hand the GIL back
  and forth: the fewer drains the cheaper each event, for both threads. A request
  thread busy ~350 µs per page, one page view each (``/tmp`` harness, 2,000 pages,
  11 interleaved rounds, medians): the delivery thread's CPU per event 32.2 µs at a
  linger of 0.05 s, 26.5 at 0.2, 23.9 at 0.5. The price: a hard kill (SIGKILL, OOM)
  loses what is buffered, now up to half a second of traffic; the spool keeps it.
- **Ramp**: one worker keeps up with a fast server, and threads contending for the
  GIL cost CPU for nothing (bench/delivery.py, a burst on a loaded machine: four
  workers sharing it spent ~1.7x the CPU per event of one). Another worker joins
  only while events wait and every draining worker has waited on the server for over
  :data:`RAMP`, or attempts take that long; a joined worker leaves the drain again as
  soon as attempts are fast. Attempt times are smoothed and clamped: on a loaded
  machine one preempted attempt must not look like a slow server (and fill the pool).
- **Pipelining**: a worker writes a batch at once on its connection while attempts are
  fast, or while the answers of a pipelined batch come close together (a far server
  that answers fast: the round trip is paid once per batch, not once per event). A
  slow server serves pipelined requests one after the other: there answers come far
  apart and spare workers in parallel do better. With neither known, a small batch
  (:data:`PROBE_DEPTH`) measures the gap, :data:`PROBE_EVERY` seconds after the last
  probe, twice as long after each that found the answers far apart (up to
  :data:`PROBE_MOST`: a slow server stays slow), and only while enough events wait that
  the other workers stay busy meanwhile (a probe must not hold up the end of a burst).
"""

from __future__ import annotations

import time
from typing import Optional, Protocol

__all__ = ["LINGER", "PROBE_DEPTH", "PROBE_EVERY", "PROBE_MOST", "RAMP", "Gauge", "Linger", "Ramp"]

#: Seconds a batch may gather after a drain while traffic is fast.
LINGER = 0.5
#: Seconds every draining worker must have waited on the server before another joins.
RAMP = 0.01
#: Weight of the newest attempt in the smoothed attempt time ...
_SMOOTHING = 0.3
#: ... where no attempt counts for more than this many seconds.
_CLAMP = 2 * RAMP
#: Attempts (a pipelined batch counts as one) faster than this, smoothed, pipeline;
#: so do answers of a pipelined batch coming closer together than this, smoothed.
_PIPELINE_BELOW = RAMP / 4
#: Requests in a batch that measures the gap between answers (on a new connection the
#: first goes alone: two are left to measure it) ...
PROBE_DEPTH = 3
#: ... sent at most this often (seconds) while neither verdict says pipeline.
PROBE_EVERY = 1.0
#: ... at most this many seconds apart while probes find answers far apart.
PROBE_MOST = 64.0
#: No gap between answers counts for more than this many seconds (smoothed as attempts).
_GAP_CLAMP = 2 * _PIPELINE_BELOW
_monotonic = time.monotonic


class Linger:
    """Whether the worker that drained the buffer now lingers, and until when."""

    __slots__ = ("fast", "owner", "quiet_since", "until")

    def __init__(self) -> None:
        #: While set (monotonic), the batch lingers: only ``owner`` (a thread id)
        #: wakes for it, by its timer.
        self.until = 0.0
        self.owner = 0
        #: When the last drain ended; whether the batch being drained came fast.
        self.quiet_since = _monotonic()
        self.fast = False

    def batch_started(self, now: float, buffered: int, batch_size: int) -> None:
        """A first worker starts draining ``buffered`` events: did they come fast?"""
        self.until = 0.0
        self.fast = buffered * LINGER >= batch_size * (now - self.quiet_since)

    def batch_ended(self, me: int, may_linger: bool) -> None:
        """The last draining worker ``me`` stops: it lingers if traffic is fast."""
        self.quiet_since = now = _monotonic()
        if self.fast and may_linger:
            self.until = now + LINGER
            self.owner = me

    def due(self, now: float, half_full: bool) -> Optional[bool]:
        """While lingering, whether the batch is due (time is up, or half the buffer
        filled, in items or in bytes); None when not lingering."""
        if not self.until:
            return None
        return now >= self.until or half_full

    def timer(self, me: int, now: float) -> Optional[float]:
        """Seconds until worker ``me`` must wake for the batch it lingers over."""
        return self.until - now if self.owner == me and self.until > now else None

    def nothing_came(self, now: float) -> None:
        """The buffer is empty: once the time is up, the traffic stopped."""
        if self.until and now >= self.until:
            self.until = 0.0


class Gauge(Protocol):
    """What measures the gap between answers of a pipelined batch (the transport)."""

    @property
    def gap(self) -> Optional[float]:
        """Seconds between consecutive answers of the last pipelined batch, or None."""


class Ramp:
    """The attempts in progress and how long attempts take. Updated by the workers
    outside the engine's lock (one dict entry per thread), read under it."""

    __slots__ = ("busy", "gap", "gauge", "probe_after", "probe_wait", "took")

    def __init__(self, gauge: Optional[Gauge] = None) -> None:
        #: thread id -> when its current attempt started.
        self.busy: dict[int, float] = {}
        #: Seconds an attempt takes, smoothed.
        self.took = 0.0
        #: Seconds between consecutive answers of a pipelined batch, smoothed (0: never
        #: measured); and when (monotonic) a probe may measure it next.
        self.gap = 0.0
        self.probe_after = 0.0
        self.probe_wait = PROBE_EVERY
        self.gauge = gauge

    def started(self, me: int) -> float:
        self.busy[me] = now = _monotonic()
        return now

    def ended(self, me: int, started: float, batch: int = 1) -> None:
        """Worker ``me``'s attempt (``batch`` requests written at once) is over."""
        del self.busy[me]
        self.took += (min(_monotonic() - started, _CLAMP) - self.took) * _SMOOTHING
        if batch > 1 and self.gauge is not None:
            gap = self.gauge.gap  # this batch's, or another worker's as recent
            if gap is not None:
                self.answered_apart(gap)

    def join_in(self, now: float, draining: int) -> Optional[float]:
        """None when an idle worker should join the ``draining`` ones now, else the
        seconds until it should look again."""
        busy = tuple(self.busy.values())  # one C call: no resize mid-iteration
        if len(busy) < draining:
            return RAMP  # a worker is between events: it is keeping up
        if self.took >= RAMP:
            return None  # the server answers slowly: join now
        wait = RAMP - (now - max(busy))
        # Under a microsecond is due: ``started + RAMP - started`` can round below RAMP.
        return None if wait < 1e-6 else wait

    def fast(self) -> bool:
        """Answers come fast enough to pipeline: a batch on one connection costs less
        than spare workers, whose fan-out a slow server needs instead. Not before an
        attempt was timed (a new pool against a slow server starts one at a time)."""
        return 0.0 < self.took < _PIPELINE_BELOW

    def answered_apart(self, gap: float) -> None:
        """A pipelined batch's answers came ``gap`` seconds apart (the first sets it)."""
        gap = min(gap, _GAP_CLAMP)
        self.gap = gap if not self.gap else self.gap + (gap - self.gap) * _SMOOTHING
        if self.gap < _PIPELINE_BELOW:
            self.probe_wait = PROBE_EVERY

    def depth(self, most: int, share: int) -> int:
        """Requests to write at once, at most ``most``: all of them while attempts are
        fast or answers come close together, else one; or a probe's when due and
        ``share`` (the events waiting per draining worker) keeps the others busy while
        it holds its events on one connection (the end of a burst is not delayed)."""
        if most < 2 or self.fast() or 0.0 < self.gap < _PIPELINE_BELOW:
            return most
        now = _monotonic()
        if now < self.probe_after or share < PROBE_DEPTH:
            return 1
        self.probe_after = now + self.probe_wait
        self.probe_wait = min(self.probe_wait * 2, PROBE_MOST)  # unless answers come close
        return min(PROBE_DEPTH, most)

    def crowded(self, draining: int) -> bool:
        """More workers drain than fast attempts need: one of them may leave."""
        return draining > 1 and self.took < RAMP
