"""plausible_wsgi.prometheus: stats() as Prometheus metrics, one process and several."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import plausible_wsgi as pw
from plausible_wsgi.prometheus import StatsCollector
from plausible_wsgi.receiver import PlausibleReceiver

VISITOR = {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "client_ip": "81.2.69.160"}


def test_scrape_time_metrics_match_stats() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        collector = pw.PlausibleCollector("example.com", endpoint=receiver.url)
        other = collector.for_domain("unknown.example")
        try:
            registry = CollectorRegistry()
            registry.register(StatsCollector(collector, other))
            for _ in range(3):
                collector.track("Signup", url="https://example.com/", **VISITOR)
            other.track("Signup", url="https://unknown.example/", **VISITOR)
            assert collector.flush(30.0)
            assert other.flush(30.0)
            text = generate_latest(registry).decode()
        finally:
            collector.close(0)
            other.close(0)
    assert 'plausible_wsgi_events_sent_total{collector="plausible:example.com"} 3.0' in text
    assert (
        'plausible_wsgi_events_dropped_total{collector="plausible:unknown.example",'
        'reason="server_dropped"} 1.0'
    ) in text
    assert 'plausible_wsgi_events_queued{collector="plausible:example.com"} 0.0' in text
    assert "# TYPE plausible_wsgi_events_sent_total counter" in text


WORKERS = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from plausible_wsgi.testing import MemoryCollector
from plausible_wsgi.prometheus import mirror

collector = MemoryCollector()  # name "memory"; counts every event as sent
exporter = mirror(collector, registry=CollectorRegistry(), interval=3600)
visitor = dict(url="https://example.com/", user_agent="M", client_ip="81.2.69.1")
collector.track("Parent", **visitor)
exporter.update()
pids = []
for n in (2, 3):  # two forked workers, like gunicorn's
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            collector.track("Worker", **visitor)
        exporter.update()
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
registry = CollectorRegistry()
MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_multiprocess_mode_sums_forked_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKERS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # 1 in the parent + 2 + 3 in the workers, each counted once.
    assert 'plausible_wsgi_events_sent_total{collector="memory"} 6.0' in result.stdout


def test_scrape_time_metrics_cover_the_spool_hooks_and_health(tmp_path: Path) -> None:
    def boom(event: pw.Event, reason: object, detail: str) -> None:
        raise RuntimeError("hook bug")

    with PlausibleReceiver(domains=["other.example"]) as receiver:
        collector = pw.PlausibleCollector(
            "example.com", endpoint=receiver.url, spool=str(tmp_path / "s.db"), on_drop=boom
        )
        try:
            registry = CollectorRegistry()
            registry.register(StatsCollector(collector))
            collector.track("Signup", url="https://example.com/", **VISITOR)
            assert collector.flush(30.0)
            text = generate_latest(registry).decode()
        finally:
            collector.close(0)
    name = 'collector="plausible:example.com"'
    assert f"plausible_wsgi_events_spooled_total{{{name}}} 0.0" in text
    assert f"plausible_wsgi_events_in_doubt_total{{{name}}} 0.0" in text
    assert f"plausible_wsgi_spool_backlog{{{name}}} 0.0" in text
    assert f"plausible_wsgi_hook_errors_total{{{name}}} 1.0" in text
    assert f"plausible_wsgi_last_success_timestamp_seconds{{{name}}} " in text
    assert "plausible_wsgi_last_failure_timestamp_seconds{" not in text  # none yet


PLAUSIBLE_WORKERS = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
import plausible_wsgi as pw
from plausible_wsgi.prometheus import mirror

collector = pw.PlausibleCollector("example.com", endpoint={url!r})
exporter = mirror(collector, registry=CollectorRegistry(), interval=3600)
visitor = dict(url="https://example.com/", user_agent="Mozilla/5.0 (X11)", client_ip="81.2.69.1")
collector.track("Parent", **visitor)
assert collector.flush(30)
exporter.update()
pids = []
for n in (2, 3):  # the child's counters start at zero: all it reports is its own
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            collector.track("Worker", **visitor)
        ok = collector.flush(30)
        exporter.update()
        os._exit(0 if ok else 1)
    pids.append(pid)
assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
registry = CollectorRegistry()
MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
collector.close(1)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_multiprocess_mode_counts_a_plausible_collectors_workers_once(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PLAUSIBLE_WORKERS.format(url=receiver.url))],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert len(receiver.events) == 6
    name = 'collector="plausible:example.com"'
    assert f"plausible_wsgi_events_sent_total{{{name}}} 6.0" in result.stdout, result.stdout
    assert 'reason="fork"' not in result.stdout
