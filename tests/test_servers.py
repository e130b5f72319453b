"""The examples under real servers in a thread: waitress and the stdlib's wsgiref.

Requests go over loopback HTTP through the middleware; events reach a
PlausibleReceiver with the visitor's User-Agent and forwarded IP.
"""

from __future__ import annotations

import http.client
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import waitress.server

import plausible_wsgi as pw
from plausible_wsgi.receiver import PlausibleReceiver

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import flask_app
import wsgi_app

Serve = Callable[["WSGIApplication"], "contextmanager[int]"]

pytestmark = pytest.mark.slow


@contextmanager
def serve_waitress(app: WSGIApplication) -> Iterator[int]:
    # waitress removes X-Forwarded-For unless told which proxy to trust; it then sets
    # REMOTE_ADDR itself, so the middleware runs with trusted_proxies=0 behind it.
    server = waitress.server.create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=4,
        asyncore_loop_timeout=0.05,
        trusted_proxy="127.0.0.1",
        trusted_proxy_count=1,
        trusted_proxy_headers="x-forwarded-for",
    )
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield server.effective_port  # type: ignore[union-attr]
    finally:
        # Closed from its own loop thread: closing from here races with its poll().
        server.trigger.pull_trigger(server.close)  # type: ignore[union-attr]
        thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)  # type: ignore[union-attr]
        assert not thread.is_alive()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_wsgiref(app: WSGIApplication) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, WSGIServer, _QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgiref", daemon=True
    )
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


# (server, the middleware's trusted_proxies behind it)
SERVERS = [
    pytest.param(serve_waitress, 0, id="waitress"),
    pytest.param(serve_wsgiref, 1, id="wsgiref"),
]


def fetch(
    port: int, method: str, path: str, user_agent: str, ip: str, form: dict[str, str] | None = None
) -> int:
    headers = {"User-Agent": user_agent, "X-Forwarded-For": f"10.0.0.66, {ip}"}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def visitor(i: int) -> tuple[str, str]:
    return (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.{i}",
        f"198.51.100.{10 + i}",
    )


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


@pytest.mark.parametrize(("serve", "trusted_proxies"), SERVERS)
def test_flask_example(serve: Serve, trusted_proxies: int, receiver: PlausibleReceiver) -> None:
    app = flask_app.create_app(
        {
            "PLAUSIBLE_DOMAIN": "example.com",
            "PLAUSIBLE_ENDPOINT": receiver.url,
            "PLAUSIBLE_TRUSTED_PROXIES": trusted_proxies,
            "PLAUSIBLE_TRACK_ACTIONS": True,
        }
    )
    pages = ["/", "/pricing", "/items/1", "/about"]
    with serve(app) as port:
        for i, path in enumerate(pages):
            assert fetch(port, "GET", path, *visitor(i)) == 200
            assert fetch(port, "GET", "/api/items", *visitor(i)) == 200
        assert fetch(port, "POST", "/signup", *visitor(9), form={"plan": "pro"}) == 303
    with app.app_context():
        app.extensions["plausible"].middleware.close()

    events = receiver.wait_for(len(pages) + 2)
    assert len(receiver.events) == len(pages) + 2
    pageviews = [(e.pathname, e.user_agent, e.client_ip) for e in events if e.name == "pageview"]
    # Delivered concurrently: arrival order is not request order.
    assert sorted(pageviews) == sorted((path, *visitor(i)) for i, path in enumerate(pages))
    by_name = {e.name: e for e in events}
    assert by_name["Signup"].props == {"plan": "pro"}
    assert by_name["POST /signup"].interactive is False
    for name in ("Signup", "POST /signup"):
        assert (by_name[name].user_agent, by_name[name].client_ip) == visitor(9)
        assert by_name[name].pathname == "/signup"


@pytest.mark.parametrize(("serve", "trusted_proxies"), SERVERS)
def test_plain_wsgi_example(
    serve: Serve, trusted_proxies: int, receiver: PlausibleReceiver
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url)
    app = wsgi_app.make_app(collector, trusted_proxies=trusted_proxies)
    with serve(app) as port:
        assert fetch(port, "GET", "/", *visitor(1)) == 200
        assert fetch(port, "GET", "/hello/ana", *visitor(2)) == 200
        assert fetch(port, "GET", "/healthz", *visitor(3)) == 200
        assert fetch(port, "GET", "/missing", *visitor(3)) == 404
        assert fetch(port, "POST", "/subscribe", *visitor(4), form={}) == 303
    app.close()  # type: ignore[attr-defined]

    events = receiver.wait_for(3)
    assert len(receiver.events) == 3
    assert sorted((e.name, e.pathname, e.user_agent, e.client_ip) for e in events) == [
        ("Subscribe", "/subscribe", *visitor(4)),
        ("pageview", "/", *visitor(1)),
        ("pageview", "/hello/ana", *visitor(2)),
    ]
