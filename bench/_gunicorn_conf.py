"""gunicorn settings for ``bench/e2e.py``: the example's hooks, plus a stats dump.

Same hooks and ``graceful_timeout`` as ``examples/gunicorn.conf.py``; bind, workers
and worker class come from the command line. When a worker exits it writes to
``$BENCH_STATS_DIR/worker-<pid>.json``: its CPU time since the app was loaded, the
part of it spent in plausible_wsgi's delivery threads and in the garbage collector
(read before the exit flush), and, after the flush, its collector and middleware
counters. (``bench/e2e.py`` reads the workers' CPU per round from ``/proc``; these
whole-life figures split it.)
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time

from plausible_wsgi import lifecycle
from plausible_wsgi.gunicorn import post_fork
from plausible_wsgi.gunicorn import worker_exit as _flush_at_exit

__all__ = ["graceful_timeout", "post_fork", "post_worker_init", "worker_exit"]

graceful_timeout = 30
_cpu_at_start = 0.0
#: Seconds spent in the garbage collector, and full (generation 2) collections.
_gc = {"cpu": 0.0, "gen2": 0, "started": 0.0}


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _delivery_threads_cpu() -> float:
    """CPU seconds of this process's plausible_wsgi threads (delivery workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for thread in threading.enumerate():
        if not thread.name.startswith("plausible:") or thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    # A collection runs in the thread that triggered it, holding the GIL throughout.
    if phase == "start":
        _gc["started"] = time.thread_time()
    else:
        _gc["cpu"] += time.thread_time() - _gc["started"]
        _gc["gen2"] += info["generation"] == 2


def post_worker_init(worker: object) -> None:
    global _cpu_at_start
    _cpu_at_start = _process_cpu()
    gc.callbacks.append(_gc_timer)


def worker_exit(server: object, worker: object) -> None:
    cpu = _process_cpu() - _cpu_at_start
    delivery_cpu = _delivery_threads_cpu()
    gc_cpu, gc2 = _gc["cpu"], _gc["gen2"]
    _flush_at_exit(server, worker)
    out = os.environ.get("BENCH_STATS_DIR")
    if not out:
        return
    totals = {"accepted": 0, "sent": 0, "queued": 0}
    dropped: dict[str, int] = {}
    for engine in lifecycle.engines():
        snapshot = engine.stats()
        totals["accepted"] += snapshot.accepted
        totals["sent"] += snapshot.sent
        totals["queued"] += snapshot.queued + snapshot.in_flight
        for reason, count in snapshot.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
    stats: dict[str, object] = {
        **totals,
        "dropped": dropped,
        "cpu": cpu,
        "delivery_cpu": delivery_cpu,
        "gc_cpu": gc_cpu,
        "gc2": gc2,
    }
    module = sys.modules.get("bench._e2e_app")
    if module is not None and module.ENABLED:
        middleware = module.plausible.middleware.stats()
        stats["requests"] = middleware.requests
        stats["pageviews"] = middleware.tracked.get("pageview", 0)
    with open(os.path.join(out, f"worker-{os.getpid()}.json"), "w") as file:
        json.dump(stats, file)
