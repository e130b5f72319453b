"""A FIFO bounded in items and in bytes, where the oldest items make room.

Not thread-safe: the engine's lock guards it. Sizes are the caller's estimates of
each item's memory (the collector's ``_event_size``).
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

__all__ = ["Buffer"]

T = TypeVar("T")
_NONE: tuple[()] = ()


class Buffer(Generic[T]):
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        #: The ``(item, size)`` pairs, oldest first; read-only outside this class.
        #: ``len(buffer.items)`` is the count without a Python call (``put()`` reads it
        #: for every event).
        self.items: collections.deque[tuple[T, int]] = collections.deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def half_full(self) -> bool:
        """Half of either bound reached: a lingering batch is due."""
        return len(self.items) * 2 >= self.max_items or self.bytes * 2 >= self.max_bytes

    def push(self, item: T, size: int) -> tuple[T, ...] | list[T]:
        """Append ``item``; the oldest items it pushed out, if any."""
        items = self.items
        evicted: tuple[T, ...] | list[T] = _NONE
        if len(items) >= self.max_items or self.bytes + size > self.max_bytes:
            evicted = []
            while items and (len(items) >= self.max_items or self.bytes + size > self.max_bytes):
                old, old_size = items.popleft()
                self.bytes -= old_size
                evicted.append(old)
        items.append((item, size))
        self.bytes += size
        return evicted

    def pop(self) -> tuple[T, int]:
        """The oldest item and its size (the buffer must not be empty)."""
        item, size = self.items.popleft()
        # Reset when empty: a signal landing inside a "+=" cannot leave a drift behind.
        self.bytes = self.bytes - size if self.items else 0
        return item, size

    def push_front(self, item: T, size: int) -> bool:
        """Put an item back as the oldest; False when the buffer is full."""
        if len(self.items) >= self.max_items:
            return False
        self.items.appendleft((item, size))
        self.bytes += size
        return True

    def clear(self) -> list[T]:
        """Remove and return every item."""
        items = [item for item, _ in self.items]
        self.items.clear()
        self.bytes = 0
        return items
