"""Run every benchmark and print one table of ratios measured side by side.

    python -m bench            # full run (a few minutes); writes bench/RESULTS.md
                               # and bench/ratios.png
    python -m bench --quick    # smoke run (< 60 s); writes nothing unless --write

Sections (each also runs alone, ``python -m bench.<name>``): ``enqueue``,
``middleware``, ``asgi``, ``delivery`` (delivery cost and latency hiding), ``steady``
(one event per millisecond), ``e2e``,
``memory``, ``scaling``, ``agents``, ``spool``. What needs a tool that is missing here (nginx,
wrk, a peer package) is reported as ``skipped: <why>`` instead of failing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import skipped

HERE = Path(__file__).resolve().parent
SECTIONS = (
    "enqueue",
    "middleware",
    "asgi",
    "delivery",
    "steady",
    "e2e",
    "memory",
    "scaling",
    "agents",
    "spool",
)
PACKAGES = (
    "plausible-wsgi",
    "flask",
    "werkzeug",
    "gunicorn",
    "starlette",
    "uvicorn",
    "requests",
    "posthog",
    "segment-analytics-python",
    "matplotlib",
)
NOTES_HEADING = "## Notes (hand-written, kept across runs)"
HEADER = ("metric", "this library", "baseline(s)", "ratio", "target", "pass")


def run_section(name: str, quick: bool) -> list[dict[str, Any]]:
    """The rows of one benchmark module; a failure becomes a row, not a crash."""
    start = time.perf_counter()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        module = importlib.import_module(f"bench.{name}")
        rows: list[dict[str, Any]] = module.run(quick)
    except Exception as exc:
        traceback.print_exc()
        rows = [skipped(name, f"failed: {type(exc).__name__}: {exc}")]
        rows[0]["passed"] = False
    for entry in rows:
        entry.setdefault("section", name)
    print(f"[bench] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return rows


def _cells(entry: dict[str, Any]) -> tuple[str, ...]:
    value = entry["value"]
    if entry.get("skipped"):
        shown = ""
    elif isinstance(value, float):
        shown = f"{value:,.2f} {entry['unit']}".strip()
    else:
        shown = f"{value:,} {entry['unit']}".strip()
    ratio = entry.get("ratio")
    passed = entry.get("passed")
    verdict = "" if passed is None else ("PASS" if passed else "FAIL")
    if entry.get("skipped") and passed is None:
        verdict = "skipped"
    baseline = entry["baseline"]
    if isinstance(baseline, (int, float)):  # a bare figure, in the row's unit
        baseline = f"{baseline:,} {entry['unit']}"
    return (
        str(entry["metric"]),
        shown,
        str(baseline),
        "" if ratio is None else f"{ratio}x",
        str(entry.get("target", "")),
        verdict,
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(escape(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(out)


def _tool_version(command: list[str]) -> str:
    if not shutil.which(command[0]) and not os.path.exists(command[0]):
        return "not installed"
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude", "*"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    facts = {
        "commit measured": commit or "unknown",
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": platform.platform(),
        "load average (1, 5, 15 min) at the end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nginx": _tool_version(["/usr/sbin/nginx", "-v"]),
        "wrk": _tool_version(["wrk", "--version"]).split(" Copyright")[0],
    }
    for package in PACKAGES:
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            facts[package] = "not installed"
    return facts


def write_markdown(path: Path, rows: list[dict[str, Any]], quick: bool, seconds: float) -> None:
    facts = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"`python -m bench{' --quick' if quick else ''}`, {now}, {seconds:.0f} s. "
        "Every ratio compares figures measured side by side in the same run. "
        "Benchmarks are not tests: nothing here is asserted in `tests/`.",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in facts.items()),
        "",
        "## Results",
        "",
        markdown_table(rows),
        "",
        "## How each figure is measured",
        "",
        "- **enqueue** (`bench/enqueue.py`): wall µs per call in the calling thread, best"
        " of several rounds, each client in a fresh interpreter pointed at a closed port"
        " with queues too big to flush. Ratio: ours / floor (dict + locked deque).",
        "- **middleware** (`bench/middleware.py`): the app called in process with a"
        " prepared environ, response iterated and closed; with and without"
        " `PlausibleMiddleware` on a buffering `PlausibleCollector` (closed port, bounds"
        " never reached). Ratio: with / without.",
        "- **asgi** (`bench/asgi.py`): a Starlette hello app called in process on one"
        " event loop, with and without `plausible_wsgi.asgi.PlausibleMiddleware`, in the"
        " same rounds as the WSGI middleware around Flask hello; uvicorn (1 worker)"
        " under `wrk`: bare, delivering to the nginx sink, and buffering only.",
        "- **delivery**, **latency hiding** (`bench/delivery.py`): CPU µs per delivered"
        " event against raw `http.client` on the nginx sink; events/s against a sink"
        " answering after 50 ms, vs the ideal workers / 0.05 s; the nginx sink behind"
        " a 40 ms round trip (a relay), pipelined vs `pipeline_depth=1`.",
        "- **e2e** (`bench/e2e.py`): gunicorn (2 workers) serving `examples/flask_app.py`,"
        " one server per mode (middleware on, unwrapped, buffering only), `wrk` on `GET /`"
        " in short rounds, the modes taking turns, the servers started afresh per block;"
        " worker CPU per page read from `/proc` around each round, ratio = median of the"
        " per-round paired ratios (middle half shown; bare vs bare for the estimator's"
        " own); page views counted by the nginx sink's request counter (`stub_status`: no"
        " log line per event on the shared cores) after `SIGTERM`,"
        " against wrk's count and the workers' counters.",
        "- **memory** (`bench/memory.py`): `VmRSS` a fresh interpreter gains from importing"
        " the package and tracking one event (or wrapping an app), vs `import requests`"
        " and `import ssl` alone; peak RSS (`VmHWM`) growth over the `track()`"
        " loop in a fresh interpreter, default settings, endpoint refusing connections;"
        " ratio against the bound `max_queue_size` x bytes per buffered event. `track()`"
        " cost during the outage vs a healthy sink.",
        "- **scaling** (`bench/scaling.py`): one total of `track()` calls split over N"
        " threads; events/s and exact counts. Ratio: vs 1 thread.",
        "- **agents** (`bench/agents.py`): ns per User-Agent classification vs `dict.get`.",
        "",
        "Where the time of `track()` and of the middleware goes, piece by piece and under"
        " cProfile: `python -m bench._profile`.",
        "",
    ]
    # A hand-written notes section at the end survives regeneration.
    if path.exists():
        old = path.read_text(encoding="utf-8")
        at = old.find(NOTES_HEADING)
        if at >= 0:
            lines += [old[at:].rstrip(), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _short(label: str, width: int = 72) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def write_chart(path: Path, rows: list[dict[str, Any]]) -> Optional[str]:
    """A bar per ratio; None when drawn, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed"
    shown = [r for r in rows if r.get("ratio") is not None]
    if not shown:
        return "no ratios"
    colors = {True: "#2e7d32", False: "#c62828", None: "#757575"}
    fig, ax = plt.subplots(figsize=(14, 0.42 * len(shown) + 1.5))
    labels = [_short(str(r["metric"])) for r in shown][::-1]
    values = [float(r["ratio"]) for r in shown][::-1]
    ax.barh(labels, values, color=[colors[r.get("passed")] for r in shown][::-1])
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 2, max(values) * 12)  # room for the labels
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, (value, entry) in enumerate(zip(values, shown[::-1])):
        ax.text(value, y, f" {value:g}x  ({entry.get('target', '')})", va="center", fontsize=7)
    ax.set_xlabel("ratio (log scale): this library vs its baseline in the same run")
    ax.set_title("plausible_wsgi benchmarks - green pass, red miss, grey for reference")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 60 s")
    parser.add_argument(
        "--only", help=f"comma-separated sections out of {','.join(SECTIONS)}", default=""
    )
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write bench/RESULTS.md and bench/ratios.png (default: on for a full run)",
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    start = time.perf_counter()
    rows = [entry for name in sections for entry in run_section(name, args.quick)]
    seconds = time.perf_counter() - start
    print(format_table(rows))
    print(f"\n{len(rows)} rows in {seconds:.0f} s")
    write = (not args.quick) if args.write is None else args.write
    if write:
        write_markdown(HERE / "RESULTS.md", rows, args.quick, seconds)
        why = write_chart(HERE / "ratios.png", rows)
        print(f"wrote {HERE / 'RESULTS.md'}")
        print(f"chart: skipped: {why}" if why else f"wrote {HERE / 'ratios.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
