"""Shared pieces of the benchmarks: rows, timing, a port nobody listens on."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "203.0.113.7"
URL = "https://example.com/pricing"
PROPS = {"plan": "pro", "seats": 3}


def default_depth() -> int:
    """The collector's default ``pipeline_depth``: what the "pipelined" rows measure."""
    import inspect

    import plausible_wsgi as pw

    depth = inspect.signature(pw.PlausibleCollector).parameters["pipeline_depth"].default
    return int(depth)


def closed_port() -> int:
    """A loopback port with no listener: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def buffering_collector(calls: int, **options: Any) -> Any:
    """A fresh collector that keeps ``calls`` rounds' events without sending any: a
    closed port, batch size, flush interval and queue bound never reached."""
    import plausible_wsgi as pw

    return pw.PlausibleCollector(
        "example.com",
        endpoint=closed_endpoint(),
        batch_size=10 * calls,
        flush_interval=3600.0,
        max_queue_size=10 * calls,
        **options,
    )


def best_us_per_call(loop: Callable[[int], None], calls: int, repeat: int) -> float:
    """Best-of-``repeat`` wall-clock microseconds per call of ``loop(calls)``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        loop(calls)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def best_interleaved(
    loops: Mapping[str, Callable[[int], None]], calls: int, rounds: int
) -> dict[str, float]:
    """Best µs per call of each loop, one round of each in turn: load that comes and
    goes touches them all alike."""
    best = {name: float("inf") for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            best[name] = min(best[name], best_us_per_call(loop, calls, 1))
    return best


def row(
    metric: str,
    value: float,
    unit: str,
    baseline: str,
    ratio: Optional[float],
    *,
    target: str,
    passed: Optional[bool],
    **extra: Any,
) -> dict[str, Any]:
    """One line of the results table (the format of ``bench/delivery.py``)."""
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 2),
        "target": target,
        "passed": passed,
        **extra,
    }


def skipped(metric: str, why: str) -> dict[str, Any]:
    """A row for a measurement that could not run here."""
    return row(metric, 0, "", f"skipped: {why}", None, target="", passed=None, skipped=why)


def section_main(
    run: Callable[[bool], list[dict[str, Any]]], doc: Optional[str], argv: Optional[list[str]]
) -> int:
    """The ``main()`` of a section module: ``--quick``, run, print the table."""
    import argparse

    from bench.delivery import print_table

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args(argv)
    print_table(run(args.quick))
    return 0
