"""Benchmark :mod:`plausible_wsgi.agents`: the cost of classifying a ``User-Agent``.

Run ``python bench/agents.py`` (``--quick`` for a short run). It prints nanoseconds per
``classify`` call for a cached browser header, a cached bot header and headers seen
for the first time, each next to a baseline measured in the same run with the same
loop: a plain ``dict.get`` on the same strings. :func:`run` returns the rows for
``bench/run.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

#: Cached answers must cost less than this (nanoseconds per call).
CACHED_TARGET_NS = 2_000.0
#: Budget for a header never seen before (nanoseconds per call).
UNCACHED_TARGET_NS = 50_000.0

HUMAN_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
BOT_UA = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)


def _distinct_user_agents(count: int, salt: str) -> list[str]:
    """``count`` different, realistic headers: browsers with varied versions and bots.

    ``salt`` makes each call's strings new objects whose hashes are not cached yet.
    """
    out: list[str] = []
    for number in range(count):
        version = f"{100 + number % 40}.0.{number}.{salt}"
        if number % 4 == 3:
            out.append(
                f"Mozilla/5.0 (compatible; ExampleBot{number}/{version}; +https://example.com)"
            )
        else:
            out.append(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) Chrome/{version} Safari/537.36"
            )
    return out


def _per_call_ns(func: Callable[[str], object], argument: str, calls: int, repeat: int) -> float:
    """Best-of-``repeat`` nanoseconds per ``func(argument)``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            func(argument)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def _per_item_ns(func: Callable[[str], object], items: list[str]) -> float:
    start = time.perf_counter_ns()
    for item in items:
        func(item)
    return (time.perf_counter_ns() - start) / len(items)


def _row(metric: str, value: float, baseline: float, target: float) -> dict[str, Any]:
    return {
        "metric": metric,
        "value": round(value, 1),
        "unit": "ns/call",
        "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 2) if baseline else None,
        "target": f"< {target:.0f} ns",
        "passed": value < target,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return one row per metric.

    Keys: ``metric``, ``value``, ``unit``, ``baseline`` (``dict.get`` on the same strings,
    same loop), ``ratio`` (value / baseline), ``target``, ``passed``.
    """
    from plausible_wsgi.agents import AgentClassifier

    calls, repeat, distinct = (20_000, 3, 2_000) if quick else (200_000, 5, 20_000)
    classifier = AgentClassifier(cache_size=4096)
    rows: list[dict[str, Any]] = []

    for label, user_agent in (("human", HUMAN_UA), ("bot", BOT_UA)):
        classifier.classify(user_agent)  # warm the cache
        table = {user_agent: classifier.classify(user_agent)}
        value = _per_call_ns(classifier.classify, user_agent, calls, repeat)
        baseline = _per_call_ns(table.get, user_agent, calls, repeat)
        rows.append(_row(f"agents.classify cached {label} UA", value, baseline, CACHED_TARGET_NS))

    # Headers seen for the first time: a cache big enough never to evict, so each
    # call is one full classification plus one cache insertion.
    best_value = best_baseline = float("inf")
    for attempt in range(repeat):
        salt = f"r{attempt}"
        fresh = AgentClassifier(cache_size=distinct)
        best_value = min(
            best_value, _per_item_ns(fresh.classify, _distinct_user_agents(distinct, salt))
        )
        # Same contents, new string objects (their hashes not computed yet), all hits.
        table = dict.fromkeys(_distinct_user_agents(distinct, salt))
        best_baseline = min(
            best_baseline, _per_item_ns(table.get, _distinct_user_agents(distinct, salt))
        )
    rows.append(
        _row(
            "agents.classify uncached UA (distinct strings)",
            best_value,
            best_baseline,
            UNCACHED_TARGET_NS,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    width = max(len(row["metric"]) for row in rows)
    print(f"{'metric':<{width}}  {'ns/call':>9}  {'dict.get':>9}  {'ratio':>7}  target")
    for row in rows:
        verdict = "PASS" if row["passed"] else "FAIL"
        print(
            f"{row['metric']:<{width}}  {row['value']:>9.1f}  {row['baseline']:>9.1f}  "
            f"{row['ratio']:>6.1f}x  {row['target']} {verdict}"
        )
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
