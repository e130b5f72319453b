"""A fast local sink for benchmarks: nginx answering ``202 ok`` on loopback.

Started from the benchmark with its own config and pid file in a temp dir. Falls
back to a small Python server in a subprocess when nginx is not installed (the
figures are then marked as such: a Python sink is slower than the client).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port}{tls};
        location /slow/ {{ {slow} }}
        location = /_sink/requests {{ stub_status; }}
        location / {{ return 202 "ok"; }}
    }}
}}
"""

PY_SINK = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/slow/"):
            time.sleep({delay})
        self.wfile.write(b"HTTP/1.1 202 Accepted\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
s.daemon_threads = True
s.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """``with Sink() as sink: sink.url`` — ``/api/event`` answers 202 at once;
    ``/slow/api/event`` answers after ``slow_delay`` seconds (Python sink only when
    nginx lacks the echo module, so the slow path always uses the Python server).

    :meth:`count_events` tells how many requests arrived (nginx only). From nginx's
    request counter (``stub_status``), not an access log: a log line written per event
    was CPU the sink took from the 2 cores the measured workers share, which a remote
    Plausible does not.

    ``tls=True`` (nginx only): https with a certificate for ``127.0.0.1`` from a CA made
    here (trustme, the dev extra); ``ca_bundle`` is that CA's file. Raises
    ``RuntimeError`` when nginx or trustme is missing."""

    def __init__(
        self,
        *,
        slow_delay: Optional[float] = None,
        force_python: bool = False,
        tls: bool = False,
    ) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.kind = "python"
        self.ca_bundle: Optional[str] = None
        self._queries = 0
        self._tmp = tempfile.mkdtemp(prefix="plausible-bench-")
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
        )
        if tls and not (nginx and slow_delay is None and not force_python):
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise RuntimeError("the TLS sink needs Debian's nginx")
        if nginx and slow_delay is None and not force_python:
            conf = Path(self._tmp, "nginx.conf")
            conf.write_text(
                NGINX_CONF.format(
                    tmp=self._tmp,
                    port=self.port,
                    slow="return 404;",
                    tls=self._make_certificate() if tls else "",
                )
            )
            self._proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", self._tmp], stderr=subprocess.DEVNULL
            )
            self.kind = "nginx"
        else:
            code = textwrap.dedent(PY_SINK).format(port=self.port, delay=slow_delay or 0)
            self._proc = subprocess.Popen([sys.executable, "-c", code])
        self._wait_ready()

    def _make_certificate(self) -> str:
        """A CA and a server certificate in the temp dir; the nginx ``listen`` suffix."""
        try:
            import trustme
        except ImportError:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise RuntimeError("the TLS sink needs trustme (pip install -e '.[dev]')") from None
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_bundle = str(Path(self._tmp, "ca.pem"))
        ca.cert_pem.write_to_path(self.ca_bundle)
        cert.private_key_pem.write_to_path(str(Path(self._tmp, "key.pem")))
        cert.cert_chain_pems[0].write_to_path(str(Path(self._tmp, "cert.pem")))
        return (
            f" ssl; ssl_certificate {self._tmp}/cert.pem; ssl_certificate_key {self._tmp}/key.pem"
        )

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.close()
        raise RuntimeError(f"sink did not start on port {self.port}")

    def count_events(self) -> int:
        """Requests nginx served so far, these queries not included (plain HTTP)."""
        if self.kind != "nginx" or self.url.startswith("https"):
            raise RuntimeError("count_events() needs the plain-HTTP nginx sink")
        request = b"GET /_sink/requests HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        self._queries += 1  # stub_status counts the request asking, too
        # "server accepts handled requests\n <accepts> <handled> <requests>"
        requests = int(answer.split(b"requests", 1)[1].split()[2])
        return requests - self._queries

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
