"""End to end: gunicorn serving the Flask example under ``wrk``, middleware on and off.

For each worker class (2 ``sync`` workers, then 2 ``gthread`` workers with 4 threads),
``examples/flask_app.py`` is served twice through ``bench/_e2e_app.py``: once bare
(the extension unwrapped) and once with the middleware, delivering every page view
to the nginx sink (``PLAUSIBLE_ENDPOINT``), collector at default settings. ``wrk``
loads ``GET /`` (an HTML page, with a browser User-Agent) for a fixed time; then
gunicorn gets ``SIGTERM`` and its workers flush on exit. Reported: requests/s with
the middleware as a fraction of bare, and the page views the sink received against
the requests ``wrk`` counted (and the workers' own counters).

    python -m bench.e2e [--quick]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import UA, closed_endpoint, row, section_main, skipped
from bench._sink import Sink, free_port

ROOT = Path(__file__).resolve().parent.parent
#: Issue 12's targets: worker CPU per page bare / with the middleware delivering (the
#: figure to trust on a shared machine; requests/s is reported against the same bound).
TARGETS = {"example": 0.95, "hello": 0.85}
WORKER_CLASSES: dict[str, list[str]] = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
}
CONNECTIONS = 8


def missing() -> Optional[str]:
    """Why the end-to-end run cannot happen here, or None."""
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        return "nginx not installed (Debian package nginx)"
    if not shutil.which("wrk"):
        return "wrk not installed (Debian package wrk)"
    for module in ("gunicorn", "flask"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} not installed"
    return None


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    request = b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if b" 200 " in sock.recv(64):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gunicorn did not answer in time")


def _wrk(url: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds:g}s",
            "-H",
            f"User-Agent: {UA}",
            "-H",
            "Accept: text/html",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if requests is None or rate is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    duration = float(requests.group(2)) / (1000 if requests.group(3) == "ms" else 1)
    return {
        "seconds": duration,
        "requests": int(requests.group(1)),
        "rps": float(rate.group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def load_then_stop(proc: subprocess.Popen[bytes], port: int, seconds: float) -> dict[str, Any]:
    """wrk on the server ``proc`` (a warm-up, then ``seconds``), then ``SIGTERM``.

    ``pages`` counts the requests of both: every request is a page view.
    """
    try:
        _wait_http(port, proc)
        warm_up = _wrk(f"http://127.0.0.1:{port}/", 1)
        result = _wrk(f"http://127.0.0.1:{port}/", seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    result["pages"] = warm_up["requests"] + result["requests"]
    return result


#: ``PLAUSIBLE_*`` settings of each mode; ``None``: the middleware unwrapped.
MODES: dict[str, Optional[dict[str, str]]] = {
    "bare": None,
    # The product: every page view delivered to the sink, default settings.
    "on": {},
    # A diagnostic: the middleware and buffering, but no delivery during the run
    # (bounds never reached, endpoint a closed port), to split the cost in two.
    "buffered": {
        "PLAUSIBLE_BATCH_SIZE": "100000000",
        "PLAUSIBLE_MAX_QUEUE_SIZE": "100000000",
        "PLAUSIBLE_FLUSH_INTERVAL": "3600",
        "PLAUSIBLE_SHUTDOWN_TIMEOUT": "0.5",
        "PLAUSIBLE_ENDPOINT": closed_endpoint(),
    },
}


def serve_and_load(
    sink: Sink, worker_class: str, mode: str, seconds: float, app: str = "example"
) -> dict[str, Any]:
    """One gunicorn run under wrk; the numbers of wrk, the workers and the sink."""
    port = free_port()
    stats_dir = tempfile.mkdtemp(prefix="plausible-e2e-")
    settings = MODES[mode]
    env = {
        **os.environ,
        "PLAUSIBLE_DOMAIN": "example.com",
        "PLAUSIBLE_ENDPOINT": sink.url,
        "BENCH_PLAUSIBLE": "off" if settings is None else "on",
        "BENCH_STATS_DIR": stats_dir,
        "BENCH_APP": app,
        **(settings or {}),
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "-c", str(ROOT / "bench" / "_gunicorn_conf.py"),
        "-b", f"127.0.0.1:{port}",
        "-w", "2",
        *WORKER_CLASSES[worker_class],
        "--log-level", "warning",
        "bench._e2e_app:app",
    ]  # fmt: skip
    before = sink.count_events()
    with Path(stats_dir, "gunicorn.log").open("wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        result = load_then_stop(proc, port, seconds)
    time.sleep(0.2)
    result["sink"] = sink.count_events() - before
    workers = [json.loads(p.read_text()) for p in Path(stats_dir).glob("worker-*.json")]
    result["workers"] = len(workers)
    for key in ("accepted", "sent", "queued", "pageviews"):
        result[key] = sum(int(w.get(key, 0)) for w in workers)
    result["cpu"] = sum(float(w.get("cpu", 0)) for w in workers)
    result["delivery_cpu"] = sum(float(w.get("delivery_cpu", 0)) for w in workers)
    dropped: dict[str, int] = {}
    for worker in workers:
        for reason, count in worker["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    result["dropped"] = dropped
    result["log"] = Path(stats_dir, "gunicorn.log").read_text(errors="replace")[-2000:]
    shutil.rmtree(stats_dir, ignore_errors=True)
    return result


def load(
    sink: Sink,
    worker_class: str,
    modes: list[str],
    seconds: float,
    rounds: int,
    *,
    app: str = "example",
) -> dict[str, dict[str, Any]]:
    """The modes in turn, ``rounds`` times (so drift in the machine's load hits all
    alike); per mode the sums over the rounds, and ``rps`` from the best round: on
    this shared machine one round of a mode sometimes ran at half speed (a bare
    gthread round at 458 req/s against 880 in the others), which an average over
    the rounds would put into the ratio."""
    totals: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for mode in modes:
            result = serve_and_load(sink, worker_class, mode, seconds, app)
            total = totals.setdefault(mode, {"dropped": {}, "logs": [], "rps": 0.0})
            total["rps"] = max(total["rps"], result["requests"] / result["seconds"])
            for key, value in result.items():
                if key == "dropped":
                    for reason, count in value.items():
                        total["dropped"][reason] = total["dropped"].get(reason, 0) + count
                elif key == "log":
                    total["logs"].append(value)
                elif key != "rps" and isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
    return totals


def _per_page(result: dict[str, Any], key: str) -> float:
    return float(result[key]) / result["pages"] * 1e6 if result["pages"] else 0.0


def rows_for(
    results: dict[str, dict[str, Any]], worker_class: str, label: str, hello: bool = False
) -> list[dict[str, Any]]:
    bare, ours = results["bare"], results["on"]
    prefix = "e2e hello app" if hello else "e2e"
    target = TARGETS["hello" if hello else "example"]
    rows = []
    ratio = ours["rps"] / bare["rps"]
    delivered = (
        ours["sink"] >= ours["pages"]
        and ours["sink"] == ours["pageviews"] == ours["sent"]
        and not ours["dropped"]
    )
    rows.append(
        row(
            f"{prefix}: req/s with middleware, {label}",
            round(ours["rps"]),
            "req/s",
            f"bare {bare['rps']:.0f} req/s",
            ratio,
            target=f"≥ {target} of bare (CPU per page decides)",
            passed=None,
        )
    )
    cpu_bare, cpu_ours = _per_page(bare, "cpu"), _per_page(ours, "cpu")
    buffering = (
        f"; buffering only {_per_page(results['buffered'], 'cpu'):.0f} µs"
        if "buffered" in results
        else ""
    )
    rows.append(
        row(
            f"{prefix}: worker CPU per page, bare / with middleware, {worker_class}",
            round(cpu_ours),
            "µs",
            f"bare {cpu_bare:.0f} µs; delivery threads "
            f"{_per_page(ours, 'delivery_cpu'):.0f} µs/page{buffering}",
            cpu_bare / cpu_ours if cpu_ours else None,
            target=f"≥ {target} (throughput bound when CPU-bound)",
            passed=None if not cpu_ours else cpu_bare / cpu_ours >= target,
        )
    )
    buffered = results.get("buffered")
    if buffered is not None:
        rows.append(
            row(
                f"{prefix}: req/s, buffering only (diag.), {label}",
                round(buffered["rps"]),
                "req/s",
                f"bare {bare['rps']:.0f} req/s",
                buffered["rps"] / bare["rps"],
                target="(no delivery: splits the cost)",
                passed=None,
            )
        )
    rows.append(
        row(
            f"{prefix}: page views delivered, {worker_class}",
            ours["sink"],
            "events",
            f"wrk counted {ours['pages']} (incl. warm-ups); "
            f"workers tracked {ours['pageviews']}, "
            f"sent {ours['sent']}, dropped {ours['dropped'] or 0}",
            ours["sink"] / ours["pages"] if ours["pages"] else None,
            target="every page view (sink ≥ wrk, nothing dropped)",
            passed=delivered,
            bare_sink=bare["sink"],
            non2xx=ours["non2xx"] + bare["non2xx"],
        )
    )
    for mode, result in results.items():
        if result["workers"] % 2 or (mode == "bare" and result["sink"]):
            print(
                f"warning: e2e {worker_class} {mode}: {result['workers']} worker "
                f"stats, sink {result['sink']}\n{result['logs'][-1]}",
                file=sys.stderr,
            )
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    why = missing()
    if why is not None:
        return [skipped("e2e: gunicorn + wrk", why)]
    seconds, rounds = (2.0, 1) if quick else (5.0, 3)
    modes = ["bare", "on"] if quick else ["bare", "on", "buffered"]
    rows = []
    with Sink(access_log=True) as sink:
        for worker_class in WORKER_CLASSES:
            results = load(sink, worker_class, modes, seconds, rounds)
            label = f"2 {worker_class} workers, wrk best of {rounds} x {seconds:g} s"
            rows += rows_for(results, worker_class, label)
        if not quick:
            # The same, for a page that costs ~100 µs instead of ~2 ms to render.
            results = load(sink, "sync", ["bare", "on", "buffered"], seconds, rounds, app="hello")
            label = f"2 sync workers, wrk best of {rounds} x {seconds:g} s"
            rows += rows_for(results, "sync", label, hello=True)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
