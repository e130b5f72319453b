"""The wire protocol alone: the request template and the answer reader, fuzzed.

The reader is fed from scripted byte chunks (what a socket's ``recv_into`` would
return); real servers are in ``test_transport.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plausible_wsgi.delivery import http11
from plausible_wsgi.delivery.http11 import (
    Answer,
    AnswerReader,
    BrokenAnswer,
    RequestTemplate,
    UnsafeHeader,
)


class Feed:
    """A ``recv_into`` over scripted chunks; ``b""`` (or the end) is end of stream."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""
        self.calls = 0
        self.consumed = 0

    def __call__(self, view: memoryview) -> int:
        self.calls += 1
        if not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.consumed += n
        return n


def read(*chunks: bytes, tunnel: bool = False) -> Answer:
    return AnswerReader().read(Feed(chunks), tunnel=tunnel)


# -- the request ---------------------------------------------------------------------------


def test_request_is_one_write_with_the_visitor_headers() -> None:
    template = RequestTemplate("/api/event", "plausible.io")
    request = template.render(b'{"n":1}', "UA/1.0", "203.0.113.9")
    head, body = request.split(b"\r\n\r\n")
    assert body == b'{"n":1}'
    assert head.split(b"\r\n") == [
        b"POST /api/event HTTP/1.1",
        b"Host: plausible.io",
        b"Content-Type: application/json",
        b"User-Agent: UA/1.0",
        b"X-Forwarded-For: 203.0.113.9",
        b"X-Plausible-IP: 203.0.113.9",
        b"Content-Length: 7",
    ]
    without_ip = template.render(b"{}", None, None)
    assert b"X-Forwarded-For" not in without_ip
    assert b"X-Plausible-IP" not in without_ip
    assert b"User-Agent: \r\n" in without_ip


@pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b", "snow \u2603"])
def test_unsafe_header_values_are_refused(bad: str) -> None:
    template = RequestTemplate("/api/event", "plausible.io")
    with pytest.raises(UnsafeHeader):
        template.render(b"{}", bad, None)
    with pytest.raises(UnsafeHeader):
        template.render(b"{}", "UA", bad)


def test_latin1_user_agent_is_sent_as_latin1() -> None:
    request = RequestTemplate("/e", "h").render(b"", "Caf\u00e9/1.0", None)
    assert b"User-Agent: Caf\xe9/1.0\r\n" in request
    # Not printable, yet harmless in a header: only CR, LF and NUL are refused.
    assert b"User-Agent: a\tb\x85\r\n" in RequestTemplate("/e", "h").render(b"", "a\tb\x85", None)


# -- answers Plausible, nginx and proxies send ---------------------------------------------


def test_plausible_answer() -> None:
    answer = read(
        b"HTTP/1.1 202 Accepted\r\ncache-control: max-age=0, private, must-revalidate\r\n"
        b"content-length: 2\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"x-plausible-dropped: 1\r\n\r\nok"
    )
    assert (answer.status, answer.body, answer.keep_alive) == (202, b"ok", True)
    assert answer.headers["x-plausible-dropped"] == "1"


def test_header_values_lose_the_whitespace_around_and_lookalike_names_are_other_headers() -> None:
    answer = read(
        b"HTTP/1.1 202\r\nContent-Length-X: 9\r\nContent-Length:\t 2 \t\r\n"
        b"Content-Lengthy: 7\r\nx-plausible-dropped:  not a  bot \r\nX-Odd: \xff\x01\r\n\r\nok"
    )
    assert (answer.status, answer.body, answer.keep_alive) == (202, b"ok", True)
    assert answer.headers == {"content-length": "2", "x-plausible-dropped": "not a  bot"}


def test_answer_split_in_every_place() -> None:
    raw = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
    for cut in range(1, len(raw)):
        answer = read(raw[:cut], raw[cut:])
        assert (answer.status, answer.body) == (202, b"ok")


def test_chunked_with_extensions_and_trailers() -> None:
    answer = read(
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n",
        b"2;ext=1\r\nok\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    assert (answer.status, answer.body, answer.headers["retry-after"]) == (429, b"ok!", "7")
    assert answer.keep_alive


def test_connection_close_http10_and_close_delimited() -> None:
    assert not read(b"HTTP/1.1 202 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not read(b"HTTP/1.0 202 OK\r\nContent-Length: 2\r\n\r\nok").keep_alive
    kept = read(b"HTTP/1.0 202 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok")
    assert kept.keep_alive
    until_close = read(b"HTTP/1.0 202 OK\r\n\r\no", b"k")
    assert (until_close.body, until_close.keep_alive) == (b"ok", False)


def test_interim_answers_are_skipped_up_to_a_bound() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
    assert read(interim * http11.MAX_INTERIM + final).status == 202
    with pytest.raises(BrokenAnswer, match="interim"):
        read(interim * (http11.MAX_INTERIM + 1) + final)
    with pytest.raises(BrokenAnswer, match="101"):
        read(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


def test_no_body_statuses_and_tunnel() -> None:
    assert read(b"HTTP/1.1 204 No Content\r\n\r\n").body == b""
    tunnel = read(b"HTTP/1.1 200 Connection established\r\n\r\n", tunnel=True)
    assert (tunnel.status, tunnel.keep_alive) == (200, True)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 202",
        b"HTTP/2 202 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 2x2 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 202 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 202 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        # Ambiguous framing is a broken head, not a status to trust.
        b"HTTP/1.1 202 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 202 OK\r\ncontent-length: 2\r\nX: y\r\nCONTENT-LENGTH: 2\r\n\r\nok",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        # The grammar: a token, a colon, a value without CR, LF or NUL.
        b"HTTP/1.1 202 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nContent-Length : 0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nX: a\nContent-Length: 9\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 202 O\0K\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_malformed_heads_are_broken_without_a_status(raw: bytes) -> None:
    with pytest.raises(BrokenAnswer) as caught:
        read(raw)
    assert caught.value.status is None


@pytest.mark.parametrize(
    "raw",
    [
        # Each is refused after one pass of the grammar. A grammar whose lines can match
        # in two ways (a wanted name as any header; whitespace in and around a value)
        # searches 2**n ways first: 2**120 here, which the suite's timeout would cut.
        b"HTTP/1.1 202 OK\r\n" + b"Connection: keep-alive\r\n" * 120 + b"Bad Line\r\n\r\n",
        b"HTTP/1.1 202 OK\r\n" + b"X-Plausible-Dropped: 1\r\n" * 120 + b"\n\r\n",
        b"HTTP/1.1 202 OK\r\nRetry-After:" + b" \t" * 3000 + b"1 \t" * 1000 + b"\n\r\n",
        b"HTTP/1.1 202 OK\r\nX:" + b" a" * 3000 + b"\r\r\n\r\n",
    ],
    ids=["wanted-lines", "wanted-lines-bare-lf", "blank-value", "spaced-value"],
)
def test_hostile_heads_are_refused_in_one_pass(raw: bytes) -> None:
    with pytest.raises(BrokenAnswer):
        read(raw)
    # Not whole yet: the grammar is tried on what came and fails the same way.
    for cut in (len(raw) // 2, len(raw) - 3):
        with pytest.raises(BrokenAnswer):
            read(raw[:cut], raw[cut:])


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 202 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nContent-Length: 4097\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n",
        b"HTTP/1.1 202 OK\r\nContent-Length: 5\r\n\r\nok",
    ],
)
def test_broken_bodies_keep_the_status(raw: bytes) -> None:
    with pytest.raises(BrokenAnswer) as caught:
        read(raw)
    assert caught.value.status == 202


def test_a_huge_or_endless_body_reads_a_bounded_amount() -> None:
    for head in (
        b"HTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 202 OK\r\n\r\n",
    ):
        endless = itertools.chain([head], itertools.repeat(b"400\r\n" + b"x" * 1024 + b"\r\n"))
        feed = Feed(endless)
        with pytest.raises(BrokenAnswer, match="too large"):
            AnswerReader().read(feed)
        assert feed.consumed <= http11.CAPACITY


def test_errors_after_the_head_keep_the_status() -> None:
    def recv(view: memoryview) -> int:
        if not state:
            state.append(1)
            data = b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Length: 9\r\n\r\nbu"
            view[: len(data)] = data
            return len(data)
        raise TimeoutError("deadline")

    state: list[int] = []
    with pytest.raises(BrokenAnswer) as caught:
        AnswerReader().read(recv)
    assert (caught.value.status, caught.value.headers["retry-after"]) == (503, "3")

    def timeout(view: memoryview) -> int:
        raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):  # before the head: the caller's timeout
        AnswerReader().read(timeout)


def test_reader_is_reusable_and_keeps_no_reference_to_the_socket() -> None:
    reader = AnswerReader()
    for _ in range(3):
        feed = Feed([b"HTTP/1.1 202 OK\r\nContent-Length: 2\r\n\r\nok"])
        assert reader.read(feed).body == b"ok"
    assert reader._recv_into is not feed


# -- fuzz: any bytes, any split; valid-ish answers, mutated ------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(chunks: list[bytes]) -> Feed:
    feed = Feed(chunks)
    try:
        answer = AnswerReader().read(feed)
    except BrokenAnswer:
        pass
    else:
        assert 100 <= answer.status <= 599
        assert len(answer.body) <= http11.MAX_BODY
    assert feed.consumed <= http11.CAPACITY
    assert feed.calls <= http11.CAPACITY + 2
    return feed


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_fuzz_arbitrary_bytes(chunks: list[bytes]) -> None:
    _outcome(chunks)


HEADER_LINES = st.sampled_from(
    [
        b"Content-Length: 2",
        b"Content-Length: 0",
        b"Content-Length: 99999999",
        b"content-length:2",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: identity",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Retry-After: 5",
        b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT",
        b"x-plausible-dropped: 1",
        b"Server: Cowboy",
        b"X-Odd: \xff\xfe",
        b"NoColon",
        b" folded",
    ]
)
BODIES = st.sampled_from(
    [b"ok", b"", b"2\r\nok\r\n0\r\n\r\n", b"0\r\n\r\n", b"5\r\nok\r\n", b"x" * 5000]
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    interim = draw(st.integers(0, 10)) * b"HTTP/1.1 100 Continue\r\n\r\n"
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"http/1.1"]))
    status = draw(st.sampled_from([b"202", b"200", b"204", b"400", b"429", b"503", b"100"]))
    lines = draw(st.lists(HEADER_LINES, max_size=6))
    raw = interim + version + b" " + status + b" Reason\r\n"
    raw += b"".join(line + b"\r\n" for line in lines) + b"\r\n" + draw(BODIES)
    if draw(st.booleans()):  # one mutation: flip, drop or insert a byte
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["flip", "drop", "insert"]))
        byte = bytes([draw(st.integers(0, 255))])
        if op == "flip":
            raw = raw[:at] + byte + raw[at + 1 :]
        elif op == "drop":
            raw = raw[:at] + raw[at + 1 :]
        else:
            raw = raw[:at] + byte + raw[at:]
    return raw


@FUZZ
@given(answers(), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_fuzz_valid_ish_answers_in_any_split(raw: bytes, sizes: list[int]) -> None:
    chunks, rest = [], raw
    for size in itertools.cycle(sizes):
        if not rest:
            break
        chunks.append(rest[:size])
        rest = rest[size:]
    _outcome(chunks)


@FUZZ
@given(answers())
def test_fuzz_endless_stream_after_an_answer_start(prefix: bytes) -> None:
    """Whatever came first, an endless stream behind it never makes read() loop."""
    _outcome([prefix, *itertools.repeat(b"HTTP/1.1 100 Continue\r\n\r\n" + b"x" * 100, 500)])


def test_pipelined_answers_beyond_the_capacity_are_read_in_order() -> None:
    """Answers read together are kept for the next read; more of them than the buffer
    holds at once are each read whole (the kept bytes move to the front when needed)."""
    answers = [
        b"HTTP/1.1 202 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(b"%d" % i), i)
        for i in range(1000)
    ]
    assert sum(map(len, answers)) > 2 * http11.CAPACITY
    reader, feed = AnswerReader(), Feed([b"".join(answers)])
    for i in range(1000):
        answer = reader.read(feed, more=i < 999)
        assert (answer.body, answer.keep_alive) == (b"%d" % i, True)
    assert feed.consumed == sum(map(len, answers))
