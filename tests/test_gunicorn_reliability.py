"""A real gunicorn under worker churn: requests served == page views recorded.

tests/test_gunicorn.py sends ``SIGTERM`` after the load; here workers come and go
*during* it: ``max_requests`` recycling, a ``SIGHUP`` reload, and ``SIGTERM`` while
clients are still sending. Events wait in each worker's buffer (``flush_interval``
60 s), so every page view that arrives was delivered by a worker's exit flush.
"""

from __future__ import annotations

import collections
import http.client
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn_proc import Gunicorn
from sink import wait_until

from plausible_wsgi.receiver import PlausibleReceiver

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


def check_recorded(receiver: PlausibleReceiver, served: list[str], scenario: str) -> None:
    recorded = collections.Counter(e.user_agent for e in receiver.events)
    extra = sum(n - 1 for n in recorded.values() if n > 1)
    lost = len(set(served) - set(recorded))
    print(
        f"FIGURE gunicorn-{scenario}: served={len(served)} recorded={sum(recorded.values())} "
        f"duplicated={extra} lost={lost}"
    )
    assert len(served) == len(set(served))
    assert lost == 0
    assert extra == 0
    assert set(recorded) == set(served)
    assert not receiver.rejected


def test_max_requests_recycling_loses_no_page_view(
    receiver: PlausibleReceiver, tmp_path: Path
) -> None:
    server = Gunicorn(
        receiver,
        tmp_path,
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--preload",
        "--max-requests",
        "7",
        "--max-requests-jitter",
        "0",
    )
    try:
        for i in range(40):
            assert server.visit(i)
        # Every recycled worker flushed on its way out, before the final SIGTERM.
        wait_until(lambda: len(receiver.events) >= 28, timeout=15)
        recycled = server.workers_started() - 2
    finally:
        server.stop()
    print(f"FIGURE gunicorn-max-requests: workers_recycled={recycled}")
    assert recycled >= 3
    check_recorded(receiver, server.served, "max-requests")


def test_sighup_reload_during_load_loses_no_page_view(
    receiver: PlausibleReceiver, tmp_path: Path
) -> None:
    server = Gunicorn(
        receiver, tmp_path, "--workers", "2", "--worker-class", "gthread", "--threads", "4"
    )
    try:
        for i in range(20):
            assert server.visit(i)
        server.proc.send_signal(signal.SIGHUP)
        # Old workers stop gracefully (and flush) while new ones boot; keep visiting.
        for i in range(20, 60):
            assert server.visit(i)
        wait_until(lambda: len(receiver.events) >= 20, timeout=15)
        booted = server.workers_started()
    finally:
        server.stop()
    print(f"FIGURE gunicorn-sighup: workers_booted={booted}")
    assert booted >= 4
    check_recorded(receiver, server.served, "sighup")


def test_sigterm_while_clients_are_sending_loses_no_page_view(
    receiver: PlausibleReceiver, tmp_path: Path
) -> None:
    server = Gunicorn(
        receiver,
        tmp_path,
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--preload",
    )
    counter = iter(range(10**6))
    counter_lock = threading.Lock()
    failures: collections.Counter[str] = collections.Counter()

    def client() -> None:
        while True:
            with counter_lock:
                i = next(counter)
            try:
                server.visit(i)
            except (OSError, http.client.HTTPException) as exc:
                failures[type(exc).__name__] += 1
                return  # the server is going away

    clients = [threading.Thread(target=client) for _ in range(6)]
    try:
        for thread in clients:
            thread.start()
        wait_until(lambda: len(server.served) >= 150, timeout=30)
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for thread in clients:
            thread.join(30)
        server.stop()
        stopped = time.monotonic() - started
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    print(
        f"FIGURE gunicorn-sigterm-under-load: stop_seconds={stopped:.2f} failures={dict(failures)}"
    )
    check_recorded(receiver, server.served, "sigterm-under-load")
