"""track() inside requests: the current request's data, per request, under real servers."""

from __future__ import annotations

import contextvars
import http.client
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Callable

import pytest
from wsgi_helpers import BROWSER_UA, call, make_environ

import plausible_wsgi as pw
from plausible_wsgi.context import RequestInfo, current_request
from plausible_wsgi.middleware import PlausibleMiddleware
from plausible_wsgi.testing import MemoryCollector

CONCURRENCY = 12


# Each server yields its port and the ``trusted_proxies`` the middleware needs there.


@contextmanager
def werkzeug_server(app: Any) -> Iterator[tuple[int, int]]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield server.port, 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def waitress_server(app: Any) -> Iterator[tuple[int, int]]:
    from waitress import wasyncore
    from waitress.server import create_server

    # waitress resolves X-Forwarded-For itself (and drops it from the environ) when
    # told to trust the proxy: REMOTE_ADDR is then the client, trusted_proxies=0.
    server: Any = create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=CONCURRENCY + 2,
        trusted_proxy="127.0.0.1",
        trusted_proxy_headers="x-forwarded-for",
    )
    stop = threading.Event()

    def serve() -> None:
        # The loop runs in short rounds so that it is stopped, and its sockets closed,
        # from its own thread: closing them from another one races the poll.
        try:
            while not stop.is_set():
                wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        finally:
            server.task_dispatcher.shutdown()
            wasyncore.close_all(server._map)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.effective_port, 0
    finally:
        stop.set()
        thread.join(timeout=10)


# (server, the trusted_proxies it needs: the middleware's options are fixed at build)
SERVERS = [
    pytest.param(werkzeug_server, 1, id="werkzeug-threaded"),
    pytest.param(waitress_server, 0, id="waitress"),
]


def get(port: int, path: str, user_agent: str, forwarded_for: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(
            "GET", path, headers={"User-Agent": user_agent, "X-Forwarded-For": forwarded_for}
        )
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return body
    finally:
        connection.close()


def fire(port: int, paths: list[str]) -> None:
    """One concurrent request per path; the i-th has its own UA and IP."""
    errors: list[BaseException] = []

    def one(i: int, path: str) -> None:
        try:
            get(port, path, f"{BROWSER_UA} visitor/{i}", f"198.51.100.{i + 1}")
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


def assert_no_cross_talk(events: list[pw.Event], name: str) -> None:
    """Every ``name`` event carries the UA and IP of the request that recorded it."""
    tracked = [event for event in events if event.name == name]
    assert len(tracked) == CONCURRENCY
    for event in tracked:
        assert event.props is not None
        i = int(event.props["visitor"])
        assert event.user_agent == f"{BROWSER_UA} visitor/{i}"
        assert event.client_ip == f"198.51.100.{i + 1}"
        assert event.url == f"http://127.0.0.1/v/{i}" or event.url.endswith(f"/v/{i}")


@pytest.mark.slow
@pytest.mark.parametrize(("server", "trusted_proxies"), SERVERS)
def test_track_in_concurrent_handlers_uses_each_requests_data(
    server: Any, trusted_proxies: int
) -> None:
    collector = MemoryCollector()
    # All handlers are in flight at once before any of them tracks.
    barrier = threading.Barrier(CONCURRENCY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        barrier.wait(timeout=20)
        visitor = environ["PATH_INFO"].rsplit("/", 1)[1]
        collector.track("Signup", props={"visitor": visitor})
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    middleware = PlausibleMiddleware(app, collector, trusted_proxies=trusted_proxies)
    with server(middleware) as (port, needed):
        assert needed == trusted_proxies
        fire(port, [f"/v/{i}" for i in range(CONCURRENCY)])
        events = collector.wait_for(2 * CONCURRENCY)
    assert_no_cross_talk(events, "Signup")
    pageviews = [event for event in events if event.name == "pageview"]
    assert sorted(event.client_ip or "" for event in pageviews) == sorted(
        f"198.51.100.{i + 1}" for i in range(CONCURRENCY)
    )
    assert current_request() is None


@pytest.mark.slow
@pytest.mark.parametrize(("server", "trusted_proxies"), SERVERS)
def test_track_while_streaming_concurrently(server: Any, trusted_proxies: int) -> None:
    collector = MemoryCollector()
    barrier = threading.Barrier(CONCURRENCY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        visitor = environ["PATH_INFO"].rsplit("/", 1)[1]
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<p>"
        # Every response is half sent when they all track.
        barrier.wait(timeout=20)
        collector.track("Streamed", props={"visitor": visitor})
        yield b"</p>"

    middleware = PlausibleMiddleware(app, collector, trusted_proxies=trusted_proxies)
    with server(middleware) as (port, needed):
        assert needed == trusted_proxies
        fire(port, [f"/v/{i}" for i in range(CONCURRENCY)])
        events = collector.wait_for(2 * CONCURRENCY)
    assert_no_cross_talk(events, "Streamed")


def test_request_data_reaches_every_track_method() -> None:
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        collector.track("Goal", props={"plan": "pro"}, revenue=pw.Revenue("EUR", "9.99"))
        collector.track_action("Exported")
        collector.track_pageview(url="https://example.com/virtual")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    middleware = PlausibleMiddleware(app, collector)
    environ = make_environ("/p", HTTP_REFERER="https://ref.example/", QUERY_STRING="email=x")
    call(middleware, environ)
    goal, action, virtual = collector.events
    for event in (goal, action, virtual):
        assert event.user_agent == BROWSER_UA
        assert event.client_ip == "203.0.113.9"
        assert event.referrer == "https://ref.example/"
    assert goal.url == action.url == "https://example.com/p"
    assert virtual.url == "https://example.com/virtual"
    assert action.interactive is False


def test_explicit_arguments_win_inside_a_request() -> None:
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        collector.track("Goal", url="https://example.com/x", user_agent="UA", client_ip="192.0.2.7")
        start_response("204 No Content", [])
        return []

    call(PlausibleMiddleware(app, collector), make_environ())
    [event] = collector.events
    assert (event.url, event.user_agent, event.client_ip) == (
        "https://example.com/x",
        "UA",
        "192.0.2.7",
    )


def test_outside_a_request_the_url_is_required() -> None:
    collector = MemoryCollector()
    assert current_request() is None
    with pytest.raises(pw.InvalidEventError, match="url"):
        collector.track("Signup")
    assert collector.track("Signup", url="https://example.com/signup")


def test_context_is_restored_after_each_request_and_nested_middlewares() -> None:
    outer_collector, inner_collector = MemoryCollector("outer"), MemoryCollector("inner")
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(current_request())
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b""]

    inner = PlausibleMiddleware(app, inner_collector, url_masks=[(r"/\d+", "/:n")])
    outer = PlausibleMiddleware(inner, outer_collector)
    call(outer, make_environ("/1"))
    call(outer, make_environ("/2"))
    assert [request.url for request in seen] == [
        "https://example.com/:n",
        "https://example.com/:n",
    ]
    assert current_request() is None


def test_the_current_request_carries_the_visitor_only_when_its_url_is_usable() -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(current_request())
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b""]

    middleware = PlausibleMiddleware(app, MemoryCollector("memory"))
    environ = make_environ("/a", QUERY_STRING="q=1", HTTP_REFERER="https://news.example.org/x?s=2")
    call(middleware, environ)
    call(middleware, make_environ("/b", HTTP_HOST="bad host", SERVER_NAME="bad host"))
    request, unusable = seen
    assert isinstance(request, RequestInfo)
    assert (request.url, request.referrer, request.user_agent, request.client_ip) == (
        "https://example.com/a",
        "https://news.example.org/x",
        BROWSER_UA,
        "203.0.113.9",
    )
    assert unusable is None  # no usable Host: nothing bound, nothing recorded
    assert middleware.stats().skipped == {"host": 1}


def test_copied_contexts_see_the_request() -> None:
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        context = contextvars.copy_context()
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(context.run(current_request)))
        thread.start()
        thread.join(timeout=10)
        collector.track("Seen", props={"in_thread": result[0].url})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    call(PlausibleMiddleware(app, collector), make_environ("/ctx"))
    [event] = collector.events
    assert event.props == {"in_thread": "https://example.com/ctx"}


def test_forged_host_requests_still_bind_the_request() -> None:
    """track() in a handler never raises because of a visitor's Host header."""
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        collector.track("Signup")
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b""]

    middleware = PlausibleMiddleware(app, collector, allowed_hosts=["example.com"])
    call(middleware, make_environ(HTTP_HOST="evil.test"))
    assert [event.name for event in collector.events] == ["Signup"]
    assert dict(middleware.stats().skipped) == {"host": 1}


def test_a_server_stepping_the_response_with_next_gets_the_request_bound() -> None:
    """Some servers call next() on the response instead of iterating it: every chunk
    is still made with the request bound, and the page view recorded at close()."""
    collector = MemoryCollector()
    seen: list[object] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        for chunk in (b"a", b"b"):
            seen.append(current_request())
            yield chunk

    middleware = PlausibleMiddleware(app, collector)
    response: Any = middleware(make_environ("/s"), lambda *args: None)
    chunks = [next(response), next(response)]
    with pytest.raises(StopIteration):
        next(response)
    response.close()
    assert chunks == [b"a", b"b"]
    assert [getattr(info, "url", None) for info in seen] == ["https://example.com/s"] * 2
    assert current_request() is None
    assert [event.name for event in collector.events] == ["pageview"]
