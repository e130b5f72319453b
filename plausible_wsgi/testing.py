"""Helpers for testing code that uses :mod:`plausible_wsgi`.

- :class:`MemoryCollector` records events in memory instead of sending them; put it
  in place of a :class:`~plausible_wsgi.PlausibleCollector` in your tests.
- :class:`PlausibleReceiver` (with :class:`Fault` and :class:`ReceivedEvent`) serves a
  Plausible-compatible ``/api/event`` on a free loopback port, for end-to-end tests:
  ``with PlausibleReceiver() as r: ...; r.wait_for(1)``. Imported on first use.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import TYPE_CHECKING, Optional

from .errors import InvalidEventError
from .events import Event, validate_event
from .stats import CollectorStats, DropReason
from .tracking import Tracker

if TYPE_CHECKING:
    from .receiver import Fault, PlausibleReceiver, ReceivedEvent

__all__ = ["Fault", "MemoryCollector", "PlausibleReceiver", "ReceivedEvent"]

_RECEIVER_NAMES = frozenset({"Fault", "PlausibleReceiver", "ReceivedEvent"})


def __getattr__(name: str) -> object:
    # The receiver pulls in werkzeug's server: only for those who use it.
    if name in _RECEIVER_NAMES:
        return getattr(importlib.import_module(f"{__package__}.receiver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MemoryCollector(Tracker):
    """A collector that keeps every event in a list, for tests.

    It validates events exactly as :class:`~plausible_wsgi.PlausibleCollector` does,
    so a test that passes against it sends nothing Plausible would reject.

    Usage::

        collector = MemoryCollector()
        app = PlausibleMiddleware(my_app, collector)
        ...  # drive requests
        assert [e.name for e in collector.events] == ["pageview"]
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._dropped: dict[str, int] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryCollector({self.name!r}, events={len(self._events)})"

    @property
    def events(self) -> list[Event]:
        """A copy of the recorded events, oldest first."""
        with self._lock:
            return list(self._events)

    def accept(self, event: Event) -> bool:
        with self._lock:
            if self._closed:
                self._dropped[DropReason.CLOSED] = self._dropped.get(DropReason.CLOSED, 0) + 1
                return False
            self._events.append(event)
            self._lock.notify_all()
        return True

    def collect(self, event: Event) -> bool:
        try:
            event = validate_event(event)
        except InvalidEventError:
            with self._lock:
                self._dropped[DropReason.INVALID] = self._dropped.get(DropReason.INVALID, 0) + 1
            return False
        return self.accept(event)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Event]:
        """Wait until at least ``count`` events were recorded; raise TimeoutError if not."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.name}: expected {count} events, got {len(self._events)}"
                    )
                self._lock.wait(remaining)
            return list(self._events)

    def clear(self) -> None:
        """Forget the recorded events."""
        with self._lock:
            self._events.clear()

    def flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def close(self, timeout: Optional[float] = None) -> None:
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> CollectorStats:
        with self._lock:
            return CollectorStats(sent=len(self._events), dropped=dict(self._dropped))
