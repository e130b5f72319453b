"""When another worker joins a drain, and when it leaves it: the pool's ramp.

One worker keeps up with a fast server, and threads contending for the GIL cost CPU
for nothing (bench/delivery.py, a burst against nginx on a loaded machine: four
workers sharing it spent ~1.7x the CPU per event of one). So another worker joins
only while events wait and every draining worker has waited on the server for over
:data:`RAMP`, or attempts take that long; a joined worker leaves the drain again as
soon as attempts are fast. How long attempts take is smoothed: on a loaded machine
one preempted attempt must not look like a slow server (and fill the pool).
"""

from __future__ import annotations

import time
from typing import Optional

__all__ = ["RAMP", "Ramp"]

#: Seconds every draining worker must have waited on the server before another joins.
RAMP = 0.01
#: Weight of the newest attempt in the smoothed attempt time.
_SMOOTHING = 0.3
_monotonic = time.monotonic


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
        self.took += (_monotonic() - started - self.took) * _SMOOTHING

    def join_in(self, now: float, draining: int) -> Optional[float]:
        """None when an idle worker should join the ``draining`` ones now, else the
        seconds until it should look again."""
        busy = tuple(self.busy.values())  # one C call: no resize mid-iteration
        if len(busy) < draining:
            return RAMP  # a worker is between events: it is keeping up
        if self.took >= RAMP:
            return None  # the server answers slowly: join now
        newest = now - max(busy)
        return None if newest >= RAMP else RAMP - newest

    def crowded(self, draining: int) -> bool:
        """More workers drain than fast attempts need: one of them may leave."""
        return draining > 1 and self.took < RAMP
