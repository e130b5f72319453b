"""The pool's pacing: when a batch is due (the linger), when another worker joins a
drain and when it leaves it (the ramp). Small records of state with their decisions,
guarded by the engine's lock unless said otherwise.

- **Linger**: while traffic fills a batch faster than every :data:`LINGER` seconds,
  the worker that drained the buffer sleeps ``LINGER`` on its own timer and ``put()``
  does not wake it (unless half the buffer fills): at one event per millisecond it
  takes batches of ~50 rather than ``batch_size`` (10), with no wake-up from the
  request thread; each batch pays a wake-up and cold caches once (bench/steady.py).
- **Ramp**: one worker keeps up with a fast server, and threads contending for the
  GIL cost CPU for nothing (bench/delivery.py, a burst on a loaded machine: four
  workers sharing it spent ~1.7x the CPU per event of one). Another worker joins
  only while events wait and every draining worker has waited on the server for over
  :data:`RAMP`, or attempts take that long; a joined worker leaves the drain again as
  soon as attempts are fast. Attempt times are smoothed and clamped: on a loaded
  machine one preempted attempt must not look like a slow server (and fill the pool).
"""

from __future__ import annotations

import time
from typing import Optional

__all__ = ["LINGER", "RAMP", "Linger", "Ramp"]

#: Seconds a batch may gather after a drain while traffic is fast.
LINGER = 0.05
#: Seconds every draining worker must have waited on the server before another joins.
RAMP = 0.01
#: Weight of the newest attempt in the smoothed attempt time ...
_SMOOTHING = 0.3
#: ... where no attempt counts for more than this many seconds.
_CLAMP = 2 * RAMP
#: Attempts (a pipelined batch counts as one) faster than this, smoothed, pipeline.
_PIPELINE_BELOW = RAMP / 4
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

    def due(self, now: float, buffered: int, capacity: int) -> Optional[bool]:
        """While lingering, whether the batch is due (time is up, or half the buffer
        filled); None when not lingering."""
        if not self.until:
            return None
        return now >= self.until or buffered * 2 >= capacity

    def timer(self, me: int, now: float) -> Optional[float]:
        """Seconds until worker ``me`` must wake for the batch it lingers over."""
        return self.until - now if self.owner == me and self.until > now else None

    def nothing_came(self, now: float) -> None:
        """The buffer is empty: once the time is up, the traffic stopped."""
        if self.until and now >= self.until:
            self.until = 0.0


class Ramp:
    """The attempts in progress and how long attempts take. Updated by the workers
    outside the engine's lock (one dict entry per thread), read under it."""

    __slots__ = ("busy", "took")

    def __init__(self) -> None:
        #: thread id -> when its current attempt started.
        self.busy: dict[int, float] = {}
        #: Seconds an attempt takes, smoothed.
        self.took = 0.0

    def started(self, me: int) -> float:
        self.busy[me] = now = _monotonic()
        return now

    def ended(self, me: int, started: float) -> None:
        del self.busy[me]
        self.took += (min(_monotonic() - started, _CLAMP) - self.took) * _SMOOTHING

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

    def crowded(self, draining: int) -> bool:
        """More workers drain than fast attempts need: one of them may leave."""
        return draining > 1 and self.took < RAMP
