"""The package logger and a rate limit for repeated warnings.

During an outage the same warning would otherwise be logged for every event
(posthog and segment do that); here a repeat within ``interval`` seconds is counted
and folded into the next message instead.
"""

from __future__ import annotations

import logging
import threading
import time

from . import lifecycle

logger = logging.getLogger("plausible_wsgi")


class RateLimitedLog:
    """Log a message at most once per ``interval`` seconds per key."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.after_fork_in_child()
        lifecycle.renew_after_fork(self)

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval`` ago.

        Returns whether the message was emitted.
        """
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)
        return True

    def after_fork_in_child(self) -> None:
        """Forget history, with a new lock (the parent may have held the old one)."""
        # Reentrant: a signal handler may log while this thread is inside log().
        self._lock = threading.RLock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
