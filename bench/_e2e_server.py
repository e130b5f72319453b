"""One gunicorn server of ``bench/e2e.py``, kept up for the whole measurement.

The CPU a server's workers spend is read from ``/proc/<pid>/stat`` around each ``wrk``
round, from outside: the window is exactly the round's (no warm-up, no start-up, no
exit flush in it) and the pages are exactly the requests ``wrk`` counted in it. At
the end ``SIGTERM`` makes the workers flush; each writes its counters
(``bench/_gunicorn_conf.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench._sink import free_port

ROOT = Path(__file__).resolve().parent.parent
WORKER_CLASSES: dict[str, list[str]] = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
}
_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return sorted(int(child) for child in file.read().split())
    except OSError:  # no CONFIG_PROC_CHILDREN: look for the parent in every process
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                            found.append(int(entry))
                except (OSError, ValueError, IndexError):
                    continue
        return sorted(found)


class Server:
    """gunicorn serving ``bench._e2e_app`` with 2 workers in one mode (``env``)."""

    def __init__(self, worker_class: str, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.workers = workers
        self.stats_dir = tempfile.mkdtemp(prefix="plausible-e2e-")
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", str(ROOT / "bench" / "_gunicorn_conf.py"),
            "-b", f"127.0.0.1:{self.port}",
            "-w", str(workers),
            *WORKER_CLASSES[worker_class],
            "--log-level", "warning",
            "bench._e2e_app:app",
        ]  # fmt: skip
        with Path(self.stats_dir, "gunicorn.log").open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env, "BENCH_STATS_DIR": self.stats_dir},
                stdout=log,
                stderr=log,
            )
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it answers and all its workers run."""
        wait_http(self.port, self.proc, timeout, ready=lambda: len(self.pids()) == self.workers)

    def pids(self) -> list[int]:
        return _children(self.proc.pid)

    def cpu(self) -> tuple[tuple[int, ...], float]:
        """The workers' pids and their CPU seconds so far (a worker replaced in
        between shows as a changed pid tuple: that round does not count)."""
        pids = tuple(self.pids())
        total = 0.0
        for pid in pids:
            try:
                total += _process_cpu(pid)
            except OSError:
                return (), 0.0
        return pids, total

    def stop(self) -> dict[str, Any]:
        """SIGTERM (the workers flush), then the workers' counters, summed."""
        terminate(self.proc)
        workers = [json.loads(p.read_text()) for p in Path(self.stats_dir).glob("worker-*.json")]
        result: dict[str, Any] = {"workers": len(workers)}
        for key in ("accepted", "sent", "queued", "pageviews", "delivery_cpu", "gc_cpu", "gc2"):
            result[key] = sum(w.get(key, 0) for w in workers)
        dropped: dict[str, int] = {}
        for worker in workers:
            for reason, count in worker["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + count
        result["dropped"] = dropped
        log = Path(self.stats_dir, "gunicorn.log")
        result["log"] = log.read_text(errors="replace")[-2000:]
        shutil.rmtree(self.stats_dir, ignore_errors=True)
        return result

    def kill(self) -> None:
        """After a failure: no server left behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.stats_dir, ignore_errors=True)


def wait_http(
    port: int,
    proc: subprocess.Popen[bytes],
    timeout: float = 30.0,
    *,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Until the server ``proc`` answers ``GET /healthz`` with 200 and ``ready()``."""
    deadline = time.monotonic() + timeout
    request = b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if b" 200 " in sock.recv(64) and ready():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not answer in time")


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (its workers flush), and a kill if it has not exited within 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = ["WORKER_CLASSES", "Server", "terminate", "wait_http"]
