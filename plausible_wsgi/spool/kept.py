"""What a feeder left in its spool, so that ``stats()`` counts every event once.

A delivering process gives rows back unsent (its buffer was full, the close deadline
passed, the engine was closed) and may take the same rows again later. The engine
counts the first as a drop and the second as a new item; here the drop is cancelled
(the spool kept the row) and the row counts as ``spooled`` only while it is left, so
``sent + failed + queued + in_flight + spooled + dropped`` stays one per event.
"""

from __future__ import annotations

import collections
from typing import Optional

from ..stats import DropReason
from .store import SpoolRecord

__all__ = ["KeptRows"]

#: Rows given back that are remembered (to recognise a retake); the oldest are
#: forgotten past it. The spool holds no more rows than this by default.
REMEMBER_AT_MOST = 100_000


class KeptRows:
    """The rows one process left in the spool; the caller serialises access.

    :param remember: whether rows given back may be taken again by this process (a
        delivering one): then each is remembered by id and creation time (ids are
        reused once the table empties) until it is taken again or forgotten.
    """

    def __init__(self, remember: bool) -> None:
        self.remember = remember
        #: Rows left in the spool for a later delivery and not taken again since.
        self.spooled = 0
        #: The engine's drops that did not happen: the spool kept those rows.
        self.cancelled: collections.Counter[DropReason] = collections.Counter()
        self._left: dict[int, float] = {}

    def left(self, record: SpoolRecord, cancels: Optional[DropReason] = None) -> None:
        """``record`` stays in the spool; ``cancels``: the drop the engine counted for it."""
        self.spooled += 1
        if cancels is not None:
            self.cancelled[cancels] += 1
        if self.remember:
            left = self._left
            left[record.id] = record.created
            if len(left) > REMEMBER_AT_MOST:
                del left[next(iter(left))]  # the oldest: the likeliest taken by another

    def retaken(self, record: SpoolRecord) -> bool:
        """``record`` was claimed again (to send, or deleted as expired): not left any more."""
        left = self._left
        if left and left.get(record.id) == record.created:
            del left[record.id]
            self.spooled -= 1
            return True
        return False

    def refused(self, record: SpoolRecord, spooled: bool) -> None:
        """The closed engine refused ``record`` (and counted it ``closed``)."""
        self.cancelled[DropReason.CLOSED] += 1
        if spooled:
            self.left(record)

    def forget_older_than(self, created: float) -> None:
        """Forget rows created before ``created``: gone by now (expired everywhere)."""
        left = self._left
        for row_id in [i for i, at in left.items() if at < created]:
            del left[row_id]
