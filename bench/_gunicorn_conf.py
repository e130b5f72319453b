"""gunicorn settings for ``bench/e2e.py``: the example's hooks, plus a stats dump.

Same hooks and ``graceful_timeout`` as ``examples/gunicorn.conf.py``; bind, workers
and worker class come from the command line. When a worker exits, after the
collectors' flush, it writes its middleware and collector counters to
``$BENCH_STATS_DIR/worker-<pid>.json``.
"""

from __future__ import annotations

import json
import os
import sys

from plausible_wsgi import delivery
from plausible_wsgi.gunicorn import post_fork
from plausible_wsgi.gunicorn import worker_exit as _flush_at_exit

__all__ = ["graceful_timeout", "post_fork", "worker_exit"]

graceful_timeout = 30


def worker_exit(server: object, worker: object) -> None:
    _flush_at_exit(server, worker)
    out = os.environ.get("BENCH_STATS_DIR")
    if not out:
        return
    totals = {"accepted": 0, "sent": 0, "queued": 0}
    dropped: dict[str, int] = {}
    for engine in list(delivery._engines):
        snapshot = engine.stats()
        totals["accepted"] += snapshot.accepted
        totals["sent"] += snapshot.sent
        totals["queued"] += snapshot.queued + snapshot.in_flight
        for reason, count in snapshot.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
    stats: dict[str, object] = {**totals, "dropped": dropped}
    module = sys.modules.get("bench._e2e_app")
    if module is not None and module.ENABLED:
        middleware = module.plausible.middleware.stats()
        stats["requests"] = middleware.requests
        stats["pageviews"] = middleware.tracked.get("pageview", 0)
    with open(os.path.join(out, f"worker-{os.getpid()}.json"), "w") as file:
        json.dump(stats, file)
