"""The transport against real servers on loopback, friendly and hostile.

Friendly: the project's receiver, werkzeug's dev server (length and chunked answers),
nginx, a TLS sink with a CA made at test time (trustme). Hostile, as cheap raw
sockets: a server that drips, one that answers an endless body, one that cuts the
second request of each connection, one whose handshake never completes, endless
``100 Continue``. No wall-clock thresholds: each test waits on a condition, with
generous timeouts far below the time the bad behaviour would take.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from sink import SilentServer, wait_until
from wire import RawServer

import plausible_wsgi as pw
from plausible_wsgi.delivery.connection import IDLE_CHECK_AFTER
from plausible_wsgi.delivery.failure import AttemptError, FailureKind
from plausible_wsgi.delivery.transport import HttpTransport, Outcome
from plausible_wsgi.receiver import Fault, PlausibleReceiver

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "203.0.113.7"
BODY = b'{"domain":"example.com","name":"pageview","url":"https://example.com/"}'
OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
#: The hostile servers below drip a byte every DRIP seconds against an attempt deadline
#: of DEADLINE: a per-read timeout (DEADLINE too) never fires, only the deadline can end
#: the attempt, and each drip would take over a minute in full. Short, so that each such
#: test waits about a second; the per-read margin (5x) holds on a loaded machine, and a
#: per-read timeout firing anyway would still fail the attempt the same way.
DRIP = 0.15
DEADLINE = 0.75


pytestmark = pytest.mark.usefixtures("no_proxy_env")


def collector(endpoint: str, **kwargs: Any) -> pw.PlausibleCollector:
    kwargs.setdefault("shutdown_timeout", 5)
    kwargs.setdefault("retry", None)
    kwargs.setdefault("circuit_breaker", None)
    return pw.PlausibleCollector("example.com", endpoint=endpoint, **kwargs)


def track(c: pw.PlausibleCollector, n: int = 1) -> None:
    for i in range(n):
        c.track("E", url="https://example.com/", user_agent=UA, client_ip=IP, props={"id": i})


# -- friendly servers ------------------------------------------------------------------------


def test_receiver_gets_every_event_on_one_connection_with_the_visitor_headers() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        transport = HttpTransport(receiver.url, timeout=10)
        for _ in range(20):
            assert transport.send(BODY, UA, IP).outcome is Outcome.SENT
        transport.close()
        attempts = receiver.wait_for_attempts(20)
        events = receiver.wait_for(20)
    headers = {k.lower(): v for k, v in attempts[0].headers.items()}
    assert headers["user-agent"] == UA
    assert headers["x-forwarded-for"] == IP
    assert headers["x-plausible-ip"] == IP
    assert headers["content-type"] == "application/json"
    assert all(e.outcome == "accepted" for e in events)


def test_receiver_statuses_retry_after_and_dropped() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        transport = HttpTransport(receiver.url, timeout=10, max_retry_after=5)
        receiver.enqueue_faults(
            Fault(429, {"Retry-After": "60"}), Fault(503), Fault(400, body="bad")
        )
        with pytest.raises(AttemptError) as caught:
            transport.send(BODY, UA, IP)
        assert (caught.value.kind, caught.value.status) == (FailureKind.STATUS, 429)
        assert caught.value.retry_after == 5  # clamped
        with pytest.raises(AttemptError) as caught:
            transport.send(BODY, UA, IP)
        assert caught.value.kind == "status"  # the str enum compares with the old strings
        rejected = transport.send(BODY, UA, IP)
        assert (rejected.outcome, rejected.body) == (Outcome.REJECTED, b"bad")
        dropped = transport.send(BODY.replace(b"example.com", b"unknown.test"), UA, IP)
        assert dropped.outcome is Outcome.SERVER_DROPPED
        transport.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_werkzeug_dev_server_length_and_chunked_answers(chunked: bool) -> None:
    from werkzeug.serving import make_server

    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        headers = [("Content-Type", "text/plain")]
        if not chunked:
            headers.append(("Content-Length", "2"))
        start_response("202 Accepted", headers)
        return iter([b"o", b"k"])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    ).start()
    try:
        transport = HttpTransport(f"http://127.0.0.1:{server.port}", timeout=10)
        for _ in range(5):
            response = transport.send(BODY, UA, IP)
            assert (response.outcome, response.body) == (Outcome.SENT, b"ok")
        transport.close()
        # Pipelined: werkzeug's dev server speaks HTTP/1.0 unless told otherwise, so
        # each answer closes and the requests behind it are unsent, never lost or doubled.
        pipelined = HttpTransport(f"http://127.0.0.1:{server.port}", pipeline_depth=8)
        results = pipelined.send_many([(BODY, UA, IP)] * 8)
        pipelined.close()
    finally:
        server.shutdown()
        server.server_close()
    assert all(r is None or r.outcome is Outcome.SENT for r in results)  # type: ignore[union-attr]
    assert seen == [BODY] * (5 + sum(r is not None for r in results))


def test_nginx_keep_alive_ends_with_connection_close_and_no_event_is_lost(
    nginx: tuple[str, Path],
) -> None:
    url, log = nginx
    transport = HttpTransport(url, timeout=10)
    # keepalive_requests 3: nginx answers every third request with Connection: close.
    for _ in range(10):
        assert transport.send(BODY, UA, IP).outcome is Outcome.SENT
    assert HttpTransport(url + "/dropped", timeout=10).send(BODY, UA, IP).outcome is (
        Outcome.SERVER_DROPPED
    )
    transport.close()
    wait_until(lambda: log.read_bytes().count(b'"POST /api/event ') == 10, 10)


def test_collector_through_nginx(nginx: tuple[str, Path]) -> None:
    c = collector(nginx[0], max_workers=2)
    track(c, 50)
    assert c.flush(30)
    c.close()
    assert (c.stats().sent, c.stats().failed) == (50, 0)


# -- TLS -----------------------------------------------------------------------------------


def serve_tls(context: ssl.SSLContext) -> Callable[[socket.socket, RawServer], None]:
    """A RawServer script: https answering ``202 ok`` on keep-alive connections."""

    def script(conn: socket.socket, server: RawServer) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            while server.request(tls):
                tls.sendall(OK)

    return script


@pytest.fixture
def tls_ca(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return server_context, str(bundle)


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("http://[::1]:8000", b"[::1]:8000"),
        ("https://plausible.io/", b"plausible.io"),
        ("https://user:pw@stats.example.com:8443", b"stats.example.com:8443"),
    ],
)
def test_host_header_is_the_endpoint_authority(endpoint: str, host: bytes) -> None:
    request = HttpTransport(endpoint)._template.render(BODY, UA, IP)
    assert request.startswith(b"POST /api/event HTTP/1.1\r\nHost: " + host + b"\r\n")


def test_close_between_events_is_survived(raw_server: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        while server.request(conn):
            conn.sendall(OK)

    server = raw_server(script)
    transport = HttpTransport(server.url, timeout=10)
    for _ in range(3):  # close() (an idle engine's) leaves this thread's connection closed
        assert transport.send(BODY, UA, IP).outcome is Outcome.SENT
        transport.close()
    assert (server.requests, server.connections) == (3, 3)


def test_a_dripping_tls_answer_is_cut_at_the_deadline(
    raw_server: Callable[..., RawServer], tls_ca: tuple[ssl.SSLContext, str]
) -> None:
    context, bundle = tls_ca

    def script(conn: socket.socket, server: RawServer) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            server.request(tls)
            for byte in OK * 10:  # a byte every DRIP: never a per-read timeout
                tls.sendall(bytes([byte]))
                server.written += 1
                time.sleep(DRIP)

    server = raw_server(script)
    # The handshake is inside the deadline too: twice DEADLINE, still a drip of minutes.
    transport = HttpTransport(
        f"https://localhost:{server.port}", ca_bundle=bundle, timeout=2 * DEADLINE
    )
    with pytest.raises(AttemptError) as caught:
        transport.send(BODY, UA, IP)
    assert caught.value.kind is FailureKind.READ_TIMEOUT
    wait_until(server.finished.is_set, 30)  # the client hung up mid-drip
    assert server.written < len(OK * 10)
    transport.close()


@pytest.mark.parametrize("gap", [0.0, 2 * IDLE_CHECK_AFTER])
def test_tls_verified_keep_alive(
    raw_server: Callable[..., RawServer], tls_ca: tuple[ssl.SSLContext, str], gap: float
) -> None:
    context, bundle = tls_ca
    server = raw_server(serve_tls(context))
    transport = HttpTransport(f"https://localhost:{server.port}", ca_bundle=bundle)
    for _ in range(5):
        assert transport.send(BODY, UA, IP).outcome is Outcome.SENT
        time.sleep(gap)  # with a gap, checked for a close before the next write, and kept
    transport.close()
    # One connection: session tickets after the handshake are not taken for a close.
    assert (server.requests, server.connections) == (5, 1)


@pytest.mark.parametrize("case", ["untrusted", "wrong_name"])
def test_tls_failures_are_their_own_kind_and_nothing_is_sent(
    raw_server: Callable[..., RawServer], tls_ca: tuple[ssl.SSLContext, str], case: str
) -> None:
    context, bundle = tls_ca
    # 127.0.0.2 is loopback too, and not a name in the certificate.
    host = "localhost" if case == "untrusted" else "127.0.0.2"
    server = raw_server(serve_tls(context), host="127.0.0.1" if case == "untrusted" else host)
    transport = HttpTransport(
        f"https://{host}:{server.port}", ca_bundle=None if case == "untrusted" else bundle
    )
    with pytest.raises(AttemptError) as caught:
        transport.send(BODY, UA, IP)
    assert caught.value.kind is FailureKind.TLS
    assert server.requests == 0


# -- hostile servers -------------------------------------------------------------------------


def drip(data: bytes, every: float = DRIP) -> Callable[[socket.socket, RawServer], None]:
    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        for byte in data:
            conn.sendall(bytes([byte]))
            server.written += 1
            time.sleep(every)

    return script


@pytest.mark.parametrize(
    ("answer", "sent", "failed"),
    [
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", 0, 1),  # the status line drips
        (b"", 0, 1),  # not a byte
    ],
)
def test_a_dripping_status_line_frees_the_worker_at_the_deadline(
    raw_server: Callable[..., RawServer], answer: bytes, sent: int, failed: int
) -> None:
    # A byte every DRIP never lets the per-read timeout fire; the whole answer would
    # take over a minute. The attempt's deadline is DEADLINE.
    server = raw_server(drip(answer * 10) if answer else _silent)
    c = collector(server.url, timeout=DEADLINE)
    track(c)
    assert c.flush(30)
    c.close()
    assert (c.stats().sent, c.stats().failed) == (sent, failed)
    if answer:
        # The client hung up: the drip ended early on a broken pipe.
        wait_until(server.finished.is_set, 30)
        assert server.written < len(answer * 10)


def _silent(conn: socket.socket, server: RawServer) -> None:
    server.request(conn)
    conn.recv(1)


@pytest.mark.parametrize(("status", "sent", "failed"), [(b"202", 1, 0), (b"503", 0, 1)])
def test_a_dripping_body_frees_the_worker_and_the_status_is_the_answer(
    raw_server: Callable[..., RawServer], status: bytes, sent: int, failed: int
) -> None:
    head = b"HTTP/1.1 " + status + b" X\r\nContent-Length: 1000\r\n\r\n"

    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        conn.sendall(head)
        for _ in range(1000):  # minutes, each byte well within a per-read timeout
            time.sleep(DRIP)
            conn.sendall(b"x")
            server.written += 1

    server = raw_server(script)
    c = collector(server.url, timeout=DEADLINE)
    track(c)
    assert c.flush(30)
    c.close()
    assert (c.stats().sent, c.stats().failed) == (sent, failed)
    wait_until(server.finished.is_set, 30)  # the client hung up mid-drip
    assert server.written < 1000


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_endless_answer_body_is_not_read_and_the_connection_is_closed(
    raw_server: Callable[..., RawServer], framing: str
) -> None:
    written = [0]

    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        if framing == "length":
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 1073741824\r\n\r\n")
            chunk = b"x" * 65536
        else:
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        while written[0] < 1 << 30:
            conn.sendall(chunk)  # fails once the client closed the connection
            written[0] += len(chunk)

    server = raw_server(script)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    transport = HttpTransport(server.url, timeout=30)
    assert transport.send(BODY, UA, IP).outcome is Outcome.SENT  # the status is the answer
    wait_until(server.finished.is_set, 60)  # the client closed: the server's writes failed
    assert written[0] < 1 << 30
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # a 1 GiB answer once took the process to 1 GiB
    transport.close()


@pytest.mark.parametrize("depth", [1, 8])
@pytest.mark.parametrize("retry_cuts", [False, True])
def test_a_cut_on_a_reused_connection_is_never_resent_silently(
    raw_server: Callable[..., RawServer], retry_cuts: bool, depth: int
) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        if server.request(conn):
            conn.sendall(OK)
            server.request(conn)  # the second request is read, then the connection closes

    server = raw_server(script)
    retry = pw.RetryConfig(
        retry_connection_cuts=retry_cuts, initial_backoff=0.001, max_backoff=0.01, max_retries=1
    )
    c = collector(server.url, max_workers=1, retry=retry, pipeline_depth=depth)
    track(c, 100)
    assert c.flush(60)
    c.close()
    stats = c.stats()
    assert stats.sent + stats.failed == 100
    if depth > 1:
        # Pipelined requests after the cut were written but never read by the server:
        # each one it read is a first attempt or a counted retry, none a silent resend.
        assert server.requests <= 100 + stats.retried
        if not retry_cuts:
            assert stats.retried == 0
        return
    # Every POST that left is accounted for: the first attempts and the counted retries.
    assert server.requests == 100 + stats.retried
    if not retry_cuts:
        assert stats.retried == 0
        assert stats.failed == 50


def close_tls(tls: ssl.SSLSocket, close_notify: bool) -> None:
    if close_notify:  # sent without waiting for the client's
        tls.setblocking(False)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()
    tls.close()


@pytest.mark.parametrize("close", ["plain", "tls_fin", "tls_close_notify"])
def test_a_connection_closed_while_idle_is_replaced_before_writing(
    raw_server: Callable[..., RawServer], tls_ca: tuple[ssl.SSLContext, str], close: str
) -> None:
    closed = threading.Event()
    context, bundle = tls_ca

    def script(conn: socket.socket, server: RawServer) -> None:
        if close != "plain":
            conn = context.wrap_socket(conn, server_side=True)
        if server.request(conn):
            conn.sendall(OK)  # keep-alive, then an idle timeout
            if isinstance(conn, ssl.SSLSocket):
                close_tls(conn, close_notify=close == "tls_close_notify")
            conn.close()
            closed.set()

    server = raw_server(script)
    url = server.url if close == "plain" else f"https://localhost:{server.port}"
    transport = HttpTransport(url, timeout=10, ca_bundle=bundle)
    for _ in range(3):
        closed.clear()
        assert transport.send(BODY, UA, IP).outcome is Outcome.SENT
        assert closed.wait(10)
        wait_until(lambda: server.connections == server.requests, 10)
        time.sleep(2 * IDLE_CHECK_AFTER)  # idle long enough to be checked before writing
    transport.close()
    assert (server.requests, server.connections) == (3, 3)


@pytest.mark.parametrize("depth", [1, 8])
def test_an_unannounced_close_right_after_an_answer_is_a_counted_cut(
    raw_server: Callable[..., RawServer], depth: int
) -> None:
    """A connection just used is not checked before writing: the next event meets the
    close as a cut (the server never read it), counted as a retry by the default
    policy; every event is still recorded exactly once. Pipelined, every request of a
    batch meets it (each in doubt, each retried)."""

    def script(conn: socket.socket, server: RawServer) -> None:
        if server.request(conn):
            conn.sendall(OK)
            conn.close()

    server = raw_server(script)
    retry = pw.RetryConfig(initial_backoff=0.001, max_backoff=0.01)
    c = collector(server.url, max_workers=1, retry=retry, pipeline_depth=depth)
    track(c, 20)
    assert c.flush(60)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed) == (20, 0)
    assert (server.requests, server.connections) == (20, 20)
    if depth == 1:
        assert stats.retried <= 19  # one per cut; fewer when a slow machine idles past it


def test_endless_100_continue_is_a_failure_not_a_spin(
    raw_server: Callable[..., RawServer],
) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        while True:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    server = raw_server(script)
    transport = HttpTransport(server.url, timeout=60)
    with pytest.raises(AttemptError) as caught:
        transport.send(BODY, UA, IP)
    assert caught.value.kind is FailureKind.CUT
    transport.close()


def test_a_hand_built_bad_header_is_never_sent(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(_silent)
    transport = HttpTransport(server.url, timeout=10)
    for ua, ip in [("UA\r\nX-Evil: 1", IP), (UA, "1.2.3.4\n"), ("nul\0", None)]:
        with pytest.raises(AttemptError) as caught:
            transport.send(BODY, ua, ip)
        assert caught.value.kind is FailureKind.INVALID
    assert server.connections == 0


@pytest.fixture
def syn_dropping() -> Iterator[str]:
    """The URL of a listening port whose accept queue is full: new SYNs are dropped."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):
            sock = socket.socket()
            sock.settimeout(0.5)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                break
            fillers.append(sock)
        else:
            pytest.skip("this kernel accepts SYNs past a full backlog")
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        for sock in fillers:
            sock.close()


@pytest.fixture
def tls_silent() -> Iterator[str]:
    """An https URL whose server accepts and never says a word (a hung handshake)."""
    silent = SilentServer()
    try:
        yield silent.url.replace("http://", "https://")
    finally:
        silent.close()


def test_abort_cuts_a_connect_to_a_syn_dropping_port(syn_dropping: str) -> None:
    transport = HttpTransport(syn_dropping, timeout=120)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            transport.send(BODY, UA, IP)
        except AttemptError as exc:
            errors.append(exc)

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    wait_until(lambda: transport.pool.open_count == 1, 10)  # registered before connect returns
    transport.abort()
    worker.join(30)  # far below the 120 s the deadline would take
    assert not worker.is_alive()
    assert errors[0].kind is FailureKind.CONNECT  # type: ignore[attr-defined]


@pytest.mark.parametrize("endpoint", ["syn_dropping", "tls_silent"])
def test_close_returns_within_shutdown_timeout_on_a_hung_connect(
    request: pytest.FixtureRequest, endpoint: str
) -> None:
    url = request.getfixturevalue(endpoint)
    c = collector(url, timeout=120, shutdown_timeout=1)
    track(c, 3)
    closer = threading.Thread(target=c.close, daemon=True)
    closer.start()
    closer.join(60)  # shutdown_timeout is 1 s; an unabortable connect would take 120 s
    assert not closer.is_alive()
    # The cut workers settle their events right after (far below the 120 s deadline).
    wait_until(lambda: c.stats().in_flight == 0, 30)
    stats = c.stats()
    assert stats.sent == 0
    assert sum(stats.dropped.values()) + stats.failed == 3


def test_the_whole_attempt_deadline_covers_a_hung_tls_handshake(tls_silent: str) -> None:
    transport = HttpTransport(tls_silent, timeout=1)
    with pytest.raises(AttemptError) as caught:
        transport.send(BODY, UA, IP)  # returns: pytest-timeout would fail a hang
    assert caught.value.kind is FailureKind.CONNECT


GEVENT_SILENT = """
from gevent import monkey; monkey.patch_all()
import socket, sys, threading, time
from plausible_wsgi.delivery.failure import AttemptError
from plausible_wsgi.delivery.transport import HttpTransport
server = socket.create_server(("127.0.0.1", 0))
def hang():
    conn, _ = server.accept()
    conn.recv(65536)
    time.sleep(60)  # never a byte of answer
threading.Thread(target=hang, daemon=True).start()
transport = HttpTransport(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.75)
try:
    transport.send(b"{}", "UA", "203.0.113.7")
except AttemptError as exc:
    print(exc.kind)
"""


def test_the_deadline_holds_under_gevent() -> None:
    """gevent's sockets wait in its hub, where kernel timeouts never fire: green sockets
    keep their own timeout mode, so a silent server is cut at the 0.75 s deadline."""
    pytest.importorskip("gevent")
    result = subprocess.run(
        [sys.executable, "-c", GEVENT_SILENT],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "read_timeout", result.stderr
