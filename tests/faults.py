"""Fault injection on top of :class:`~plausible_wsgi.receiver.PlausibleReceiver`.

The receiver already scripts single answers (:class:`Fault`: a status, headers, a
delay, a reset *before* the event is processed) and outages (``down()``/``up()`` on the
same port). What reliability scenarios need on top of that lives here:

- :class:`Flapper`: flips a receiver down and up on a schedule, in a thread.
- :class:`GracefulGate`: makes ``down()`` wait for requests being answered, so that a
  flap never cuts a connection *after* the event was recorded (that case is an
  ambiguous outcome for any client; :class:`RecordingResetServer` tests it on its own).
- :class:`RecordingResetServer`: records each event and then resets the connection,
  with no answer or after half an answer: the server counted the event, the client
  cannot know.
- :class:`TlsSink`: an https endpoint on loopback with a self-signed certificate
  made at test time with the ``openssl`` command.
- Accounting helpers: unique event ids at the receiver, CPU time, waiting on a
  condition with a timeout.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import json
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Optional

from plausible_wsgi.receiver import PlausibleReceiver

URL = "https://example.com/"
#: A browser User-Agent the receiver does not take for a bot.
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def ids_received(receiver: PlausibleReceiver) -> collections.Counter[str]:
    """How many times each event id (prop ``id``) was accepted by the receiver."""
    return collections.Counter(e.props.get("id", "") for e in receiver.events)


def duplicates(counts: collections.Counter[str]) -> int:
    """Events recorded more than once, counted once per extra copy."""
    return sum(n - 1 for n in counts.values() if n > 1)


class GracefulGate:
    """Wraps a receiver's app so that ``down()`` never cuts an answered request.

    ``close()`` waits until no request is between "event recorded" and "answer
    written", then lets the caller take the receiver down; requests that arrive while
    closed are reset unprocessed (the client sees a connection error, the event is
    not recorded). ``open()`` lets requests through again.
    """

    def __init__(self, receiver: PlausibleReceiver) -> None:
        self.receiver = receiver
        self.app = receiver.app
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False
        #: Requests reset because they arrived while closed.
        self.refused = 0
        receiver.app = self  # type: ignore[assignment]
        if receiver.running:  # the running server holds the bare app: serve the gate
            receiver.stop()
            receiver.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._cond:
            if self._closed:
                self.refused += 1
                refuse = True
            else:
                self._active += 1
                refuse = False
        if refuse:
            _reset(environ.get("werkzeug.socket"))
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        try:
            result = self.app(environ, start_response)
            body = b"".join(result)
            close = getattr(result, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._done()
            raise
        # The server calls close() after writing the answer: only then is it safe.
        return _Answer(body, self._done)

    def _done(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0, timeout)

    def open(self) -> None:
        with self._cond:
            self._closed = False


class _Answer:
    """A one-chunk response body that reports when the server closed it."""

    def __init__(self, body: bytes, on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close: Optional[Callable[[], None]] = on_close

    def __iter__(self) -> Iterator[bytes]:
        yield self._body

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class Flapper:
    """Takes ``receiver`` down for ``down_for`` s, up for ``up_for`` s, repeatedly.

    The schedule runs in a daemon thread until :meth:`stop`, which leaves the
    receiver up; ``start_down`` begins with an outage. With ``graceful`` (the default)
    a :class:`GracefulGate` keeps every outage from cutting a request that was already
    recorded. ``jitter=0.5`` draws each duration from ±50 % of its value (seeded): a
    strictly periodic schedule can resonate with the breaker's fixed open timeout.
    """

    def __init__(
        self,
        receiver: PlausibleReceiver,
        *,
        down_for: float = 0.1,
        up_for: float = 0.1,
        graceful: bool = True,
        start_down: bool = False,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.receiver = receiver
        self.start_down = start_down
        self.jitter = jitter
        self._random = random.Random(seed)
        self.down_for = down_for
        self.up_for = up_for
        self.gate = GracefulGate(receiver) if graceful else None
        self.outages = 0
        self.downtime = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)

    def start(self) -> Flapper:
        self._thread.start()
        return self

    def _spread(self, seconds: float) -> float:
        if not self.jitter:
            return seconds
        return seconds * self._random.uniform(1 - self.jitter, 1 + self.jitter)

    def _run(self) -> None:
        first_wait = 0.0 if self.start_down else self._spread(self.up_for)
        while not self._stop.wait(first_wait):
            first_wait = self._spread(self.up_for)
            if self.gate is not None:
                self.gate.close()
            self.receiver.down()
            self.outages += 1
            started = time.monotonic()
            self._stop.wait(self._spread(self.down_for))
            self.receiver.up()
            if self.gate is not None:
                self.gate.open()
            self.downtime += time.monotonic() - started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._thread.is_alive():
            raise AssertionError("the flapper thread did not stop")
        self.receiver.up()
        if self.gate is not None:
            self.gate.open()

    def __enter__(self) -> Flapper:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _reset(sock: object) -> None:
    """Close ``sock`` with a TCP reset (linger 0), no answer sent."""
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)


def read_request(conn: socket.socket) -> Optional[bytes]:
    """Read one HTTP request from ``conn``; its body, or ``None`` if the peer left."""
    return next_request(conn, b"")[0]


def next_request(conn: socket.socket, data: bytes) -> tuple[Optional[bytes], bytes]:
    """One request's body (``None`` if the peer left) from ``data`` (bytes already read)
    and ``conn``, and the bytes read past it (pipelined requests)."""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        body += chunk
    return body[:length], body[length:]


class RecordingResetServer:
    """Records every event it reads, then resets the connection.

    ``mode="no_answer"``: reset right after reading the request. ``"mid_answer"``:
    send the status line, headers and half the body first. Either way the event
    *was* processed (recorded here); a real Plausible would have counted it.
    """

    def __init__(self, mode: str = "no_answer") -> None:
        if mode not in ("no_answer", "mid_answer"):
            raise ValueError(mode)
        self.mode = mode
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                body = read_request(conn)
                if body is None:
                    return
                with self._lock:
                    self.bodies.append(body)
                if self.mode == "mid_answer":
                    conn.sendall(
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 100\r\n\r\nok"
                    )
            except OSError:
                return
            _reset(conn)

    @property
    def ids(self) -> collections.Counter[str]:
        with self._lock:
            bodies = list(self.bodies)
        return collections.Counter(json.loads(b)["props"]["id"] for b in bodies)

    def close(self) -> None:
        self._sock.close()


def make_self_signed_cert(directory: Path) -> Optional[tuple[Path, Path]]:
    """A self-signed certificate for ``127.0.0.1`` (cert, key), or ``None`` when the
    ``openssl`` command is missing (the ``cryptography`` package is not installed)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class TlsSink:
    """An https ``/api/event`` on loopback answering ``202 ok`` and keeping the bodies.

    ``handshake_failures`` counts TLS handshakes the client broke off (a client that
    verifies the certificate and does not trust it).
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.bodies: list[bytes] = []
        self.handshake_failures = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                sink.bodies.append(self.rfile.read(length))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                conn, addr = self.socket.accept()
                return context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                ), addr

            def finish_request(self, request: Any, client_address: Any) -> None:
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    sink.handshake_failures += 1
                    return
                super().finish_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def measure_cpu() -> Iterator[dict[str, float]]:
    """CPU seconds (user + system, all threads) and wall seconds spent in the block."""
    result: dict[str, float] = {}
    cpu, wall = time.process_time(), time.monotonic()
    try:
        yield result
    finally:
        result["cpu"] = time.process_time() - cpu
        result["wall"] = time.monotonic() - wall
