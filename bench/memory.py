"""Memory: what importing the package costs, and an outage under a million ``track()``.

**Import**: the resident memory (``VmRSS``) a fresh interpreter gains from importing
``plausible_wsgi`` and tracking one event, next to what ``import requests`` alone adds
(the package used to import it for a CA bundle path) and ``import ssl`` alone
(which HTTPS needs whatever the client).

**Outage**:
Each scenario runs in a fresh interpreter with a collector at default settings
(``max_queue_size=10_000``): the peak RSS (``VmHWM``) before and after the calls,
and ``track()``'s wall-clock cost per call during the loop. The outage (a closed
port: every connection refused) is compared with a healthy endpoint (the nginx sink
answering ``202``) in the same run. The bound implied by ``max_queue_size`` is the
queue bound times the bytes one buffered event holds (measured with ``tracemalloc``).

    python -m bench.memory [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, PROPS, UA, URL, closed_endpoint, row

ROOT = Path(__file__).resolve().parent.parent
#: Peak RSS growth allowed at default settings, in MB.
TARGET_MB = 30.0
#: track() during the outage, as a multiple of its cost against a healthy endpoint.
TARGET_SLOWDOWN = 1.2


def _vm_hwm_kb(field: str = "VmHWM") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


#: What each import row runs in a fresh interpreter (``E``: a closed port).
IMPORTS = {
    "collector": (
        "import plausible_wsgi as pw; c = pw.PlausibleCollector('example.com', endpoint=E); "
        "c.track('Signup', url='https://example.com/', client_ip='192.0.2.1')"
    ),
    "middleware": (
        "import plausible_wsgi as pw; c = pw.PlausibleCollector('example.com', endpoint=E); "
        "pw.PlausibleMiddleware(lambda environ, start_response: [], c)"
    ),
    "requests": "import requests",
    # HTTPS needs it whatever the client: the floor of any sender to Plausible Cloud.
    "ssl": "import ssl",
}


def _import_child(what: str, endpoint: str) -> None:
    before = _vm_hwm_kb("VmRSS")
    exec(IMPORTS[what], {"E": endpoint})
    after = _vm_hwm_kb("VmRSS")
    print(json.dumps({"mb": (after - before) / 1024, "modules": len(sys.modules)}), flush=True)
    os._exit(0)


def imports() -> dict[str, dict[str, float]]:
    """RSS added by each of :data:`IMPORTS`, each in a fresh interpreter."""
    results = {}
    for what in IMPORTS:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--imports", what, closed_endpoint()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        results[what] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def _event_bytes(count: int = 10_000) -> float:
    """Bytes one buffered event holds: what ``track()`` puts in the queue."""
    from plausible_wsgi.events import EventKind, make_event

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    events = [
        make_event(
            EventKind.CUSTOM,
            "Signup",
            url=URL,
            referrer=None,
            props=PROPS,
            user_agent=UA,
            client_ip=IP,
        )
        for _ in range(count)
    ]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del events
    return used / count


def _child(endpoint: str, calls: int) -> None:
    import plausible_wsgi as pw

    collector = pw.PlausibleCollector("example.com", endpoint=endpoint)
    track = collector.track
    for _ in range(1000):  # warm up: threads started, first connections tried
        track("Signup", props=PROPS, url=URL, user_agent=UA, client_ip=IP)
    time.sleep(0.2)
    before = _vm_hwm_kb()
    start = time.perf_counter()
    for _ in range(calls):
        track("Signup", props=PROPS, url=URL, user_agent=UA, client_ip=IP)
    seconds = time.perf_counter() - start
    after = _vm_hwm_kb()
    stats = collector.stats()
    result = {
        "growth_mb": (after - before) / 1024,
        "hwm_mb": after / 1024,
        "us": seconds / calls * 1e6,
        "max_queue_size": collector._engine.max_queue_size,
        "event_bytes": _event_bytes(),
        "accepted": stats.accepted,
        "queued": stats.queued,
        "sent": stats.sent,
        "dropped": dict(stats.dropped),
        "breaker": stats.breaker_state,
    }
    print(json.dumps(result), flush=True)
    os._exit(0)  # no exit flush: it would wait shutdown_timeout on the dead endpoint


def measure(endpoint: str, calls: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", endpoint, str(calls)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"memory child failed: {proc.stderr.strip()[-500:]}")
    return dict(json.loads(lines[-1]))


def run(quick: bool = False) -> list[dict[str, Any]]:
    from bench._sink import Sink

    calls = 100_000 if quick else 1_000_000
    outage = measure(closed_endpoint(), calls)
    with Sink() as sink:
        healthy = measure(sink.url, calls)
    bound_mb = outage["max_queue_size"] * outage["event_bytes"] / 2**20
    growth = outage["growth_mb"]
    slowdown = outage["us"] / healthy["us"]
    added = imports()
    requests_mb = added["requests"]["mb"]
    return [
        row(
            f"import: RSS added by plausible_wsgi, a collector and {kind}",
            round(added[what]["mb"], 1),
            "MB",
            f"import requests alone adds {requests_mb:.1f} MB, ssl alone "
            f"{added['ssl']['mb']:.1f} MB; "
            f"{added[what]['modules']:.0f} modules loaded",
            added[what]["mb"] / requests_mb if requests_mb else None,
            target="(figure: ratio vs import requests)",
            passed=None,
        )
        for what, kind in (("collector", "one track()"), ("middleware", "a middleware"))
    ] + [
        row(
            f"outage: peak RSS growth over {calls:,} track()",
            round(growth, 1),
            "MB",
            f"queue bound {outage['max_queue_size']:,} x {outage['event_bytes']:.0f} B "
            f"= {bound_mb:.1f} MB; dropped {outage['dropped']}, breaker {outage['breaker']}",
            growth / bound_mb,
            target=f"≤ {TARGET_MB:.0f} MB",
            passed=growth <= TARGET_MB,
        ),
        row(
            "outage: track() cost vs healthy endpoint",
            round(outage["us"], 2),
            "µs",
            f"healthy {healthy['us']:.2f} µs (sent {healthy['sent']:,}, "
            f"dropped {healthy['dropped']}); healthy growth {healthy['growth_mb']:.1f} MB",
            slowdown,
            target=f"≤ {TARGET_SLOWDOWN}x healthy",
            passed=slowdown <= TARGET_SLOWDOWN,
        ),
    ]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--child", nargs=2, metavar=("ENDPOINT", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument("--imports", nargs=2, metavar=("WHAT", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.imports:
        _import_child(*args.imports)
    if args.child:
        _child(args.child[0], int(args.child[1]))
    from bench.delivery import print_table

    print_table(run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
