"""Shared pieces of the benchmarks: rows, timing, a port nobody listens on."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Optional

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "203.0.113.7"
URL = "https://example.com/pricing"
PROPS = {"plan": "pro", "seats": 3}


def closed_port() -> int:
    """A loopback port with no listener: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def best_us_per_call(loop: Callable[[int], None], calls: int, repeat: int) -> float:
    """Best-of-``repeat`` wall-clock microseconds per call of ``loop(calls)``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        loop(calls)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
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
