"""A real gunicorn serving examples/flask_app.py: every page view arrives, none lost.

Events wait in each worker's buffer (``flush_interval`` 60 s, a big batch), so what
reaches the receiver was sent by the exit flush after ``SIGTERM`` — the
``worker_exit`` hook of examples/gunicorn.conf.py, or the interpreter-exit flush.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plausible_wsgi.receiver import PlausibleReceiver

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REQUESTS = 40
PAGES = ("/", "/pricing", "/about", "/items/1", "/items/2")
NOT_PAGES = ("/healthz", "/api/items", "/static/style.css", "/items/99")
STARTUP_TIMEOUT = 30.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def visitor(i: int) -> tuple[str, str]:
    """A distinct browser User-Agent and public IP per visitor."""
    user_agent = f"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.{i}"
    return user_agent, f"203.0.113.{i + 1}"


def wait_until_serving(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll a connect until gunicorn listens; fail at once if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"gunicorn not listening on {port} after {timeout}s")
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"gunicorn exited early with {proc.returncode}")


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Content-Type", "")
    finally:
        conn.close()


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


@pytest.mark.parametrize(
    ("worker_class", "preload"),
    [
        pytest.param("sync", True, id="sync-preload"),
        pytest.param("gthread", True, id="gthread-preload"),
        pytest.param("gthread", False, id="gthread"),
    ],
)
def test_every_pageview_arrives_after_sigterm(
    receiver: PlausibleReceiver, tmp_path: Path, worker_class: str, preload: bool
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PLAUSIBLE_DOMAIN": "example.com",
        "PLAUSIBLE_ENDPOINT": receiver.url,
        "PLAUSIBLE_TRUSTED_PROXIES": "1",
        # Keep events buffered until the exit flush.
        "PLAUSIBLE_FLUSH_INTERVAL": "60",
        "PLAUSIBLE_BATCH_SIZE": "1000",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), *sys.path]),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(EXAMPLES / "gunicorn.conf.py"),
        "--chdir",
        str(EXAMPLES),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        worker_class,
        *(["--threads", "4"] if worker_class == "gthread" else []),
        *(["--preload"] if preload else []),
        "flask_app:app",
    ]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(proc, port, STARTUP_TIMEOUT)
        expected = set()
        for i in range(REQUESTS):
            user_agent, ip = visitor(i)
            path = PAGES[i % len(PAGES)]
            # The left entry is the client's claim; the trusted proxy appended the right one.
            headers = {"User-Agent": user_agent, "X-Forwarded-For": f"10.66.6.6, {ip}"}
            status, content_type = get(port, path, headers)
            assert status == 200, path
            assert content_type.startswith("text/html")
            expected.add((path, user_agent, ip))
            not_page = NOT_PAGES[i % len(NOT_PAGES)]
            get(port, not_page, headers)
        # All of it still buffered in the workers: what arrives comes from the exit flush.
        assert not receiver.attempts
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output

    received = {(e.pathname, e.user_agent, e.client_ip) for e in receiver.events}
    assert len(receiver.events) == REQUESTS, output
    assert {e.name for e in receiver.events} == {"pageview"}
    assert received == expected
    assert not receiver.dropped
    assert not receiver.rejected
