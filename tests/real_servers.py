"""Real uWSGI and gunicorn under load for the stop tests: the app, the load, the tally.

The server listens on a Unix socket in the test's directory (no port to pick). The
load is a few threads of HTTP/1.0 GETs, each for a unique page; a page counts as
*served* only when its whole body came back, which is the promise under test: every
page view whose response the client received fully is delivered exactly once.
"""

from __future__ import annotations

import collections
import inspect
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Optional

import plausible_wsgi as pw
from plausible_wsgi.stats import CollectorStats

#: The collector's default ``pipeline_depth``: the most POSTs a delivery thread has out.
DEPTH: int = inspect.signature(pw.PlausibleCollector).parameters["pipeline_depth"].default
#: Delivery threads per server process ...
WORKERS = 2
#: ... each with up to a pipelined batch out: at a kill, every POST in flight may be
#: in doubt.
POSTS = WORKERS * DEPTH

APP = textwrap.dedent(
    """
    import logging, os, time
    import plausible_wsgi as pw
    import plausible_wsgi.uwsgi

    logging.basicConfig(level=logging.WARNING, format="APPLOG %(message)s")
    collector = pw.PlausibleCollector(
        "example.com",
        endpoint=os.environ["PW_ENDPOINT"],
        spool=os.environ.get("PW_SPOOL") or None,
        max_workers={WORKERS},
        flush_interval=0.2,
        shutdown_timeout=2.0,
        ca_bundle=os.environ.get("PW_CA") or None,
    )

    def page(environ, start_response):
        time.sleep(0.003)  # a worker is busy most of the time: stops catch it mid-request
        body = ("<html>" + environ["PATH_INFO"] + "</html>").encode()
        start_response(
            "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
        )
        return [body]

    application = pw.PlausibleMiddleware(page, collector)
    plausible_wsgi.uwsgi.install()
    """
).replace("{WORKERS}", str(WORKERS))

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def get(sock_path: str, path: str, timeout: float = 5.0) -> bool:
    """One GET over the Unix socket; True when the whole expected page came back."""
    expected = f"<html>{path}</html>".encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sock_path)
            sock.sendall(
                f"GET {path} HTTP/1.0\r\nHost: example.com\r\nUser-Agent: {BROWSER}\r\n"
                "Accept: text/html\r\n\r\n".encode()
            )
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    head, _, body = data.partition(b"\r\n\r\n")
    return head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] and body == expected


class Load:
    """Threads requesting unique pages until stopped; remembers what was served."""

    def __init__(self, sock_path: str, threads: int = 3) -> None:
        self.sock_path = sock_path
        self.served: list[str] = []
        self.attempted = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]
        self._paused = threading.Event()

    def _run(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            path = f"/p/{index}-{n}"
            n += 1
            with self._lock:
                self.attempted += 1
            if get(self.sock_path, path):
                with self._lock:
                    self.served.append(f"http://example.com{path}")
                    self._lock.notify_all()
            else:
                self._stop.wait(0.01)  # server down or restarting

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait_served(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.served) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"served {len(self.served)} of {count}")
                self._lock.wait(remaining)

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        return list(self.served)


class Server:
    """A server process running the app above on a Unix socket."""

    def __init__(
        self,
        tmp: Path,
        endpoint: str,
        spool: Optional[Path],
        command: list[str],
        ca_bundle: Optional[Path] = None,
    ) -> None:
        self.tmp = tmp
        self.log_path = tmp / "server.log"
        (tmp / "pw_app.py").write_text(APP)
        env = dict(os.environ, PW_ENDPOINT=endpoint, PW_SPOOL=str(spool) if spool else "")
        env["PW_CA"] = str(ca_bundle) if ca_bundle else ""
        env["PYTHONPATH"] = os.pathsep.join([str(tmp), *sys.path])
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            command, cwd=tmp, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not get(self.sock_path, "/ready-check"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"uwsgi exited: {self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(self.log())
            time.sleep(0.05)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Uwsgi(Server):
    """``uwsgi`` with two workers and a master, plus ``flags``."""

    def __init__(self, tmp: Path, endpoint: str, spool: Optional[Path], *flags: str) -> None:
        self.sock_path = str(tmp / "uwsgi.sock")
        uwsgi = str(Path(sys.executable).with_name("uwsgi"))
        command = [uwsgi, "--http-socket", self.sock_path, "--module", "pw_app"]
        command += ["--processes", "2", "--master", "--need-app", *flags]
        super().__init__(tmp, endpoint, spool, command)


class Gunicorn(Server):
    """gunicorn with two workers of ``worker_class`` and the library's hooks."""

    def __init__(
        self,
        tmp: Path,
        endpoint: str,
        spool: Optional[Path],
        worker_class: str,
        ca_bundle: Optional[Path] = None,
    ) -> None:
        self.sock_path = str(tmp / "gunicorn.sock")
        conf = tmp / "gunicorn.conf.py"
        conf.write_text("from plausible_wsgi.gunicorn import post_fork, worker_exit\n")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        command = [gunicorn, "-c", str(conf), "-k", worker_class, "-w", "2"]
        command += ["-b", f"unix:{self.sock_path}", "--graceful-timeout", "20", "pw_app"]
        super().__init__(tmp, endpoint, spool, command, ca_bundle)


def stored(path: Path) -> int:
    """Rows in the spool file; 0 when there is no file or no table yet.

    A collector opens its spool lazily (on the first append, or in its pump thread), so
    the file can exist a moment before the table does: ``drain()`` polls while its
    relay creates them. Whether the servers' rows arrived is for ``tally()`` to say.
    """
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return 0
    return count


def check_tally(figures: dict[str, int], killed: int) -> None:
    """The promise, per killed process: at most one page lost (served, then killed
    before its commit) and at most one duplicate per POST it had in flight (in doubt:
    answered, then killed before the row was deleted; resent, as
    ``retry_connection_cuts`` says)."""
    assert figures["lost"] <= killed, figures
    assert figures["duplicated"] <= killed * POSTS, figures


def tally(served: list[str], delivered: list[str]) -> dict[str, int]:
    """served / delivered / lost (served, never delivered) / duplicated (extra copies)."""
    counts = collections.Counter(delivered)
    return {
        "served": len(served),
        "delivered": sum(counts[url] > 0 for url in served),
        "lost": sum(counts[url] == 0 for url in served),
        "duplicated": sum(max(0, n - 1) for n in counts.values()),
    }


def drain(spool: Path, endpoint: str) -> CollectorStats:
    """What a relay does once the servers are gone: send every row left, then stop."""
    import plausible_wsgi as pw

    relay = pw.PlausibleCollector(
        "spool-relay", endpoint=endpoint, spool=str(spool), flush_interval=0.2
    )
    relay.start()
    deadline = time.monotonic() + 30
    while stored(spool):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stored(spool)} rows never drained")
        time.sleep(0.02)
    relay.close()
    return relay.stats()
