"""Reliability scenarios against a misbehaving Plausible stand-in, with exact accounting.

Each test is one scenario of docs/reliability.md: a fault, an invariant, and the
figures it measured (printed as ``FIGURE`` lines; run with ``-s`` to see them). Every
event carries a unique ``id`` prop, so "recorded exactly once" is checked per event.

Already covered elsewhere and not repeated here: single 503/429/5xx retries, 4xx not
retried, ``Retry-After`` in seconds pausing every worker and its clamp, breaker
opening on 503s, close() against a dead or silent endpoint (tests/test_collector.py);
exit flush and fork basics in subprocesses (tests/test_lifecycle.py).
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from faults import (
    UA,
    URL,
    Flapper,
    RecordingResetServer,
    duplicates,
    ids_received,
    measure_cpu,
)
from sink import wait_until

import plausible_wsgi as pw
from plausible_wsgi.delivery.retry_after import parse_retry_after
from plausible_wsgi.receiver import Fault, PlausibleReceiver

FAST_RETRY = pw.RetryConfig(max_retries=8, initial_backoff=0.005, max_backoff=0.05)


def figure(scenario: str, **values: Any) -> None:
    """Print the measured figures of a scenario (collected into docs/reliability.md)."""
    shown = " ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"FIGURE {scenario}: {shown}")


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


@pytest.fixture
def collectors() -> Iterator[list[pw.PlausibleCollector]]:
    made: list[pw.PlausibleCollector] = []
    yield made
    for collector in made:
        collector.close(timeout=1.0)


def make(made: list[pw.PlausibleCollector], endpoint: str, **kwargs: Any) -> pw.PlausibleCollector:
    kwargs.setdefault("shutdown_timeout", 2.0)
    kwargs.setdefault("retry", FAST_RETRY)
    collector = pw.PlausibleCollector("example.com", endpoint=endpoint, **kwargs)
    made.append(collector)
    return collector


def track(collector: pw.PlausibleCollector, event_id: object, name: str = "E") -> bool:
    return collector.track(
        name, url=URL, props={"id": str(event_id)}, user_agent=UA, client_ip="203.0.113.7"
    )


# -- retryable faults within the retry budget -------------------------------------------

STORM = (
    Fault(503),
    Fault(502),
    Fault(504),
    Fault(500),
    Fault(reset=True),
    Fault(429, {"Retry-After": "0"}),
)


@pytest.mark.parametrize("depth", [1, 8])
def test_fault_storm_within_the_budget_records_every_event_exactly_once(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector], depth: int
) -> None:
    collector = make(
        collectors,
        receiver.url,
        batch_size=5,
        max_workers=4,
        pipeline_depth=depth,
        # Bursts of 4 never trip it: this scenario is about retries, not the breaker.
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=10, timeout=0.05),
    )
    rounds, per_round = 40, 10
    start = time.monotonic()
    for r in range(rounds):
        # Bursts of four faults of every kind, consumed by whichever request comes next.
        receiver.enqueue_faults(*(STORM[(r + k) % len(STORM)] for k in range(4)))
        for i in range(per_round):
            assert track(collector, f"{r}-{i}")
        # One burst at a time: back-to-back bursts would be an outage (next test).
        assert collector.flush(10)
    elapsed = time.monotonic() - start
    total = rounds * per_round
    counts = ids_received(receiver)
    stats = collector.stats()
    faulted = sum(1 for a in receiver.attempts if a.fault is not None)
    figure(
        "fault-storm",
        tracked=total,
        recorded=len(counts),
        duplicates=duplicates(counts),
        attempts=receiver.request_count,
        faults=faulted,
        retried=stats.retried,
        failed=stats.failed,
        seconds=elapsed,
    )
    assert faulted == rounds * 4
    assert len(counts) == total
    assert (stats.sent, stats.failed, stats.accepted) == (total, 0, total)
    if depth > 1:
        # A reset also destroys the answers of the earlier pipelined requests still in
        # the client's socket buffer: those events are in doubt, and resent as counted
        # retries (retry_connection_cuts); none is lost, none resent uncounted.
        assert duplicates(counts) <= stats.retried
        return
    assert duplicates(counts) == 0
    assert receiver.request_count == total + faulted  # every fault cost one extra POST


def test_reset_before_the_server_read_the_event_is_retried(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector]
) -> None:
    # The receiver's reset happens before the event is processed: safe to resend.
    receiver.enqueue_faults(Fault(reset=True), Fault(reset=True, delay=0.05))
    collector = make(collectors, receiver.url, batch_size=1)
    assert track(collector, 1)
    assert collector.flush(5)
    assert ids_received(receiver) == {"1": 1}
    assert receiver.request_count == 3


@pytest.mark.parametrize("mode", ["no_answer", "mid_answer"])
def test_reset_after_the_server_processed_the_event_is_not_resent(
    collectors: list[pw.PlausibleCollector], mode: str
) -> None:
    server = RecordingResetServer(mode)
    try:
        collector = make(
            collectors,
            server.url,
            batch_size=1,
            # A cut before any answer is retried by default (mostly a server going
            # down before handling the request); at-most-once delivery turns that off.
            # A cut after the status line is never resent: the status is the answer.
            retry=pw.RetryConfig(
                max_retries=3,
                initial_backoff=0.005,
                max_backoff=0.01,
                retry_connection_cuts=mode == "mid_answer",
            ),
            circuit_breaker=None,
        )
        for i in range(3):
            assert track(collector, i)
        assert collector.flush(5)
        counts = server.ids
        figure(f"reset-after-processing-{mode}", recorded_copies=sum(counts.values()))
        assert counts == {"0": 1, "1": 1, "2": 1}
    finally:
        server.close()


# -- an outage longer than the retry budget -----------------------------------------------


def _track_cost(collector: pw.PlausibleCollector, start_id: int, n: int) -> float:
    """Mean seconds per track() call over ``n`` calls."""
    started = time.perf_counter()
    for i in range(start_id, start_id + n):
        track(collector, i)
    return (time.perf_counter() - started) / n


def test_long_outage_breaker_bounded_buffer_no_busy_loop(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector]
) -> None:
    bound = 300
    collector = make(
        collectors,
        receiver.url,
        batch_size=10,
        flush_interval=0.05,
        max_workers=4,
        max_queue_size=bound,
        retry=pw.RetryConfig(max_retries=2, initial_backoff=0.01, max_backoff=0.05),
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=3, timeout=0.25),
    )
    # Before: the server is up, events flow.
    cost_up = _track_cost(collector, 0, 200)
    assert collector.flush(10)
    assert len(receiver.wait_for(200)) == 200

    receiver.down()
    for i in range(200, 210):
        track(collector, i)
    wait_until(lambda: collector.stats().breaker_state != "closed", timeout=5)
    opened = collector.stats()
    cost_down = _track_cost(collector, 210, 1000)
    # Nothing to do but wait for the server: the delivery threads must be idle.
    with measure_cpu() as cpu:
        threading.Event().wait(2.0)
    during = collector.stats()
    tracked_in_outage = 1010

    receiver.up()
    assert collector.flush(15)
    stats = collector.stats()
    counts = ids_received(receiver)
    after = {k for k in counts if int(k) >= 200}
    figure(
        "long-outage",
        bound=bound,
        tracked_in_outage=tracked_in_outage,
        breaker_after_failures=opened.breaker_state,
        queued_during=during.queued,
        delivered_after=len(after),
        dropped_queue_full=stats.dropped.get("queue_full", 0),
        duplicates=duplicates(counts),
        cpu_2s_outage=cpu["cpu"],
        track_us_up=cost_up * 1e6,
        track_us_down=cost_down * 1e6,
    )
    assert during.queued == bound
    assert during.breaker_state in ("open", "half-open")
    assert cpu["cpu"] < 0.2, f"{cpu['cpu']:.3f} s CPU in a 2 s outage: a thread is spinning"
    assert len(after) == bound  # the newest `bound` events, each exactly once
    assert duplicates(counts) == 0
    assert stats.dropped == {"queue_full": tracked_in_outage - bound}
    assert (stats.sent, stats.failed) == (200 + bound, 0)
    assert stats.breaker_state == "closed"
    # track()'s cost during the outage is a figure, not a threshold a loaded machine
    # could break: bench/memory.py's "outage: track() cost vs healthy endpoint".


# -- Retry-After ----------------------------------------------------------------------------


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "at_least", "at_most"),
    [
        # The upper bounds only tell the pause asked for from the 60 s clamp, or the
        # clamp from the pause asked for: seconds of margin for a loaded machine.
        pytest.param(lambda: "1", 60.0, 0.9, 9.0, id="seconds"),
        # HTTP-dates have a one-second resolution: "now + 2 s" means 1 to 2 s.
        pytest.param(lambda: _http_date(2), 60.0, 0.9, 9.0, id="http-date"),
        pytest.param(lambda: "1000000000", 0.6, 0.5, 9.0, id="absurd-seconds"),
        pytest.param(lambda: "Fri, 31 Dec 9999 23:59:59 GMT", 0.6, 0.5, 9.0, id="absurd-http-date"),
    ],
)
def test_retry_after_pauses_every_worker_and_is_clamped(
    receiver: PlausibleReceiver,
    collectors: list[pw.PlausibleCollector],
    retry_after: Any,
    max_retry_after: float,
    at_least: float,
    at_most: float,
) -> None:
    receiver.enqueue_faults(Fault(429, {"Retry-After": retry_after()}))
    retry = pw.RetryConfig(initial_backoff=0.005, max_backoff=0.01, max_retry_after=max_retry_after)
    collector = make(collectors, receiver.url, batch_size=1, max_workers=4, retry=retry)
    assert track(collector, 0)
    [throttled] = receiver.wait_for_attempts(1)
    # The receiver records the attempt before it answers: wait until the collector has
    # read the answer, or the events below can go out before it knows of the pause.
    wait_until(lambda: collector.stats().last_failure_at is not None)
    for i in range(1, 8):  # other workers, other events: all wait for the same pause
        assert track(collector, i)
    assert collector.flush(10)
    later = receiver.attempts[1:]
    pause = min(a.received_at for a in later) - throttled.received_at
    figure(f"retry-after-{retry_after()[:12]!r}", pause=pause, clamp=max_retry_after)
    assert len(later) == 8
    assert at_least <= pause <= at_most
    assert ids_received(receiver) == {str(i): 1 for i in range(8)}


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", ""])
def test_unreadable_retry_after_falls_back_to_backoff(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector], value: str
) -> None:
    receiver.enqueue_faults(Fault(503, {"Retry-After": value}))
    collector = make(collectors, receiver.url, batch_size=1)
    assert track(collector, 0)
    assert collector.flush(5)
    first, second = receiver.attempts
    # Unreadable is "no server delay": the retry waits the backoff, not a guess.
    # (The gap itself is a figure, not an assertion: a loaded machine stretches it.)
    assert parse_retry_after(value) is None
    figure(f"unreadable-retry-after-{value!r}", pause=second.received_at - first.received_at)
    assert ids_received(receiver) == {"0": 1}


def test_retry_after_with_a_non_ascii_digit_is_ignored(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector]
) -> None:
    receiver.enqueue_faults(Fault(503, {"Retry-After": "\xb2"}))
    collector = make(collectors, receiver.url, batch_size=1)
    assert track(collector, 0)
    assert collector.flush(5)
    assert collector.stats().sent == 1


# -- read timeouts ------------------------------------------------------------------------


def test_answer_after_the_client_timeout_is_not_retried(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector]
) -> None:
    receiver.app.delay = 0.4  # every answer comes after the client gave up
    collector = make(
        collectors,
        receiver.url,
        batch_size=1,
        max_workers=4,
        timeout=0.1,
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=100, timeout=1),
    )
    n = 6
    for i in range(n):
        assert track(collector, i)
    assert collector.flush(5)
    stats = collector.stats()
    # The server still processes every request it got: each exactly once.
    counts = ids_received(receiver)
    receiver.wait_for(n)
    counts = ids_received(receiver)
    figure(
        "read-timeout",
        tracked=n,
        attempts=receiver.request_count,
        recorded=len(counts),
        duplicates=duplicates(counts),
        failed=stats.failed,
        retried=stats.retried,
    )
    assert receiver.request_count == n
    assert (stats.sent, stats.failed, stats.retried) == (0, n, 0)
    assert counts == {str(i): 1 for i in range(n)}


# -- exit ---------------------------------------------------------------------------------


def _misbehave(receiver: PlausibleReceiver, behaviour: str) -> Flapper | None:
    if behaviour == "slow":
        receiver.app.delay = 5.0
    elif behaviour == "refusing":
        receiver.down()
    elif behaviour == "storm":
        receiver.enqueue_faults(*[Fault(503)] * 2000)
    elif behaviour == "retry-after":
        receiver.enqueue_faults(*[Fault(429, {"Retry-After": "30"})] * 100)
    elif behaviour == "flapping":
        flapper = Flapper(receiver, down_for=0.2, up_for=0.1, start_down=True).start()
        wait_until(lambda: flapper.outages >= 1, timeout=5)
        return flapper
    return None


BEHAVIOURS = ["slow", "refusing", "storm", "retry-after", "flapping"]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_close_returns_within_shutdown_timeout_whatever_the_server_does(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector], behaviour: str
) -> None:
    flapper = _misbehave(receiver, behaviour)
    try:
        collector = make(
            collectors,
            receiver.url,
            batch_size=1,
            max_workers=4,
            timeout=30,
            shutdown_timeout=0.5,
            retry=pw.RetryConfig(max_retries=50, initial_backoff=0.01, max_backoff=0.1),
            circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=0.1),
        )
        n = 40
        for i in range(n):
            assert track(collector, i)
        started = time.monotonic()
        collector.close()
        elapsed = time.monotonic() - started
        wait_until(lambda: collector.stats().in_flight == 0, timeout=3)
    finally:
        if flapper is not None:
            flapper.stop()
    stats = collector.stats()
    counts = ids_received(receiver)
    figure(
        f"close-{behaviour}",
        seconds=elapsed,
        sent=stats.sent,
        failed=stats.failed,
        dropped=dict(stats.dropped),
        recorded=len(counts),
        duplicates=duplicates(counts),
    )
    # Without the bound this takes at least the server's 30 s timeout (times 50
    # retries); the margin is for a loaded machine (the real figure is above).
    assert elapsed < 0.5 + 15
    assert stats.accepted == n
    assert stats.queued == 0
    assert stats.sent + stats.failed + sum(stats.dropped.values()) == n
    assert set(stats.dropped) <= {"shutdown"}
    assert duplicates(counts) == 0
    # A slow server may record an event the client gave up on; never the reverse.
    assert len(counts) >= stats.sent


EXIT_SCRIPT = """
import atexit, time
import plausible_wsgi as pw

@atexit.register
def report():
    # atexit runs the last registered first: the library's exit flush, registered
    # when its first thread started (below), runs before this.
    s = c.stats()
    print("elapsed", round(time.monotonic() - started, 3))
    print("stats", s.accepted, s.sent, s.failed, s.queued, dict(s.dropped))

c = pw.PlausibleCollector("example.com", endpoint={url!r}, timeout=30, batch_size=1,
    shutdown_timeout=0.5,
    retry=pw.RetryConfig(max_retries=50, initial_backoff=0.01, max_backoff=0.1),
    circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=0.1))
for i in range({n}):
    c.track("E", url="https://example.com/", props={{"id": str(i)}},
            user_agent="Mozilla/5.0 Firefox/128.0")
started = time.monotonic()
"""


@pytest.mark.slow
@pytest.mark.parametrize("behaviour", ["slow", "storm", "retry-after", "flapping"])
def test_interpreter_exit_is_bounded_whatever_the_server_does(
    receiver: PlausibleReceiver, behaviour: str
) -> None:
    flapper = _misbehave(receiver, behaviour)
    n = 40
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(EXIT_SCRIPT.format(url=receiver.url, n=n))],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        total = time.monotonic() - started
    finally:
        if flapper is not None:
            flapper.stop()
    assert proc.returncode == 0, proc.stderr
    elapsed = float(proc.stdout.split("elapsed ")[1].split()[0])
    accepted, sent, failed, queued, dropped = proc.stdout.split("stats ")[1].split(" ", 4)
    figure(
        f"exit-{behaviour}",
        exit_flush_seconds=elapsed,
        process_seconds=total,
        sent=sent,
        failed=failed,
        dropped=dropped.strip(),
    )
    assert elapsed < 0.5 + 15, proc.stdout  # unbounded, it would take minutes
    assert int(accepted) == n
    assert int(queued) == 0
    counts = ids_received(receiver)
    assert duplicates(counts) == 0
    assert len(counts) >= int(sent)


# -- many threads, flapping server -------------------------------------------------------


def test_many_threads_tracking_through_a_flapping_server_exact_counts(
    receiver: PlausibleReceiver, collectors: list[pw.PlausibleCollector]
) -> None:
    collector = make(
        collectors,
        receiver.url,
        batch_size=10,
        flush_interval=0.05,
        max_workers=4,
        # Retries enough to outlast any outage: 20 (about 0.6 s of backoff) ran out once
        # at load 12, where the flapper's 0.08 s outages stretch (1 of 1200 failed, never
        # reached the receiver). The property is exact counts, not the size of a budget.
        retry=pw.RetryConfig(max_retries=200, initial_backoff=0.005, max_backoff=0.05),
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=0.05),
    )
    threads, per_thread = 8, 150
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            track(collector, f"{t}-{i}")
            time.sleep(0.01)  # a steady rate for 1.5 s, so the events meet the flaps

    started = time.monotonic()
    with Flapper(receiver, down_for=0.08, up_for=0.08) as flapper:
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    assert collector.flush(20)
    elapsed = time.monotonic() - started
    total = threads * per_thread
    stats = collector.stats()
    counts = ids_received(receiver)
    figure(
        "threads-flapping",
        threads=threads,
        tracked=total,
        outages=flapper.outages,
        recorded=len(counts),
        duplicates=duplicates(counts),
        attempts=receiver.request_count,
        retried=stats.retried,
        seconds=elapsed,
    )
    assert flapper.outages >= 3
    assert (stats.accepted, stats.sent, stats.failed, stats.dropped) == (total, total, 0, {})
    assert len(counts) == total
    assert duplicates(counts) == 0


# -- fork, flapping server -------------------------------------------------------------------

FORK_SCRIPT = """
import os, sys
import plausible_wsgi as pw
c = pw.PlausibleCollector("example.com", endpoint={url!r}, batch_size=1000,
    flush_interval=3600, shutdown_timeout=10,
    retry=pw.RetryConfig(max_retries=20, initial_backoff=0.01, max_backoff=0.05),
    circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=0.05))
def track(who, i):
    c.track("E", url="https://example.com/", props={{"id": f"{{who}}-{{i}}"}},
            user_agent="Mozilla/5.0 Firefox/128.0")
for i in range(20):
    track("parent", i)
pid = os.fork()
if pid == 0:
    for i in range(30):
        track("child", i)
    ok = c.flush(10)
    print("child", ok, c.stats().sent, dict(c.stats().dropped), flush=True)
    os._exit(0 if ok else 1)
ok = c.flush(10)
_, status = os.waitpid(pid, 0)
print("parent", ok, c.stats().sent, "child status", status, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_under_a_flapping_server_each_process_delivers_its_own_once(
    receiver: PlausibleReceiver,
) -> None:
    with Flapper(receiver, down_for=0.1, up_for=0.1, start_down=True) as flapper:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT.format(url=receiver.url))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    counts = ids_received(receiver)
    figure(
        "fork-flapping",
        outages=flapper.outages,
        recorded=len(counts),
        duplicates=duplicates(counts),
        output=proc.stdout.replace("\n", " | "),
    )
    # The child counts only its own events: the parent's 20 are the parent's to send.
    assert "child True 30 {}" in proc.stdout, proc.stdout
    assert "parent True 20 child status 0" in proc.stdout, proc.stdout
    expected = {f"parent-{i}" for i in range(20)} | {f"child-{i}" for i in range(30)}
    assert set(counts) == expected
    assert duplicates(counts) == 0


def test_cut_before_any_answer_is_resent_by_default_at_least_once(
    collectors: list[pw.PlausibleCollector],
) -> None:
    # The default trades a possible double count for not losing events to a server
    # going down mid-request; RetryConfig(retry_connection_cuts=False) trades back.
    server = RecordingResetServer("no_answer")
    try:
        collector = make(
            collectors,
            server.url,
            batch_size=1,
            retry=pw.RetryConfig(max_retries=3, initial_backoff=0.005, max_backoff=0.01),
            circuit_breaker=None,
        )
        assert track(collector, 0)
        assert collector.flush(5)
        copies = server.ids["0"]
        figure("cut-before-answer-default", recorded_copies=copies)
        assert copies == 4  # the first attempt and 3 retries, each processed by the server
        assert collector.stats().failed == 1
    finally:
        server.close()
