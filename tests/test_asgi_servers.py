"""examples/fastapi_app.py under real ASGI servers, real HTTP clients, real signals.

The collector keeps events buffered (``flush_interval`` 60 s, a big batch), so what
reaches the receiver was sent by the lifespan-shutdown flush after ``SIGTERM``.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn_proc import (
    EXAMPLES,
    STARTUP_TIMEOUT,
    example_env,
    stop_server,
    visitor,
    wait_until_serving,
)

from plausible_wsgi.receiver import PlausibleReceiver

pytestmark = pytest.mark.slow

PAGES = ("/", "/pricing", "/items/1", "/stream")
NOT_PAGES = ("/healthz", "/api/items", "/items/99")


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


class Server:
    """An ASGI server subprocess serving examples/fastapi_app.py."""

    def __init__(self, receiver: PlausibleReceiver, tmp_path: Path, command: list[str]) -> None:
        env = example_env(receiver)
        argv = [sys.executable, "-m", *command]  # port 0: the server picks one and logs it
        self.log = tmp_path / "server.log"
        with self.log.open("wb") as log_file:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=EXAMPLES
            )
        self.port = wait_until_serving(self.proc, self.log, STARTUP_TIMEOUT)
        self.served: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def visit(self, i: int, path: str, method: str = "GET") -> int:
        """One request by visitor ``i``; a served page is remembered."""
        user_agent, ip = visitor(i % 250)
        user_agent += f" req/{i}"
        headers = {"User-Agent": user_agent, "X-Forwarded-For": f"10.66.6.6, {ip}"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status == 200 and path in PAGES and method == "GET":
            with self._lock:
                self.served.append((path, user_agent, ip))
        return response.status

    def stop(self) -> str:
        return stop_server(self.proc, self.log)


def gunicorn(*options: str) -> list[str]:
    """gunicorn with 2 uvicorn workers serving the FastAPI example."""
    return [
        "gunicorn",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
        *options,
        "fastapi_app:app",
    ]


SERVERS = [
    pytest.param(
        ["uvicorn", "--port", "0", "--workers", "2", "fastapi_app:app"], id="uvicorn-2-workers"
    ),
    pytest.param(["hypercorn", "--bind", "127.0.0.1:0", "fastapi_app:app"], id="hypercorn"),
    pytest.param(gunicorn(), id="gunicorn-uvicorn-worker"),
    # --preload: the collector is made in the master, then forked
    pytest.param(gunicorn("--preload"), id="gunicorn-uvicorn-worker-preload"),
]


@pytest.mark.parametrize("command", SERVERS)
def test_every_pageview_and_goal_arrives_after_sigterm(
    receiver: PlausibleReceiver, tmp_path: Path, command: list[str]
) -> None:
    server = Server(receiver, tmp_path, command)
    try:
        for i in range(24):
            assert server.visit(i, PAGES[i % len(PAGES)]) == 200
            server.visit(i, NOT_PAGES[i % len(NOT_PAGES)])
        assert server.visit(1000, "/signup", "POST") == 200
        assert server.visit(1001, "/newsletter", "POST") == 200
        assert not receiver.attempts  # all buffered: what arrives is the shutdown flush
    finally:
        output = server.stop()
    pageviews = [e for e in receiver.events if e.name == "pageview"]
    assert sorted((e.pathname, e.user_agent, e.client_ip) for e in pageviews) == sorted(
        server.served
    ), output
    goals = {e.name: e for e in receiver.events if e.name in ("Signup", "Newsletter")}
    for name, number in (("Signup", 1000), ("Newsletter", 1001)):
        user_agent, ip = visitor(number % 250)
        assert goals[name].user_agent == f"{user_agent} req/{number}"
        assert goals[name].client_ip == ip
    actions = sorted(e.name for e in receiver.events if e.name.startswith("POST "))
    assert actions == ["POST /newsletter", "POST /signup"]
    assert not receiver.rejected


def test_sigterm_under_load_delivers_every_served_pageview(
    receiver: PlausibleReceiver, tmp_path: Path
) -> None:
    """Clients keep requesting while uvicorn's workers are told to stop."""
    server = Server(
        receiver, tmp_path, ["uvicorn", "--port", "0", "--workers", "2", "fastapi_app:app"]
    )
    stop = threading.Event()
    counter = iter(range(10**6))
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            with lock:
                i = next(counter)
            try:
                server.visit(i, PAGES[i % len(PAGES)])
            except OSError:
                return  # the server is gone

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client) for _ in range(8)]
            while len(server.served) < 200:
                assert not any(f.done() for f in futures), [f.result() for f in futures]
                stop.wait(0.05)
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=60)
            stop.set()
            for future in futures:
                future.result(timeout=60)
    finally:
        stop.set()
        output = server.stop()
    received = sorted((e.pathname, e.user_agent, e.client_ip) for e in receiver.events)
    assert received == sorted(server.served), output
