"""Misuse, signals, exit, memory bounds and endpoints that keep failing (issue 13).

Real servers on loopback, real threads, subprocesses and signals; every wait is on a
condition with a generous timeout.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from typing import Callable

import pytest
from faults import RecordingResetServer
from sink import Answer, Sink, dead_endpoint, wait_until

import plausible_wsgi as pw
from plausible_wsgi.delivery.deliverer import MAX_REQUEUES
from plausible_wsgi.delivery.engine import DeliveryEngine
from plausible_wsgi.delivery.failure import AttemptError
from plausible_wsgi.lifecycle import MANY_ALIKE
from plausible_wsgi.stats import Settlement

Make = Callable[..., pw.PlausibleCollector]
URL = "https://example.com/"


def run(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


# -- item 5: an event whose answer is cut is not resent at every probe --------------------


def test_an_event_cut_after_it_was_recorded_is_resent_a_bounded_number_of_times(
    make_collector: Make,
) -> None:
    server = RecordingResetServer("no_answer")  # records, then cuts: every time
    try:
        retry = pw.RetryConfig(max_retries=1, initial_backoff=0.001, max_backoff=0.002)
        collector = make_collector(
            server.url,
            batch_size=1,
            retry=retry,
            circuit_breaker=pw.CircuitBreakerConfig(
                max_consecutive_failures=1, timeout=0.02, jitter=0
            ),
        )
        collector.track("E", url=URL, props={"id": "only"})
        # Before: resent at every probe, forever (23 copies in 40 s with a 2 s breaker).
        wait_until(lambda: collector.stats().failed == 1, timeout=30)
        copies = server.ids["only"]
        stats = collector.stats()
        assert copies <= (1 + retry.max_retries) * (1 + MAX_REQUEUES)
        assert stats.retried == copies - 1  # every resend is counted
        assert stats.accepted == 1
        assert stats.queued == stats.in_flight == 0
    finally:
        server.close()


def test_a_refused_connection_is_kept_through_a_long_outage(make_collector: Make) -> None:
    """The cap is for events the server may have recorded; one that never reached it
    waits for the end of the outage however many probes fail."""
    collector = make_collector(
        dead_endpoint(),
        batch_size=1,
        retry=None,
        circuit_breaker=pw.CircuitBreakerConfig(max_consecutive_failures=1, timeout=0.01, jitter=0),
    )
    collector.track("E", url=URL)
    wait_until(lambda: collector.stats().retried > 3 * MAX_REQUEUES, timeout=30)
    stats = collector.stats()
    assert stats.failed == 0
    assert stats.queued + stats.in_flight == 1


# -- item 7: a collector built per request ------------------------------------------------


def _plausible_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("plausible:per-request"))


def test_collectors_built_per_request_warn_once_and_release_their_threads(
    http_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    n = 4 * MANY_ALIKE
    alive: list[pw.PlausibleCollector] = []
    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        for i in range(n):  # the mistake: one collector per request, kept by the app
            c = pw.PlausibleCollector("per-request.example.com", endpoint=http_sink.url)
            c.track("E", url=URL, props={"i": i})
            alive.append(c)
        # The ones built after the warning send at once (no 5 s window) ...
        http_sink.wait_for(n - MANY_ALIKE, timeout=30)
        # ... and end their thread when idle: at most the first ones still hold one.
        wait_until(lambda: _plausible_threads() <= MANY_ALIKE, timeout=30)
    warnings = [r for r in caplog.records if "collectors for the same site" in r.getMessage()]
    assert len(warnings) == 1
    assert "share it" in warnings[0].getMessage()
    for c in alive:
        c.close(timeout=5)
    assert sum(c.stats().sent for c in alive) == n


# -- item 8: signal handlers --------------------------------------------------------------
# The buffer is kept short: the properties are in track(), stats() and close() under
# signals; tracking 20,000 events runs them 20,000 times, and what does not fit is
# dropped and counted (settled) instead of costing the machine a POST each.


SIGNAL_PRELUDE = """
import os, signal, sys, time
import plausible_wsgi as pw
URL = "https://example.com/"
c = pw.PlausibleCollector("example.com", endpoint={url!r}, batch_size=50{options})
"""


def test_track_and_stats_from_a_signal_handler_never_deadlock(http_sink: Sink) -> None:
    proc = run(
        SIGNAL_PRELUDE.format(url=http_sink.url, options=", max_queue_size=1000")
        + """
fired = 0
inside = False
def handler(signum, frame):
    # Not nested in itself: on a loaded machine a handler can take longer than the
    # timer's period, and unbounded nesting is the test's doing, not the library's.
    global fired, inside
    if inside:
        return
    inside = True
    fired += 1
    c.track("FromHandler", url=URL)
    c.stats()
    inside = False
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
for i in range(20000):
    c.track("Main", url=URL)
    if i % 100 == 0:
        c.stats()
signal.setitimer(signal.ITIMER_REAL, 0, 0)
ok = c.flush(120)
s = c.stats()
settled = s.sent + s.dropped.get("queue_full", 0)
print("result", ok, fired > 0, settled == s.accepted, "uncounted", 20000 + fired - s.accepted)
""",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "result True True True uncounted " in proc.stdout, proc.stdout + proc.stderr
    uncounted = int(proc.stdout.rsplit("uncounted ", 1)[1].split()[0])
    if sys.version_info >= (3, 10):
        assert uncounted == 0
    else:
        # Python 3.9 runs a handler between almost any two bytecodes, also between the
        # read and the write of a count (3.10+: only at calls and loops): one of the
        # handler's counts can be overwritten. Seen: 6-7 of ~1,000; never an extra one.
        assert 0 <= uncounted < 100


def test_an_exception_from_a_signal_handler_inside_track_leaves_no_phantom(
    http_sink: Sink,
) -> None:
    proc = run(
        SIGNAL_PRELUDE.format(url=http_sink.url, options=", max_queue_size=1000")
        + """
class Interrupt(Exception):
    pass
def handler(signum, frame):
    if "plausible_wsgi" in frame.f_code.co_filename:  # only inside the library
        raise Interrupt
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
interrupted = 0
for i in range(20000):
    try:
        c.track("Main", url=URL)
    except Interrupt:
        interrupted += 1
    except BaseException as exc:
        print("unexpected", type(exc))
while True:
    try:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        break
    except Interrupt:
        interrupted += 1
print("result", interrupted > 0, c.flush(120), c.stats().queued + c.stats().in_flight)
""",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "result True True 0" in proc.stdout, proc.stdout + proc.stderr


def test_a_sigterm_handler_that_closes_and_exits_never_hangs(http_sink: Sink) -> None:
    # The property is the stop, not the delivery: a short queue keeps the flush in
    # close() small (unbounded, each of the twelve tracked and then sent thousands of
    # events, seconds of CPU); the signal still lands inside track() or stats().
    code = (
        SIGNAL_PRELUDE.format(url=http_sink.url, options=", max_queue_size=100")
        + """
def handler(signum, frame):
    c.close()
    sys.exit(0)
signal.signal(signal.SIGTERM, handler)
import threading
threading.Timer(float(sys.argv[1]), os.kill, (os.getpid(), signal.SIGTERM)).start()
while True:
    c.track("Main", url=URL)
    c.stats()
"""
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(0.05 + 0.01 * i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(12)
    ]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("a process whose SIGTERM handler closes the collector hung")
        assert proc.returncode == 0, err


# -- item 9: events tracked at exit by the app's own threads ------------------------------


def test_events_tracked_by_the_apps_threads_at_exit_are_delivered(http_sink: Sink) -> None:
    proc = run(
        f"""
import concurrent.futures, threading, time
import plausible_wsgi as pw
URL = "https://example.com/"
c = pw.PlausibleCollector("example.com", endpoint={http_sink.url!r}, batch_size=1000,
                          flush_interval=3600)
c.track("Main", url=URL, props={{"id": "main"}})
def late(prefix, n):
    time.sleep(0.3)  # still working after main returns
    for i in range(n):
        c.track("Late", url=URL, props={{"id": f"{{prefix}}{{i}}"}})
threading.Thread(target=late, args=("thread-", 100)).start()  # non-daemon
pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
pool.submit(time.sleep, 0.3)
for i in range(40):  # pending jobs of the app's own executor
    pool.submit(c.track, "Job", url=URL, props={{"id": f"job-{{i}}"}})
"""
    )
    assert proc.returncode == 0, proc.stderr
    hits = http_sink.wait_for(141, timeout=10)
    ids = sorted(h.json["props"]["id"] for h in hits)
    assert len(ids) == len(set(ids)) == 141


# -- item 10: the buffer bounded in bytes; header values capped ---------------------------


def test_the_buffer_is_bounded_in_bytes(http_sink: Sink, make_collector: Make) -> None:
    bound = 200_000
    collector = make_collector(
        http_sink.url, max_buffer_bytes=bound, batch_size=10_000, flush_interval=3600
    )
    props = {f"k{j}": "v" * 1900 for j in range(10)}  # about 20 KB an event
    for i in range(50):
        assert collector.track("Big", url=URL, props={**props, "i": i})
    stats = collector.stats()
    assert stats.queued < 10  # 200 KB hold fewer than ten of them
    assert stats.dropped == {"queue_full": 50 - stats.queued}
    assert collector.flush(10)
    kept = sorted(int(h.json["props"]["i"]) for h in http_sink.hits)
    assert kept == list(range(50 - stats.queued, 50))  # the newest, oldest dropped


def test_a_huge_user_agent_is_cut_before_it_is_buffered(
    http_sink: Sink, make_collector: Make
) -> None:
    collector = make_collector(http_sink.url)
    collector.track("E", url=URL, user_agent="Mozilla/5.0 " + "x" * 10_000_000)
    assert collector.flush(10)
    assert len(http_sink.hits[0].headers["User-Agent"]) == 1024


# -- item 11: concurrent close() ------------------------------------------------------------


def test_every_concurrent_close_waits_for_the_same_settled_state(
    http_sink: Sink, make_collector: Make
) -> None:
    http_sink.default = Answer(202, delay=0.002)
    collector = make_collector(http_sink.url, batch_size=10_000, flush_interval=3600)
    for i in range(300):
        collector.track("E", url=URL, props={"i": i})
    seen: list[tuple[int, int]] = []
    start = threading.Barrier(32)

    def closer() -> None:
        start.wait()
        collector.close(timeout=60)
        stats = collector.stats()
        seen.append((stats.queued, stats.in_flight))

    threads = [threading.Thread(target=closer) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [(0, 0)] * 32  # before: 31 returned at once, 1,000 still queued
    assert collector.stats().sent == 300


# -- item 12: locks renewed after fork ------------------------------------------------------

#: Script lines: a thread takes every lock in ``locks``, then the main thread forks.
FORK_WITH_LOCKS_HELD = """
held, release = threading.Event(), threading.Event()
def hold():
    for lock in locks:
        lock.acquire()
    held.set()
    release.wait()
    for lock in reversed(locks):
        lock.release()
threading.Thread(target=hold).start()
held.wait()
pid = os.fork()
if pid == 0:
{child}
    os._exit(0 if ok else 3)
release.set()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def assert_child_forked_with_locks_held_exits(setup: str, child: str) -> None:
    """``setup`` defines ``locks``; ``child`` (indented) runs in the child, sets ``ok``."""
    script = textwrap.dedent(setup) + FORK_WITH_LOCKS_HELD.format(child=child)
    proc = run(script, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "child 0" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_every_lock_is_held_still_delivers_and_exits(
    http_sink: Sink,
) -> None:
    setup = f"""
    import os, threading
    import plausible_wsgi as pw
    URL = "https://example.com/"
    c = pw.PlausibleCollector("example.com", endpoint={http_sink.url!r}, batch_size=1)
    c.track("Parent", url=URL)
    c.flush(5)
    locks = [c._engine._lock, c._rejections._lock, c._engine._warnings._lock]
    """
    child = """
    c.track("Child", url=URL)
    c._rejections.log(30, "k", "a rejection in the child")
    c._engine._warnings.log(30, "k", "a warning in the child")
    ok = c.flush(10)"""
    assert_child_forked_with_locks_held_exits(setup, child)
    assert {h.json["name"] for h in http_sink.wait_for(2)} == {"Parent", "Child"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_middlewares_locks_are_held_serves_and_exits() -> None:
    setup = """
    import os, threading
    from werkzeug.test import Client
    from werkzeug.wrappers import Response
    import plausible_wsgi as pw
    from plausible_wsgi.testing import MemoryCollector

    def app(environ, start_response):
        return Response("<p>hi</p>", content_type="text/html")(environ, start_response)

    UA = {"User-Agent": "Mozilla/5.0 Firefox/128.0"}
    mw = pw.PlausibleMiddleware(app, MemoryCollector())
    Client(mw).get("/", headers=UA)
    locks = [mw.recorder._lock, mw.recorder.counters._lock]
    """
    child = """
    before = mw.stats().requests
    Client(mw).get("/", headers=UA, buffered=True)
    mw.close()
    ok = mw.stats().requests == before + 1"""
    assert_child_forked_with_locks_held_exits(setup, child)


# -- item 13: the failure log says what happened -------------------------------------------


def test_a_failure_that_was_not_retried_is_not_logged_as_after_retries(
    make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    collector = make_collector(dead_endpoint(), retry=None, circuit_breaker=None)
    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        collector.track("E", url=URL)
        assert collector.flush(10)
    messages = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert messages
    assert all("not retried" in m and "after" not in m for m in messages)


# -- the engine's settle callback and the last success / failure times ----------------------


def test_on_settle_is_called_once_per_item_with_its_typed_settlement() -> None:
    settled: list[tuple[int, Settlement, str]] = []

    def send(item: int) -> Settlement:
        if item == 3:
            return Settlement.REJECTED
        if item == 4:
            return Settlement.SERVER_DROPPED
        if item == 5:
            raise AttemptError("status", "HTTP 503", status=503)
        return Settlement.SENT

    engine: DeliveryEngine[int] = DeliveryEngine(
        send,
        name="settle-test",
        batch_size=1,
        max_queue_size=3,
        retry=pw.RetryConfig(max_retries=1, initial_backoff=0, max_backoff=0),
        on_settle=lambda item, s: settled.append((item, s, threading.current_thread().name)),
    )
    engine._lock.acquire()  # hold the worker off so that the bound is reached
    try:
        for item in (-1, 0, 1, 2):  # -1 makes room for 2
            engine.put(item)
    finally:
        engine._lock.release()
    assert engine.flush(10)
    for item in (3, 4, 5):
        engine.put(item)
    assert engine.flush(10)
    engine.close(5)
    by_item = {item: s for item, s, _ in settled}
    assert len(settled) == len(by_item)  # exactly once each
    assert by_item[3] is Settlement.REJECTED
    assert by_item[4] is Settlement.SERVER_DROPPED
    assert by_item[5] is Settlement.GAVE_UP
    assert by_item[-1] is Settlement.QUEUE_FULL
    assert all(by_item[i] is Settlement.SENT for i in (0, 1, 2))
    assert all(name == "settle-test-worker" for _, _, name in settled)
    stats = engine.stats()
    assert stats.sent + stats.failed + sum(stats.dropped.values()) == len(settled)


def test_stats_report_the_last_success_and_failure_times(
    http_sink: Sink, make_collector: Make
) -> None:
    collector = make_collector(http_sink.url, batch_size=1)
    assert collector.stats().last_success_at is None
    assert collector.stats().last_failure_at is None
    collector.track("E", url=URL)
    assert collector.flush(5)
    success = collector.stats().last_success_at
    assert success is not None
    assert collector.stats().last_failure_at is None
    http_sink.answer(Answer(400, body=b"bad"))
    collector.track("E", url=URL)
    assert collector.flush(5)
    failure = collector.stats().last_failure_at
    assert failure is not None
    assert failure >= success
