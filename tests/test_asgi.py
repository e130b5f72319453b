"""plausible_wsgi.asgi.PlausibleMiddleware driven directly: the ASGI spec's edge cases,
the same decisions as WSGI, request scope in tasks and threads, lifespan."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

import pytest
from asgi_helpers import BROWSER_UA, Exchange, html_app, http_scope, request
from wsgi_helpers import call, make_environ

import plausible_wsgi as pw
from plausible_wsgi.asgi import PlausibleMiddleware
from plausible_wsgi.context import current_request
from plausible_wsgi.testing import MemoryCollector

GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)"


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def one(app: Any, scope: Optional[dict[str, Any]] = None, **options: Any) -> tuple[Any, Any]:
    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector, **options)
    run(request(middleware, scope or http_scope("/a", query=b"utm_source=x&token=secret")))
    return collector.events, middleware.stats()


def test_html_get_is_a_pageview_with_the_visitors_data() -> None:
    scope = http_scope(
        "/a",
        query=b"utm_source=x&token=secret",
        headers=[("Referer", "https://ref.example/p?q=1"), ("X-Forwarded-For", "198.51.100.7")],
    )
    events, stats = one(html_app(), scope, trusted_proxies=1)
    assert events == [
        pw.Event(
            kind=pw.EventKind.PAGEVIEW,
            name="pageview",
            url="https://example.com/a?utm_source=x",
            referrer="https://ref.example/p",
            user_agent=BROWSER_UA,
            client_ip="198.51.100.7",
        )
    ]
    assert stats.tracked == {"pageview": 1}


# The same requests through the WSGI and the ASGI middleware: the same events, the
# same counts (one decision core).
CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[int, str]]] = [
    # (path, request, options, (status, content type))
    ("/a", {}, {}, (200, "text/html")),
    ("/a", {"method": "HEAD"}, {}, (200, "text/html")),
    ("/a", {"method": "POST"}, {"track_actions": True}, (303, "text/plain")),
    ("/a", {}, {}, (500, "text/html")),
    ("/a", {}, {}, (200, "application/json")),
    ("/a", {}, {"track_404": True}, (404, "text/html")),
    ("/static/x.css", {}, {"exclude_paths": ("/static/",)}, (200, "text/css")),
    ("/f.pdf", {}, {"file_downloads": True}, (200, "application/pdf")),
    ("/a", {"user_agent": GPTBOT}, {}, (200, "text/html")),
    ("/a", {"user_agent": GPTBOT}, {"bots": "event"}, (200, "text/html")),
    ("/a", {"user_agent": None}, {}, (200, "text/html")),
    ("/a", {"host": "evil.example"}, {"allowed_hosts": ["example.com"]}, (200, "text/html")),
    ("/users/42", {}, {"url_masks": [(r"/users/\d+", "/users/:id")]}, (200, "text/html")),
    ("/caf\u00e9 x", {}, {}, (200, "text/html")),
]


@pytest.mark.parametrize(("path", "req", "options", "answer"), CASES)
def test_same_decisions_as_wsgi(
    path: str, req: dict[str, Any], options: dict[str, Any], answer: tuple[int, str]
) -> None:
    status, content_type = answer
    wsgi_collector, asgi_collector = MemoryCollector(), MemoryCollector()

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response(f"{status} X", [("Content-Type", content_type)])
        return [b"x"]

    wsgi = pw.PlausibleMiddleware(wsgi_app, wsgi_collector, **options)
    overrides: dict[str, Any] = {"REQUEST_METHOD": req.get("method", "GET")}
    if "user_agent" in req:
        overrides["HTTP_USER_AGENT"] = req["user_agent"]
    if "host" in req:
        overrides["HTTP_HOST"] = req["host"]
    wsgi_path = path.encode("utf-8").decode("latin-1")
    call(wsgi, make_environ(wsgi_path, QUERY_STRING="utm_source=x&a=1", **overrides))
    asgi = PlausibleMiddleware(html_app(b"x", status, content_type), asgi_collector, **options)
    run(request(asgi, http_scope(path, query=b"utm_source=x&a=1", **req)))
    assert asgi_collector.events == wsgi_collector.events
    assert asgi.stats() == wsgi.stats()


def test_streaming_is_recorded_when_the_last_body_is_sent() -> None:
    collector = MemoryCollector()
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html")],
            }
        )
        for part in (b"a", b"b"):
            await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": part, "more_body": True})
            seen.append(len(collector.events))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        seen.append(len(collector.events))
        await asyncio.sleep(0)  # the app may still run after the response completed

    middleware = PlausibleMiddleware(app, collector)
    exchange = run(request(middleware, http_scope()))
    assert exchange.body == b"ab"
    assert seen == [0, 0, 1]
    assert middleware.stats().tracked == {"pageview": 1}


def test_late_start_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        for _ in range(3):
            await asyncio.sleep(0)
        await html_app()(scope, receive, send)

    events, stats = one(app)
    assert len(events) == 1
    assert stats.requests == 1


def test_disconnect_mid_response_records_exactly_once() -> None:
    collector = MemoryCollector()
    gone = asyncio.Event

    async def scenario() -> Exchange:
        disconnect = gone()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            start = {"type": "http.response.start", "status": 200}
            await send({**start, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<p>", "more_body": True})
            disconnect.set()
            message = await receive()
            assert message["type"] == "http.disconnect"
            # a well-behaved app stops streaming and returns

        middleware = PlausibleMiddleware(app, collector)
        exchange = await request(middleware, http_scope(), Exchange(disconnect))
        assert middleware.stats().tracked == {"pageview": 1}
        return exchange

    run(scenario())
    assert len(collector.events) == 1


def test_an_exception_after_the_start_is_reraised_and_not_a_pageview() -> None:
    class Boom(Exception):
        pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>", "more_body": True})
        raise Boom

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    with pytest.raises(Boom):
        run(request(middleware, http_scope()))
    assert collector.events == []
    assert middleware.stats().skipped == {"exception": 1}


def test_an_exception_after_the_response_completed_keeps_the_pageview() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await html_app()(scope, receive, send)
        raise RuntimeError("after the response")

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    with pytest.raises(RuntimeError):
        run(request(middleware, http_scope()))
    assert len(collector.events) == 1
    assert middleware.stats().requests == 1


def test_no_response_at_all() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    events, stats = one(app)
    assert events == []
    assert stats.skipped == {"no_status": 1}


def test_trailers_pathsend_and_zerocopysend_complete_the_response() -> None:
    async def trailers(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200, "trailers": True}
        await send({**start, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"x"})
        assert not collector.events  # the trailers are still to come
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})
        assert len(collector.events) == 1

    async def pathsend(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.pathsend", "path": "/tmp/x.html"})
        assert len(collector.events) == 2

    async def zerocopysend(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.zerocopysend", "file": 0, "more_body": True})
        assert len(collector.events) == 2
        await send({"type": "http.response.zerocopysend", "file": 0, "more_body": False})
        assert len(collector.events) == 3

    collector = MemoryCollector()
    for app in (trailers, pathsend, zerocopysend):
        run(request(PlausibleMiddleware(app, collector), http_scope()))
    assert len(collector.events) == 3


def test_websocket_and_unknown_scopes_pass_through_untouched() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    for kind in ("websocket", "something-new"):
        scope = {"type": kind, "path": "/ws"}
        exchange = Exchange()
        run(middleware(scope, exchange.receive, exchange.send))
        assert seen[-1] == (scope, exchange.receive, exchange.send)
    assert middleware.stats().requests == 0


def test_should_track_gets_the_scope_status_and_headers() -> None:
    calls: list[tuple[Any, int, Any]] = []

    def should_track(scope: Any, status: int, headers: Any) -> bool:
        calls.append((scope["path"], status, headers))
        return False

    events, stats = one(html_app(), should_track=should_track)
    assert events == []
    assert calls == [("/a", 200, [("content-type", "text/html; charset=utf-8")])]
    assert stats.skipped == {"should_track": 1}


def test_action_names_come_from_the_route_in_the_scope() -> None:
    class Route:  # what FastAPI puts in scope["route"]
        path = "/items/{item_id}"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = Route()
        await html_app(status=201, content_type="application/json")(scope, receive, send)

    events, _ = one(app, http_scope("/items/7", method="POST"), track_actions=True)
    assert [e.name for e in events] == ["POST /items/{item_id}"]


# -- request scope -----------------------------------------------------------------------


def test_track_in_handlers_tasks_and_threads_uses_the_request() -> None:
    collector = MemoryCollector()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        collector.track("InHandler")
        await asyncio.create_task(_track_later(collector, "InTask"))
        await asyncio.to_thread(collector.track, "InThread")
        loop = asyncio.get_running_loop()
        # run_in_executor does not copy the context: no visitor there (url required).
        with pytest.raises(pw.InvalidEventError):
            await loop.run_in_executor(None, collector.track, "InExecutor")
        await html_app()(scope, receive, send)

    middleware = PlausibleMiddleware(app, collector)
    run(request(middleware, http_scope("/a", client=("198.51.100.4", 1))))
    names = [e.name for e in collector.events]
    assert names == ["InHandler", "InTask", "InThread", "pageview"]
    assert {(e.url, e.client_ip, e.user_agent) for e in collector.events} == {
        ("https://example.com/a", "198.51.100.4", BROWSER_UA)
    }
    assert current_request() is None


async def _track_later(collector: MemoryCollector, name: str) -> None:
    await asyncio.sleep(0)
    collector.track(name)


# -- lifespan ----------------------------------------------------------------------------


class SlowFlushCollector(MemoryCollector):
    """``flush`` waits until the event loop has run a coroutine: deadlocks (and the
    test times out) if the middleware flushed on the loop's own thread."""

    def __init__(self) -> None:
        super().__init__()
        self.loop_ran = threading.Event()
        self.flushed_on: Optional[str] = None

    def flush(self, timeout: Optional[float] = None) -> bool:
        self.flushed_on = threading.current_thread().name
        assert self.loop_ran.wait(timeout=20)
        return super().flush(timeout)


def test_lifespan_shutdown_flushes_in_a_thread_before_completing() -> None:
    collector = SlowFlushCollector()
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def server() -> None:
        middleware = PlausibleMiddleware(app, collector)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})

        async def send(message: dict[str, Any]) -> None:
            order.append(message["type"] + (" closed" if collector.closed else ""))

        async def tick() -> None:
            while not collector.loop_ran.is_set():
                await asyncio.sleep(0.01)
                if collector.flushed_on is not None:
                    collector.loop_ran.set()

        ticker = asyncio.create_task(tick())
        await middleware({"type": "lifespan"}, inbox.get, send)
        await ticker

    run(server())
    assert order == ["lifespan.startup.complete", "lifespan.shutdown.complete closed"]
    assert collector.flushed_on != threading.main_thread().name


def test_repeated_forwarded_headers_are_one_list_and_the_first_host_counts() -> None:
    scope = http_scope(
        "/a",
        host=None,
        headers=[
            ("Host", "example.com"),
            ("Host", "evil.example"),
            ("X-Forwarded-For", "10.0.0.1, 198.51.100.1"),
            ("X-Forwarded-For", "198.51.100.2"),
        ],
    )
    events, _ = one(html_app(), scope, trusted_proxies=2)
    assert [(e.url, e.client_ip) for e in events] == [("https://example.com/a", "198.51.100.1")]


def test_malformed_response_headers_reach_the_server_unchanged() -> None:
    """The middleware does not judge the app's messages; it only fails to read them."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [("content-type", "text/html")]})  # str, not bytes
        await send({"type": "http.response.body", "body": b"x"})

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    exchange = run(request(middleware, http_scope()))
    assert exchange.sent[0]["headers"] == [("content-type", "text/html")]
    assert middleware.stats().errors == 1
    assert middleware.stats().skipped == {"content_type": 1}


def test_a_remembered_decision_serves_each_visitor_with_their_own_fields() -> None:
    collector = MemoryCollector()
    middleware = PlausibleMiddleware(html_app(), collector)
    visitors = [("UA one", "198.51.100.1", "https://a.example/"), ("UA two", "198.51.100.2", None)]

    async def requests() -> None:
        for agent, address, referrer in visitors * 2:
            headers = [("Referer", referrer)] if referrer else []
            scope = http_scope("/a", user_agent=agent, client=(address, 1), headers=headers)
            await request(middleware, scope)

    run(requests())
    assert [(e.user_agent, e.client_ip, e.referrer) for e in collector.events] == visitors * 2
    pages = middleware.recorder.pages
    page = pages.get(pages.targets()[0])
    assert page is not None
    assert len(page.decisions) == 1
