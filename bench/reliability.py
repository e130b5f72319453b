"""Long fault-injection scenarios (a soak), with exact accounting at the end.

1. Soak: producers track events at a steady rate for ``--minutes`` while the local
   Plausible stand-in flaps (about 0.5 s down / 2 s up, ±50 % jitter) and, between
   outages, answers bursts of 503s, 429s with ``Retry-After`` and connection resets. The collector
   uses the library defaults (retry, breaker, buffer bound). At the end the server
   stays up, the collector is flushed and closed, and every event is accounted for:
   ``sent + failed + sum(dropped) == accepted``, each sent event recorded exactly
   once at the server (unique ``id`` prop), none recorded that was not tracked.
2. Long outage with the defaults: the server is down for longer than the breaker's
   30 s timeout; CPU of the process while nothing can be sent, then recovery.

Flaps are graceful by default (a flap never cuts a request the server already
recorded); ``--raw-flaps`` cuts them too, which shows the duplicates a reset after
processing causes (see the xfail in tests/test_reliability.py).

    python -m bench.reliability [--quick] [--minutes N] [--rate EVENTS_PER_S] [--raw-flaps]
                                [--breaker-timeout SECONDS] [--jitter FRACTION]

Exit status 1 when an invariant is broken.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faults import UA, URL, Flapper, duplicates, ids_received

import plausible_wsgi as pw
from plausible_wsgi.receiver import Fault, PlausibleReceiver

BURSTS = (
    (Fault(503), Fault(503), Fault(502)),
    (Fault(429, {"Retry-After": "1"}),),
    (Fault(reset=True), Fault(504)),
    (Fault(500), Fault(503, {"Retry-After": "2"})),
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def use_up_faults(receiver: PlausibleReceiver) -> None:
    """Answer the scripted faults still pending with requests of our own (an empty
    JSON body: rejected, never recorded as an event), so that recovery is not held
    up by a probe meeting a fault left over from the last burst."""
    while receiver.app.pending_faults:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
        try:
            conn.request("POST", "/api/event", b"{}", {"Content-Type": "application/json"})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # a reset fault
        finally:
            conn.close()


def soak(
    minutes: float, rate: float, raw_flaps: bool, breaker_timeout: float | None, jitter: float
) -> dict[str, Any]:
    duration = minutes * 60
    receiver = PlausibleReceiver(domains=["example.com"], max_events=10_000_000).start()
    breaker = pw.CircuitBreakerConfig()
    if breaker_timeout is not None:
        breaker = pw.CircuitBreakerConfig(timeout=breaker_timeout)
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, circuit_breaker=breaker)
    stop = threading.Event()
    producers = 4
    counter = itertools.count()
    lock = threading.Lock()
    tracked = 0
    max_queued = 0

    def produce() -> None:
        nonlocal tracked
        interval = producers / rate
        next_at = time.monotonic()
        while not stop.is_set():
            with lock:
                event_id = next(counter)
            collector.track(
                "Soak", url=URL, props={"id": str(event_id)}, user_agent=UA, client_ip="203.0.113.7"
            )
            with lock:
                tracked += 1
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    def fault_bursts() -> None:
        for burst in itertools.cycle(BURSTS):
            if stop.wait(3.0):
                return
            # Faults hit traffic, not the lone probe of an open breaker (a probe meeting
            # a fault every time would keep the breaker open for the whole soak).
            if not receiver.app.pending_faults and collector.stats().breaker_state == "closed":
                receiver.enqueue_faults(*burst)

    def watch() -> None:
        nonlocal max_queued
        while not stop.wait(0.1):
            max_queued = max(max_queued, collector.stats().queued)

    cpu0, wall0 = time.process_time(), time.monotonic()
    flapper = Flapper(
        receiver, down_for=0.5, up_for=2.0, graceful=not raw_flaps, jitter=jitter
    ).start()
    threads = [threading.Thread(target=produce) for _ in range(producers)]
    threads += [threading.Thread(target=fault_bursts), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    stop.wait(duration)
    stop.set()
    for thread in threads:
        thread.join()
    flapper.stop()
    use_up_faults(receiver)
    draining = time.monotonic()
    drained = collector.flush(120)
    drain_seconds = time.monotonic() - draining
    closing = time.monotonic()
    collector.close()
    close_seconds = time.monotonic() - closing
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stats = collector.stats()
    counts = ids_received(receiver)
    unknown = [k for k in counts if not k.isdigit() or int(k) >= tracked]
    receiver.stop()
    dropped = sum(stats.dropped.values())
    checks = {
        "accepted == tracked": stats.accepted == tracked,
        "sent + failed + dropped == tracked": stats.sent + stats.failed + dropped == tracked,
        "flush drained everything": drained and stats.queued == 0 and stats.in_flight == 0,
        "recorded == sent": len(counts) == stats.sent,
        "no duplicates": duplicates(counts) == 0,
        "nothing recorded that was not tracked": not unknown,
    }
    return {
        "scenario": "soak" + (" (raw flaps)" if raw_flaps else ""),
        "minutes": minutes,
        "breaker_timeout_s": breaker.timeout,
        "flap_jitter": jitter,
        "rate": rate,
        "tracked": tracked,
        "outages": flapper.outages,
        "downtime_s": round(flapper.downtime, 1),
        "faults_served": sum(1 for a in receiver.attempts if a.fault is not None),
        "attempts": receiver.request_count,
        "sent": stats.sent,
        "failed": stats.failed,
        "retried": stats.retried,
        "dropped": dict(stats.dropped),
        "recorded": len(counts),
        "duplicated": duplicates(counts),
        "max_queued": max_queued,
        "drain_after_flaps_s": round(drain_seconds, 2),
        "close_s": round(close_seconds, 3),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / max(1, tracked) * 1e6, 1),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "checks": checks,
    }


def long_outage(seconds: float) -> dict[str, Any]:
    receiver = PlausibleReceiver(domains=["example.com"]).start()
    bound = 1000
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, max_queue_size=bound)
    for i in range(20):
        collector.track("Before", url=URL, props={"id": f"b{i}"}, user_agent=UA)
    collector.flush(10)
    receiver.down()
    tracked = 0
    started = time.perf_counter()
    for i in range(bound + 500):
        collector.track("During", url=URL, props={"id": str(i)}, user_agent=UA)
        tracked += 1
    track_us = (time.perf_counter() - started) / tracked * 1e6
    cpu0 = time.process_time()
    time.sleep(seconds)  # the outage itself: nothing to wait for
    cpu = time.process_time() - cpu0
    during = collector.stats()
    receiver.up()
    recovered_at = time.monotonic()
    drained = collector.flush(120)
    recovery = time.monotonic() - recovered_at
    collector.close()
    stats = collector.stats()
    counts = ids_received(receiver)
    receiver.stop()
    delivered = sum(1 for k in counts if not k.startswith("b"))
    checks = {
        "breaker opened": during.breaker_state in ("open", "half-open"),
        "buffer held the bound": during.queued + during.in_flight == bound,
        "drops counted exactly": stats.dropped.get("queue_full", 0) == tracked - bound,
        "buffered events delivered": drained and delivered == bound,
        "no duplicates": duplicates(counts) == 0,
        "no busy loop (CPU < 1% of the outage)": cpu < seconds * 0.01 + 0.05,
    }
    return {
        "scenario": "long outage (defaults)",
        "outage_s": seconds,
        "tracked_in_outage": tracked,
        "bound": bound,
        "breaker": during.breaker_state,
        "cpu_during_outage_s": round(cpu, 3),
        "track_us_during_outage": round(track_us, 2),
        "dropped": dict(stats.dropped),
        "delivered_after": delivered,
        "recovery_s": round(recovery, 2),
        "duplicated": duplicates(counts),
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 s soak, 5 s outage")
    parser.add_argument("--minutes", type=float, default=5.0, help="soak length (default 5)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--raw-flaps", action="store_true", help="flaps cut answered requests")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.5,
        help="spread of the flap durations (0: strictly 0.5 s down / 2 s up, which "
        "resonates with a breaker timeout that is a multiple of 2.5 s)",
    )
    parser.add_argument(
        "--breaker-timeout", type=float, help="seconds the breaker stays open (default: 30)"
    )
    args = parser.parse_args(argv)
    minutes = 0.25 if args.quick else args.minutes
    outage = 5.0 if args.quick else 40.0
    results = [
        soak(minutes, args.rate, args.raw_flaps, args.breaker_timeout, args.jitter),
        long_outage(outage),
    ]
    ok = True
    for result in results:
        checks = result.pop("checks")
        print(f"\n## {result.pop('scenario')}")
        for key, value in result.items():
            print(f"  {key:26} {value}")
        for name, passed in checks.items():
            print(f"  [{'ok' if passed else 'FAIL'}] {name}")
            ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
