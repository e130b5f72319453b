"""Collector counters as Prometheus metrics, through ``prometheus_client`` (extra ``prometheus``).

Two ways, for the two ways a Python app is run:

- **One process** (waitress, ``gunicorn --workers 1``, a worker process with its own
  scrape port): register :class:`StatsCollector`; it reads ``collector.stats()`` at
  scrape time, so the figures are exact and cost nothing between scrapes::

      from prometheus_client import REGISTRY
      REGISTRY.register(StatsCollector(collector))

- **Several workers** (gunicorn, uWSGI): each worker's counters live in its own memory
  and a scrape reaches one worker, so a scrape-time collector would show one random
  worker at a time. Here prometheus_client's *multiprocess mode* is the right tool: set
  ``PROMETHEUS_MULTIPROC_DIR`` before the app imports ``prometheus_client``, call
  :func:`mirror` in each worker, and serve ``MultiProcessCollector`` (see
  prometheus_client's docs). Counters are written as increments, so totals survive a
  worker's restart and sum across workers; ``queued``/``in_flight`` are ``livesum``
  gauges (dead workers drop out). Per-worker labels were rejected: a worker's series
  would vanish with it and a scrape would still see one worker at a time.

Metrics (label ``collector``, the collector's ``name``):
``plausible_wsgi_events_sent_total``, ``..._failed_total``, ``..._retried_total``,
``..._dropped_total`` (label ``reason``), ``..._spooled_total``, ``..._in_doubt_total``,
``plausible_wsgi_hook_errors_total``; gauges ``plausible_wsgi_events_queued``,
``plausible_wsgi_events_in_flight``, ``plausible_wsgi_spool_backlog`` (with a spool; the
largest across workers, who share the file) and
``plausible_wsgi_last_success_timestamp_seconds`` / ``..._last_failure_...`` (the latest
across workers; absent until it happens). ``last_drop_reason`` is a string, not a metric:
``..._dropped_total`` by reason says more.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as _PromCollector

from .collector import Collector, PlausibleCollector
from .stats import CollectorStats

__all__ = ["StatsCollector", "mirror"]

_PREFIX = "plausible_wsgi_events"
_COUNTERS = (
    ("sent", "Events Plausible accepted and counts."),
    ("failed", "Events that failed for good (rejected, or out of retries)."),
    ("retried", "Retry attempts made."),
    ("spooled", "Events left in the spool for another deliverer."),
    ("in_doubt", "Spooled events taken over after a process died mid-POST."),
)
_GAUGES = (
    ("queued", "Events buffered, waiting for a worker."),
    ("in_flight", "Events being delivered right now."),
)
#: (stats field, metric name, help): absent while the field is None; in multiprocess
#: mode the largest across workers (a shared spool's size, the latest time).
_OPTIONAL = (
    ("spool_backlog", "plausible_wsgi_spool_backlog", "Rows in the spool file."),
    (
        "last_success_at",
        "plausible_wsgi_last_success_timestamp_seconds",
        "When Plausible last answered 2xx.",
    ),
    (
        "last_failure_at",
        "plausible_wsgi_last_failure_timestamp_seconds",
        "When a delivery attempt last failed.",
    ),
)
_HOOK_ERRORS = ("plausible_wsgi_hook_errors", "Calls of before_send/on_error/on_drop that raised.")
_DROPPED = "Events not delivered, by reason."


class StatsCollector(_PromCollector):
    """A prometheus_client collector reading ``stats()`` of each collector at scrape time."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        snapshots = [(c.name, c.stats()) for c in self.collectors]
        for field, doc in _COUNTERS:
            family = CounterMetricFamily(f"{_PREFIX}_{field}", doc, labels=["collector"])
            for name, stats in snapshots:
                family.add_metric([name], getattr(stats, field))
            yield family
        dropped = CounterMetricFamily(
            f"{_PREFIX}_dropped", _DROPPED, labels=["collector", "reason"]
        )
        for name, stats in snapshots:
            for reason, count in sorted(stats.dropped.items()):
                dropped.add_metric([name, reason], count)
        yield dropped
        for field, doc in _GAUGES:
            gauge = GaugeMetricFamily(f"{_PREFIX}_{field}", doc, labels=["collector"])
            for name, stats in snapshots:
                gauge.add_metric([name], getattr(stats, field))
            yield gauge
        hook_errors = CounterMetricFamily(*_HOOK_ERRORS, labels=["collector"])
        for name, stats in snapshots:
            hook_errors.add_metric([name], stats.hook_errors)
        yield hook_errors
        for field, metric, doc in _OPTIONAL:
            gauge = GaugeMetricFamily(metric, doc, labels=["collector"])
            for name, stats in snapshots:
                value = getattr(stats, field)
                if value is not None:
                    gauge.add_metric([name], value)
            yield gauge


class _Mirror:
    """Copies ``stats()`` into prometheus_client metric objects as increments."""

    def __init__(self, collectors: Iterable[Collector], registry: CollectorRegistry) -> None:
        self.collectors = tuple(collectors)
        self.counters = {
            field: Counter(f"{_PREFIX}_{field}", doc, ["collector"], registry=registry)
            for field, doc in _COUNTERS
        }
        self.dropped = Counter(
            f"{_PREFIX}_dropped", _DROPPED, ["collector", "reason"], registry=registry
        )
        self.gauges = {
            field: Gauge(
                f"{_PREFIX}_{field}",
                doc,
                ["collector"],
                registry=registry,
                multiprocess_mode="livesum",
            )
            for field, doc in _GAUGES
        }
        self.hook_errors = Counter(*_HOOK_ERRORS, ["collector"], registry=registry)
        self.optional = {
            field: Gauge(metric, doc, ["collector"], registry=registry, multiprocess_mode="max")
            for field, metric, doc in _OPTIONAL
        }
        self._last: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def _add(self, field: str, counter: Counter, labels: tuple[str, ...], value: float) -> None:
        key = (field, *labels)
        last = self._last.get(key, 0.0)
        if value < last:  # the collector's counters restarted (a new process)
            last = 0.0
        if value > last:
            counter.labels(*labels).inc(value - last)
        self._last[key] = value

    def update(self) -> None:
        """Write the current figures; call it periodically (``mirror`` does)."""
        with self._lock:
            for collector in self.collectors:
                stats: CollectorStats = collector.stats()
                name = collector.name
                for field, counter in self.counters.items():
                    self._add(field, counter, (name,), getattr(stats, field))
                for reason, count in stats.dropped.items():
                    self._add("dropped", self.dropped, (name, reason), count)
                for field, gauge in self.gauges.items():
                    gauge.labels(name).set(getattr(stats, field))
                self._add("hook_errors", self.hook_errors, (name,), stats.hook_errors)
                for field, gauge in self.optional.items():
                    value = getattr(stats, field)
                    if value is not None:
                        gauge.labels(name).set(value)

    def after_fork(self) -> None:
        """In a forked worker: the parent's figures are written already (by it).

        A :class:`PlausibleCollector`'s counters start at zero in the child, so every
        count it reports is new; other collectors (``MemoryCollector``) keep the
        parent's counts, of which only the increments are new.
        """
        self._lock = threading.Lock()
        restarted = {c.name for c in self.collectors if isinstance(c, PlausibleCollector)}
        self._last = {key: v for key, v in self._last.items() if key[1] not in restarted}


def mirror(
    *collectors: Collector,
    registry: Optional[CollectorRegistry] = None,
    interval: float = 10.0,
) -> _Mirror:
    """Copy the collectors' counters into prometheus_client metrics every ``interval``
    seconds, from a daemon thread (restarted in forked workers) — for multiprocess mode.

    :param registry: where the metric objects register (default: prometheus_client's
        global ``REGISTRY``; in multiprocess mode they write to the shared directory).
    """
    from prometheus_client import REGISTRY  # noqa: PLC0415 - the default, read when called

    target = _Mirror(collectors, REGISTRY if registry is None else registry)
    _start_thread(target, interval)
    if hasattr(os, "register_at_fork"):

        def in_child() -> None:
            target.after_fork()
            _start_thread(target, interval)

        os.register_at_fork(after_in_child=in_child)
    return target


def _start_thread(target: _Mirror, interval: float) -> None:
    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            target.update()

    threading.Thread(target=loop, name="plausible-prometheus", daemon=True).start()
