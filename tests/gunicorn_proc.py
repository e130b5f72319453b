"""A real gunicorn subprocess serving examples/flask_app.py, for the tests.

It runs with the example's gunicorn.conf.py (the plausible_wsgi hooks) and a
collector that keeps events buffered (``flush_interval`` 60 s, a big batch), so
whatever reaches the receiver was sent by a worker's exit flush.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from plausible_wsgi.receiver import PlausibleReceiver

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STARTUP_TIMEOUT = 30.0


def visitor(i: int) -> tuple[str, str]:
    """A distinct browser User-Agent and public IP per visitor."""
    user_agent = f"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.{i}"
    return user_agent, f"203.0.113.{i + 1}"


def stop_server(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> str:
    """``SIGTERM``, then the server must exit cleanly (0, no traceback); its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=timeout) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output
    return output


def example_env(receiver: PlausibleReceiver) -> dict[str, str]:
    """The environment of a server running an example app: events to ``receiver``,
    kept buffered (``flush_interval`` 60 s, a big batch) until the exit flush."""
    return {
        **os.environ,
        "PLAUSIBLE_DOMAIN": "example.com",
        "PLAUSIBLE_ENDPOINT": receiver.url,
        "PLAUSIBLE_TRUSTED_PROXIES": "1",
        "PLAUSIBLE_FLUSH_INTERVAL": "60",
        "PLAUSIBLE_BATCH_SIZE": "10000",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), *sys.path]),
    }


#: How gunicorn, uvicorn and hypercorn name the address they listen on. Started on
#: port 0, each binds a free port itself and logs it: no port found free, closed
#: again and raced for by another test's server before this one binds it.
_LISTENING = re.compile(rb"(?:Listening at:|[Rr]unning on) https?://127\.0\.0\.1:(\d+)")


def wait_until_serving(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The port the server ``proc`` (started on port 0, logging to ``log``) bound,
    once a connect succeeds; fail at once if it exits."""
    deadline = time.monotonic() + timeout
    port = None
    while True:
        if port is None:
            found = _LISTENING.search(log.read_bytes())
            port = int(found.group(1)) if found else None
        if port is not None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return port
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server is not listening after {timeout}s (port {port})")
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the server exited early with {proc.returncode}")


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Content-Type", "")
    finally:
        conn.close()


class Gunicorn:
    """gunicorn serving examples/flask_app.py with the plausible_wsgi hooks."""

    def __init__(self, receiver: PlausibleReceiver, tmp_path: Path, *options: str) -> None:
        env = example_env(receiver)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(EXAMPLES / "gunicorn.conf.py"),
            "--chdir",
            str(EXAMPLES),
            "--bind",
            "127.0.0.1:0",
            *options,
            "flask_app:app",
        ]
        self.log = tmp_path / "gunicorn.log"
        with self.log.open("wb") as log_file:
            self.proc = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.port = wait_until_serving(self.proc, self.log, STARTUP_TIMEOUT)
        self.served: list[str] = []
        self._lock = threading.Lock()

    def visit(self, i: int) -> bool:
        """One page view by visitor ``i``; True when it was served (200)."""
        user_agent, ip = visitor(i % 250)
        user_agent += f" req/{i}"
        headers = {"User-Agent": user_agent, "X-Forwarded-For": f"10.66.6.6, {ip}"}
        status, _ = get(self.port, "/pricing" if i % 2 else "/", headers)
        if status != 200:
            return False
        with self._lock:
            self.served.append(user_agent)
        return True

    def stop(self) -> str:
        return stop_server(self.proc, self.log)

    def workers_started(self) -> int:
        return self.log.read_text(errors="replace").count("Booting worker")
