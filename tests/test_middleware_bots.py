"""PlausibleMiddleware: bots (skip / event / pageview) and file downloads."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, Callable, Optional

import pytest
from wsgi_helpers import BROWSER_UA, call, html_app, linted, make_environ, track

import plausible_wsgi as pw
from plausible_wsgi.agents import AgentClassifier, AgentRule
from plausible_wsgi.middleware import (
    DEFAULT_BOT_USER_AGENT,
    DEFAULT_DOWNLOAD_EXTENSIONS,
    PlausibleMiddleware,
)
from plausible_wsgi.testing import MemoryCollector

GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CHATGPT_USER = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
    "+https://openai.com/bot"
)

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def text_app(status: str = "200 OK", content_type: str = "text/plain") -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("Content-Type", content_type)])
        return [b"User-agent: *\n"]

    return app


# -- bots="skip" ---------------------------------------------------------------------------


def test_bots_are_skipped_and_counted_by_kind() -> None:
    collector = MemoryCollector()
    wrapped, middleware = linted(html_app(), collector)
    for user_agent in (GPTBOT, GOOGLEBOT, GOOGLEBOT, "curl/8.5.0", None, BROWSER_UA):
        call(wrapped, make_environ(HTTP_USER_AGENT=user_agent))
    assert [event.user_agent for event in collector.events] == [BROWSER_UA]
    stats = middleware.stats()
    assert dict(stats.skipped) == {
        "bot:ai_training": 1,
        "bot:search_engine": 2,
        "bot:other_bot": 2,
    }
    assert stats.requests == 6


def test_track_inside_a_bot_request_still_carries_the_bots_data() -> None:
    collector = MemoryCollector()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        collector.track("Seen")
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b""]

    wrapped, _ = linted(app, collector)
    call(wrapped, make_environ(HTTP_USER_AGENT=GPTBOT))
    [event] = collector.events
    assert (event.name, event.user_agent) == ("Seen", GPTBOT)


# -- bots="pageview" -----------------------------------------------------------------------


def test_bots_as_pageviews() -> None:
    events, stats, _ = track(make_environ(HTTP_USER_AGENT=GOOGLEBOT), bots="pageview")
    [event] = events
    assert (event.name, event.user_agent) == ("pageview", GOOGLEBOT)
    assert stats.tracked == {"pageview": 1}


# -- bots="event" --------------------------------------------------------------------------


def test_bot_visit_event() -> None:
    environ = make_environ(
        "/users/42",
        HTTP_USER_AGENT=GPTBOT,
        HTTP_REFERER="https://spam.example/",
        QUERY_STRING="utm_source=x",
        REMOTE_ADDR="20.171.207.1",
    )
    events, stats, _ = track(environ, bots="event", url_masks=[(r"/users/\d+", "/users/:id")])
    [event] = events
    assert event.kind is pw.EventKind.CUSTOM
    assert event.name == "Bot Visit"
    assert event.url == "https://example.com/users/:id?utm_source=x"
    assert event.props == {
        "agent": "GPTBot",
        "operator": "OpenAI",
        "kind": "ai_training",
        "path": "/users/:id",
        "status": "200",
    }
    assert event.user_agent == DEFAULT_BOT_USER_AGENT
    assert event.client_ip == "20.171.207.1"
    assert event.referrer is None
    assert event.interactive is True
    assert stats.tracked == {"bot": 1}


@pytest.mark.parametrize(
    ("app", "path", "status"),
    [
        pytest.param(text_app(), "/robots.txt", "200", id="robots-txt"),
        pytest.param(text_app("404 Not Found", "text/html"), "/gone", "404", id="not-found"),
        pytest.param(text_app("301 Moved Permanently"), "/old", "301", id="redirect"),
    ],
)
def test_bot_events_for_any_status_and_content_type(app: App, path: str, status: str) -> None:
    events, _, _ = track(make_environ(path, HTTP_USER_AGENT=GOOGLEBOT), app, bots="event")
    [event] = events
    assert event.props is not None
    assert (event.props["path"], event.props["status"]) == (path, status)


def test_operator_prop_is_left_out_when_unknown() -> None:
    events, _, _ = track(make_environ(HTTP_USER_AGENT="curl/8.5.0"), bots="event")
    [event] = events
    assert event.props is not None
    assert "operator" not in event.props
    assert event.props["agent"] == "curl"


@pytest.mark.parametrize(
    ("environ", "options", "reason"),
    [
        pytest.param(
            make_environ("/static/x.js", HTTP_USER_AGENT=GOOGLEBOT),
            {"exclude_paths": ["/static/"]},
            "excluded",
            id="excluded",
        ),
        pytest.param(
            make_environ(REQUEST_METHOD="POST", HTTP_USER_AGENT=GOOGLEBOT),
            {},
            "method",
            id="method",
        ),
        pytest.param(
            make_environ(HTTP_HOST="evil.test", HTTP_USER_AGENT=GOOGLEBOT),
            {"allowed_hosts": ["example.com"]},
            "host",
            id="host",
        ),
        pytest.param(
            make_environ(HTTP_USER_AGENT=GOOGLEBOT),
            {"should_track": lambda environ, status, headers: False},
            "should_track",
            id="should-track",
        ),
    ],
)
def test_bot_events_follow_the_request_rules(
    environ: dict[str, Any], options: dict[str, Any], reason: str
) -> None:
    events, stats, _ = track(environ, bots="event", **options)
    assert events == []
    assert dict(stats.skipped) == {reason: 1}


def test_bot_event_options() -> None:
    events, _, _ = track(
        make_environ(HTTP_USER_AGENT=CHATGPT_USER),
        bots="event",
        bot_event_name="AI Visit",
        bot_user_agent="Mozilla/5.0 (Macintosh) Safari/605.1.15",
    )
    [event] = events
    assert event.name == "AI Visit"
    assert event.user_agent == "Mozilla/5.0 (Macintosh) Safari/605.1.15"
    assert event.props is not None
    assert event.props["kind"] == "ai_assistant"


def test_the_default_bot_user_agent_is_not_a_bot() -> None:
    from plausible_wsgi.agents import classify_user_agent

    assert classify_user_agent(DEFAULT_BOT_USER_AGENT) is None


def test_bot_domain_with_collectors_without_for_domain() -> None:
    collector = MemoryCollector()
    wrapped, middleware = linted(html_app(), collector, bots="event", bot_domain="bots.example")
    call(wrapped, make_environ(HTTP_USER_AGENT=GPTBOT))
    call(wrapped, make_environ())
    assert [event.name for event in collector.events] == ["Bot Visit", "pageview"]
    middleware.close()
    assert collector.closed


def test_bot_domain_sends_bot_events_to_a_sibling_site(make_collector: Any, http_sink: Any) -> None:
    collector = make_collector(http_sink.url, domain="example.com")
    middleware = PlausibleMiddleware(
        html_app(), collector, bots="event", bot_domain="bots.example.com"
    )
    call(middleware, make_environ("/a", HTTP_USER_AGENT=GPTBOT, REMOTE_ADDR="20.171.207.1"))
    call(middleware, make_environ("/b"))
    middleware.close(timeout=5.0)
    hits = http_sink.wait_for(2)
    by_domain = {hit.json["domain"]: hit for hit in hits}
    assert set(by_domain) == {"example.com", "bots.example.com"}
    bot = by_domain["bots.example.com"]
    assert bot.json["name"] == "Bot Visit"
    assert bot.json["props"]["agent"] == "GPTBot"
    assert bot.headers["User-Agent"] == DEFAULT_BOT_USER_AGENT
    assert bot.headers["X-Forwarded-For"] == "20.171.207.1"
    assert by_domain["example.com"].json["name"] == "pageview"
    assert collector.closed


def test_bot_domain_is_checked() -> None:
    with pytest.raises(pw.ConfigurationError, match="bot_domain"):
        PlausibleMiddleware(html_app(), MemoryCollector(), bots="event", bot_domain=" ")


def test_custom_classifier() -> None:
    classifier = AgentClassifier(
        extra_rules=[AgentRule("ourmonitor", "OurMonitor", "Us", "monitor")], cache_size=0
    )
    _, stats, _ = track(
        make_environ(HTTP_USER_AGENT="OurMonitor/2.0 (internal)"), classifier=classifier
    )
    assert dict(stats.skipped) == {"bot:monitor": 1}


# -- file downloads ------------------------------------------------------------------------


def file_app(
    content_type: str = "application/pdf",
    status: str = "200 OK",
    disposition: Optional[str] = None,
) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [] if status.startswith("304") else [("Content-Type", content_type)]
        if disposition is not None:
            headers.append(("Content-Disposition", disposition))
        start_response(status, headers)
        return [] if status.startswith("304") else [b"%PDF-1.7"]

    return app


@pytest.mark.parametrize(
    ("path", "app", "environ", "options", "expected"),
    [
        pytest.param("/r/report.pdf", file_app(), {}, {}, "file_download", id="pdf"),
        pytest.param("/r/REPORT.PDF", file_app(), {}, {}, "file_download", id="upper-case"),
        pytest.param("/a.tar.gz", file_app("application/gzip"), {}, {}, "file_download", id="gz"),
        pytest.param(
            "/export",
            file_app("text/csv", disposition='attachment; filename="x.csv"'),
            {},
            {},
            "file_download",
            id="content-disposition",
        ),
        pytest.param(
            "/export",
            file_app("text/html", disposition="Attachment"),
            {},
            {},
            "file_download",
            id="html-attachment",
        ),
        pytest.param(
            "/view",
            file_app("application/pdf", disposition='inline; filename="x.pdf"'),
            {},
            {},
            "skipped:content_type",
            id="inline",
        ),
        pytest.param(
            "/robots.txt", file_app("text/plain"), {}, {}, "skipped:content_type", id="txt"
        ),
        pytest.param(
            "/notes.txt",
            file_app("text/plain"),
            {},
            {"download_extensions": [".TXT"]},
            "file_download",
            id="custom-extensions",
        ),
        pytest.param(
            "/report.pdf",
            file_app(status="206 Partial Content"),
            {"HTTP_RANGE": "bytes=0-"},
            {},
            "file_download",
            id="range-from-start",
        ),
        pytest.param(
            "/video.mp4",
            file_app("video/mp4", status="206 Partial Content"),
            {"HTTP_RANGE": "bytes=1048576-2097151"},
            {},
            "skipped:partial",
            id="range-continuation",
        ),
        pytest.param(
            "/report.pdf",
            file_app(status="304 Not Modified"),
            {},
            {},
            "skipped:status",
            id="not-modified",
        ),
        pytest.param(
            "/report.pdf", file_app(status="404 Not Found"), {}, {}, "skipped:status", id="missing"
        ),
        pytest.param(
            "/report.pdf",
            file_app(),
            {"HTTP_USER_AGENT": GOOGLEBOT},
            {},
            "skipped:bot:search_engine",
            id="bot",
        ),
        pytest.param("/page", html_app(), {}, {}, "pageview", id="page"),
        pytest.param("/dir.pdf/", html_app(), {}, {}, "pageview", id="extension-on-a-directory"),
    ],
)
def test_file_downloads(
    path: str, app: App, environ: dict[str, Any], options: dict[str, Any], expected: str
) -> None:
    events, stats, _ = track(make_environ(path, **environ), app, file_downloads=True, **options)
    if expected.startswith("skipped:"):
        assert events == []
        assert dict(stats.skipped) == {expected.removeprefix("skipped:"): 1}
        return
    assert stats.tracked == {expected: 1}
    [event] = events
    if expected == "file_download":
        assert event.name == "File Download"
        assert event.kind is pw.EventKind.CUSTOM
        assert event.props == {"url": event.url}
        assert event.url == f"https://example.com{path}"


def test_downloads_are_off_by_default() -> None:
    _, stats, _ = track(make_environ("/report.pdf"), file_app())
    assert dict(stats.skipped) == {"content_type": 1}


def test_download_url_is_scrubbed_and_masked() -> None:
    environ = make_environ("/invoices/991/pdf.pdf", QUERY_STRING="token=s3cret&ref=mail")
    events, _, _ = track(
        environ,
        file_app(),
        file_downloads=True,
        url_masks=[(r"/invoices/\d+", "/invoices/:id")],
    )
    [event] = events
    assert event.props == {"url": "https://example.com/invoices/:id/pdf.pdf?ref=mail"}


def test_default_extensions() -> None:
    assert {"pdf", "zip", "dmg", "exe", "csv", "xlsx", "docx", "mp4", "epub"} <= (
        DEFAULT_DOWNLOAD_EXTENSIONS
    )
    assert "txt" not in DEFAULT_DOWNLOAD_EXTENSIONS
    assert "html" not in DEFAULT_DOWNLOAD_EXTENSIONS


def test_download_through_a_file_wrapper_and_send_file() -> None:
    from flask import Flask, send_file

    flask_app = Flask(__name__)

    @flask_app.get("/files/<name>")
    def download(name: str) -> Any:
        return send_file(io.BytesIO(b"PK\x03\x04"), download_name=name, as_attachment=True)

    collector = MemoryCollector()
    flask_app.wsgi_app = PlausibleMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, collector, file_downloads=True
    )
    with flask_app.test_client() as client:
        response = client.get("/files/app.zip", headers={"User-Agent": BROWSER_UA})
        assert response.data == b"PK\x03\x04"
        response.close()
    [event] = collector.events
    assert event.name == "File Download"
    assert event.url == "http://localhost/files/app.zip"
