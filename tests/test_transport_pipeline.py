"""HTTP/1.1 pipelining of a batch (``HttpTransport.send_many``, the engine's fast path)
against real servers on loopback, friendly and hostile, and the multi-answer reader
fuzzed.

Friendly: nginx (every third answer ``Connection: close``), the project's receiver,
a TLS sink, a CONNECT proxy, a plain proxy (werkzeug's dev server: in test_transport).
Hostile, as raw sockets: a close announced mid-batch, a cut after two answers, every
answer in one segment, dripped answers, a 503 with ``Retry-After`` mid-batch, a server
ignoring pipelined requests.
Collector-level tests force the ramp's "answers are fast" verdict so that a batch is
always pipelined (it is a judgement of timing, which a loaded machine would make
random); everything else is the real engine, transport and server.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from faults import TlsSink, make_self_signed_cert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sink import Sink, wait_until
from wire import ConnectProxy, RawServer

import plausible_wsgi as pw
from plausible_wsgi.delivery import pacing
from plausible_wsgi.delivery.failure import AttemptError
from plausible_wsgi.delivery.http11 import AnswerReader
from plausible_wsgi.delivery.transport import HttpTransport, Outcome, Response, Result
from plausible_wsgi.receiver import Fault, PlausibleReceiver

pytestmark = pytest.mark.usefixtures("no_proxy_env")

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IP = "203.0.113.7"
OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
CLOSE = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy"


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ramp always finds answers fast: every drained batch is pipelined."""
    monkeypatch.setattr(pacing.Ramp, "fast", lambda self: True)


def body(i: int) -> bytes:
    return json.dumps(
        {"domain": "example.com", "name": "E", "url": "https://example.com/", "props": {"id": i}}
    ).encode()


def batch(ids: range) -> list[tuple[bytes, Optional[str], Optional[str]]]:
    return [(body(i), UA, IP) for i in ids]


def sent(result: Result) -> bool:
    return isinstance(result, Response) and result.outcome is Outcome.SENT


def kinds(results: list[Result]) -> list[str]:
    """Each result in a word: an outcome, ``unsent``, or the failure's kind."""
    return [
        "unsent" if r is None else r.outcome.value if isinstance(r, Response) else str(r.kind)
        for r in results
    ]


def collector(endpoint: str, **kwargs: Any) -> pw.PlausibleCollector:
    kwargs.setdefault("shutdown_timeout", 5)
    kwargs.setdefault("circuit_breaker", None)
    kwargs.setdefault("max_workers", 1)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("flush_interval", 3600)
    kwargs.setdefault(
        "retry", pw.RetryConfig(initial_backoff=0.001, max_backoff=0.01, max_retries=2)
    )
    return pw.PlausibleCollector("example.com", endpoint=endpoint, **kwargs)


def track(c: pw.PlausibleCollector, ids: range) -> None:
    for i in ids:
        assert c.track(
            "E", url="https://example.com/", user_agent=UA, client_ip=IP, props={"id": i}
        )


class IdServer(RawServer):
    """A RawServer that keeps the event id of every request it read."""

    def __init__(self, script: Callable[[socket.socket, IdServer], None]) -> None:
        self.ids: collections.Counter[int] = collections.Counter()
        self.longest = 0  # the most requests that came in one read (``answering``)
        super().__init__(script)  # type: ignore[arg-type]

    def event(self, conn: socket.socket) -> bool:
        data = self.read(conn)
        if data is None:
            return False
        with self.lock:
            self.requests += 1
            self.ids[int(json.loads(data)["props"]["id"])] += 1
        return True


@pytest.fixture
def id_server() -> Iterator[Callable[..., IdServer]]:
    servers: list[IdServer] = []

    def make(script: Callable[[socket.socket, IdServer], None]) -> IdServer:
        servers.append(IdServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


# -- friendly servers ------------------------------------------------------------------------


def test_nginx_closing_every_third_answer_leaves_the_rest_unsent_and_each_is_sent_once(
    nginx: tuple[str, Path],
) -> None:
    url, log = nginx
    transport = HttpTransport(url, timeout=10, pipeline_depth=8)
    pending = list(range(20))
    rounds = 0
    while pending and rounds < 50:
        rounds += 1
        results = transport.send_many(batch(pending[:8]))  # type: ignore[arg-type]
        assert all(sent(r) or r is None for r in results), kinds(results)
        pending = [i for i, r in zip(pending[:8], results) if r is None] + pending[8:]
    transport.close()
    assert not pending
    # keepalive_requests 3: each connection ends after its third answer, the requests
    # written behind it were never processed: nginx logged each event exactly once.
    wait_until(lambda: log.read_bytes().count(b'"POST /api/event ') == 20, 10)
    time.sleep(0.2)  # anything logged twice would be there by now
    assert log.read_bytes().count(b'"POST /api/event ') == 20


def test_collector_pipelines_through_nginx(nginx: tuple[str, Path], fast: None) -> None:
    url, log = nginx
    c = collector(url, max_workers=2, retry=None)
    track(c, range(200))
    assert c.flush(60)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed, stats.retried) == (200, 0, 0)
    wait_until(lambda: log.read_bytes().count(b'"POST /api/event ') == 200, 10)


def test_a_batch_settles_all_counted_at_once_or_each_answer_as_its_own(fast: None) -> None:
    """All counted: one verdict for the batch; a batch with a dropped or rejected answer
    settles each event by its own answer (counts, last success, breaker)."""
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        breaker = pw.CircuitBreakerConfig(max_consecutive_failures=2, timeout=60)
        c = collector(receiver.url, circuit_breaker=breaker, retry=None)
        track(c, range(8))
        assert c.flush(30)
        stats = c.stats()
        assert (stats.sent, stats.failed, stats.dropped, stats.breaker_state) == (
            8,
            0,
            {},
            "closed",
        )
        assert stats.last_success_at is not None
        assert stats.last_failure_at is None
        receiver.enqueue_faults(
            Fault(202), Fault(202, {"x-plausible-dropped": "bot"}), Fault(400), Fault(400)
        )
        track(c, range(8, 16))
        assert c.flush(30)
        c.close()
        stats = c.stats()
    # Two rejections in a row are answers, not faults of the server: the breaker stays.
    assert (stats.sent, stats.failed, stats.dropped, stats.breaker_state) == (
        13,
        2,
        {"server_dropped": 1},
        "closed",
    )
    assert stats.last_failure_at is not None
    assert stats.in_flight == stats.queued == 0


def test_receiver_reads_pipelined_requests_in_order_with_the_visitor_headers() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        transport = HttpTransport(receiver.url, timeout=10, pipeline_depth=8)
        results = transport.send_many(batch(range(8))) + transport.send_many(batch(range(8, 16)))
        transport.close()
        assert kinds(results) == ["sent"] * 16
        events = receiver.wait_for(16)
        attempts = receiver.wait_for_attempts(16)
    assert [e.props["id"] for e in events] == [str(i) for i in range(16)]
    headers = {k.lower(): v for k, v in attempts[-1].headers.items()}
    assert (headers["user-agent"], headers["x-plausible-ip"]) == (UA, IP)


def test_receiver_statuses_mid_batch_are_each_events_own_answer() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        transport = HttpTransport(receiver.url, timeout=10, pipeline_depth=8, max_retry_after=5)
        assert kinds(transport.send_many(batch(range(1)))) == ["sent"]  # the connection
        receiver.enqueue_faults(
            Fault(202), Fault(429, {"Retry-After": "60"}), Fault(202), Fault(400), Fault(202)
        )
        results = transport.send_many(batch(range(1, 6)))
        transport.close()
    assert kinds(results) == ["sent", "status", "sent", "rejected", "sent"]
    failure = results[1]
    assert isinstance(failure, AttemptError)
    assert (failure.status, failure.retry_after) == (429, 5)
    rejected = results[3]
    assert isinstance(rejected, Response)
    assert rejected.outcome is Outcome.REJECTED


@pytest.fixture
def tls_sink(tmp_path: Path) -> Iterator[tuple[TlsSink, Path]]:
    made = make_self_signed_cert(tmp_path)
    if made is None:
        pytest.skip("the openssl command is not available to make a test certificate")
    cert, key = made
    server = TlsSink(cert, key)
    yield server, cert
    server.close()


def test_tls_sink_answers_a_pipelined_batch(tls_sink: tuple[TlsSink, Path]) -> None:
    server, cert = tls_sink
    transport = HttpTransport(server.url, timeout=10, ca_bundle=str(cert), pipeline_depth=8)
    results = transport.send_many(batch(range(8))) + transport.send_many(batch(range(8, 16)))
    transport.close()
    assert kinds(results) == ["sent"] * 16
    assert server.bodies == [body(i) for i in range(16)]


def test_pipelined_through_a_connect_proxy_tls_end_to_end(
    named_cert: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = named_cert
    server = TlsSink(cert, key)
    proxy = ConnectProxy(int(server.url.rsplit(":", 1)[1]))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    try:
        transport = HttpTransport(
            "https://plausible.test:8443", timeout=10, ca_bundle=str(cert), pipeline_depth=8
        )
        results = transport.send_many(batch(range(8))) + transport.send_many(batch(range(8, 16)))
        transport.close()
    finally:
        proxy.close()
        server.close()
    assert kinds(results) == ["sent"] * 16
    assert server.bodies == [body(i) for i in range(16)]
    assert len(proxy.requests) == 1  # one tunnel, every request through it


def test_plain_http_proxy_gets_the_pipelined_batch(
    http_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", http_sink.url)
    transport = HttpTransport("http://plausible.test", timeout=10, pipeline_depth=8)
    results = transport.send_many(batch(range(8)))
    transport.close()
    assert kinds(results) == ["sent"] * 8
    hits = http_sink.wait_for(8)
    assert [h.path for h in hits] == ["http://plausible.test/api/event"] * 8
    assert [h.body for h in hits] == [body(i) for i in range(8)]


# -- hostile servers -------------------------------------------------------------------------


def close_on_third(conn: socket.socket, server: IdServer) -> None:
    """Answers three requests per connection, the third with ``Connection: close``."""
    for answer in (OK, OK, CLOSE):
        if not server.event(conn):
            return
        conn.sendall(answer)


def test_a_close_announced_mid_batch_leaves_the_rest_unsent(
    id_server: Callable[..., IdServer],
) -> None:
    server = id_server(close_on_third)
    transport = HttpTransport(server.url, timeout=10, pipeline_depth=8)
    results = transport.send_many(batch(range(8)))
    transport.close()
    assert kinds(results) == ["sent"] * 3 + ["unsent"] * 5
    assert server.ahead >= 1  # the requests after the first came pipelined
    wait_until(server.finished.is_set, 10)
    assert server.ids == {0: 1, 1: 1, 2: 1}


def test_collector_resends_requests_behind_an_announced_close_uncounted(
    id_server: Callable[..., IdServer], fast: None
) -> None:
    server = id_server(close_on_third)
    c = collector(server.url)
    track(c, range(8))
    assert c.flush(30)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed, stats.retried) == (8, 0, 0)
    assert server.ids == dict.fromkeys(range(8), 1)
    assert server.ahead >= 1


def cut_after_two(conn: socket.socket, server: IdServer) -> None:
    """Answers two requests per connection, then reads one more and closes."""
    for _ in range(2):
        if not server.event(conn):
            return
        conn.sendall(OK)
    server.event(conn)


@pytest.mark.parametrize("retry_cuts", [True, False])
def test_a_cut_after_two_answers_leaves_the_rest_in_doubt_judged_by_the_policy(
    id_server: Callable[..., IdServer], fast: None, retry_cuts: bool
) -> None:
    server = id_server(cut_after_two)
    retry = pw.RetryConfig(
        initial_backoff=0.001, max_backoff=0.01, max_retries=2, retry_connection_cuts=retry_cuts
    )
    c = collector(server.url, retry=retry)
    track(c, range(8))
    assert c.flush(30)
    c.close()
    stats = c.stats()
    assert stats.sent + stats.failed == 8
    assert server.ahead >= 1
    # In doubt: never resent uncounted. Every copy the server read beyond the first
    # of an event is a counted retry.
    extra = sum(n - 1 for n in server.ids.values())
    assert extra <= stats.retried
    if retry_cuts:
        assert (stats.sent, stats.failed) == (8, 0)
        assert set(server.ids) == set(range(8))  # none lost
    else:
        assert stats.retried == 0
        assert stats.failed >= 1
        assert all(n == 1 for n in server.ids.values())
    # The server mishandled a batch with answers owed: one request at a time now.
    assert c._transport.depth == 1


def test_each_answered_503_in_a_batch_counts_for_the_breaker_as_alone(
    id_server: Callable[..., IdServer], fast: None
) -> None:
    def script(conn: socket.socket, server: IdServer) -> None:
        while server.event(conn):
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")

    server = id_server(script)
    # Eight answers of an overloaded server are eight failures in a row, pipelined or
    # not: the breaker (five) opens.
    breaker = pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=3600)
    c = collector(server.url, circuit_breaker=breaker, retry=None)
    track(c, range(8))
    wait_until(lambda: c.stats().breaker_state == "open", 30)
    c.close(timeout=0)
    assert c.stats().sent == 0
    assert server.ahead >= 1  # they were pipelined


def test_one_cut_mid_batch_is_one_failure_for_the_breaker(
    id_server: Callable[..., IdServer], fast: None
) -> None:
    cut = threading.Event()

    def script(conn: socket.socket, server: IdServer) -> None:
        if not cut.is_set():  # the first connection: its first batch cut after 2 answers
            cut_after_two(conn, server)
            cut.set()
            return
        while server.event(conn):
            conn.sendall(OK)

    server = id_server(script)
    # Six requests in doubt after one reset, given up (at most once): counted one by
    # one, they would open a breaker that opens after five failures in a row.
    breaker = pw.CircuitBreakerConfig(max_consecutive_failures=5, timeout=3600)
    retry = pw.RetryConfig(max_retries=2, retry_connection_cuts=False)
    c = collector(server.url, circuit_breaker=breaker, retry=retry)
    track(c, range(8))
    assert c.flush(30)
    assert c.stats().breaker_state == "closed"
    track(c, range(8, 10))  # and the next events go out at once
    assert c.flush(30)
    c.close()
    stats = c.stats()
    assert stats.sent + stats.failed == 10
    assert stats.failed >= 1
    assert stats.breaker_state == "closed"
    assert {8, 9} <= set(server.ids)


def test_every_answer_in_one_segment(raw_server: Callable[..., RawServer]) -> None:
    chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    dropped = b"HTTP/1.1 202 Accepted\r\nx-plausible-dropped: 1\r\nContent-Length: 2\r\n\r\nok"
    answers = [OK, chunked, dropped, b"HTTP/1.1 100 Continue\r\n\r\n" + OK, OK, OK, OK, OK]

    def script(conn: socket.socket, server: RawServer) -> None:
        if server.request(conn):  # the connection's first request comes alone
            conn.sendall(OK)
        for _ in answers:
            if not server.request(conn):
                return
        conn.sendall(b"".join(answers))
        while server.request(conn):
            conn.sendall(OK)

    server = raw_server(script)
    transport = HttpTransport(server.url, timeout=10, pipeline_depth=9)
    results = transport.send_many(batch(range(9)))
    again = transport.send_many(batch(range(9, 11)))  # the connection is still in step
    transport.close()
    assert kinds(results) == ["sent"] * 3 + ["server_dropped"] + ["sent"] * 5
    assert kinds(again) == ["sent", "sent"]
    assert server.connections == 1


def test_dripped_answers_are_read_whole(raw_server: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        while server.request(conn):
            for byte in OK:
                conn.sendall(bytes([byte]))
                time.sleep(0.0005)

    server = raw_server(script)
    transport = HttpTransport(server.url, timeout=60, pipeline_depth=8)
    results = transport.send_many(batch(range(8)))
    transport.close()
    assert kinds(results) == ["sent"] * 8
    assert server.connections == 1


def test_a_dripping_server_holds_a_batch_no_longer_than_its_deadline(
    raw_server: Callable[..., RawServer],
) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        conn.sendall(OK)
        server.request(conn)  # the pipelined ones are behind it
        for byte in OK * 20:  # a byte every 0.15 s: never a per-read timeout (0.75 s)
            conn.sendall(bytes([byte]))
            with server.lock:
                server.written += 1
            time.sleep(0.15)

    server = raw_server(script)
    transport = HttpTransport(server.url, timeout=0.75, pipeline_depth=8)
    results = transport.send_many(batch(range(8)))
    transport.close()
    assert kinds(results)[0] == "sent"
    assert set(kinds(results)[1:]) == {"read_timeout"}
    assert server.written < len(OK) * 20  # cut long before the drip ended


def test_a_503_with_retry_after_mid_batch_pauses_and_that_event_is_retried_once(
    id_server: Callable[..., IdServer], fast: None
) -> None:
    busy = threading.Event()

    def script(conn: socket.socket, server: IdServer) -> None:
        while server.event(conn):
            if server.requests == 4 and not busy.is_set():
                busy.set()
                conn.sendall(BUSY)
            else:
                conn.sendall(OK)

    server = id_server(script)
    c = collector(server.url)
    track(c, range(8))
    assert c.flush(30)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed, stats.retried) == (8, 0, 1)
    assert sum(server.ids.values()) == 9
    assert set(server.ids) == set(range(8))
    assert server.ahead >= 1


def test_a_server_ignoring_pipelined_requests_makes_the_transport_send_one_at_a_time(
    raw_server: Callable[..., RawServer],
    fast: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids: collections.Counter[int] = collections.Counter()

    def script(conn: socket.socket, server: RawServer) -> None:
        # One recv, one request: whatever came behind it in the same read is dropped.
        while True:
            data = conn.recv(65536)
            if not data:
                return
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += conn.recv(65536)
            with server.lock:
                ids[int(json.loads(rest[:length])["props"]["id"])] += 1
            conn.sendall(OK)

    server = raw_server(script)
    retry = pw.RetryConfig(
        initial_backoff=0.001, max_backoff=0.01, max_retries=2, retry_read_timeouts=True
    )
    c = collector(server.url, timeout=1.5, retry=retry)
    with caplog.at_level(logging.INFO, logger="plausible_wsgi"):
        track(c, range(8))
        assert c.flush(60)
        track(c, range(8, 16))
        assert c.flush(60)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed) == (16, 0)
    assert set(ids) == set(range(16))  # none lost: the in-doubt ones were retried
    assert c._transport.depth == 1
    notes = [r for r in caplog.records if "one request at a time" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == logging.INFO
    assert all(IP not in r.getMessage() and UA not in r.getMessage() for r in caplog.records)


def test_close_cuts_a_pipelined_batch_waiting_for_answers(
    raw_server: Callable[..., RawServer],
    fast: None,
) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        conn.sendall(OK)
        while server.request(conn):
            pass  # reads the pipelined requests, answers none

    server = raw_server(script)
    c = collector(server.url, timeout=120, retry=None)
    track(c, range(8))
    c.flush(0.01)
    wait_until(lambda: server.requests >= 2, 30)
    c.close(0.5)  # the close deadline passes: the batch's connection is cut
    wait_until(lambda: c.stats().in_flight == 0, 30)  # long before the 120 s timeout
    stats = c.stats()
    assert stats.sent == 1
    assert stats.sent + stats.failed + sum(stats.dropped.values()) == 8


# -- options, hooks, spool ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, -1, True, 33, 2.0, "8"])
def test_a_bad_pipeline_depth_raises(depth: object) -> None:
    with pytest.raises(pw.ConfigurationError, match="pipeline_depth"):
        pw.PlausibleCollector("example.com", pipeline_depth=depth)  # type: ignore[arg-type]


def test_hooked_collectors_send_one_at_a_time(http_sink: Sink, fast: None) -> None:
    seen: list[str] = []

    def before_send(event: Any) -> Any:
        seen.append(event.name)
        return event

    c = collector(http_sink.url, before_send=before_send)
    assert c._poster.depth == 1
    track(c, range(8))
    assert c.flush(30)
    c.close()
    assert (c.stats().sent, len(seen)) == (8, 8)


def test_spooled_rows_are_pipelined_and_forgotten(
    id_server: Callable[..., IdServer], fast: None, tmp_path: Path
) -> None:
    def script(conn: socket.socket, server: IdServer) -> None:
        while server.event(conn):
            conn.sendall(OK)

    server = id_server(script)
    c = collector(server.url, spool=str(tmp_path / "spool.db"))
    track(c, range(40))
    assert c.flush(30)
    c.close()
    stats = c.stats()
    assert (stats.sent, stats.failed) == (40, 0)
    assert server.ids == dict.fromkeys(range(40), 1)
    assert server.ahead >= 1


# -- the reader, fuzzed ------------------------------------------------------------------------

_answers = st.builds(
    lambda status, payload, chunked, dropped, interim: (
        status,
        payload,
        dropped,
        (b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b"")
        + f"HTTP/1.1 {status} X\r\n".encode()
        + (b"x-plausible-dropped: 1\r\n" if dropped else b"")
        + (
            b"Transfer-Encoding: chunked\r\n\r\n"
            + (f"{len(payload):x}\r\n".encode() + payload + b"\r\n" if payload else b"")
            + b"0\r\n\r\n"
            if chunked
            else f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
        ),
    ),
    st.sampled_from([200, 202, 400, 429, 503]),
    st.binary(max_size=64),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_answers, min_size=1, max_size=10), st.data())
def test_a_stream_of_answers_split_anywhere_reads_back_identically(
    answers: list[tuple[int, bytes, bool, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(raw for *_, raw in answers)
    cuts = sorted(
        data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12, unique=True))
    )
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    queue = collections.deque(p for p in pieces if p)

    def recv_into(view: memoryview) -> int:
        if not queue:
            return 0
        piece = queue.popleft()
        n = min(len(view), len(piece))
        view[:n] = piece[:n]
        if n < len(piece):
            queue.appendleft(piece[n:])
        return n

    reader = AnswerReader()
    for k, (status, payload, dropped, _) in enumerate(answers):
        answer = reader.read(recv_into, more=k < len(answers) - 1)
        assert (answer.status, answer.body, answer.keep_alive) == (status, payload, True)
        assert ("x-plausible-dropped" in answer.headers) is dropped
    assert not queue  # every byte consumed, none skipped


# -- far and slow servers: the ramp's gap between answers ------------------------------------


class DelayRelay:
    """A TCP relay on loopback adding ``delay`` seconds each way (a round trip of twice
    that) in front of ``port``: every chunk is forwarded in order, ``delay`` after it
    was read."""

    def __init__(self, port: int, delay: float) -> None:
        self.delay = delay
        self.upstream = port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.sock.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.upstream))
            self._conns += [near, far]
            self._pipe(near, far)
            self._pipe(far, near)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            data = b"x"
            while data:
                with contextlib.suppress(OSError):
                    data = b""
                    data = src.recv(65536)
                chunks.put((time.monotonic() + self.delay, data))

        def write() -> None:
            while True:
                due, data = chunks.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def answering(pause: float) -> Callable[[socket.socket, IdServer], None]:
    """A script answering each request ``pause`` seconds after it read it, one after the
    other (with no pause, the answers to requests that came together in one write, as
    nginx does), keeping in ``server.longest`` the most requests that came in one read."""

    def script(conn: socket.socket, server: IdServer) -> None:
        run = owed = 0
        while True:
            run = run + 1 if server._pending.get(id(conn)) else 1
            if not server.event(conn):
                return
            with server.lock:
                server.longest = max(server.longest, run)
            owed += 1
            if pause or not server._pending.get(id(conn)):
                time.sleep(pause)
                conn.sendall(OK * owed)
                owed = 0

    return script


def test_a_far_fast_server_is_pipelined_through_a_round_trip(
    id_server: Callable[..., IdServer],
) -> None:
    server = id_server(answering(0.0))
    relay = DelayRelay(server.port, 0.02)  # a 40 ms round trip: attempts are never fast
    try:
        c = collector(relay.url, max_workers=1)
        rounds = 0
        while server.longest <= pacing.PROBE_DEPTH and rounds < 100:
            track(c, range(rounds * 16, (rounds + 1) * 16))
            assert c.flush(60)
            rounds += 1
        c.close()
    finally:
        relay.close()
    assert server.longest > pacing.PROBE_DEPTH  # full batches, not only probes
    assert c.stats().sent == rounds * 16
    assert server.ids == collections.Counter(range(rounds * 16))  # each event once


def test_a_slow_server_is_probed_but_not_pipelined_and_spares_fan_out(
    id_server: Callable[..., IdServer],
) -> None:
    server = id_server(answering(0.05))  # 50 ms of work per request, served serially
    c = collector(server.url, max_workers=4)
    track(c, range(60))
    assert c.flush(60)
    c.close()
    assert c.stats().sent == 60
    assert server.ids == collections.Counter(range(60))
    assert server.longest <= pacing.PROBE_DEPTH
    assert server.connections > 1  # spare workers in parallel
