"""Servers that speak raw bytes on loopback, for the transport, pipelining and proxy tests.

:class:`RawServer` runs a script per connection (the hostile servers: drips, cuts,
endless answers, pipelining mishandled); :class:`ConnectProxy` is a CONNECT proxy;
the ``nginx`` fixture runs Debian's nginx closing every third keep-alive answer; the
``named_cert`` fixture makes a certificate for ``plausible.test``. The fixtures reach
the test modules through ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from faults import next_request
from sink import wait_until


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


class RawServer:
    """Runs ``script(conn, server)`` for each connection, in a thread each."""

    def __init__(
        self, script: Callable[[socket.socket, RawServer], None], host: str = "127.0.0.1"
    ) -> None:
        self.script = script
        self.requests = 0
        self.connections = 0
        self.finished = threading.Event()  # set when a script returns
        self.written = 0  # bytes a dripping script got out
        self.ahead = 0  # requests read with bytes of the next one behind them
        self.lock = threading.Lock()
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._conns: list[socket.socket] = []
        self._pending: dict[int, bytes] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.script(conn, self)
        self.finished.set()
        conn.close()

    def request(self, conn: socket.socket) -> bool:
        """Read one request; bytes after it (pipelined requests) wait for the next call."""
        if self.read(conn) is None:
            return False
        with self.lock:
            self.requests += 1
        return True

    def read(self, conn: socket.socket) -> Optional[bytes]:
        """One request's body from ``conn``, or None if the peer left."""
        body, rest = next_request(conn, self._pending.pop(id(conn), b""))
        self._pending[id(conn)] = rest
        if rest:
            with self.lock:
                self.ahead += 1  # the next request came with this one: pipelined
        return body

    def close(self) -> None:
        self.sock.close()
        with self.lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(script: Callable[[socket.socket, RawServer], None], **kwargs: Any) -> RawServer:
        servers.append(RawServer(script, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


class ConnectProxy:
    """A CONNECT proxy that sends every tunnel to one loopback port, and records them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        self.requests.append(head)
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        back.start()
        pipe(client, upstream)
        back.join(timeout=10)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def named_cert(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=plausible.test", "-addext", "subjectAltName=DNS:plausible.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
daemon off;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 3;
    server {{
        listen 127.0.0.1:{port};
        location /dropped/ {{ add_header x-plausible-dropped 1 always; return 202 "ok"; }}
        location / {{ return 202 "ok"; }}
    }}
}}
"""


@pytest.fixture
def nginx() -> Iterator[tuple[str, Path]]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing in CI (.ci/run installs it)")
        pytest.skip("Debian's nginx is not installed (.ci/run installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="plausible-nginx-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen([binary, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])

    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    try:
        wait_until(up, 20)
        yield f"http://127.0.0.1:{port}", tmp / "access.log"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
