"""The engine's pacing: the linger and the ramp.

Linger: under fast traffic a drained worker sleeps on a timer and ``put()`` does not
wake it, so events arrive at the worker as large batches. Each linger test stretches
or shortens the linger (``pacing.LINGER``) so that what it checks is a condition,
never a race against the clock: with a linger of an hour, an event that went out
proves a wake-up that should (or should not) have happened.

Ramp: pure decisions, fed attempt times.
"""

from __future__ import annotations

import threading
import time

import pytest
from sink import wait_until

from plausible_wsgi.delivery import pacing
from plausible_wsgi.delivery.engine import DeliveryEngine
from plausible_wsgi.delivery.pacing import RAMP, Ramp
from plausible_wsgi.stats import Settlement

HOUR = 3600.0
ITEM_BYTES = 100


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, item: int) -> Settlement:
        with self.lock:
            self.sent.append(item)
        return Settlement.SENT


def lingering_engine(
    recorder: Recorder,
    *,
    batch_size: int = 2,
    max_queue_size: int = 1000,
    max_buffer_bytes: int = 1 << 20,
) -> DeliveryEngine[int]:
    """An engine whose first batch went out fast, so its worker now lingers. Each item
    is ``ITEM_BYTES`` bytes for the byte bound."""
    engine: DeliveryEngine[int] = DeliveryEngine(
        recorder,
        name="linger-test",
        key=object(),
        batch_size=batch_size,
        flush_interval=HOUR,
        max_queue_size=max_queue_size,
        max_buffer_bytes=max_buffer_bytes,
        size_of=lambda item: ITEM_BYTES,
    )
    for item in range(batch_size):
        engine.put(item)
    # Settled under the same lock hold that ends the drain and arms the linger.
    wait_until(lambda: engine.stats().sent == batch_size, timeout=30)
    return engine


def test_events_put_while_lingering_wait_and_flush_cuts_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pacing, "LINGER", HOUR)
    recorder = Recorder()
    engine = lingering_engine(recorder)
    for item in range(2, 12):  # five batches' worth: put() wakes nobody
        engine.put(item)
    assert engine.stats().queued == 10
    assert engine.flush(60)  # would otherwise wait for the hour
    assert engine.stats().sent == 12
    for item in range(12, 20):
        engine.put(item)
    engine.close(60)  # close cuts through it too: nothing dropped
    stats = engine.stats()
    assert stats.sent == 20
    assert not stats.dropped
    assert sorted(recorder.sent) == list(range(20))


def test_the_linger_ends_by_itself_and_sends_what_came(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "LINGER", 0.2)
    recorder = Recorder()
    engine = lingering_engine(recorder)
    engine.put(2)  # below batch_size, and the interval tick is an hour away
    wait_until(lambda: engine.stats().sent == 3, timeout=30)
    engine.close(5)


def test_half_a_buffer_wakes_a_lingering_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "LINGER", HOUR)
    recorder = Recorder()
    engine = lingering_engine(recorder, max_queue_size=20)
    for item in range(2, 12):  # the tenth fills half the buffer
        engine.put(item)
    wait_until(lambda: engine.stats().sent == 12, timeout=30)  # no flush()
    assert not engine.stats().dropped
    engine.close(5)


def test_half_the_byte_bound_wakes_a_lingering_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # Large events reach the byte bound long before the item bound: waiting for the
    # linger would make the buffer drop the oldest.
    monkeypatch.setattr(pacing, "LINGER", HOUR)
    recorder = Recorder()
    engine = lingering_engine(recorder, max_buffer_bytes=20 * ITEM_BYTES)
    for item in range(2, 12):  # the tenth fills half the bytes; a thousand items fit
        engine.put(item)
    wait_until(lambda: engine.stats().sent == 12, timeout=30)  # no flush()
    assert not engine.stats().dropped
    engine.close(5)


def test_batch_size_one_never_lingers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "LINGER", HOUR)
    recorder = Recorder()
    engine = lingering_engine(recorder, batch_size=1)
    engine.put(1)
    wait_until(lambda: engine.stats().sent == 2, timeout=30)  # no flush()
    engine.close(5)


def test_slow_traffic_does_not_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch that took longer than the linger to gather: batch_size decides again.
    monkeypatch.setattr(pacing, "LINGER", HOUR)
    recorder = Recorder()
    engine: DeliveryEngine[int] = DeliveryEngine(
        recorder, name="linger-test", key=object(), batch_size=2, flush_interval=HOUR
    )
    with engine._lock:
        engine._linger.quiet_since -= 10 * HOUR  # as if the first batch took ten hours to come
    engine.put(0)
    engine.put(1)
    wait_until(lambda: engine.stats().sent == 2, timeout=30)
    engine.put(2)
    engine.put(3)  # the batch is full: put() wakes the worker
    wait_until(lambda: engine.stats().sent == 4, timeout=30)  # no flush()
    engine.close(5)


# -- the ramp: when another worker joins, and when it leaves --------------------------


def attempt(ramp: Ramp, seconds: float, me: int = 1) -> None:
    """Report an attempt that took ``seconds`` (its start moved back that far)."""
    started = ramp.started(me) - seconds
    ramp.ended(me, started)


def test_one_slow_attempt_among_fast_ones_does_not_look_like_a_slow_server() -> None:
    ramp = Ramp()
    for _ in range(20):
        attempt(ramp, 0.0001)
    attempt(ramp, 1.0)  # preempted once on a loaded machine
    assert ramp.took < RAMP
    assert ramp.crowded(2)  # a joined worker leaves


def test_a_slow_server_lets_workers_join_and_keeps_them() -> None:
    ramp = Ramp()
    attempt(ramp, 0.05)  # the first answers of a 50 ms server
    attempt(ramp, 0.05)
    assert ramp.took >= RAMP
    assert not ramp.crowded(4)
    now = ramp.started(1)  # a worker is waiting on the server right now
    assert ramp.join_in(now, draining=1) is None


def test_an_idle_worker_joins_a_drain_only_after_every_drainer_waited_ramp() -> None:
    ramp = Ramp()
    start = ramp.started(1)
    wait = ramp.join_in(start, draining=1)
    assert wait is not None
    assert 0 < wait <= RAMP
    assert ramp.join_in(start + RAMP, draining=1) is None  # stuck on the server: join
    assert ramp.join_in(start + RAMP, draining=2) == RAMP  # another is between events
    assert not ramp.crowded(1)  # the only drainer never leaves


def test_put_wakes_no_spare_while_a_drain_keeps_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # The drainer is held inside its first attempt; with a ramp of an hour it never
    # counts as stuck, so the idle spare has no reason to wake for the events put
    # meanwhile (it used to be notified by every put() once batch_size waited).
    monkeypatch.setattr(pacing, "RAMP", HOUR)
    release = threading.Event()
    recorder = Recorder()

    def send(item: int) -> Settlement:
        if item == 0:
            release.wait(30)
        return recorder(item)

    engine: DeliveryEngine[int] = DeliveryEngine(
        send, name="ramp-test", key=object(), batch_size=2, flush_interval=HOUR, max_workers=2
    )
    notified: list[int] = []
    real_notify = engine._work.notify

    def notify(n: int = 1) -> None:
        notified.append(n)
        real_notify(n)

    engine._work.notify = notify  # type: ignore[method-assign]
    engine.put(0)
    engine.put(1)
    wait_until(lambda: engine.stats().in_flight == 1 and engine._idle == 1, timeout=30)
    notified.clear()  # put(1) may have woken the first worker: that one was due
    for item in range(2, 22):
        engine.put(item)
    assert notified == []
    release.set()
    assert engine.flush(60)
    assert sorted(recorder.sent) == list(range(22))
    engine.close(5)


# -- the ramp: how many requests to pipeline ---------------------------------------------


def test_fast_attempts_pipeline_the_whole_batch() -> None:
    ramp = Ramp()
    assert ramp.depth(8, 8) == pacing.PROBE_DEPTH  # nothing timed yet: a probe
    attempt(ramp, 0.0001)
    assert ramp.depth(8, 8) == 8
    assert ramp.depth(1, 1) == 1


def test_slow_attempts_with_close_answers_pipeline_far_apart_ones_do_not() -> None:
    ramp = Ramp()
    attempt(ramp, 0.04)  # a 40 ms round trip: attempts are never fast
    assert ramp.depth(8, pacing.PROBE_DEPTH - 1) == 1  # too few waiting: no probe yet
    assert ramp.depth(8, 8) == pacing.PROBE_DEPTH  # a probe measures the gap ...
    assert ramp.depth(8, 8) == 1  # ... and only one per PROBE_EVERY
    ramp.answered_apart(0.0001)  # a far server answering fast
    assert ramp.depth(8, 8) == 8
    ramp.answered_apart(0.05)  # then a slow one: answers 50 ms apart
    ramp.answered_apart(0.05)
    assert ramp.depth(8, 8) == 1
    ramp.probe_after = 0.0  # PROBE_EVERY later
    assert ramp.depth(8, 8) == pacing.PROBE_DEPTH
    ramp.answered_apart(0.05)  # still far apart: the next probe waits twice as long
    ramp.probe_after = 0.0
    assert ramp.depth(8, 8) == pacing.PROBE_DEPTH
    assert ramp.probe_after - time.monotonic() > pacing.PROBE_EVERY
    ramp.answered_apart(0.0001)
    ramp.answered_apart(0.0001)  # close together again
    assert ramp.depth(8, 8) == 8
    assert ramp.probe_wait == pacing.PROBE_EVERY


def test_one_far_apart_pair_among_close_ones_does_not_stop_pipelining() -> None:
    ramp = Ramp()
    attempt(ramp, 0.04)
    for _ in range(20):
        ramp.answered_apart(0.0001)
    ramp.answered_apart(1.0)  # preempted once on a loaded machine
    assert ramp.depth(8, 8) == 8
