"""before_send, on_error and on_drop: called in delivery threads, typed, never fatal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from sink import Answer, Sink, dead_endpoint

import plausible_wsgi as pw
from plausible_wsgi.receiver import PlausibleReceiver

URL = "https://example.com/pricing"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
Make = Callable[..., pw.PlausibleCollector]


class Calls:
    """Records hook calls and the threads they ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, str, str]] = []
        self.cond = threading.Condition()

    def hook(self, kind: str) -> Callable[[pw.Event, Any, str], None]:
        def record(event: pw.Event, reason: Any, detail: str) -> None:
            with self.cond:
                self.calls.append((kind, event, reason, detail, threading.current_thread().name))
                self.cond.notify_all()

        return record

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, Any, Any, str, str]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.calls) < n:
                remaining = deadline - time.monotonic()
                assert remaining > 0, self.calls
                self.cond.wait(remaining)
            return list(self.calls)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def unknown_site() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["other.example"]) as receiver:
        yield receiver


def test_before_send_enriches_once_per_event_in_a_delivery_thread(
    http_sink: Sink, make_collector: Make
) -> None:
    seen: list[str] = []

    def enrich(event: pw.Event) -> pw.Event:
        seen.append(threading.current_thread().name)
        return event._replace(props={**(event.props or {}), "region": "eu"})

    http_sink.answer(Answer(status=503))  # the first attempt fails: a retry follows
    c = make_collector(http_sink.url, before_send=enrich)
    assert c.track("Signup", url=URL, props={"plan": "pro"}, user_agent=UA)
    assert c.flush(10)
    hits = http_sink.wait_for(2, accepted=False)
    assert [h.json["props"] for h in hits] == [{"plan": "pro", "region": "eu"}] * 2
    assert len(seen) == 1  # once per event, however many attempts
    assert seen[0] != threading.current_thread().name
    assert c.stats().sent == 1
    assert c.stats().retried == 1


def test_before_send_veto_is_a_drop_and_reaches_on_drop(
    http_sink: Sink, make_collector: Make, calls: Calls
) -> None:
    c = make_collector(
        http_sink.url,
        before_send=lambda e: None if e.name == "Secret" else e,
        on_drop=calls.hook("drop"),
    )
    c.track("Secret", url=URL)
    c.track("Public", url=URL)
    assert c.flush(10)
    [(kind, event, reason, detail, _)] = calls.wait_for(1)
    assert (kind, event.name, reason, detail) == (
        "drop",
        "Secret",
        pw.DropReason.VETOED,
        "before_send returned None",
    )
    assert [h.json["name"] for h in http_sink.wait_for(1)] == ["Public"]
    stats = c.stats()
    assert (stats.sent, dict(stats.dropped), stats.last_drop_reason) == (
        1,
        {"vetoed": 1},
        "vetoed",
    )
    assert stats.breaker_state == "closed"


def test_track_never_runs_a_hook(http_sink: Sink, make_collector: Make) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(event: pw.Event) -> pw.Event:
        entered.set()
        release.wait(10)
        return event

    c = make_collector(http_sink.url, batch_size=1, before_send=slow)
    c.track("One", url=URL)
    assert entered.wait(10)  # a worker is inside the hook ...
    for _ in range(5):  # ... and track() still returns, without waiting for it
        assert c.track("More", url=URL)
    assert not release.is_set()
    release.set()
    assert c.flush(10)
    assert c.stats().sent == 6


def test_on_error_for_a_rejected_event_with_the_answer(
    http_sink: Sink, make_collector: Make, calls: Calls
) -> None:
    http_sink.answer(Answer(status=400, body=b'{"errors": {"name": ["is invalid"]}}'))
    c = make_collector(http_sink.url, on_error=calls.hook("error"))
    c.track("Bad", url=URL)
    assert c.flush(10)
    [(kind, event, reason, detail, thread)] = calls.wait_for(1)
    assert (kind, event.name, reason) == ("error", "Bad", pw.Settlement.REJECTED)
    assert detail.startswith("HTTP 400")
    assert "is invalid" in detail
    assert thread != threading.current_thread().name


def test_on_error_when_the_retries_are_spent(make_collector: Make, calls: Calls) -> None:
    c = make_collector(
        dead_endpoint(),
        retry=pw.RetryConfig(max_retries=1, initial_backoff=0.01, max_backoff=0.01),
        circuit_breaker=None,
        on_error=calls.hook("error"),
    )
    c.track("Lost", url=URL)
    c.flush(10)
    [(_, event, reason, detail, _)] = calls.wait_for(1)
    assert (event.name, reason) == ("Lost", pw.Settlement.GAVE_UP)
    assert detail
    assert c.stats().failed == 1


def test_on_drop_when_plausible_drops_it(
    unknown_site: PlausibleReceiver, make_collector: Make, calls: Calls
) -> None:
    c = make_collector(unknown_site.url, on_drop=calls.hook("drop"))
    c.track("Signup", url=URL, user_agent=UA, client_ip="8.8.8.8")
    assert c.flush(10)
    [(_, event, reason, detail, _)] = calls.wait_for(1)
    assert (event.name, reason) == ("Signup", pw.DropReason.SERVER_DROPPED)
    assert detail.startswith("x-plausible-dropped")
    assert c.stats().last_drop_reason == "server_dropped"


def test_on_drop_for_queue_full_runs_in_a_worker_not_in_track(
    http_sink: Sink, make_collector: Make, calls: Calls
) -> None:
    c = make_collector(
        http_sink.url,
        max_queue_size=2,
        batch_size=1000,
        flush_interval=3600,
        on_drop=calls.hook("drop"),
    )
    for i in range(5):
        assert c.track("E", url=URL, props={"i": i})
    assert calls.calls == []  # nothing called from track()
    assert c.flush(10)
    got = calls.wait_for(3)
    assert sorted(call[1].props["i"] for call in got) == ["0", "1", "2"]
    assert {call[2] for call in got} == {pw.DropReason.QUEUE_FULL}
    assert threading.current_thread().name not in {call[4] for call in got}
    assert c.stats().last_drop_reason == "queue_full"


def test_on_drop_for_events_cut_off_at_close(make_collector: Make, calls: Calls) -> None:
    c = make_collector(
        dead_endpoint(), batch_size=1000, flush_interval=3600, on_drop=calls.hook("drop")
    )
    c.track("Late", url=URL)
    c.track("Late", url=URL)
    c.close(timeout=0)
    got = calls.wait_for(2)
    assert {(call[1].name, call[2]) for call in got} == {("Late", pw.DropReason.SHUTDOWN)}


def test_a_raising_hook_is_counted_logged_once_and_delivery_goes_on(
    http_sink: Sink, make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(event: pw.Event, reason: object, detail: str) -> None:
        raise RuntimeError(f"secret {event.url}")

    def bad_before(event: pw.Event) -> Optional[pw.Event]:
        raise ValueError("nope")

    http_sink.answer(*[Answer(status=400)] * 3)
    caplog.set_level(logging.DEBUG, logger="plausible_wsgi")
    c = make_collector(http_sink.url, before_send=bad_before, on_error=boom, max_workers=1)
    for _ in range(3):
        c.track("Bad", url=URL)
    assert c.flush(10)
    c.track("Good", url=URL)
    assert c.flush(10)
    stats = c.stats()
    assert (stats.failed, stats.sent) == (3, 1)  # sent unchanged when before_send raised
    assert stats.hook_errors == 7  # 4 before_send + 3 on_error
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # once per hook (rate-limited)
    assert all(URL not in r.getMessage() for r in errors)


def test_before_send_returning_an_invalid_event_sends_the_original(
    http_sink: Sink, make_collector: Make
) -> None:
    c = make_collector(http_sink.url, before_send=lambda e: e._replace(url="not a url"))
    c.track("E", url=URL)
    assert c.flush(10)
    assert http_sink.wait_for(1)[0].json["url"] == URL
    assert c.stats().hook_errors == 1


def test_hooks_must_be_callable() -> None:
    with pytest.raises(pw.ConfigurationError, match="on_error"):
        pw.PlausibleCollector("example.com", on_error="log")  # type: ignore[arg-type]


def test_hooks_with_a_spool_see_the_event_and_can_enrich_it(
    tmp_path: Path, unknown_site: PlausibleReceiver, make_collector: Make, calls: Calls
) -> None:
    def enrich(event: pw.Event) -> pw.Event:
        return event._replace(props={"via": "hook"})

    c = make_collector(
        unknown_site.url,
        spool=str(tmp_path / "spool.db"),
        before_send=enrich,
        on_drop=calls.hook("drop"),
    )
    c.track("Signup", url=URL, revenue=pw.Revenue("EUR", "9.50"), user_agent=UA)
    assert c.flush(10)
    [(_, event, reason, _, _)] = calls.wait_for(1)
    assert reason is pw.DropReason.SERVER_DROPPED
    assert (event.name, event.url, event.props, event.user_agent) == (
        "Signup",
        URL,
        {"via": "hook"},
        UA,
    )
    assert str(event.revenue.amount) == "9.50"
    [received] = unknown_site.dropped
    assert received.props == {"via": "hook"}
