"""Scaling: ``track()`` from 1, 2, 8 and 32 threads at once.

The same total number of calls is split over the threads, released together by a
barrier. The collector buffers without sending (closed port, bounds never reached),
so the figure is the enqueue path under contention: events/s of wall time, and the
exact count (``stats().accepted`` and ``queued`` both equal to the calls made). The
floor (a dict appended to a deque under a lock) runs the same way for reference.

    python -m bench.scaling [--quick]
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, PROPS, UA, URL, closed_endpoint, row, section_main

THREADS = (1, 2, 8, 32)


def _threaded(threads: int, per_thread: int, call: Callable[[], object]) -> float:
    """Wall seconds for ``threads`` threads each making ``per_thread`` calls."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    return time.perf_counter() - start


def ours(threads: int, per_thread: int) -> tuple[float, int, int]:
    """Events/s, ``stats().accepted`` and ``stats().queued``."""
    import plausible_wsgi as pw

    total = threads * per_thread
    collector = pw.PlausibleCollector(
        "example.com",
        endpoint=closed_endpoint(),
        batch_size=total + 1001,
        flush_interval=3600.0,
        max_queue_size=total + 1001,
        max_buffer_bytes=1 << 34,  # every event stays buffered: the count is checked
    )

    def call() -> object:
        return collector.track("Signup", props=PROPS, url=URL, user_agent=UA, client_ip=IP)

    for _ in range(1000):  # warm up: the dispatcher thread started, code specialised
        call()
    seconds = _threaded(threads, per_thread, call)
    stats = collector.stats()
    collector.close(0.01)
    return total / seconds, stats.accepted - 1000, stats.queued - 1000


def floor(threads: int, per_thread: int) -> float:
    lock = threading.Lock()
    queue: collections.deque[dict[str, Any]] = collections.deque()

    def call() -> object:
        event: dict[str, Any] = {
            "name": "Signup",
            "url": URL,
            "props": PROPS,
            "user_agent": UA,
            "ip": IP,
            "time": time.time(),
        }
        with lock:
            queue.append(event)
        return True

    return threads * per_thread / _threaded(threads, per_thread, call)


def run(quick: bool = False) -> list[dict[str, Any]]:
    total = 32_000 if quick else 320_000
    rows = []
    single = single_floor = 0.0
    for threads in THREADS:
        per_thread = total // threads
        calls = per_thread * threads
        rate, accepted, queued = ours(threads, per_thread)
        floor_rate = floor(threads, per_thread)
        if threads == 1:
            single, single_floor = rate, floor_rate
        exact = accepted == calls and queued == calls
        rows.append(
            row(
                f"scaling: track() from {threads} thread{'s' if threads > 1 else ''}",
                round(rate),
                "events/s",
                f"1 thread {single:,.0f}/s; floor {floor_rate:,.0f}/s "
                f"({floor_rate / single_floor:.2f} of its 1 thread); "
                f"accepted {accepted:,} of {calls:,}",
                rate / single,
                target="exact count (ratio: vs 1 thread)",
                passed=exact,
            )
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
