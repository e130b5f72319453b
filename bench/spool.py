"""The durable spool: what a commit per event costs, and what the relay spends.

- ``track()`` and the middleware (bare app) with ``spool=PATH, deliver=False`` (the
  commit alone) against the memory buffer (nothing sent: a closed port and bounds
  never reached), rounds interleaved, best of each: the difference is the commit.
- events/s appended by 1-4 processes into one file at once (``track()`` in each,
  ``deliver=False``): SQLite serialises writers, so this is the file's ceiling.
- relay CPU per event: a spool of N rows drained by ``PlausibleCollector(spool=...)``
  (what ``python -m plausible_wsgi relay`` runs) against the memory collector sending
  the same N events, both to the local sink, process CPU per delivered event.

SQLite settings: WAL, ``synchronous=NORMAL`` (no fsync per commit; see
``plausible_wsgi/spool.py`` for what a crash and a power loss cost).

    python -m bench.spool [--quick]
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    IP,
    PROPS,
    UA,
    URL,
    best_interleaved,
    buffering_collector,
    row,
    section_main,
)
from bench._sink import Sink
from bench.middleware import bare_app, requests_loop

WRITER = """
import json, sys, time
import plausible_wsgi as pw
path, count, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
collector = pw.PlausibleCollector("example.com", spool=path, deliver=False)
collector.track("Warmup", url="https://example.com/", user_agent="UA", client_ip="203.0.113.7")
while time.time() < start_at:
    time.sleep(0.001)
began = time.time()
for i in range(count):
    collector.track(
        "Signup", url="https://example.com/pricing", user_agent="UA", client_ip="203.0.113.7"
    )
print(json.dumps([began, time.time()]))
"""


def _collector(spool: Optional[str], calls: int) -> Any:
    return buffering_collector(calls + 1, spool=spool, deliver=spool is None)


def _track_loop(collector: Any) -> Callable[[int], None]:
    def loop(calls: int) -> None:
        for _ in range(calls):
            collector.track("Signup", props=PROPS, url=URL, user_agent=UA, client_ip=IP)

    return loop


def _middleware_loop(collector: Any) -> Callable[[int], None]:
    import plausible_wsgi as pw

    # The page view is committed when the response closes.
    return requests_loop(pw.PlausibleMiddleware(bare_app, collector))


def _sqlite_floor(path: str) -> Callable[[int], None]:
    """The floor: one autocommit INSERT of a prebuilt row, same pragmas, no library."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=16000")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, created REAL, body BLOB)")
    body = json.dumps({"domain": "example.com", "name": "Signup", "url": URL}).encode()

    def loop(calls: int) -> None:
        for _ in range(calls):
            conn.execute("INSERT INTO events (created, body) VALUES (?, ?)", (time.time(), body))

    return loop


def request_path(calls: int, rounds: int, tmp: str) -> dict[str, float]:
    """Best µs per call of each (what, mode), rounds interleaved."""
    loops: dict[str, Callable[[int], None]] = {"sqlite-floor": _sqlite_floor(f"{tmp}/floor.db")}
    made = []
    for mode in ("memory", "spool"):
        spool = f"{tmp}/{mode}-track.sqlite3" if mode == "spool" else None
        track_collector = _collector(spool, calls * rounds)
        spool = f"{tmp}/{mode}-mw.sqlite3" if mode == "spool" else None
        mw_collector = _collector(spool, calls * rounds)
        made += [track_collector, mw_collector]
        loops[f"track/{mode}"] = _track_loop(track_collector)
        loops[f"middleware/{mode}"] = _middleware_loop(mw_collector)
    for loop in loops.values():
        loop(200)  # warm up
    best = best_interleaved(loops, calls, rounds)
    for collector in made:
        collector.close(0.01)
    return best


def processes_into_one_file(processes: int, per_process: int, tmp: str) -> float:
    """Events/s appended by ``processes`` writers at once into one spool file."""
    path = f"{tmp}/shared-{processes}.sqlite3"
    start_at = time.time() + 1.5  # every interpreter up and warmed by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), path, str(per_process), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    spans = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a writer failed")
    wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return processes * per_process / wall


def relay_cpu(n: int, rounds: int, tmp: str) -> tuple[float, float]:
    """Best CPU µs per event: (relay draining a spool, memory collector sending)."""
    import plausible_wsgi as pw

    best_relay = best_memory = float("inf")
    with Sink() as sink:
        for r in range(rounds):
            path = f"{tmp}/relay-{r}.sqlite3"
            writer = pw.PlausibleCollector("example.com", spool=path, deliver=False)
            for _ in range(n):
                writer.track_pageview(url=URL, user_agent=UA, client_ip=IP)
            writer.close()
            cpu = time.process_time()
            relay = pw.PlausibleCollector(
                "spool-relay", endpoint=sink.url, spool=path, max_queue_size=n + 1
            )
            relay.start()
            deadline = time.monotonic() + 120
            while relay.stats().sent < n:  # stats() counts the file's rows: not too often
                if time.monotonic() > deadline:
                    raise RuntimeError(f"relay stuck: {relay.stats()}")
                time.sleep(0.05)
            best_relay = min(best_relay, (time.process_time() - cpu) / n * 1e6)
            relay.close()

            cpu = time.process_time()
            memory = pw.PlausibleCollector("example.com", endpoint=sink.url, max_queue_size=n + 1)
            for _ in range(n):
                memory.track_pageview(url=URL, user_agent=UA, client_ip=IP)
            if not memory.flush(120) or memory.stats().sent != n:
                raise RuntimeError(f"memory collector stuck: {memory.stats()}")
            best_memory = min(best_memory, (time.process_time() - cpu) / n * 1e6)
            memory.close()
    return best_relay, best_memory


def run(quick: bool = False) -> list[dict[str, Any]]:
    calls, rounds = (500, 2) if quick else (5000, 5)
    per_process = 500 if quick else 5000
    relay_n, relay_rounds = (300, 1) if quick else (3000, 3)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="plausible-bench-spool-") as tmp:
        best = request_path(calls, rounds, tmp)
        floor = best["sqlite-floor"]
        for what in ("track", "middleware"):
            with_spool, without = best[f"{what}/spool"], best[f"{what}/memory"]
            rows.append(
                row(
                    f"{what}() with spool (commit, deliver=False)"
                    if what == "track"
                    else "middleware per request with spool (bare app)",
                    round(with_spool, 1),
                    "µs",
                    f"memory buffer {without:.1f} µs; a bare sqlite3 INSERT commit {floor:.1f} µs",
                    with_spool / without,
                    target="(figure: +commit)",
                    passed=None,
                    added_us=round(with_spool - without, 1),
                )
            )
        single = processes_into_one_file(1, per_process, tmp)
        for processes in (1, 2, 4):
            rate = (
                single if processes == 1 else processes_into_one_file(processes, per_process, tmp)
            )
            rows.append(
                row(
                    f"spool appends, {processes} process(es) into one file",
                    round(rate),
                    "events/s",
                    f"1 process {single:,.0f}/s",
                    rate / single,
                    target="(figure)",
                    passed=None,
                )
            )
        relay, memory = relay_cpu(relay_n, relay_rounds, tmp)
        rows.append(
            row(
                "relay CPU/event (drain a spool)",
                round(relay, 1),
                "µs",
                f"memory collector {memory:.1f} µs",
                relay / memory,
                target="(figure)",
                passed=None,
            )
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
