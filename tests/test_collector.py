"""PlausibleCollector against a real loopback HTTP server: bytes, outcomes, retries."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable

import pytest
from sink import Answer, SilentServer, Sink, dead_endpoint, wait_until

import plausible_wsgi as pw
from plausible_wsgi.delivery.breaker import Admission, Breaker

Make = Callable[..., pw.PlausibleCollector]
URL = "https://example.com/pricing?utm_source=hn"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_pageview_bytes_and_headers(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url)
    assert collector.track_pageview(
        url=URL, referrer="https://news.ycombinator.com/", user_agent=UA, client_ip="203.0.113.7"
    )
    assert collector.flush(5)
    (hit,) = http_sink.wait_for(1)
    assert hit.path == "/api/event"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == UA
    assert hit.headers["X-Forwarded-For"] == "203.0.113.7"
    assert "Cookie" not in hit.headers
    assert "Authorization" not in hit.headers
    assert hit.body == (
        b'{"domain":"example.com","name":"pageview","url":"https://example.com/pricing'
        b'?utm_source=hn","referrer":"https://news.ycombinator.com/"}'
    )


def test_custom_event_with_props_and_revenue(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url)
    collector.track(
        "Purchase",
        url=URL,
        props={"plan": "pro", "seats": 3, "trial": False, "coupon": None},
        revenue=pw.Revenue("EUR", 29.99),
        user_agent=UA,
        client_ip="2001:db8::1",
    )
    assert collector.flush(5)
    (hit,) = http_sink.wait_for(1)
    assert hit.json == {
        "domain": "example.com",
        "name": "Purchase",
        "url": URL,
        "props": {"plan": "pro", "seats": "3", "trial": "false"},
        "revenue": {"currency": "EUR", "amount": "29.99"},
    }
    assert hit.headers["X-Forwarded-For"] == "2001:db8::1"


def test_action_is_not_interactive(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url)
    collector.track_action("POST /signup", url=URL, user_agent=UA)
    collector.track("Newsletter", url=URL, interactive=False)
    assert collector.flush(5)
    hits = http_sink.wait_for(2)
    assert sorted((h.json["name"], h.json["interactive"]) for h in hits) == [
        ("Newsletter", False),
        ("POST /signup", False),
    ]


def test_no_visitor_data_means_no_forwarded_for_and_no_library_user_agent(
    http_sink: Sink, make_collector: Make
) -> None:
    collector = make_collector(http_sink.url)
    collector.track("Cron", url=URL)
    assert collector.flush(5)
    (hit,) = http_sink.wait_for(1)
    assert "X-Forwarded-For" not in hit.headers
    assert hit.headers.get("User-Agent", "") == ""  # never python-urllib3/x: a bot UA


def test_domain_is_always_the_configured_one(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url, domain="shop.example.com")
    collector.track("Signup", url="https://evil.test/")
    assert collector.flush(5)
    assert http_sink.wait_for(1)[0].json["domain"] == "shop.example.com"


@pytest.mark.parametrize("name", ["pageview", "engagement"])
def test_reserved_names_are_refused_for_custom_events(make_collector: Make, name: str) -> None:
    collector = make_collector(dead_endpoint())
    with pytest.raises(pw.InvalidEventError, match="reserved"):
        collector.track(name, url=URL)


def test_missing_url_outside_a_request_raises(make_collector: Make) -> None:
    collector = make_collector(dead_endpoint())
    with pytest.raises(pw.InvalidEventError) as info:
        collector.track("Signup")
    assert info.value.field == "url"
    assert collector.stats().accepted == 0


def test_flush_when_batch_size_is_reached(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url, batch_size=5, flush_interval=3600)
    for i in range(4):
        collector.track("E", url=URL, props={"i": i})
    assert collector.stats().queued == 4
    collector.track("E", url=URL, props={"i": 4})
    hits = http_sink.wait_for(5)  # no flush() call: the batch threshold alone sends them
    assert sorted(int(h.json["props"]["i"]) for h in hits) == [0, 1, 2, 3, 4]


def test_flush_when_interval_passes(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url, batch_size=1000, flush_interval=0.2)
    start = time.monotonic()
    collector.track("E", url=URL)
    (hit,) = http_sink.wait_for(1, timeout=5)
    assert hit.at - start >= 0.15


def test_flush_cuts_through_the_batching_window(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url, batch_size=1000, flush_interval=3600)
    collector.track("E", url=URL)
    assert collector.flush(5)
    assert len(http_sink.hits) == 1


def test_503_503_202_records_exactly_one(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(503), Answer(503))
    collector = make_collector(http_sink.url)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert [h.status for h in http_sink.hits] == [503, 503, 202]
    stats = collector.stats()
    assert (stats.sent, stats.failed, stats.retried) == (1, 0, 2)


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_transient_statuses_are_retried(http_sink: Sink, make_collector: Make, status: int) -> None:
    http_sink.answer(Answer(status))
    collector = make_collector(http_sink.url)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert [h.status for h in http_sink.hits] == [status, 202]


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_are_not_retried(http_sink: Sink, make_collector: Make, status: int) -> None:
    http_sink.answer(Answer(status, body=b'{"errors":{"url":["must be a valid url"]}}'))
    collector = make_collector(http_sink.url)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert [h.status for h in http_sink.hits] == [status]
    stats = collector.stats()
    assert (stats.sent, stats.failed, stats.retried) == (0, 1, 0)


def test_400_body_is_logged_once_rate_limited(
    http_sink: Sink, make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"errors":{"props":["is invalid"]}}'
    http_sink.default = Answer(400, body=body)
    collector = make_collector(http_sink.url)
    with caplog.at_level("WARNING", logger="plausible_wsgi"):
        for _ in range(5):
            collector.track("Signup", url=URL, user_agent=UA, client_ip="203.0.113.7")
        assert collector.flush(5)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "is invalid" in warnings[0]
    assert "400" in warnings[0]
    assert "203.0.113.7" not in warnings[0]
    assert UA not in warnings[0]
    assert URL not in warnings[0]


def test_x_plausible_dropped_is_counted_not_retried(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(202, {"x-plausible-dropped": "1"}))
    collector = make_collector(http_sink.url)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert len(http_sink.hits) == 1
    stats = collector.stats()
    assert stats.sent == 0
    assert stats.dropped == {"server_dropped": 1}


def test_read_timeout_is_not_retried_by_default(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(202, delay=1.0))
    collector = make_collector(http_sink.url, timeout=0.2)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    http_sink.wait_for(1)
    assert len(http_sink.hits) == 1  # the server got it once; we did not send it again
    assert collector.stats().failed == 1


def test_read_timeout_retry_can_be_enabled(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(202, delay=1.0))
    retry = pw.RetryConfig(initial_backoff=0.01, max_backoff=0.05, retry_read_timeouts=True)
    collector = make_collector(http_sink.url, timeout=0.2, retry=retry)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert collector.stats().sent == 1
    assert collector.stats().retried == 1


def test_retry_after_pauses_every_worker(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(429, {"Retry-After": "1"}))
    collector = make_collector(http_sink.url, max_workers=4, batch_size=1)
    collector.track("First", url=URL)
    wait_until(lambda: len(http_sink.hits) >= 1)
    # The sink records the hit before it answers: wait until the collector has read the
    # answer, or the events below can go out before it knows of the pause.
    wait_until(lambda: collector.stats().last_failure_at is not None)
    throttled_at = http_sink.hits[0].at
    for _ in range(3):
        collector.track("Other", url=URL)
    assert collector.flush(5)
    later = http_sink.hits[1:]
    assert len(later) == 4
    assert min(h.at for h in later) - throttled_at >= 0.9


def test_retry_after_is_clamped(http_sink: Sink, make_collector: Make) -> None:
    http_sink.answer(Answer(503, {"Retry-After": "86400"}))
    retry = pw.RetryConfig(initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.3)
    collector = make_collector(http_sink.url, retry=retry)
    collector.track("Signup", url=URL)
    assert collector.flush(5)
    assert [h.status for h in http_sink.hits] == [503, 202]


def test_breaker_opens_and_buffered_events_arrive_after_recovery(
    http_sink: Sink, make_collector: Make
) -> None:
    http_sink.default = Answer(503)
    collector = make_collector(
        http_sink.url,
        max_workers=2,
        batch_size=1,
        # More retries than failures to open: the breaker opens before any event is
        # out of retries, however the failures fall on the workers.
        retry=pw.RetryConfig(max_retries=5, initial_backoff=0.01, max_backoff=0.02),
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=3, timeout=0.5),
    )
    for i in range(6):
        collector.track("E", url=URL, props={"i": i})
    wait_until(lambda: collector.stats().breaker_state == "open")
    attempts_when_open = len(http_sink.hits)
    stats = collector.stats()
    assert stats.failed == 0
    assert stats.sent == 0
    assert stats.queued + stats.in_flight == 6  # waiting in the buffer, not lost
    http_sink.default = Answer(202)  # the server recovers
    assert collector.flush(10)
    delivered = sorted(int(h.json["props"]["i"]) for h in http_sink.accepted())
    assert delivered == [0, 1, 2, 3, 4, 5]  # each exactly once
    assert collector.stats().sent == 6
    assert collector.stats().breaker_state == "closed"
    assert attempts_when_open >= 3


def test_open_breaker_makes_no_requests(http_sink: Sink, make_collector: Make) -> None:
    http_sink.default = Answer(503)
    collector = make_collector(
        http_sink.url,
        batch_size=1,
        retry=None,
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=2, timeout=60),
    )
    for _ in range(2):
        collector.track("E", url=URL)
    wait_until(lambda: collector.stats().breaker_state == "open")
    wait_until(lambda: collector.stats().in_flight == 0)
    before = len(http_sink.hits)
    for _ in range(20):
        collector.track("E", url=URL)
    assert not collector.flush(0.5)
    assert len(http_sink.hits) == before
    stats = collector.stats()
    # The failure that did not trip the breaker is final (no retry); the rest wait.
    assert stats.queued == 22 - stats.failed


def test_bound_drops_the_oldest_and_counts(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(
        http_sink.url, max_queue_size=5, batch_size=1000, flush_interval=3600
    )
    for i in range(8):
        assert collector.track("E", url=URL, props={"i": i})
    stats = collector.stats()
    assert stats.queued == 5
    assert stats.dropped == {"queue_full": 3}
    assert collector.flush(5)
    assert sorted(int(h.json["props"]["i"]) for h in http_sink.hits) == [3, 4, 5, 6, 7]


def test_counts_add_up_under_concurrency(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url, max_workers=8)
    threads, per_thread = 8, 250

    def worker(n: int) -> None:
        for i in range(per_thread):
            collector.track("E", url=URL, props={"t": n, "i": i})

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert collector.flush(30)
    total = threads * per_thread
    stats = collector.stats()
    assert stats.sent == total == stats.accepted
    seen = {(h.json["props"]["t"], h.json["props"]["i"]) for h in http_sink.hits}
    assert len(http_sink.hits) == len(seen) == total


def test_slow_server_keeps_the_pool_concurrent(http_sink: Sink, make_collector: Make) -> None:
    # pybreaker holds its lock for a whole guarded call; we must not serialize POSTs.
    # The throughput figure is bench/delivery.py's (latency hiding); here the condition:
    # every worker ends up waiting on the server at the same time.
    http_sink.default = Answer(202, delay=0.05)
    collector = make_collector(http_sink.url, max_workers=8, batch_size=1)
    for _ in range(160):
        collector.track("E", url=URL)
    wait_until(lambda: http_sink.max_active == 8, timeout=20)
    assert collector.flush(20)
    assert http_sink.max_active == 8


def test_one_slow_event_does_not_stall_the_others(http_sink: Sink, make_collector: Make) -> None:
    # The slow answer waits until the sink closes: the ten others must all get
    # through while it is still held (a condition, not a race against its delay).
    http_sink.answer(Answer(202, delay=60.0))
    collector = make_collector(http_sink.url, max_workers=2, batch_size=1, shutdown_timeout=0.5)
    collector.track("Slow", url=URL)
    wait_until(lambda: http_sink.active == 1)
    for _ in range(10):
        collector.track("Fast", url=URL)
    http_sink.wait_for(10, timeout=20)
    # The slow one is recorded only when its answer goes out: it is still held.
    assert all(h.json["name"] == "Fast" for h in http_sink.hits)


def test_close_against_a_dead_endpoint_returns_in_time(make_collector: Make) -> None:
    collector = make_collector(dead_endpoint(), shutdown_timeout=1.0)
    for _ in range(50):
        collector.track("E", url=URL)
    start = time.monotonic()
    collector.close()
    # Retrying 50 refused events with backoff, unbounded, takes far longer; the
    # margin is for a loaded machine, not a speed figure.
    assert time.monotonic() - start < 1.0 + 10
    wait_until(lambda: collector.stats().in_flight == 0)
    stats = collector.stats()
    assert stats.accepted == 50
    assert stats.sent == 0


def test_close_against_a_silent_server_cuts_the_sockets(
    make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    server = SilentServer()
    try:
        collector = make_collector(server.url, shutdown_timeout=0.5, timeout=30)
        for _ in range(10):
            collector.track("E", url=URL)
        wait_until(lambda: collector.stats().in_flight > 0)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
            collector.close()
        # Unbounded, close waits out the 30 s read timeout; the margin is for load.
        assert time.monotonic() - start < 0.5 + 15
        wait_until(lambda: collector.stats().in_flight == 0, timeout=2)
        assert collector.stats().dropped.get("shutdown") == 10
        # The warning accounts for all ten: the buffered ones and the ones cut off.
        [message] = [r.getMessage() for r in caplog.records if "close deadline" in r.getMessage()]
        buffered, cut = map(int, re.findall(r"(\d+) (?:events still buffered|being sent)", message))
        assert buffered + cut == 10
        assert cut > 0
    finally:
        server.close()


def test_close_is_idempotent_and_track_after_close_is_counted(
    http_sink: Sink, make_collector: Make
) -> None:
    collector = make_collector(http_sink.url)
    collector.track("E", url=URL)
    collector.close()
    collector.close()
    assert http_sink.wait_for(1)
    assert collector.track("Late", url=URL) is False
    stats = collector.stats()
    assert stats.sent == 1
    assert stats.dropped == {"closed": 1}
    assert stats.accepted == 2


def test_collect_counts_invalid_hand_built_events(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url)
    bad = pw.Event(pw.EventKind.CUSTOM, "x" * 500, URL)
    assert collector.collect(bad) is False
    good = pw.Event(pw.EventKind.CUSTOM, "Signup", URL, props={"a": "1"})
    assert collector.collect(good) is True
    assert collector.flush(5)
    assert collector.stats().dropped == {"invalid": 1}
    assert collector.stats().sent == 1


def test_collector_satisfies_the_protocol(make_collector: Make) -> None:
    assert isinstance(make_collector(dead_endpoint()), pw.Collector)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        pytest.param({"domain": ""}, "domain", id="empty-domain"),
        pytest.param({"domain": "https://example.com"}, "domain", id="domain-is-url"),
        pytest.param({"domain": "exa mple.com"}, "domain", id="domain-space"),
        pytest.param({"endpoint": "plausible.io"}, "endpoint", id="endpoint-no-scheme"),
        pytest.param({"endpoint": "ftp://plausible.io"}, "endpoint", id="endpoint-ftp"),
        pytest.param(
            {"endpoint": "https://plausible.io/api/event"}, "endpoint", id="endpoint-api-path"
        ),
        pytest.param({"batch_size": 0}, "batch_size", id="batch-size-zero"),
        pytest.param({"max_queue_size": -1}, "max_queue_size", id="queue-negative"),
        pytest.param({"max_workers": 0}, "max_workers", id="workers-zero"),
        pytest.param({"flush_interval": 0}, "flush_interval", id="interval-zero"),
        pytest.param({"timeout": float("inf")}, "timeout", id="timeout-inf"),
        pytest.param({"shutdown_timeout": -1}, "shutdown_timeout", id="shutdown-negative"),
        pytest.param({"retry": 3}, "retry", id="retry-not-config"),
        pytest.param({"circuit_breaker": True}, "circuit_breaker", id="breaker-not-config"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    kwargs.setdefault("domain", "example.com")
    with pytest.raises(pw.ConfigurationError, match=argument):
        pw.PlausibleCollector(**kwargs)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        pytest.param(lambda: pw.RetryConfig(max_retries=-1), "max_retries", id="retries"),
        pytest.param(lambda: pw.RetryConfig(initial_backoff=-1), "initial_backoff", id="backoff"),
        pytest.param(
            lambda: pw.RetryConfig(initial_backoff=5, max_backoff=1), "max_backoff", id="caps"
        ),
        pytest.param(
            lambda: pw.RetryConfig(retry_statuses=frozenset({400})), "retry_statuses", id="400"
        ),
        pytest.param(
            lambda: pw.CircuitBreakerConfig(max_consecutive_failures=0),
            "max_consecutive",
            id="fails",
        ),
        pytest.param(lambda: pw.CircuitBreakerConfig(timeout=0), "timeout", id="open-time"),
        pytest.param(lambda: pw.CircuitBreakerConfig(jitter=1), "jitter", id="jitter-1"),
        pytest.param(lambda: pw.CircuitBreakerConfig(jitter=-0.1), "jitter", id="jitter-neg"),
    ],
)
def test_bad_policies_name_the_argument(factory: Callable[[], Any], argument: str) -> None:
    with pytest.raises(pw.ConfigurationError, match=argument):
        factory()


def open_times(config: pw.CircuitBreakerConfig, openings: int) -> list[float]:
    """How long the breaker stays open, each time it opens."""
    breaker = Breaker(config)
    times = []
    for _ in range(openings):
        for _ in range(config.max_consecutive_failures):
            breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
        assert breaker.state == "open"
        times.append(breaker.seconds_until_probe())
        assert breaker.seconds_until_probe() <= times[-1]  # one draw per opening
        breaker.record_success(Admission.NORMAL)  # an answer from before: closes it
        assert breaker.state == "closed"
    return times


def test_the_breaker_open_time_is_drawn_anew_each_time_it_opens() -> None:
    jittered = open_times(pw.CircuitBreakerConfig(max_consecutive_failures=2, timeout=100), 30)
    assert all(79.9 <= seconds <= 120.0 for seconds in jittered), jittered
    assert max(jittered) - min(jittered) > 5  # 30 draws within +-20 s never stay this close
    fixed = open_times(
        pw.CircuitBreakerConfig(max_consecutive_failures=2, timeout=100, jitter=0), 5
    )
    assert all(99.0 <= seconds <= 100.0 for seconds in fixed), fixed


def test_a_failed_probe_after_a_short_draw_opens_the_breaker_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shortest draw must still lead to a real probe whose failure reopens the
    breaker for a new period; pybreaker refusing the probe unseen left it open with
    no time left, so the dispatcher probed again at once, in a loop."""
    monkeypatch.setattr("plausible_wsgi.delivery.policies.JITTER.uniform", lambda low, high: low)
    # A clock of our own: a stall of the machine between two lines cannot eat the draw.
    now = [1000.0]
    config = pw.CircuitBreakerConfig(max_consecutive_failures=1, timeout=0.4, jitter=0.5)
    breaker = Breaker(config, clock=lambda: now[0])
    breaker.record_failure(Admission.NORMAL, ConnectionRefusedError())
    assert breaker.seconds_until_probe() == pytest.approx(0.2)  # 0.4 s, drawn at its shortest
    assert breaker.admit() is Admission.DENIED
    now[0] += 0.2
    assert breaker.seconds_until_probe() == 0
    admission = breaker.admit()
    assert admission is Admission.PROBE
    breaker.record_failure(admission, ConnectionRefusedError())
    assert breaker.state == "open"
    # A new open period, not an instant retry:
    assert breaker.seconds_until_probe() == pytest.approx(0.2)
    assert breaker.admit() is Admission.DENIED


def test_self_hosted_endpoint_with_path_prefix(http_sink: Sink, make_collector: Make) -> None:
    collector = make_collector(http_sink.url + "/plausible/")
    collector.track("E", url=URL)
    assert collector.flush(5)
    assert http_sink.hits[0].path == "/plausible/api/event"


def test_retry_after_http_date_is_honoured() -> None:
    from email.utils import formatdate

    from plausible_wsgi.delivery.retry_after import parse_retry_after

    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("field", ["url", "referrer", "user_agent"])
def test_the_byte_bound_counts_each_long_field(
    http_sink: Sink, make_collector: Make, field: str
) -> None:
    # 100 events of ~0.7 KB fit in 100 KB; with one field ~1-2 KB long they do not.
    # Fails if the size estimate leaves that field out.
    collector = make_collector(
        http_sink.url, max_buffer_bytes=100_000, batch_size=10_000, flush_interval=3600
    )
    fields: dict[str, Any] = {
        "url": URL,
        "referrer": "https://news.example.org/",
        "user_agent": UA,
        "client_ip": "203.0.113.7",
    }
    long = {
        "url": URL + "&utm_term=" + "a" * 1900,
        "referrer": "https://news.example.org/" + "a" * 1900,
        "user_agent": UA + " " + "x" * 900,
    }
    for _ in range(100):
        assert collector.track_pageview(**fields)
    assert collector.stats().dropped == {}
    fields[field] = long[field]
    for _ in range(100):
        assert collector.track_pageview(**fields)
    stats = collector.stats()
    assert stats.dropped["queue_full"] > 100  # the short ones and some long ones went
    assert stats.queued + stats.dropped["queue_full"] == 200
