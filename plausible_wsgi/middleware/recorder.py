"""What the WSGI and the ASGI middleware share after the rules: recording and closing.

A :class:`Recorder` holds one middleware's checked options, its collectors, the memo of
request targets and the counters. :meth:`Recorder.finish` takes the facts of a finished
request, asks :func:`~.decision.decide`, then ``should_track``, counts the outcome and
hands the event to every collector. It never raises: a failure is logged (without
visitor data) and counted.

Ownership of collectors: by default the middleware owns them, and :meth:`Recorder.close`
(also run at interpreter exit) flushes and closes them. With ``close_collectors=False``
-- what the framework integrations pass for a collector the user made -- they are left
open for their owner. Sibling collectors made for ``bot_domain`` are always the
middleware's own and always closed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from .. import lifecycle
from .._log import RateLimitedLog, logger
from ..agents import AgentMatch
from ..checks import check_collectors
from ..request import sendable_user_agent
from ..tracking import Collector
from .decision import Decision, RequestFacts, ResponseFacts, Skip, Tracked, decide
from .options import CheckedOptions, collector_name
from .pages import Pages
from .stats import Counters, MiddlewareStats

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "Recorder", "content_headers"]

#: Seconds :meth:`Recorder.close` allows collectors without a ``shutdown_timeout``.
DEFAULT_CLOSE_TIMEOUT = 5.0


class Recorder:
    """Decide, count and fan out the requests of one middleware; close its collectors."""

    def __init__(
        self,
        collectors: Union[Collector, Sequence[Collector]],
        options: CheckedOptions,
        *,
        close_collectors: bool = True,
    ) -> None:
        self.options = options
        self.collectors: tuple[Collector, ...] = check_collectors(
            "collectors", collectors, Collector
        )
        self.bot_collectors = self._collectors_for_bots()
        self.close_collectors = bool(close_collectors)
        self.pages = Pages(options)
        self.counters = Counters()
        self._names = tuple(collector_name(c) for c in self.collectors)
        self._bot_names = tuple(collector_name(c) for c in self.bot_collectors)
        self._lock = threading.Lock()
        self._closed = False
        self._log = RateLimitedLog()
        _register_for_exit(self)
        lifecycle.renew_after_fork(self)

    def after_fork_in_child(self) -> None:
        """New locks: a thread of the parent may have held them at fork time."""
        self._lock = threading.Lock()
        self.counters.after_fork_in_child()

    def _collectors_for_bots(self) -> tuple[Collector, ...]:
        """With ``bot_domain``: a sibling of each collector for that site, where the
        collector can make one (``for_domain()``); the collector itself otherwise."""
        domain = self.options.bot_domain
        if domain is None:
            return self.collectors
        siblings: list[Collector] = []
        for collector in self.collectors:
            for_domain = getattr(collector, "for_domain", None)
            siblings.append(for_domain(domain) if callable(for_domain) else collector)
        return tuple(siblings)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def visitor(self, raw_agent: object) -> tuple[Optional[str], Optional[AgentMatch]]:
        """The sendable User-Agent and, unless ``bots="pageview"``, what agent it is."""
        agent = sendable_user_agent(raw_agent)
        if self.options.bots == "pageview":
            return agent, None
        return agent, self.options.classify(agent)

    def finish(
        self,
        request: RequestFacts,
        response: ResponseFacts,
        view: Optional[Mapping[str, Any]],
        headers: list[tuple[str, str]],
    ) -> None:
        """Decide what the finished request was and record it. Never raises.

        :param view: what ``should_track`` gets: the environ copy or the ASGI scope.
        :param headers: the response headers as ``str`` pairs, for ``should_track``.
        """
        try:
            decision = decide(request, response, self.options)
            event = decision.event
            if (
                event is not None
                and self.options.should_track is not None
                and not self._wanted(view, response.status, headers)
            ):
                decision = Decision(skip=Skip.SHOULD_TRACK)
                event = None
            self.counters.finished(decision)
        except Exception as exc:
            self.error("deciding", exc, request=True)
            return
        if event is None:
            return
        if decision.tracked is Tracked.BOT:
            targets, names = self.bot_collectors, self._bot_names
        else:
            targets, names = self.collectors, self._names
        for collector, name in zip(targets, names):
            try:
                collector.collect(event)
            except Exception as exc:
                self.error(f"collector {name}", exc)

    def _wanted(
        self,
        view: Optional[Mapping[str, Any]],
        status: Optional[int],
        headers: list[tuple[str, str]],
    ) -> bool:
        should_track = self.options.should_track
        assert should_track is not None
        try:
            return bool(should_track(view or {}, status or 0, headers))
        except Exception as exc:
            self.error("should_track", exc)
            return False

    def error(self, where: str, exc: BaseException, *, request: bool = False) -> None:
        """Count and log one of the middleware's own failures."""
        self.counters.error(request=request)
        # The exception type only: messages may quote visitor data (URLs, headers).
        self._log.log(
            logging.WARNING,
            where,
            "PlausibleMiddleware: error while %s (%s); the request was not tracked",
            where,
            type(exc).__name__,
        )
        logger.debug("PlausibleMiddleware: error while %s", where, exc_info=exc)

    def stats(self) -> MiddlewareStats:
        return self.counters.snapshot()

    def owned(self) -> list[Collector]:
        """The collectors :meth:`close` closes, each once."""
        candidates = (*self.collectors, *self.bot_collectors)
        if not self.close_collectors:
            # Only the bot siblings this middleware made itself.
            candidates = tuple(
                c for c in self.bot_collectors if not any(c is given for given in self.collectors)
            )
        owned: list[Collector] = []
        for collector in candidates:
            if not any(collector is seen for seen in owned):
                owned.append(collector)
        return owned

    def close(self, timeout: Optional[float] = None) -> None:
        """Flush and close the owned collectors within one deadline. Idempotent.

        :param timeout: seconds for all of them together; ``None`` uses the largest
            ``shutdown_timeout`` among them (5 seconds for collectors without one).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        owned = self.owned()
        if timeout is None:
            timeout = max((_shutdown_timeout(c) for c in owned), default=DEFAULT_CLOSE_TIMEOUT)
        deadline = time.monotonic() + timeout
        for step in ("flush", "close"):
            for collector in owned:
                try:
                    getattr(collector, step)(max(0.0, deadline - time.monotonic()))
                except Exception as exc:
                    self.error(f"{step}ing collector {collector_name(collector)}", exc)


def content_headers(headers: list[tuple[str, str]]) -> tuple[Optional[str], Optional[str]]:
    """``Content-Type`` and ``Content-Disposition`` of a response's headers."""
    content_type = disposition = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        elif lowered == "content-disposition":
            disposition = value
    return content_type, disposition


def _shutdown_timeout(collector: Collector) -> float:
    value = getattr(collector, "shutdown_timeout", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_CLOSE_TIMEOUT


# -- interpreter exit ------------------------------------------------------------------

_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_live_lock = threading.Lock()
_exit_hook_installed = False


def _register_for_exit(recorder: Recorder) -> None:
    """Close ``recorder``'s collectors at exit, without keeping it alive.

    PlausibleCollectors are flushed at exit by the delivery engine anyway (before
    this hook runs); this covers every other collector (memory, logging, your own).
    """
    global _exit_hook_installed
    with _live_lock:
        _live.add(recorder)
        if _exit_hook_installed:
            return
        _exit_hook_installed = True
    atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    for recorder in list(_live):
        try:
            recorder.close()
        except Exception:
            logger.debug("PlausibleMiddleware: close at exit failed", exc_info=True)
