"""Where the middleware's time goes, counted instead of timed: cachegrind.

Wall-clock A/B runs of the middleware on a shared 2-core machine differ by ~2 µs
between two runs of the same code. Valgrind's cachegrind counts what a request
executes -- instructions, and misses in a simulated 32 KB L1 and a 512 KB L2 (the
per-core L2 of the machine measured) -- and gives the same answer every time. Each
figure is per request, from the difference between a run of 500 and one of 2,500
requests (so start-up cancels out), for an app alone, with ``PlausibleMiddleware``
and with ``bench.middleware.MinimalRecorder`` (the least a recording middleware must
do).

    python -m bench._cachegrind [--apps bare,flask] [--l2 524288]

Needs ``valgrind`` (Debian: ``apt-get install valgrind``); about 3 minutes.

The counts are not exact to the instruction: when the garbage collector runs and
what the idle delivery worker does move a figure by up to ~1k between two runs of
the same code, so a change worth less than that needs several runs (or the cyclic
GC frozen in the child) to show. On 3.11 what a request pays is mostly the number
of Python-level calls and of unspecialised operations: a NamedTuple's field read
(~220 instructions, against a few dozen for a dataclass's), its generated
``__new__`` (~2k), a ``with lock:`` (~2.2k, twice ``acquire()``/``release()``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 500, 2_500
# Column -> the line of valgrind's summary it comes from.
COUNTERS = {
    "instructions": r"I\s+refs",
    "L1i misses": r"I1\s+misses",
    "L1d misses": r"D1\s+misses",
    "L2 misses": r"LL\s+misses",
}
MODES = ("alone", "middleware", "minimal")


def child(app_name: str, mode: str, requests: int) -> None:
    """Run in the valgrind child: ``requests`` requests through the chosen stack."""
    from bench.middleware import MinimalRecorder, bare_app, flask_app, requests_loop, wrapped_app

    app = flask_app() if app_name == "flask" else bare_app
    if mode == "middleware":
        app = wrapped_app(app, 10 * (SMALL + LARGE))
    elif mode == "minimal":
        app = MinimalRecorder(app)
    loop = requests_loop(app)
    loop(SMALL)  # warm: caches, specialisation, memo
    loop(requests)


def counts(app_name: str, mode: str, requests: int, l2: int) -> dict[str, int]:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=yes",
        f"--LL={l2},8,64",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench._cachegrind",
        "--child",
        f"{app_name},{mode},{requests}",
    ]
    # A fixed hash seed: with a random one, string hashes (so dict probes and resizes)
    # differ between the two runs whose difference is the figure (~2-3k per request).
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    found: dict[str, int] = {}
    for name, pattern in COUNTERS.items():
        match = re.search(rf"{pattern}:\s+([\d,]+)", done.stderr)
        if match is None:
            raise RuntimeError(f"no {name!r} in valgrind's output:\n{done.stderr[-2000:]}")
        found[name] = int(match.group(1).replace(",", ""))
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default="bare,flask")
    parser.add_argument("--l2", type=int, default=512 * 1024, help="simulated L2 bytes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        app_name, mode, requests = args.child.split(",")
        child(app_name, mode, int(requests))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    print(f"per request; L1 32 KB, L2 {args.l2 // 1024} KB simulated")
    print(f"{'app':<6} {'stack':<11}" + "".join(f"{name:>14}" for name in COUNTERS))
    for app_name in args.apps.split(","):
        alone: dict[str, float] = {}
        for mode in MODES:
            small = counts(app_name, mode, SMALL, args.l2)
            large = counts(app_name, mode, LARGE, args.l2)
            per = {name: (large[name] - small[name]) / (LARGE - SMALL) for name in COUNTERS}
            if mode == "alone":
                alone = per
                cells = "".join(f"{per[name]:>14,.0f}" for name in COUNTERS)
            else:
                cells = "".join(f"{per[name] - alone[name]:>+14,.0f}" for name in COUNTERS)
            print(f"{app_name:<6} {mode:<11}{cells}", flush=True)
    print("(middleware and minimal: added to the app alone)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
