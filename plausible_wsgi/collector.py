"""Collectors: where events go.

:class:`PlausibleCollector` delivers to Plausible through the
:class:`~plausible_wsgi.delivery.engine.DeliveryEngine`. The :class:`Collector` protocol the
middleware talks to and the :class:`Tracker` base that gives any collector the
``track*`` methods live in :mod:`plausible_wsgi.tracking` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional, Union

from ._log import RateLimitedLog
from ._plausible import MAX_NAME_LENGTH
from .agents import MAX_USER_AGENT_LENGTH
from .checks import check_count as _check_count
from .checks import check_domain as _check_domain
from .checks import check_endpoint as _check_endpoint
from .checks import check_seconds as _check_seconds
from .delivery.engine import DEFAULT_MAX_BUFFER_BYTES, DeliveryEngine
from .delivery.health import DEFAULT_STALL_AFTER, Health
from .delivery.hooks import BeforeSend, OnDrop, OnError, make_hooks
from .delivery.policies import CircuitBreakerConfig, RetryConfig
from .delivery.transport import MAX_PIPELINE_DEPTH, HttpTransport
from .errors import ConfigurationError, InvalidEventError
from .events import (
    Event,
    ValidEvent,
    encode_event,
    validate_event,
)
from .posting import Item, Poster
from .spool.feeder import SpoolFeeder
from .spool.store import Spool, SpoolRecord
from .stats import CollectorStats, DropReason
from .tracking import Collector, Tracker

__all__ = ["Collector", "PlausibleCollector", "Tracker"]

_DEFAULT_RETRY = RetryConfig()
_DEFAULT_BREAKER = CircuitBreakerConfig()


# _accept cuts longer User-Agents to MAX_USER_AGENT_LENGTH (the classifier's bound too)
# before they are buffered: real ones are under 500, and a 10 MB one was accepted and sent.


# The name (at most MAX_NAME_LENGTH characters) and the IP (at most 45) are bounded:
# counted in the constant, they cost no field reads (this runs for every event).
_EVENT_BASE_SIZE = 400 + MAX_NAME_LENGTH + 45


def _event_size(item: Union[Event, SpoolRecord]) -> int:
    """An estimate of the memory a buffered event holds, in bytes: the tuple and the
    string headers, and the text it carries."""
    if type(item) is SpoolRecord:
        return _EVENT_BASE_SIZE + len(item.body) + len(item.user_agent or "")
    event: Event = item  # type: ignore[assignment]
    size = _EVENT_BASE_SIZE + len(event.url) + len(event.referrer or "")
    size += len(event.user_agent or "")
    props = event.props
    if props:
        for key, value in props.items():
            size += 120 + len(key) + len(value)
    return size


def _check_depth(depth: object) -> int:
    depth = _check_count("pipeline_depth", depth)
    if depth > MAX_PIPELINE_DEPTH:
        raise ConfigurationError(f"pipeline_depth must be <= {MAX_PIPELINE_DEPTH}, got {depth!r}")
    return depth


class PlausibleCollector(Tracker):
    """Delivers events to Plausible Cloud or a self-hosted Plausible.

    - One ``POST {endpoint}/api/event`` per event (Plausible has no batch endpoint),
      JSON with long keys, the visitor's ``User-Agent`` and ``X-Forwarded-For``.
    - Events are buffered (bounded, oldest dropped first) and sent when ``batch_size``
      are waiting or ``flush_interval`` has passed, by up to ``max_workers`` concurrent
      POSTs with retry and a circuit breaker. ``track()`` never blocks on the network.
    - Threads start on first use, survive ``fork()``, and the buffer is flushed at
      interpreter exit within ``shutdown_timeout``.

    :param domain: the site as registered in Plausible, e.g. ``"example.com"``.
    :param endpoint: base URL of the instance (no ``/api/event``).
    :param batch_size: flush when this many events are buffered ...
    :param flush_interval: ... or when this many seconds have passed.
    :param max_queue_size: bound of the buffer, in events.
    :param max_buffer_bytes: bound of the buffer, in bytes (an estimate of the
        events' memory; 16 MiB by default). Past either bound the oldest event goes.
    :param max_workers: concurrent POSTs.
    :param timeout: seconds to connect and seconds to wait for an answer, per POST.
    :param retry: a :class:`RetryConfig`; ``None`` disables retry.
    :param circuit_breaker: a :class:`CircuitBreakerConfig`; ``None`` disables it.
    :param shutdown_timeout: bound, in seconds, on the flush in ``close()`` and at exit.
    :param ca_bundle: CA bundle path for a self-hosted instance with a private CA.
    :param spool: a SQLite file (or a :class:`~plausible_wsgi.spool.store.Spool`) every event
        is committed to before ``track()`` returns, shared by the processes of a host;
        delivered rows are deleted, rows of a process that died are taken over.
    :param spool_max_age: seconds after which a spooled event is not sent any more
        (``dropped["expired"]``): Plausible joins a session only within 30 minutes.
    :param deliver: with a spool, False only writes it (no threads, no sockets here):
        ``python -m plausible_wsgi relay`` sends.
    :param before_send: ``before_send(event) -> event | None``, once per event before
        it is encoded: a changed event to send, or None to veto it (``vetoed``).
    :param on_error: ``on_error(event, Settlement, detail)``: failed for good.
    :param on_drop: ``on_drop(event, DropReason, detail)``: an accepted event dropped.
        Hooks run in delivery threads (see :mod:`plausible_wsgi.delivery.hooks`).
    :param stall_warning_after: seconds without a delivery, while attempts fail,
        before a WARNING (see :mod:`plausible_wsgi.delivery.health`).
    :param pipeline_depth: events written at once on one connection while answers are
        fast (HTTP/1.1 pipelining, read in order; a cut leaves them in doubt); 1: off.
        Collectors with ``before_send``/``on_error``/``on_drop`` send one at a time.

    Usage::

        collector = PlausibleCollector("example.com")
        app.wsgi_app = PlausibleMiddleware(app.wsgi_app, collector)

        @app.post("/signup")
        def signup():
            collector.track("Signup", props={"plan": "pro"})
    """

    # 82 lines: the signature of 21 documented keywords takes 23 of them, building the
    # engine from the checked settings 21 more.
    def __init__(
        self,
        domain: str,
        *,
        endpoint: str = "https://plausible.io",
        batch_size: int = 10,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        max_workers: int = 4,
        timeout: float = 10.0,
        retry: Optional[RetryConfig] = _DEFAULT_RETRY,
        circuit_breaker: Optional[CircuitBreakerConfig] = _DEFAULT_BREAKER,
        shutdown_timeout: float = 5.0,
        ca_bundle: Optional[str] = None,
        spool: Union[str, os.PathLike[str], Spool, None] = None,
        spool_max_age: float = 1800.0,
        deliver: bool = True,
        before_send: Optional[BeforeSend] = None,
        on_error: Optional[OnError] = None,
        on_drop: Optional[OnDrop] = None,
        stall_warning_after: float = DEFAULT_STALL_AFTER,
        pipeline_depth: int = 32,
    ) -> None:
        # Every keyword as given, for for_domain(): one list of settings, not two.
        self._settings = {k: v for k, v in locals().items() if k not in ("self", "domain")}
        #: The Plausible site every event is recorded on.
        self.domain = _check_domain(domain)
        #: Base URL of the Plausible instance.
        self.endpoint = _check_endpoint(endpoint)
        if retry is not None and not isinstance(retry, RetryConfig):
            raise ConfigurationError(f"retry must be a RetryConfig or None, got {retry!r}")
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreakerConfig):
            raise ConfigurationError(
                f"circuit_breaker must be a CircuitBreakerConfig or None, got {circuit_breaker!r}"
            )
        self.name = f"plausible:{self.domain}"
        #: Bound, in seconds, on the flush in ``close()`` and at interpreter exit.
        self.shutdown_timeout = _check_seconds("shutdown_timeout", shutdown_timeout)
        self._transport = HttpTransport(
            self.endpoint,
            timeout=_check_seconds("timeout", timeout),
            ca_bundle=ca_bundle,
            max_retry_after=(retry or _DEFAULT_RETRY).max_retry_after,
            pipeline_depth=_check_depth(pipeline_depth),
        )
        self._rejections = RateLimitedLog()
        self._hooks = make_hooks(
            self.name, self.domain, before_send=before_send, on_error=on_error, on_drop=on_drop
        )
        health = Health(
            self.name,
            _check_seconds("stall_warning_after", stall_warning_after),
            self._last_success_at,
        )
        self._poster = Poster(
            self.name,
            self.domain,
            self._transport,
            health=health,
            hooks=self._hooks,
            rejections=self._rejections,
        )
        spooled = spool is not None
        self._engine: DeliveryEngine[Item] = DeliveryEngine(
            self._poster.send,
            name=self.name,
            key=(self.endpoint, self.domain),
            batch_size=_check_count("batch_size", batch_size),
            flush_interval=_check_seconds("flush_interval", flush_interval),
            max_queue_size=_check_count("max_queue_size", max_queue_size),
            max_buffer_bytes=_check_count("max_buffer_bytes", max_buffer_bytes),
            size_of=_event_size,
            max_workers=_check_count("max_workers", max_workers),
            retry=retry,
            circuit_breaker=circuit_breaker,
            shutdown_timeout=self.shutdown_timeout,
            on_abort=self._transport.abort,
            on_fork=self._transport.reset,
            on_idle=self._transport.close,
            on_settle=self._poster.settled if spooled or self._hooks is not None else None,
            durable=spooled,
            pipeline=self._poster,
        )
        self._feeder = self._poster.feeder = self._make_feeder(
            spool, spool_max_age, deliver, max_queue_size, retry or _DEFAULT_RETRY
        )

    def _make_feeder(
        self,
        spool: Union[str, os.PathLike[str], Spool, None],
        max_age: float,
        deliver: bool,
        capacity: int,
        retry: RetryConfig,
    ) -> Optional[SpoolFeeder]:
        if spool is None:
            return None
        if isinstance(spool, os.PathLike):
            spool = os.fspath(spool)
        if not isinstance(spool, (str, Spool)):
            raise ConfigurationError(f"spool must be a file path or a Spool, got {spool!r}")
        return SpoolFeeder(
            spool,
            self._engine.put,
            name=self.name,
            capacity=capacity,
            max_age=_check_seconds("spool_max_age", max_age),
            deliver=bool(deliver),
            resend_in_doubt=retry.retry_connection_cuts,
            on_gone=None if self._hooks is None else self._hooks.dropped,
        )

    def __repr__(self) -> str:
        return f"PlausibleCollector({self.domain!r}, endpoint={self.endpoint!r})"

    def for_domain(self, domain: str) -> PlausibleCollector:
        """A new collector with the same settings, recording on another site.

        For example a separate site for bot traffic, so bots never create visitors in
        the main one.
        """
        return PlausibleCollector(domain, **self._settings)

    def _last_success_at(self) -> Optional[float]:
        return self._engine.last_success_at

    def _accept(self, event: Event) -> bool:
        if event.user_agent is not None and len(event.user_agent) > MAX_USER_AGENT_LENGTH:
            event = event._replace(user_agent=event.user_agent[:MAX_USER_AGENT_LENGTH])
        feeder = self._feeder
        if feeder is not None and feeder.append(
            encode_event(event, self.domain), event.user_agent, event.client_ip
        ):
            return True
        return self._engine.put(event)

    def collect(self, event: Event) -> bool:
        """Queue an already built event; an invalid one is counted and dropped."""
        if type(event) is ValidEvent:  # the middleware's page views: checked already
            return self._accept(event)
        try:
            event = validate_event(event)
        except InvalidEventError as exc:
            self._engine.count_dropped(DropReason.INVALID)
            self._rejections.log(
                logging.WARNING,
                f"invalid:{exc.field}",
                "%s: dropped an invalid event (field %s)",
                self.name,
                exc.field,
            )
            return False
        return self._accept(event)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything buffered now; True when all of it settled within ``timeout``.

        Settled, not delivered: an event that failed for good (a dead endpoint once the
        retries are spent, a 400) or was dropped also settles. What was delivered is in
        ``stats().sent`` and ``stats().last_success_at`` (``failed``, ``dropped`` and
        ``last_drop_reason`` say what was not; ``on_error``/``on_drop`` tell each
        event). ``None`` waits up to ``shutdown_timeout``.
        """
        return self._engine.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop accepting, flush within ``timeout`` (default ``shutdown_timeout``).

        Idempotent. Events left when the time is up are counted as ``dropped["shutdown"]``.
        """
        if self._feeder is not None:
            self._feeder.begin_close()
        self._engine.close(timeout)
        self._transport.close()
        if self._feeder is not None:
            self._feeder.close()  # rows not sent stay in the spool for the next deliverer

    @property
    def closed(self) -> bool:
        return self._engine.closed

    def stats(self) -> CollectorStats:
        """A snapshot of the counters; see :class:`~plausible_wsgi.CollectorStats`."""
        stats = self._engine.stats()
        if self._feeder is not None:
            stats = self._feeder.adjust(stats)
        if self._hooks is not None and self._hooks.errors:
            stats = dataclasses.replace(stats, hook_errors=self._hooks.errors)
        return stats

    def start(self) -> None:
        """Start delivering now rather than on first use; with a spool, begin taking
        over its backlog (rows of processes that died, of ``deliver=False`` writers)."""
        if self._feeder is not None:
            self._feeder.start()
