"""Steady traffic: one event per millisecond, CPU of the whole process per event.

Production traffic trickles in; a burst benchmark hides what each event costs when
it arrives alone (a thread wake-up, a hand-off). Here a loop tracks one event per
millisecond for a few seconds, then flushes; the figure is the process CPU time
(``time.process_time``: every thread) per event, against the same loop POSTing each
event itself with ``http.client`` on a keep-alive connection; the collector also
with ``pipeline_depth=1`` (one request at a time) for comparison. Rounds interleaved,
best of N, nginx answering ``202 ok`` on loopback (a Python sink when it is missing).

    python -m bench.steady [--quick]
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plausible_wsgi as pw
from bench._common import IP, UA, URL, row, section_main
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
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
