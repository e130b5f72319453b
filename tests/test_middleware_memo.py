"""The middleware's per-request shortcuts: remembered targets and their decisions.

The middleware works out a request target (URL, host check, exclusion, download)
once, and with it the decisions for its requests (by method, agent, route, status,
content type); these tests make sure a remembered answer is never applied to a
request it does not belong to -- nor one visitor's fields to another's event --, that
the memory stays bounded, and that counts stay exact.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from wsgi_helpers import BROWSER_UA, call, html_app, linted, make_environ

from plausible_wsgi.agents import AgentClassifier, AgentRule
from plausible_wsgi.middleware import PlausibleMiddleware
from plausible_wsgi.middleware import pages as pages_module
from plausible_wsgi.middleware import recorder as recorder_module
from plausible_wsgi.testing import MemoryCollector


def urls(collector: MemoryCollector) -> list[str]:
    return [event.url for event in collector.events]


def test_a_remembered_target_is_only_reused_for_the_same_scheme_host_path_and_query() -> None:
    collector = MemoryCollector()
    app, middleware = linted(html_app(), collector, allowed_hosts=["example.com"])
    requests: list[dict[str, Any]] = [
        make_environ("/p", QUERY_STRING="utm_source=a&secret=1"),
        make_environ("/p", QUERY_STRING="utm_source=a&secret=1"),
        make_environ("/p", QUERY_STRING="utm_source=b"),
        make_environ("/p", HTTP_HOST="evil.example.net"),
        make_environ("/p", **{"wsgi.url_scheme": "http", "SERVER_PORT": "80"}),
        make_environ("/p", SCRIPT_NAME="/shop"),
        make_environ("/p"),
        # No Host header: the name comes from SERVER_NAME, which the memo does not key
        # on, so these two must not share an answer.
        make_environ("/p", HTTP_HOST=None, SERVER_NAME="example.com"),
        make_environ("/p", HTTP_HOST=None, SERVER_NAME="other.example.org"),
    ]
    for environ in requests:
        call(app, environ)
    assert urls(collector) == [
        "https://example.com/p?utm_source=a",
        "https://example.com/p?utm_source=a",
        "https://example.com/p?utm_source=b",
        "http://example.com/p",
        "https://example.com/shop/p",
        "https://example.com/p",
        "https://example.com/p",
    ]
    assert middleware.stats().skipped == {"host": 2}


def test_exclusions_masks_and_downloads_follow_the_path_not_the_memo() -> None:
    collector = MemoryCollector()
    app, middleware = linted(
        html_app(),
        collector,
        exclude_paths=("/static/",),
        url_masks=[(re.compile(r"/users/\d+"), "/users/:id")],
        file_downloads=True,
    )
    for path in ("/users/1", "/users/2", "/static/a.css", "/users/1", "/report.pdf", "/users/3"):
        call(app, make_environ(path))
    assert [(event.name, event.url) for event in collector.events] == [
        ("pageview", "https://example.com/users/:id"),
        ("pageview", "https://example.com/users/:id"),
        ("pageview", "https://example.com/users/:id"),
        ("File Download", "https://example.com/report.pdf"),
        ("pageview", "https://example.com/users/:id"),
    ]
    assert middleware.stats().skipped == {"excluded": 1}


def _answering(answers: list[tuple[str, str]]) -> Any:
    """An app answering each request with the next (status, content type) in turn."""
    queue = list(answers)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, content_type = queue.pop(0)
        start_response(status, [("Content-Type", content_type)])
        return [b"x"]

    return app


def test_a_remembered_decision_is_only_reused_for_the_same_facts() -> None:
    """One target, answered differently: each answer decided on its own, each again
    from the memo, and a bot's request never gets a browser's decision."""
    html, json = "text/html", "application/json"
    answers = [("200 OK", html), ("404 Not Found", html), ("200 OK", json), ("201 Created", html)]
    collector = MemoryCollector()
    app, middleware = linted(_answering(answers * 2 + [("200 OK", html)] * 3), collector)
    for environ in [make_environ("/p") for _ in range(len(answers) * 2)] + [
        make_environ("/p", HTTP_USER_AGENT="GPTBot/1.0"),
        make_environ("/p", REQUEST_METHOD="HEAD"),
        make_environ("/p"),
    ]:
        call(app, environ)
    stats = middleware.stats()
    assert stats.tracked == {"pageview": 5}
    assert stats.skipped == {"status": 2, "content_type": 2, "bot:ai_training": 1, "method": 1}
    page = middleware.recorder.pages.get(middleware.recorder.pages.targets()[0])
    assert page is not None
    assert len(page.decisions) == 6


def test_each_visitor_gets_their_own_event_from_a_remembered_decision() -> None:
    collector = MemoryCollector()
    app, _ = linted(html_app(), collector)
    visitors = [("1.2.3.4", "UA one", "https://a.example/x"), ("5.6.7.8", "UA two", None)]
    for address, agent, referrer in visitors * 2:
        call(
            app,
            make_environ("/p", REMOTE_ADDR=address, HTTP_USER_AGENT=agent, HTTP_REFERER=referrer),
        )
    assert [(e.client_ip, e.user_agent, e.referrer) for e in collector.events] == [
        ("1.2.3.4", "UA one", "https://a.example/x"),
        ("5.6.7.8", "UA two", None),
    ] * 2


def test_should_track_is_asked_for_every_request_of_a_remembered_decision() -> None:
    asked: list[str] = []

    def should_track(environ: Any, status: int, headers: Any) -> bool:
        asked.append(environ["REMOTE_ADDR"])
        return environ["REMOTE_ADDR"] != "5.6.7.8"

    collector = MemoryCollector()
    app, middleware = linted(html_app(), collector, should_track=should_track)
    for address in ("1.2.3.4", "5.6.7.8", "1.2.3.4", "5.6.7.8"):
        call(app, make_environ("/p", REMOTE_ADDR=address))
    assert asked == ["1.2.3.4", "5.6.7.8", "1.2.3.4", "5.6.7.8"]
    assert middleware.stats().skipped == {"should_track": 2}
    assert [event.client_ip for event in collector.events] == ["1.2.3.4", "1.2.3.4"]


def test_range_requests_are_decided_every_time() -> None:
    """The client picks the Range header: a 206 that starts the file is a download,
    one that does not is not, whatever came before, and neither is remembered."""
    collector = MemoryCollector()
    app, middleware = linted(
        html_app(status="206 Partial Content", headers=[("Content-Type", "application/pdf")]),
        collector,
        file_downloads=True,
    )
    for header in ("bytes=0-99", "bytes=100-199", "bytes=0-", "bytes=5-"):
        call(app, make_environ("/f.pdf", HTTP_RANGE=header))
    stats = middleware.stats()
    assert stats.tracked == {"file_download": 2}
    assert stats.skipped == {"partial": 2}
    page = middleware.recorder.pages.get(middleware.recorder.pages.targets()[0])
    assert page is not None
    assert page.decisions == {}


def test_remembered_decisions_stay_bounded_per_target() -> None:
    kinds = 3 * recorder_module.DECISIONS_PER_PAGE
    answers = [("200 OK", f"text/html; profile={number}") for number in range(kinds)]
    collector = MemoryCollector()
    app = PlausibleMiddleware(_answering(answers), collector)
    for _ in range(kinds):
        call(app, make_environ("/p"))
    page = app.recorder.pages.get(app.recorder.pages.targets()[0])
    assert page is not None
    assert 0 < len(page.decisions) <= recorder_module.DECISIONS_PER_PAGE
    assert app.stats().tracked == {"pageview": kinds}


def test_a_user_agent_is_classified_by_this_middlewares_classifier() -> None:
    ours = AgentClassifier(extra_rules=[AgentRule("ourmonitor", "OurMonitor", "Us", "monitor")])
    first, second = MemoryCollector(), MemoryCollector()
    custom, with_custom = linted(html_app(), first, classifier=ours)
    default, with_default = linted(html_app(), second)
    agent = "OurMonitor/1.0 (Mozilla/5.0 compatible)"
    for _ in range(2):
        call(custom, make_environ(HTTP_USER_AGENT=agent))
        call(default, make_environ(HTTP_USER_AGENT=agent))
        call(custom, make_environ())
    assert with_custom.stats().skipped == {"bot:monitor": 2}
    assert with_custom.stats().tracked == {"pageview": 2}
    assert with_default.stats().tracked == {"pageview": 2}
    assert {event.user_agent for event in first.events} == {BROWSER_UA}


def test_a_missing_user_agent_is_a_bot_every_time() -> None:
    collector = MemoryCollector()
    app, middleware = linted(html_app(), collector)
    for _ in range(3):
        call(app, make_environ(HTTP_USER_AGENT=None))
    call(app, make_environ())
    assert middleware.stats().skipped == {"bot:other_bot": 3}
    assert len(collector.events) == 1


def test_remembered_answers_stay_bounded_under_endless_variety() -> None:
    collector = MemoryCollector()
    app = PlausibleMiddleware(html_app(), collector)
    distinct = 3 * pages_module.MEMO_SIZE
    for number in range(distinct):
        call(app, make_environ(f"/item/{number}", HTTP_USER_AGENT=f"{BROWSER_UA} n/{number}"))
    assert len(app.recorder.pages) <= pages_module.MEMO_SIZE
    assert urls(collector)[-1] == f"https://example.com/item/{distinct - 1}"
    assert len(collector.events) == distinct


def test_long_targets_and_user_agents_are_not_remembered() -> None:
    collector = MemoryCollector()
    app = PlausibleMiddleware(html_app(), collector)
    long_path = "/" + "a" * pages_module.MEMO_MAX_LENGTH
    call(app, make_environ(long_path, HTTP_USER_AGENT=BROWSER_UA + " x" * 300))
    call(app, make_environ("/short"))
    call(app, make_environ("/short", HTTP_HOST="a" * pages_module.MEMO_MAX_LENGTH))
    assert [key[3] for key in app.recorder.pages.targets()] == ["/short"]  # type: ignore[index]
    assert urls(collector) == [f"https://example.com{long_path}", "https://example.com/short"]


def test_counts_are_exact_while_stats_are_read_concurrently() -> None:
    """Requests finish on many threads while stats() is read: no count may be lost
    or double-counted, and the total never goes back."""
    collector = MemoryCollector()
    app = PlausibleMiddleware(html_app(), collector, exclude_paths=("/skip",))
    per_thread, threads_count = 700, 6
    barrier = threading.Barrier(threads_count + 1)
    done = threading.Event()
    seen: list[int] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        for number in range(per_thread):
            call(app, make_environ("/skip" if number % 3 == 0 else "/page"))

    def reader() -> None:
        barrier.wait(timeout=10)
        while not done.is_set():
            seen.append(app.stats().requests)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    watcher = threading.Thread(target=reader)
    for thread in (*threads, watcher):
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=10)
    total = per_thread * threads_count
    skipped = threads_count * len(range(0, per_thread, 3))
    stats = app.stats()
    assert stats.requests == total
    assert stats.skipped == {"excluded": skipped}
    assert stats.tracked == {"pageview": total - skipped}
    assert len(collector.events) == total - skipped
    assert seen == sorted(seen)  # never goes back
