"""Loud when delivery is dead or Plausible discards what it receives.

Two WARNINGs, through :func:`plausible_wsgi.notices.warn` (so a process that never
configured logging still sees one line on stderr), each at most once per
``stall_after`` seconds per collector, without any visitor data:

- **stalled**: an attempt failed and nothing has been answered 2xx for
  ``stall_after`` seconds (5 minutes by default) while events wait;
- **mostly dropped**: more than :data:`DROPPED_SHARE` of the last
  :data:`DROPPED_WINDOW` answers came with ``x-plausible-dropped`` (an unknown site,
  bots, a missing User-Agent...): Plausible receives the events and does not count
  them.

Checked in the delivery threads: a failed attempt pays a comparison, a dropped
answer a deque append; a counted answer one increment (counts may be slightly off
when several workers race; the thresholds do not need more).
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Optional

from ..notices import warn
from .failure import FailureKind

__all__ = ["DEFAULT_STALL_AFTER", "DROPPED_SHARE", "DROPPED_WINDOW", "Health"]

#: Seconds without a 2xx answer, while attempts fail, before the "stalled" warning.
DEFAULT_STALL_AFTER = 300.0
#: The "mostly dropped" warning: more than this share ...
DROPPED_SHARE = 0.5
#: ... of this many most recent answers carried ``x-plausible-dropped``.
DROPPED_WINDOW = 100


class Health:
    """The two warnings of one collector (see the module docs)."""

    def __init__(
        self,
        name: str,
        stall_after: float,
        last_success_at: Callable[[], Optional[float]],
    ) -> None:
        self.name = name
        self.stall_after = stall_after
        self._last_success_at = last_success_at
        #: Answers (2xx) seen, counted or dropped.
        self.answers = 0
        # The answer numbers of the most recent dropped answers: once it holds more
        # than DROPPED_SHARE of a window, its oldest entry says if they fit in one.
        self._dropped: collections.deque[int] = collections.deque(
            maxlen=int(DROPPED_WINDOW * DROPPED_SHARE) + 1
        )
        self._failing_since: Optional[float] = None
        self._warned: dict[str, float] = {}

    def failed(self, kind: FailureKind) -> None:
        """An attempt failed (connection, timeout, 5xx...)."""
        now = time.time()
        since = self._failing_since
        success = self._last_success_at()
        if since is None or (success is not None and success > since):
            self._failing_since = now
            return
        if now - since >= self.stall_after:
            self._warn(
                "stalled",
                now,
                "%s: nothing delivered for %d seconds while events wait (last failure: %s); "
                "is the endpoint reachable?",
                self.name,
                int(now - since),
                kind,
            )

    def dropped(self, why: Optional[str]) -> None:
        """An answer came with ``x-plausible-dropped``."""
        self.answers += 1
        recent = self._dropped
        recent.append(self.answers)
        if len(recent) == recent.maxlen and recent[0] > self.answers - DROPPED_WINDOW:
            self._warn(
                "dropped",
                time.time(),
                "%s: more than %d%% of the last %d events were received by Plausible but "
                "not counted (x-plausible-dropped: %s): is the site registered under this "
                "domain, and do the events carry the visitor's User-Agent and IP?",
                self.name,
                int(DROPPED_SHARE * 100),
                DROPPED_WINDOW,
                why or "?",
            )

    def _warn(self, key: str, now: float, msg: str, *args: object) -> None:
        last = self._warned.get(key)
        if last is not None and now - last < self.stall_after:
            return
        self._warned[key] = now
        warn(msg, *args)
