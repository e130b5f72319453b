"""Delivery through an HTTP proxy named by the environment, as requests would do it."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from faults import TlsSink
from sink import Sink, dead_endpoint
from wire import ConnectProxy

import plausible_wsgi as pw

URL = "https://example.com/"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_http_endpoint_goes_through_http_proxy(
    http_sink: Sink, no_proxy_env: pytest.MonkeyPatch
) -> None:
    # The sink plays the proxy: a plain-HTTP proxy gets the absolute URL.
    no_proxy_env.setenv("HTTP_PROXY", "http://user:p%40ss@" + http_sink.url.split("://")[1])
    collector = pw.PlausibleCollector(
        "example.com", endpoint="http://plausible.test", shutdown_timeout=2
    )
    try:
        collector.track("E", url=URL, user_agent=UA)
        assert collector.flush(5)
    finally:
        collector.close()
    (hit,) = http_sink.wait_for(1)
    assert hit.path == "http://plausible.test/api/event"
    assert hit.headers["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert hit.headers["Host"] == "plausible.test"
    assert hit.json["name"] == "E"


def test_no_proxy_and_loopback_are_never_proxied(
    http_sink: Sink, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", dead_endpoint())
    collector = pw.PlausibleCollector("example.com", endpoint=http_sink.url, shutdown_timeout=2)
    try:
        collector.track("E", url=URL, user_agent=UA)
        assert collector.flush(5)
    finally:
        collector.close()
    assert http_sink.wait_for(1)[0].path == "/api/event"

    from plausible_wsgi.delivery.connection import proxy_for

    no_proxy_env.setenv("NO_PROXY", "plausible.test")
    assert proxy_for("http", "plausible.test") is None
    assert proxy_for("http", "other.test") is not None


def test_https_endpoint_tunnels_through_connect_with_tls_verified_end_to_end(
    named_cert: tuple[Path, Path], no_proxy_env: pytest.MonkeyPatch
) -> None:
    cert, key = named_cert
    server = TlsSink(cert, key)
    proxy = ConnectProxy(int(server.url.rsplit(":", 1)[1]))
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    try:
        collector = pw.PlausibleCollector(
            "example.com",
            endpoint="https://plausible.test:8443",
            ca_bundle=str(cert),
            shutdown_timeout=2,
        )
        collector.track("E", url=URL, user_agent=UA)
        assert collector.flush(5)
        collector.close()
        assert collector.stats().sent == 1
        assert len(server.bodies) == 1
        assert proxy.requests[0].startswith(b"CONNECT plausible.test:8443 HTTP/1.")
    finally:
        proxy.close()
        server.close()


def test_a_proxy_refusing_the_tunnel_is_a_connect_failure_and_nothing_is_sent(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    from plausible_wsgi.delivery.failure import AttemptError, FailureKind
    from plausible_wsgi.delivery.transport import HttpTransport

    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def refuse() -> None:
        conn, _ = listener.accept()
        with conn:
            heads.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    no_proxy_env.setenv("HTTPS_PROXY", f"http://u:p@127.0.0.1:{listener.getsockname()[1]}")
    transport = HttpTransport("https://plausible.test", timeout=10)
    try:
        with pytest.raises(AttemptError) as caught:
            transport.send(b"{}", UA, "203.0.113.9")
    finally:
        transport.close()
        listener.close()
    thread.join(10)
    assert caught.value.kind is FailureKind.CONNECT
    assert "407" in str(caught.value)
    # The tunnel request carries the proxy's credentials and nothing of the visitor.
    assert heads[0].startswith(b"CONNECT plausible.test:443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dTpw\r\n" in heads[0]
    assert b"203.0.113.9" not in heads[0]
    assert UA.encode() not in heads[0]
