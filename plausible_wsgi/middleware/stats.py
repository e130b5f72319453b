"""The middleware's counters and their snapshot, :class:`MiddlewareStats`."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Optional, Union

from .decision import Decision, Skip, Tracked

# What a request is counted under: what was tracked, or why not (and the bot's kind).
_Key = Union[Tracked, "tuple[Optional[Skip], Optional[str]]"]

__all__ = ["Counters", "MiddlewareStats"]


@dataclasses.dataclass(frozen=True)
class MiddlewareStats:
    """A snapshot of a middleware's counters.

    A request is counted when it is over: its response closed, or the application
    raised. Then ``requests == sum(tracked.values()) + sum(skipped.values())`` plus
    the requests whose bookkeeping failed (counted in ``errors`` too).
    """

    #: Requests finished.
    requests: int = 0
    #: Events recorded, by what they are: ``pageview``, ``404``, ``file_download``,
    #: ``action``, ``bot``.
    tracked: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: Requests not recorded, by reason: ``host``, ``excluded``, ``method``,
    #: ``bot:<kind>``, ``status``, ``content_type``, ``partial`` (a range request that
    #: does not start a download), ``should_track``, ``exception`` (the application
    #: raised), ``no_status`` (no response was started).
    skipped: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: The middleware's own failures (a raising collector or ``should_track``, ...).
    errors: int = 0


class Counters:
    """Thread-safe counts behind :class:`MiddlewareStats` (one short lock per request,
    never held across anything but the additions).

    Counted by the decision's enum members; turned into the ``MiddlewareStats``
    strings only for a snapshot (an enum's ``.value`` costs more than the count).
    """

    __slots__ = ("_counts", "_errors", "_lock", "_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = 0
        self._counts: dict[_Key, int] = {}

    def after_fork_in_child(self) -> None:
        """A new lock: a thread of the parent may have held it at fork time."""
        self._lock = threading.Lock()

    def finished(self, decision: Decision) -> None:
        """Count a finished request under what was decided."""
        tracked = decision.tracked
        key: _Key = tracked if tracked is not None else (decision.skip, decision.bot_kind)
        counts = self._counts
        with self._lock:
            self._requests += 1
            counts[key] = counts.get(key, 0) + 1

    def error(self, *, request: bool) -> None:
        """Count one of the middleware's own failures (and the request, if it ended it)."""
        with self._lock:
            self._errors += 1
            if request:
                self._requests += 1

    def snapshot(self) -> MiddlewareStats:
        with self._lock:
            counts = list(self._counts.items())
            requests, errors = self._requests, self._errors
        tracked: dict[str, int] = {}
        skipped: dict[str, int] = {}
        for key, count in counts:
            if isinstance(key, Tracked):
                tracked[key.value] = count
            else:
                skipped[Decision(skip=key[0], bot_kind=key[1]).counter] = count
        return MiddlewareStats(
            requests=requests,
            tracked=MappingProxyType(tracked),
            skipped=MappingProxyType(skipped),
            errors=errors,
        )
