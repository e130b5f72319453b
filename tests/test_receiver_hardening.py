"""The receiver as a test dependency must not hurt its host (issue 13, item 14):
memory bounded in bytes, connections bounded and timed out, bad framing a 400."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from sink import wait_until

from plausible_wsgi.receiver import PlausibleReceiver
from plausible_wsgi.receiver.records import KEPT_HEADER_BYTES

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
BODY = b'{"name": "pageview", "url": "https://example.com/", "domain": "example.com"}'


def closed_by_peer(sock: socket.socket, timeout: float = 20.0) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            if sock.recv(65536) == b"":  # an answer before the close is fine too
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        pass
    return False


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset), without waiting; reads
    (and drops) what arrived before the close, as :func:`closed_by_peer` does."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


@contextlib.contextmanager
def slow_clients(receiver: PlausibleReceiver, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that start a request and never finish its headers."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
            sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_slow_clients_cannot_lock_out_real_ones() -> None:
    # Threads started by this test only: one left by an earlier test on this worker may
    # end (or start) meanwhile, which a count would take for the receiver's.
    before = set(threading.enumerate())
    with PlausibleReceiver(max_connections=8) as receiver, slow_clients(receiver, 60) as slow:
        wait_until(lambda: receiver.open_connections <= 8, timeout=20)
        response = requests.post(
            f"{receiver.url}/api/event",
            data=BODY,
            headers={"User-Agent": BROWSER, "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 202
        assert len(receiver.wait_for(1)) == 1
        assert receiver.open_connections <= 8
        # The oldest slow clients were cut to make room, their threads gone.
        assert closed_by_peer(slow[0])
        # One serving thread plus at most 8 handler threads.
        wait_until(lambda: len(set(threading.enumerate()) - before) <= 1 + 8, timeout=20)


def test_busy_connections_are_not_cut_for_newcomers() -> None:
    with PlausibleReceiver(max_connections=2) as receiver:
        receiver.app.delay = 60.0  # the first request is running while others arrive
        statuses: list[int] = []
        first = threading.Thread(
            target=lambda: statuses.append(
                requests.post(
                    f"{receiver.url}/api/event",
                    data=BODY,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                ).status_code
            )
        )
        first.start()
        assert receiver.wait_for_attempts(1, timeout=20)
        with slow_clients(receiver, 5) as slow:
            # Past the limit the oldest idle one is cut at each newcomer: all but the
            # newest. Which is newest is the order the handler threads registered them
            # in, not the order they connected (on a loaded machine they differ).
            wait_until(lambda: sum(map(closed_now, slow)) >= len(slow) - 1, timeout=20)
            wait_until(lambda: receiver.open_connections <= 2, timeout=20)
            receiver.app.delay = 0.0
            receiver.app.interrupt_delays()
            first.join(30)
        assert statuses == [202]  # the busy connection was never cut
        assert len(receiver.wait_for(1)) == 1


def test_idle_connections_are_closed() -> None:
    with PlausibleReceiver(idle_timeout=0.3) as receiver:
        silent = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
        with silent:
            assert closed_by_peer(silent)
        wait_until(lambda: receiver.open_connections == 0, timeout=20)


def test_malformed_chunked_body_is_a_400_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with PlausibleReceiver() as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=20) as sock:
            sock.sendall(
                b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nnot-a-chunk-size\r\n{}\r\n0\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_oversized_headers_are_a_431_and_never_reach_the_app() -> None:
    with PlausibleReceiver() as receiver:
        response = requests.post(
            f"{receiver.url}/api/event",
            data=BODY,
            headers={
                "Content-Type": "application/json",
                "X-Pad": "h" * 65_000,
                "X-Two": "h" * 1000,
            },
            timeout=30,
        )
        assert response.status_code == 431
        assert receiver.request_count == 0


def test_memory_is_bounded_in_bytes_not_only_records() -> None:
    big_headers = {f"X-Pad-{i}": "h" * 6000 for i in range(8)}
    with PlausibleReceiver(max_bytes=1_000_000) as receiver, requests.Session() as session:
        for _ in range(40):
            response = session.post(
                f"{receiver.url}/api/event",
                data=b"{" + b" " * 60_000,  # malformed: rejected, its text kept
                headers={"Content-Type": "application/json", **big_headers},
                timeout=30,
            )
            assert response.status_code == 400
        attempts, records = receiver.attempts, receiver.all
        assert attempts
        assert records
        assert len(attempts) < 40  # the oldest were forgotten
        assert len(records) < 40
        held = sum(
            len(a.body) + sum(len(k) + len(v) for k, v in a.headers.items()) for a in attempts
        )
        held += sum(len(r.body or "") for r in records)
        assert held <= 1_000_000
        assert all(
            sum(len(k) + len(v) for k, v in a.headers.items()) <= KEPT_HEADER_BYTES
            for a in attempts
        )
        assert records[-1].id == 40  # the newest are the ones kept
