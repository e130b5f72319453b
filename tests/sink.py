"""A scriptable HTTP sink on loopback for delivery tests.

It records the raw request (path, headers, body) so tests can check the exact bytes
the collector sends, and answers from a script (status, headers, delay), 202 ``ok``
by default. It is deliberately dumb: the Plausible rules live in the receiver.
"""

from __future__ import annotations

import atexit
import collections
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple


class Answer(NamedTuple):
    status: int = 202
    headers: Mapping[str, str] = {}
    delay: float = 0.0
    body: bytes = b"ok"


class Hit(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: collections.deque[Answer] = collections.deque()
        self.default = Answer()
        self.cond = threading.Condition()
        self.active = 0
        self.max_active = 0
        self._stop = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle plus the
            # client's delayed ACK adds 40 ms to every answer.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with sink.cond:
                    answer = sink.script.popleft() if sink.script else sink.default
                    sink.active += 1
                    sink.max_active = max(sink.max_active, sink.active)
                try:
                    if answer.delay:
                        sink._stop.wait(answer.delay)
                    # Recorded before the answer leaves, so a client that saw the
                    # answer always finds the hit.
                    with sink.cond:
                        sink.hits.append(
                            Hit(
                                self.path, dict(self.headers), body, time.monotonic(), answer.status
                            )
                        )
                        sink.cond.notify_all()
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (cut at close)
                finally:
                    with sink.cond:
                        sink.active -= 1
                        sink.cond.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def answer(self, *answers: Answer) -> None:
        with self.cond:
            self.script.extend(answers)

    def accepted(self) -> list[Hit]:
        """Hits answered 2xx without x-plausible-dropped in the script."""
        with self.cond:
            return [h for h in self.hits if 200 <= h.status < 300]

    def wait_for(self, n: int, timeout: float = 10.0, *, accepted: bool = True) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [h for h in self.hits if not accepted or 200 <= h.status < 300]
                if len(hits) >= n:
                    return hits
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {n} hits, got {len(hits)}")
                self.cond.wait(remaining)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def sink() -> Iterator[Sink]:
    s = Sink()
    try:
        yield s
    finally:
        s.close()


#: The port of dead_endpoint(): bound, never listened on, held until the process exits.
_dead_port: list[socket.socket] = []


def dead_endpoint() -> str:
    """A loopback URL on which connections are refused.

    The port stays bound (without listening) for the life of the process: a port
    released at once could be given to another test's sink, or to another process on
    the machine, which would then receive what a collector here kept retrying.
    """
    if not _dead_port:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        atexit.register(sock.close)
        _dead_port.append(sock)
    return f"http://127.0.0.1:{_dead_port[0].getsockname()[1]}"


class SilentServer:
    """Accepts connections and never answers (a hung Plausible)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self.conns:
            conn.close()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
