"""PlausibleMiddleware: page-view rules, the WSGI contract, errors, lifecycle.

Every request here runs through werkzeug's ``LintMiddleware`` on both sides of the
middleware (pytest turns its warnings into errors), so a WSGI-contract slip fails.
"""

from __future__ import annotations

import gc
import io
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

import pytest
from werkzeug.middleware.lint import LintMiddleware
from wsgi_helpers import (
    BROWSER_UA,
    HTML,
    App,
    call,
    html_app,
    linted,
    make_environ,
    track,
)

import plausible_wsgi as pw
from plausible_wsgi.context import current_request
from plausible_wsgi.middleware import MiddlewareStats, PlausibleMiddleware
from plausible_wsgi.stats import CollectorStats
from plausible_wsgi.testing import MemoryCollector


class SpyIterable:
    """A response iterable that records how the server treated it."""

    def __init__(self, chunks: Iterable[bytes], close_error: Optional[Exception] = None) -> None:
        self.chunks = list(chunks)
        self.close_error = close_error
        self.closed = 0
        self.seen_requests: list[Optional[str]] = []

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            request = current_request()
            self.seen_requests.append(request.url if request else None)
            yield chunk

    def close(self) -> None:
        self.closed += 1
        if self.close_error is not None:
            raise self.close_error


# -- page-view rules ---------------------------------------------------------------------


def test_html_get_is_a_pageview_with_the_visitors_data() -> None:
    environ = make_environ("/blog/post", HTTP_REFERER="https://news.example.org/")
    events, stats, result = track(environ)
    assert result.status == "200 OK"
    assert result.body == b"<p>hi</p>"
    [event] = events
    assert event.kind is pw.EventKind.PAGEVIEW
    assert event.name == "pageview"
    assert event.url == "https://example.com/blog/post"
    assert event.referrer == "https://news.example.org/"
    assert event.user_agent == BROWSER_UA
    assert event.client_ip == "203.0.113.9"
    assert stats.requests == 1
    assert dict(stats.tracked) == {"pageview": 1}
    assert dict(stats.skipped) == {}
    assert stats.errors == 0


@pytest.mark.parametrize(
    ("environ", "app", "options", "reason"),
    [
        pytest.param(make_environ(REQUEST_METHOD="POST"), None, {}, "method", id="post"),
        pytest.param(make_environ(REQUEST_METHOD="HEAD"), None, {}, "method", id="head"),
        pytest.param(
            make_environ(), html_app(status="302 Found", body=b""), {}, "status", id="redirect"
        ),
        pytest.param(
            make_environ(), html_app(status="404 Not Found"), {}, "status", id="404-by-default"
        ),
        pytest.param(
            make_environ(), html_app(status="500 Internal Server Error"), {}, "status", id="500"
        ),
        pytest.param(
            make_environ(),
            html_app(headers=[("Content-Type", "application/json")]),
            {},
            "content_type",
            id="json",
        ),
        pytest.param(make_environ(), html_app(headers=[]), {}, "content_type", id="no-type"),
        pytest.param(
            make_environ("/static/app.css"),
            None,
            {"exclude_paths": ["/static/"]},
            "excluded",
            id="excluded-prefix",
        ),
        pytest.param(
            make_environ("/healthz"),
            None,
            {"exclude_paths": [re.compile(r"^/health")]},
            "excluded",
            id="excluded-regex",
        ),
        pytest.param(
            make_environ(),
            None,
            {"should_track": lambda environ, status, headers: False},
            "should_track",
            id="should-track-false",
        ),
        pytest.param(
            make_environ(HTTP_USER_AGENT=None), None, {}, "bot:other_bot", id="no-user-agent"
        ),
        pytest.param(
            make_environ(HTTP_HOST="evil.test"),
            None,
            {"allowed_hosts": ["example.com"]},
            "host",
            id="forged-host",
        ),
    ],
)
def test_requests_that_are_not_pageviews_are_counted(
    environ: dict[str, Any], app: Optional[App], options: dict[str, Any], reason: str
) -> None:
    events, stats, _ = track(environ, app, **options)
    assert events == []
    assert dict(stats.skipped) == {reason: 1}
    assert stats.requests == 1


def test_options_widen_the_rules() -> None:
    app = html_app(status="203 Non-Authoritative Information", headers=[("Content-Type", "X/Y")])
    events, _, _ = track(
        make_environ(REQUEST_METHOD="HEAD"),
        app,
        methods=["head"],
        statuses={203},
        content_types=["x/y"],
    )
    assert [event.name for event in events] == ["pageview"]


def test_exclusion_matches_the_full_path_before_masking() -> None:
    environ = make_environ("/health", SCRIPT_NAME="/app")
    _, stats, _ = track(environ, exclude_paths=["/app/health"], url_masks=[(r"/app", "/x")])
    assert dict(stats.skipped) == {"excluded": 1}


def test_should_track_sees_a_copy_of_the_environ_status_and_headers() -> None:
    seen: list[tuple[Any, ...]] = []

    def should_track(environ: dict[str, Any], status: int, headers: Any) -> bool:
        seen.append((environ["PATH_INFO"], environ.get("app.user"), status, headers))
        return True

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["app.user"] = "ada"
        start_response("200 OK", list(HTML))
        return [b"x"]

    events, _, _ = track(make_environ("/p"), app, should_track=should_track)
    assert len(events) == 1
    assert seen == [("/p", "ada", 200, HTML)]


def test_a_raising_should_track_is_an_error_not_an_exception() -> None:
    def should_track(environ: dict[str, Any], status: int, headers: Any) -> bool:
        raise RuntimeError("boom")

    events, stats, result = track(should_track=should_track)
    assert result.body == b"<p>hi</p>"
    assert events == []
    assert stats.errors == 1
    assert dict(stats.skipped) == {"should_track": 1}


def test_404_goal() -> None:
    app = html_app(status="404 Not Found")
    environ = make_environ("/users/42/nope", QUERY_STRING="ref=x")
    events, stats, _ = track(
        environ, app, track_404=True, url_masks=[(r"/users/\d+", "/users/:id")]
    )
    [event] = events
    assert event.kind is pw.EventKind.CUSTOM
    assert event.name == "404"
    assert event.props == {"path": "/users/:id/nope"}
    assert event.url == "https://example.com/users/:id/nope?ref=x"
    assert dict(stats.tracked) == {"404": 1}


def test_404_goal_needs_an_html_page() -> None:
    app = html_app(status="404 Not Found", headers=[("Content-Type", "application/json")])
    events, stats, _ = track(app=app, track_404=True)
    assert events == []
    assert dict(stats.skipped) == {"status": 1}


@pytest.mark.parametrize(
    ("method", "status", "route", "expected"),
    [
        pytest.param("POST", "201 Created", "/users/<int:id>", "POST /users/<int:id>", id="route"),
        pytest.param("DELETE", "204 No Content", None, "DELETE /users/:id", id="masked-path"),
        pytest.param("POST", "303 See Other", None, "POST /users/:id", id="post-redirect-get"),
        pytest.param("POST", "400 Bad Request", None, None, id="failed"),
        pytest.param("OPTIONS", "200 OK", None, None, id="safe-method"),
    ],
)
def test_server_actions(
    method: str, status: str, route: Optional[str], expected: Optional[str]
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if route is not None:
            environ["plausible_wsgi.route"] = route
        if status.startswith("204"):
            start_response(status, [("Content-Length", "0")])
            return []
        start_response(status, [("Content-Type", "application/json")])
        return [b"{}"]

    environ = make_environ("/users/42", REQUEST_METHOD=method)
    events, _, _ = track(
        environ, app, track_actions=True, url_masks=[(r"/users/\d+", "/users/:id")]
    )
    if expected is None:
        assert events == []
    else:
        [event] = events
        assert event.kind is pw.EventKind.ACTION
        assert event.name == expected
        assert event.interactive is False
        assert event.url == "https://example.com/users/:id"


def test_actions_are_off_by_default() -> None:
    _, stats, _ = track(make_environ(REQUEST_METHOD="POST"))
    assert dict(stats.skipped) == {"method": 1}


# -- the WSGI contract -------------------------------------------------------------------


def test_response_passes_through_unchanged() -> None:
    headers = [("Content-Type", "text/html"), ("X-Custom", "1"), ("Set-Cookie", "a=b")]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [b"one", b"", b"two"]

    bare = call(LintMiddleware(app), make_environ())
    wrapped, _ = linted(app, MemoryCollector())
    through = call(wrapped, make_environ())
    assert (through.status, through.headers, through.body) == (bare.status, headers, b"onetwo")


def test_generator_app_calls_start_response_late_and_tracks_inside_iteration() -> None:
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", list(HTML))
        yield b"<p>"
        collector.track("Streamed", props={"n": 1})
        yield b"</p>"

    wrapped, middleware = linted(app, collector)
    result = call(wrapped, make_environ("/stream"))
    assert result.body == b"<p></p>"
    names = [(event.name, event.url, event.client_ip) for event in collector.events]
    assert names == [
        ("Streamed", "https://example.com/stream", "203.0.113.9"),
        ("pageview", "https://example.com/stream", "203.0.113.9"),
    ]
    assert current_request() is None
    assert middleware.stats().tracked == {"pageview": 1}


def test_request_context_is_bound_in_the_app_during_iteration_and_in_close() -> None:
    seen: list[Optional[str]] = []

    class Closing(SpyIterable):
        def close(self) -> None:
            request = current_request()
            seen.append(request.url if request else None)
            super().close()

    closing = Closing([b"a", b"b"])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = current_request()
        seen.append(request.url if request else None)
        start_response("200 OK", list(HTML))
        return closing

    wrapped, _ = linted(app, MemoryCollector())
    call(wrapped, make_environ("/ctx"))
    url = "https://example.com/ctx"
    assert seen == [url, url]
    assert closing.seen_requests == [url, url]
    assert current_request() is None


def test_the_request_is_bound_only_while_the_app_runs_not_between_server_steps() -> None:
    """Design pin: the visitor is bound around each step of the application (its call,
    each chunk, close()) and unbound in between. Binding once from the call to close()
    would cost fewer context switches (Flask's ClosingIterator makes three steps) but
    would leave the visitor current in the server's own code between steps, and for
    good in a thread whose server never calls close()."""
    seen: list[Optional[str]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", list(HTML))
        for chunk in (b"<p>", b"</p>"):
            request = current_request()
            seen.append(request.url if request else None)
            yield chunk

    middleware = PlausibleMiddleware(app, MemoryCollector())
    iterable = middleware(make_environ("/steps"), lambda *a: lambda data: None)
    between: list[object] = [current_request()]
    for _chunk in iterable:
        between.append(current_request())
    between.append(current_request())
    iterable.close()  # type: ignore[attr-defined]
    assert seen == ["https://example.com/steps"] * 2
    assert between == [None] * 4


def test_write_callable_and_exc_info_are_forwarded() -> None:
    received: list[Any] = []

    def server_start_response(status: str, headers: Any, *exc_info: Any) -> Any:
        received.append((status, exc_info))
        return received.append

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        write = start_response("200 OK", list(HTML))
        write(b"early")
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("500 Internal Server Error", list(HTML), sys.exc_info())
        return [b"error page"]

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    iterable = middleware(make_environ(), server_start_response)
    assert list(iterable) == [b"error page"]
    iterable.close()  # type: ignore[attr-defined]
    assert received[0] == ("200 OK", ())
    assert received[1] == b"early"
    status, exc_info = received[2]
    assert status == "500 Internal Server Error"
    assert len(exc_info) == 1
    assert exc_info[0][0] is ValueError
    assert dict(middleware.stats().skipped) == {"status": 1}


def test_exc_info_error_page_through_lint() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            raise KeyError("x")
        except KeyError:
            start_response("500 Internal Server Error", list(HTML), sys.exc_info())
        return [b"oops"]

    events, stats, result = track(app=app)
    assert result.status == "500 Internal Server Error"
    assert result.exc_info is not None
    assert events == []
    assert dict(stats.skipped) == {"status": 1}


class AppError(Exception):
    pass


def test_app_exception_is_reraised_unchanged() -> None:
    error = AppError("from the app")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise error

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    with pytest.raises(AppError) as caught:
        middleware(make_environ(), lambda *a: None)
    assert caught.value is error
    assert current_request() is None
    assert collector.events == []
    assert dict(middleware.stats().skipped) == {"exception": 1}


def test_exception_during_iteration_is_reraised_and_not_a_pageview() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", list(HTML))
        yield b"<p>"
        raise AppError("mid-stream")

    collector = MemoryCollector()
    wrapped, middleware = linted(app, collector)
    with pytest.raises(AppError, match="mid-stream"):
        call(wrapped, make_environ())
    assert current_request() is None
    assert collector.events == []
    assert dict(middleware.stats().skipped) == {"exception": 1}


def test_raising_close_still_records_exactly_once() -> None:
    spy = SpyIterable([b"<p>x</p>"], close_error=AppError("close failed"))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", list(HTML))
        return spy

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    iterable = middleware(make_environ(), lambda *a: lambda data: None)
    assert b"".join(iterable) == b"<p>x</p>"
    with pytest.raises(AppError, match="close failed"):
        iterable.close()  # type: ignore[attr-defined]
    iterable.close()  # type: ignore[attr-defined]
    assert spy.closed == 1
    assert [event.name for event in collector.events] == ["pageview"]
    assert middleware.stats().requests == 1
    assert current_request() is None


def test_closed_without_iteration_client_went_away() -> None:
    spy = SpyIterable([b"a"])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", list(HTML))
        return spy

    collector = MemoryCollector()
    wrapped, _ = linted(app, collector)
    iterable = wrapped(make_environ(), lambda *a: lambda data: None)
    iterable.close()  # type: ignore[attr-defined]
    assert spy.closed == 1
    assert [event.name for event in collector.events] == ["pageview"]


def test_nothing_is_recorded_before_close() -> None:
    collector = MemoryCollector()
    middleware = PlausibleMiddleware(html_app(), collector)
    iterable = middleware(make_environ(), lambda *a: lambda data: None)
    assert list(iterable) == [b"<p>hi</p>"]
    assert collector.events == []
    iterable.close()  # type: ignore[attr-defined]
    assert len(collector.events) == 1


def test_app_that_never_starts_the_response() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return []

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector)
    iterable = middleware(make_environ(), lambda *a: None)
    iterable.close()  # type: ignore[attr-defined]
    assert dict(middleware.stats().skipped) == {"no_status": 1}


def test_length_of_a_list_response_is_kept_for_content_length() -> None:
    middleware = PlausibleMiddleware(html_app(), MemoryCollector())
    iterable = middleware(make_environ(), lambda *a: lambda data: None)
    assert len(iterable) == 1  # type: ignore[arg-type]
    iterable.close()  # type: ignore[attr-defined]

    def generator_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", list(HTML))
        yield b"x"

    middleware = PlausibleMiddleware(generator_app, MemoryCollector())
    iterable = middleware(make_environ(), lambda *a: lambda data: None)
    assert not hasattr(iterable, "__len__")
    iterable.close()  # type: ignore[attr-defined]


class ServerFileWrapper:
    """Stands for a server's ``wsgi.file_wrapper`` (gunicorn, waitress use sendfile)."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(self.block_size):
            yield chunk

    def close(self) -> None:
        self.filelike.close()


def test_file_wrapper_responses_pass_through_and_are_recorded() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/pdf")])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](io.BytesIO(b"%PDF"))
        return wrapper

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(app, collector, file_downloads=True)
    environ = make_environ("/report.pdf", **{"wsgi.file_wrapper": ServerFileWrapper})
    iterable = middleware(environ, lambda *a: lambda data: None)
    assert type(iterable) is ServerFileWrapper
    assert [event.name for event in collector.events] == ["File Download"]
    assert current_request() is None
    assert b"".join(iterable) == b"%PDF"
    iterable.close()  # type: ignore[attr-defined]


def test_the_environ_is_not_retained() -> None:
    class Environ(dict):  # type: ignore[type-arg]
        pass

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(
        html_app(), collector, should_track=lambda environ, status, headers: True
    )
    environ = Environ(make_environ())
    iterable = middleware(environ, lambda *a: lambda data: None)
    list(iterable)
    iterable.close()  # type: ignore[attr-defined]
    referrers = [r for r in gc.get_referrers(environ) if r is not sys._getframe()]
    assert referrers == []
    assert len(collector.events) == 1


# -- fan-out and failures ------------------------------------------------------------------


class RaisingCollector(MemoryCollector):
    def collect(self, event: pw.Event) -> bool:
        raise RuntimeError("collector bug")

    def flush(self, timeout: Optional[float] = None) -> bool:
        raise RuntimeError("flush bug")


def test_every_collector_gets_the_event_even_if_one_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = MemoryCollector("first"), MemoryCollector("second")
    broken = RaisingCollector("broken")
    wrapped, middleware = linted(html_app(), [first, broken, second])
    result = call(wrapped, make_environ("/secret-path", QUERY_STRING="email=a@b.c"))
    assert result.body == b"<p>hi</p>"
    assert len(first.events) == len(second.events) == 1
    assert middleware.stats().errors == 1
    assert middleware.stats().tracked == {"pageview": 1}
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "collector broken" in record.getMessage()
    assert "secret-path" not in record.getMessage()
    assert BROWSER_UA not in record.getMessage()


def test_own_failures_never_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import plausible_wsgi.middleware.wsgi as module

    def broken(*args: Any) -> str:
        raise RuntimeError("bug in the middleware")

    monkeypatch.setattr(module, "decode_path", broken)
    events, stats, result = track()
    assert result.body == b"<p>hi</p>"
    assert events == []
    assert stats.errors == 1
    assert stats.requests == 1


def test_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    collector = RaisingCollector("broken")
    middleware = PlausibleMiddleware(html_app(), collector)
    for _ in range(5):
        call(middleware, make_environ())
    assert middleware.stats().errors == 5
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


# -- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collectors", "options", "message"),
    [
        pytest.param([], {}, "empty list", id="no-collectors"),
        pytest.param(object(), {}, "must be a collector", id="not-a-collector"),
        pytest.param(None, {"trusted_proxies": -1}, "trusted_proxies", id="negative-proxies"),
        pytest.param(None, {"trusted_proxies": True}, "trusted_proxies", id="bool-proxies"),
        pytest.param(None, {"methods": "GET"}, "methods", id="methods-string"),
        pytest.param(None, {"bots": "drop"}, "bots", id="bots-mode"),
        pytest.param(None, {"bot_event_name": "pageview"}, "reserved", id="bot-name-reserved"),
        pytest.param(None, {"bot_event_name": "x" * 121}, "bot_event_name", id="bot-name-long"),
        pytest.param(None, {"url_masks": [("(", "x")]}, "url_masks", id="bad-mask-regex"),
        pytest.param(None, {"url_masks": ["/x"]}, "url_masks", id="mask-not-a-pair"),
        pytest.param(None, {"exclude_paths": [""]}, "exclude_paths", id="empty-prefix"),
        pytest.param(None, {"exclude_paths": [3]}, "exclude_paths", id="exclude-int"),
        pytest.param(None, {"allowed_hosts": "example.com"}, "allowed_hosts", id="hosts-str"),
        pytest.param(None, {"allowed_hosts": []}, "allowed_hosts is empty", id="hosts-empty"),
        pytest.param(None, {"keep_query_params": "page"}, "keep_query_params", id="keep-str"),
        pytest.param(None, {"should_track": 1}, "should_track", id="should-track-value"),
        pytest.param(None, {"classifier": object()}, "classifier", id="classifier-type"),
    ],
)
def test_invalid_options_raise_configuration_error(
    collectors: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(pw.ConfigurationError, match=message):
        PlausibleMiddleware(
            html_app(), MemoryCollector() if collectors is None else collectors, **options
        )


def test_collectors_are_a_tuple() -> None:
    one, two = MemoryCollector("1"), MemoryCollector("2")
    assert PlausibleMiddleware(html_app(), one).collectors == (one,)
    assert PlausibleMiddleware(html_app(), [one, two]).collectors == (one, two)


def test_exported() -> None:
    assert pw.PlausibleMiddleware is PlausibleMiddleware
    assert "PlausibleMiddleware" in pw.__all__


# -- lifecycle -------------------------------------------------------------------------------


class RecordingCollector(MemoryCollector):
    def __init__(self, name: str, log: list[tuple[str, str, Optional[float]]]) -> None:
        super().__init__(name)
        self.log = log

    def flush(self, timeout: Optional[float] = None) -> bool:
        self.log.append((self.name, "flush", timeout))
        return True

    def close(self, timeout: Optional[float] = None) -> None:
        self.log.append((self.name, "close", timeout))
        super().close(timeout)


def test_close_flushes_then_closes_every_collector_under_one_deadline() -> None:
    log: list[tuple[str, str, Optional[float]]] = []
    a, b = RecordingCollector("a", log), RecordingCollector("b", log)
    middleware = PlausibleMiddleware(html_app(), [a, b, a])
    middleware.close(timeout=2.0)
    assert [(name, step) for name, step, _ in log] == [
        ("a", "flush"),
        ("b", "flush"),
        ("a", "close"),
        ("b", "close"),
    ]
    budgets = [timeout for _, _, timeout in log]
    assert all(t is not None and 0 <= t <= 2.0 for t in budgets)
    assert budgets == sorted(budgets, reverse=True)
    middleware.close()
    assert len(log) == 4
    assert a.closed
    assert b.closed


def test_close_goes_on_when_a_collector_raises() -> None:
    good = MemoryCollector("good")
    middleware = PlausibleMiddleware(html_app(), [RaisingCollector("broken"), good])
    middleware.close(timeout=1.0)
    assert good.closed
    assert middleware.stats().errors == 1


def test_requests_after_close_pass_through() -> None:
    collector = MemoryCollector()
    middleware = PlausibleMiddleware(html_app(), collector)
    middleware.close()
    assert call(middleware, make_environ()).body == b"<p>hi</p>"
    assert collector.events == []
    assert collector.stats().dropped == {"closed": 1}


def test_close_uses_a_plausible_collectors_flush(make_collector: Any, http_sink: Any) -> None:
    collector = make_collector(http_sink.url, flush_interval=60.0, batch_size=100)
    middleware = PlausibleMiddleware(html_app(), collector)
    call(middleware, make_environ("/page"))
    assert collector.stats().queued == 1
    middleware.close(timeout=5.0)
    [hit] = http_sink.wait_for(1)
    assert hit.json["url"] == "https://example.com/page"
    assert hit.headers["X-Forwarded-For"] == "203.0.113.9"
    assert collector.stats().sent == 1


def test_middleware_is_not_kept_alive_by_its_exit_hook() -> None:
    import weakref

    middleware = PlausibleMiddleware(html_app(), MemoryCollector())
    ref = weakref.ref(middleware)
    del middleware
    gc.collect()
    assert ref() is None


@pytest.mark.slow
def test_collectors_are_closed_at_interpreter_exit(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import plausible_wsgi as pw
        from plausible_wsgi.testing import MemoryCollector

        class Noisy(MemoryCollector):
            def close(self, timeout=None):
                print("closed", self.name, timeout is not None, flush=True)
                super().close(timeout)

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [b""]

        middleware = pw.PlausibleMiddleware(app, [Noisy("one"), Noisy("two")])
        print("exiting", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["exiting", "closed one True", "closed two True"]


def test_stats_snapshot_is_immutable() -> None:
    _, stats, _ = track()
    with pytest.raises(TypeError):
        stats.tracked["pageview"] = 5  # type: ignore[index]
    assert isinstance(stats, MiddlewareStats)
    assert isinstance(MemoryCollector().stats(), CollectorStats)


def test_concurrent_requests_are_all_counted() -> None:
    collector = MemoryCollector()
    middleware = PlausibleMiddleware(html_app(), collector)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(200):
            call(middleware, make_environ())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert middleware.stats().requests == 1600
    assert middleware.stats().tracked == {"pageview": 1600}
    assert len(collector.events) == 1600
