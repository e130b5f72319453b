"""A real gunicorn serving examples/flask_app.py: every page view arrives, none lost.

Events wait in each worker's buffer (``flush_interval`` 60 s, a big batch), so what
reaches the receiver was sent by the exit flush after ``SIGTERM`` — the
``worker_exit`` hook of examples/gunicorn.conf.py, or the interpreter-exit flush.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn_proc import Gunicorn, get, visitor

from plausible_wsgi.receiver import PlausibleReceiver

REQUESTS = 40
PAGES = ("/", "/pricing", "/about", "/items/1", "/items/2")
NOT_PAGES = ("/healthz", "/api/items", "/static/style.css", "/items/99")

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


@pytest.mark.parametrize(
    ("worker_class", "preload"),
    [
        pytest.param("sync", True, id="sync-preload"),
        pytest.param("gthread", True, id="gthread-preload"),
        pytest.param("gthread", False, id="gthread"),
    ],
)
def test_every_pageview_arrives_after_sigterm(
    receiver: PlausibleReceiver, tmp_path: Path, worker_class: str, preload: bool
) -> None:
    server = Gunicorn(
        receiver,
        tmp_path,
        "--workers",
        "2",
        "--worker-class",
        worker_class,
        *(["--threads", "4"] if worker_class == "gthread" else []),
        *(["--preload"] if preload else []),
    )
    try:
        expected = set()
        for i in range(REQUESTS):
            user_agent, ip = visitor(i)
            path = PAGES[i % len(PAGES)]
            # The left entry is the client's claim; the trusted proxy appended the right one.
            headers = {"User-Agent": user_agent, "X-Forwarded-For": f"10.66.6.6, {ip}"}
            status, content_type = get(server.port, path, headers)
            assert status == 200, path
            assert content_type.startswith("text/html")
            expected.add((path, user_agent, ip))
            not_page = NOT_PAGES[i % len(NOT_PAGES)]
            get(server.port, not_page, headers)
        # All of it still buffered in the workers: what arrives comes from the exit flush.
        assert not receiver.attempts
    finally:
        output = server.stop()

    received = {(e.pathname, e.user_agent, e.client_ip) for e in receiver.events}
    assert len(receiver.events) == REQUESTS, output
    assert {e.name for e in receiver.events} == {"pageview"}
    assert received == expected
    assert not receiver.dropped
    assert not receiver.rejected
