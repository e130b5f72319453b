"""What the WSGI and the ASGI middleware share after the rules: recording and closing.

A :class:`Recorder` holds one middleware's checked options, its collectors, the memo of
request targets and the counters. :meth:`Recorder.finish` takes a finished
:class:`~.exchange.Exchange`, gets its decision (:func:`~.decision.decide`'s, remembered
with the target for requests alike), asks ``should_track``, counts the outcome and
hands the visitor's event to every collector. It never raises: a failure is logged
(without visitor data) and counted.

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
from collections.abc import Hashable, Sequence
from typing import Optional, Union

from .. import lifecycle
from .._log import RateLimitedLog, logger
from ..checks import check_collectors
from ..tracking import Collector
from .decision import Decision, ResponseFacts, Skip, Tracked, decide
from .exchange import Exchange, status_code
from .options import CheckedOptions, collector_name
from .pages import Pages
from .stats import Counters, MiddlewareStats

__all__ = ["DECISIONS_PER_PAGE", "DEFAULT_CLOSE_TIMEOUT", "Recorder"]

#: Seconds :meth:`Recorder.close` allows collectors without a ``shutdown_timeout``.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: Decisions remembered per target: responses of one page vary little (a status or two,
#: a content type), and the bound holds whatever an application sends.
DECISIONS_PER_PAGE = 16

_NOT_WANTED = Decision(skip=Skip.SHOULD_TRACK)


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
        # Each collector with its name, paired once here rather than zipped per event.
        self._fanout = tuple(zip(self.collectors, self._names))
        self._bot_fanout = tuple(
            zip(self.bot_collectors, (collector_name(c) for c in self.bot_collectors))
        )
        self._should_track = options.should_track
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

    def finish(self, exchange: Exchange) -> None:
        """Decide what the finished request was and record it. Never raises."""
        try:
            decision = self.decision(exchange)
            plan = decision.plan
            if plan is not None and self._should_track is not None and not self._wanted(exchange):
                decision, plan = _NOT_WANTED, None
            self.counters.finished(decision)
        except Exception as exc:
            self.error("deciding", exc, request=True)
            return
        finally:
            exchange.view = None  # the environ copy: not kept longer than needed
        if plan is None or not exchange.visitor:  # decide() records only those with a URL
            return
        event = plan.event(exchange)
        fanout = self._bot_fanout if decision.tracked is Tracked.BOT else self._fanout
        for collector, name in fanout:
            try:
                collector.collect(event)
            except Exception as exc:
                self.error(f"collector {name}", exc)

    def decision(self, exchange: Exchange) -> Decision:
        """:func:`~.decision.decide` for ``exchange``, remembered with its page.

        The rules read only the page and the facts in the key, so requests alike get
        the same decision: a request like one seen before costs a dict lookup. Not
        remembered: range requests (the client picks the header).
        """
        content_type = disposition = None
        for name, value in exchange.headers:
            lowered = name.lower()
            if lowered == "content-type":
                content_type = value
            elif lowered == "content-disposition":
                disposition = value
        decisions = exchange.page.decisions
        key: Optional[Hashable] = None
        if exchange.range is None:
            key = (
                exchange.method, exchange.agent, exchange.route, exchange.status,
                content_type, disposition, exchange.failed,
            )  # fmt: skip
            try:
                decision = decisions.get(key)
            except TypeError:  # an unhashable status from a broken application
                decision = key = None
            if decision is not None:
                return decision
        response = ResponseFacts(
            status=status_code(exchange.status),
            content_type=content_type,
            content_disposition=disposition,
            failed=exchange.failed,
        )
        decision = decide(exchange.request_facts(), response, self.options)
        if key is not None:
            if len(decisions) >= DECISIONS_PER_PAGE:
                decisions.clear()
            decisions[key] = decision
        return decision

    def _wanted(self, exchange: Exchange) -> bool:
        should_track = self._should_track
        assert should_track is not None
        try:
            status = status_code(exchange.status) or 0
            return bool(should_track(exchange.view or {}, status, exchange.headers))
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
