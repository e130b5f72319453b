"""Steady traffic: one event per millisecond, CPU of the whole process per event.

Production traffic trickles in; a burst benchmark hides what each event costs when
it arrives alone (a thread wake-up, a hand-off). Here a loop tracks one event per
millisecond for a few seconds, then flushes; the figure is the process CPU time
(``time.process_time``: every thread) per event, against the same loop POSTing each
event itself with ``http.client`` on a keep-alive connection; the collector also
with ``pipeline_depth=1`` (one request at a time) for comparison. Rounds interleaved,
best of N, nginx answering ``202 ok`` on loopback (a Python sink when it is missing).

Then the e2e run's situation in one process: a request thread that is always busy
(a ~300 µs page of pure Python, holding the GIL) tracks a page view per page; the
figure is the CPU of the delivery threads alone per event (each thread's CPU clock),
at the default ``pipeline_depth`` (32) and shallower, interleaved. With the GIL contended
each blocking call of a delivery thread (a write, a read) costs hand-offs of the GIL
(futex calls, context switches): fewer, larger writes per event are what is left to
win there (``strace -c -f``, 5,000 events: 1.7-3.1 futex calls, 0.13 writes and
0.15 reads per event at depth 8; 1.0-1.2 futex calls, 0.04 writes and 0.05 reads at 32).

    python -m bench.steady [--quick]
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plausible_wsgi as pw
from bench._common import IP, UA, URL, default_depth, row, section_main
from bench._sink import Sink

BODY = json.dumps({"domain": "example.com", "name": "pageview", "url": URL}).encode()
HEADERS = {"Content-Type": "application/json", "User-Agent": UA, "X-Forwarded-For": IP}
PERIOD = 0.001


def _paced(n: int, each: Callable[[], object]) -> None:
    """Call ``each`` once per PERIOD (on a schedule, so a late call does not drift)."""
    start = time.monotonic()
    for i in range(n):
        delay = start + i * PERIOD - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        each()


def http_client_loop(port: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def post() -> None:
        conn.request("POST", "/api/event", BODY, HEADERS)
        conn.getresponse().read()

    _paced(n, post)
    conn.close()


def collector_loop(url: str, n: int, **kwargs: Any) -> None:
    c = pw.PlausibleCollector("example.com", endpoint=url, **kwargs)
    _paced(n, lambda: c.track_pageview(url=URL, user_agent=UA, client_ip=IP))
    drained = c.flush(60)
    c.close()
    stats = c.stats()
    if not drained or stats.sent != n:
        raise RuntimeError(f"collector sent {stats.sent} of {n}: {stats}")


def idle_loop(n: int) -> None:
    """The pacing alone: subtracted from both sides."""
    _paced(n, lambda: None)


#: Pure-Python CPU of one page in the busy loop, and the depths compared there (the
#: default first).
PAGE_US = 300.0
DEPTHS = (default_depth(), 16, 8)


def _spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i
    return total


def _loops_per_us() -> float:
    start = time.thread_time()
    _spin(200_000)
    return 200_000 / ((time.thread_time() - start) * 1e6)


def busy_loop(url: str, n: int, loops: int, **kwargs: Any) -> float:
    """Delivery threads' CPU µs per event while this thread, always busy, tracks ``n``."""
    c = pw.PlausibleCollector("example.com", endpoint=url, **kwargs)
    for _ in range(n):
        _spin(loops)
        c.track_pageview(url=URL, user_agent=UA, client_ip=IP)
    drained = c.flush(60)
    cpu = sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread.name.startswith("plausible") and thread.ident is not None
    )
    c.close()
    if not drained or c.stats().sent != n:
        raise RuntimeError(f"collector sent {c.stats().sent} of {n}")
    return cpu / n * 1e6


def busy_rows(url: str, quick: bool) -> list[dict[str, Any]]:
    n, rounds = (300, 1) if quick else (3000, 3)
    loops = int(_loops_per_us() * PAGE_US)
    best: dict[int, float] = {}
    for _ in range(rounds):
        for depth in DEPTHS:
            per_event = busy_loop(url, n, loops, pipeline_depth=depth)
            best[depth] = min(best.get(depth, per_event), per_event)
    default = best[DEPTHS[0]]
    return [
        row(
            f"busy request thread: delivery threads CPU/event, pipeline_depth={depth}",
            round(best[depth], 1),
            "µs",
            f"depth {DEPTHS[0]} (the default) {default:.1f} µs; {n} events, page "
            f"{PAGE_US:.0f} µs, best of {rounds}",
            best[depth] / default,
            target="(diag.: shallower writes, against the default, with the GIL contended)",
            passed=None,
        )
        for depth in DEPTHS
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    n, rounds = (300, 1) if quick else (3000, 3)
    best: dict[str, float] = {}
    with Sink() as sink:
        http_client_loop(sink.port, 50)  # warm up imports and the sink
        loops: dict[str, Callable[[], None]] = {
            "idle": lambda: idle_loop(n),
            "http.client": lambda: http_client_loop(sink.port, n),
            "collector": lambda: collector_loop(sink.url, n),
            "collector-1": lambda: collector_loop(sink.url, n, max_workers=1),
            "collector-serial": lambda: collector_loop(sink.url, n, pipeline_depth=1),
        }
        for _ in range(rounds):
            for name, loop in loops.items():
                cpu = time.process_time()
                loop()
                per_event = (time.process_time() - cpu) / n * 1e6
                best[name] = min(best.get(name, per_event), per_event)
        busy = busy_rows(sink.url, quick)
    pacing = best["idle"]
    base = best["http.client"] - pacing
    rows = []
    for name, label in [
        ("collector", "default workers"),
        ("collector-1", "1 worker"),
        ("collector-serial", "default workers, not pipelined"),
    ]:
        ours = best[name] - pacing
        reference = name == "collector-serial"
        rows.append(
            row(
                f"steady 1 event/ms, CPU/event, collector ({label})",
                round(ours, 1),
                "µs",
                f"http.client loop {base:.1f} µs (pacing {pacing:.1f} µs subtracted)",
                ours / base,
                target="(reference: pipeline_depth=1)" if reference else "≤ 0.5x http.client",
                passed=None if reference else ours / base <= 0.5,
                sink=sink.kind,
            )
        )
    return rows + busy


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
