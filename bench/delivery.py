"""Delivery cost per event: the collector against raw HTTP clients, side by side.

Every client POSTs the same event to the same local sink (nginx answering
``202 ok`` on loopback, started here with its own config; a Python sink when nginx
is missing). CPU time is this process's (``time.process_time``): the sink runs in
another process. For the collector it covers everything the library does per
event: ``track()``, buffering, the worker, encoding, the POST and its answer.

Also: latency hiding against a sink that answers after 50 ms, for several pool
sizes, against the ideal ``workers / 0.05`` events per second.

    python bench/delivery.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

import plausible_wsgi as pw
from bench._sink import Sink

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "203.0.113.7"
URL = "https://example.com/pricing"
BODY = json.dumps({"domain": "example.com", "name": "pageview", "url": URL}).encode()
HEADERS = {"Content-Type": "application/json", "User-Agent": UA, "X-Forwarded-For": IP}


def _measure(n: int, fn: Callable[[], None]) -> tuple[float, float]:
    """CPU µs per event and events per second of wall time."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / n * 1e6, n / wall


def raw_http_client(port: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(n):
        conn.request("POST", "/api/event", BODY, HEADERS)
        conn.getresponse().read()
    conn.close()


def requests_session(url: str, n: int) -> None:
    with requests.Session() as session:
        for _ in range(n):
            session.post(url + "/api/event", data=BODY, headers=HEADERS).content  # noqa: B018


def collector(url: str, n: int, **kwargs: Any) -> None:
    c = pw.PlausibleCollector("example.com", endpoint=url, max_queue_size=n + 1, **kwargs)
    for _ in range(n):
        c.track_pageview(url=URL, user_agent=UA, client_ip=IP)
    if not c.flush(120):
        raise RuntimeError(f"collector did not drain: {c.stats()}")
    sent = c.stats().sent
    c.close()
    if sent != n:
        raise RuntimeError(f"collector sent {sent} of {n}")


def run(quick: bool = False) -> list[dict[str, Any]]:
    n, rounds = (300, 1) if quick else (5000, 3)
    rows: list[dict[str, Any]] = []
    with Sink() as sink:
        raw_http_client(sink.port, 50)  # warm up imports and the sink
        senders: dict[str, Callable[[], None]] = {
            "raw": lambda: raw_http_client(sink.port, n),
            "session": lambda: requests_session(sink.url, n),
            "ours": lambda: collector(sink.url, n),
            "one": lambda: collector(sink.url, n, max_workers=1),
        }
        # Rounds interleaved, best CPU per event of each: this shared machine's speed
        # drifts (it ran up to 1.4x slower for a while after a CPU-heavy section), and
        # one sequential pass put the drift into the ratios.
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for name, send in senders.items():
                measured = _measure(n, send)
                if name not in best or measured[0] < best[name][0]:
                    best[name] = measured
        raw_cpu = best["raw"][0]
        ses_cpu, ses_rate = best["session"]
        ours_cpu, ours_rate = best["ours"]
        one_cpu, one_rate = best["one"]
        for metric, cpu, rate in [
            ("delivery CPU/event, collector (4 workers)", ours_cpu, ours_rate),
            ("delivery CPU/event, collector (1 worker)", one_cpu, one_rate),
            ("delivery CPU/event, requests.Session.post", ses_cpu, ses_rate),
        ]:
            rows.append(
                {
                    "metric": metric,
                    "value": round(cpu, 1),
                    "unit": "µs",
                    "baseline": f"raw http.client {raw_cpu:.1f} µs",
                    "ratio": round(cpu / raw_cpu, 2),
                    "target": "≤ 2.0x raw" if "collector" in metric else "(peer)",
                    "passed": cpu / raw_cpu <= 2.0 if "collector" in metric else None,
                    "rate": round(rate),
                    "sink": sink.kind,
                }
            )
    delay = 0.05
    events_per_worker = 4 if quick else 20
    with Sink(slow_delay=delay) as slow:
        for workers in (1, 4, 8, 16):
            count = workers * events_per_worker
            _, rate = _measure(
                count,
                lambda w=workers, c=count: collector(  # type: ignore[misc]
                    slow.url + "/slow", c, max_workers=w, batch_size=1
                ),
            )
            ideal = workers / delay
            rows.append(
                {
                    "metric": f"latency hiding, 50 ms sink, {workers} workers",
                    "value": round(rate, 1),
                    "unit": "events/s",
                    "baseline": f"ideal {ideal:.0f}/s",
                    "ratio": round(rate / ideal, 2),
                    "target": "≥ 0.8 of ideal",
                    "passed": rate / ideal >= 0.8,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("metric", "value", "baseline", "ratio", "target", "pass")
    lines = [header] + [
        (
            r["metric"],
            f"{r['value']} {r['unit']}",
            r["baseline"],
            f"{r['ratio']}",
            r["target"],
            "" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL"),
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    print_table(run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
