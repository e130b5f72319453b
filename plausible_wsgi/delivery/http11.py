"""HTTP/1.1 on the wire for one Plausible POST: a request template and an answer reader.

Pure protocol over a socket-like ``recv_into``: no sockets, TLS or deadlines here
(those are :mod:`~plausible_wsgi.delivery.connection`'s and
:mod:`~plausible_wsgi.delivery.transport`'s).

- :class:`RequestTemplate`: the request line and fixed headers are encoded once; per
  event only ``User-Agent``, ``X-Forwarded-For``/``X-Plausible-IP``, ``Content-Length``
  and the body are filled in, and the whole request is one ``bytes`` for one write.
- :class:`AnswerReader`: reads what Plausible (Cowboy), nginx or a proxy answers — a
  status line, a few headers, a ``Content-Length``, chunked or close-delimited short
  body, interim ``1xx`` answers — into one preallocated buffer. Everything is bounded:
  the head (8 KiB), the body (4 KiB), interim answers (8), the whole answer (16 KiB).
  Anything unusual (bare CR or LF, folded headers, conflicting lengths, a transfer coding
  other than ``chunked``, a ``101``) is a :class:`BrokenAnswer`: the caller closes the
  connection. No fallback parser: what Plausible sends is small and regular.

Why purpose-built: ``http.client`` parses every answer's headers with the ``email``
package, makes a ``makefile()`` reader per answer and polls before each of its system
calls; ``requests``/``urllib3`` sit on top of it; ``h11`` is correct but its event
objects cost as much as ``http.client`` (an earlier run: 97 and 131 µs against 107 and
119); ``pycurl`` would be a compiled dependency for one fixed POST. Alone, not
pipelined: 0.23x ``http.client``'s CPU per event (17.4 µs against 76.3; TLS 24.3/101.2).

Pipelined (:mod:`~plausible_wsgi.delivery.pipelining`: 8 requests per write, the default
then; the answers read in order from the reader's buffer, which keeps the next one's):
CPU per event of the collector before and after the strict one-pass head below and the
per-batch settlement, side by side (a process per sender and round, the two versions
interleaved, best of 5 rounds of 4,000, 2026-12-02, load 1.6 rising to 5):

=====================================  ================  ================
sender                                 plain HTTP        TLS
=====================================  ================  ================
raw socket, prebuilt request (floor)   8.3 µs            14.1 µs
``http.client`` keep-alive             69.8 µs           110.5 µs
collector, default: before / after     17.5 / 12.1 µs    24.6 / 16.8 µs
collector, 1 worker: before / after    16.5 / 12.3 µs    23.8 / 17.1 µs
after ÷ ``http.client`` (default, 1)   0.17x, 0.18x      0.15x, 0.15x
=====================================  ================  ================

Counted (cachegrind, 2,000 to the nginx sink, delivery alone): 108.8k instructions per
event before, 69.5k after (61.9k, timed above, with possessive quantifiers: 3.11+ only).
"""

from __future__ import annotations

import re
from typing import Callable, Optional

__all__ = ["Answer", "AnswerReader", "BrokenAnswer", "RequestTemplate", "UnsafeHeader"]

MAX_HEAD = 8192
MAX_BODY = 4096
MAX_INTERIM = 8
#: Bytes of one answer, interim answers, chunk framing and trailers included.
CAPACITY = 16384

_NO_BODY_STATUSES = (204, 304)


class UnsafeHeader(ValueError):
    """A header value the request cannot carry (CR, LF, NUL, or not latin-1)."""


class BrokenAnswer(Exception):
    """The answer cannot be read; the connection must be closed.

    ``status`` and ``headers`` are set when the head was read whole and only the body
    is broken: the status is then the server's answer.
    """

    def __init__(
        self, reason: str, status: Optional[int] = None, headers: Optional[dict[str, str]] = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers if headers is not None else {}


class Answer:
    """One final answer: status, the headers the library reads, body, keep-alive."""

    __slots__ = ("body", "closing", "headers", "keep_alive", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
        closing: bool = False,
    ) -> None:
        self.status = status
        #: Lower-case names: ``retry-after``, ``x-plausible-dropped``, ``connection``,
        #: ``content-length``, ``transfer-encoding``, when present.
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        #: The server said it closes (``Connection: close``, or HTTP/1.0 without
        #: keep-alive): it processed no request written after this one (RFC 9112 9.6).
        self.closing = closing


def header_value(value: str) -> bytes:
    """``value`` encoded for a header line, or :class:`UnsafeHeader`."""
    # Only CR, LF and NUL break a request (a tab or a C1 control is allowed); three
    # substring tests of a str cost less than one isprintable() or regex pass.
    if "\r" in value or "\n" in value or "\0" in value:
        raise UnsafeHeader("CR, LF or NUL in a header value")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise UnsafeHeader("not latin-1") from None


class RequestTemplate:
    """``POST target`` with fixed headers, rendered per event into one ``bytes``."""

    __slots__ = ("_head",)

    def __init__(self, target: str, host: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        lines = [f"POST {target} HTTP/1.1".encode("ascii"), b"Host: " + header_value(host)]
        lines.append(b"Content-Type: application/json")
        lines.extend(name.encode("ascii") + b": " + header_value(value) for name, value in headers)
        self._head = b"\r\n".join(lines) + b"\r\n"

    def render(self, body: bytes, user_agent: Optional[str], client_ip: Optional[str]) -> bytes:
        """The whole request. The visitor's User-Agent, never ours (Plausible classifies
        devices and bots by it); the visitor's IP twice: ``X-Plausible-IP`` wins over
        ``CF-Connecting-IP`` at a self-hosted Plausible behind Cloudflare
        (plausible/analytics ``lib/plausible_web/remote_ip.ex``).

        :raises UnsafeHeader: a value that would break the request.
        """
        ua = header_value(user_agent) if user_agent else b""
        if client_ip:
            ip = header_value(client_ip)
            return _WITH_IP % (self._head, ua, ip, ip, len(body), body)
        return _WITHOUT_IP % (self._head, ua, len(body), body)


_WITH_IP = (
    b"%sUser-Agent: %s\r\nX-Forwarded-For: %s\r\nX-Plausible-IP: %s\r\nContent-Length: %d\r\n\r\n%s"
)
_WITHOUT_IP = b"%sUser-Agent: %s\r\nContent-Length: %d\r\n\r\n%s"


def connect_request(authority: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A ``CONNECT`` request for a proxy tunnel to ``host:port``."""
    lines = [f"CONNECT {authority} HTTP/1.1".encode("ascii"), b"Host: " + header_value(authority)]
    lines.extend(name.encode("ascii") + b": " + header_value(value) for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Eof(Exception):
    """The peer closed the connection (internal)."""


def _closed(view: memoryview) -> int:
    return 0


#: ``_next`` when no bytes are kept for a next answer.
_NOTHING_KEPT = 2 * CAPACITY + 1


class AnswerReader:
    """Reads answers into one reused buffer (one reader per connection).

    The buffer holds two answers' worth: an answer starts where the previous one ended
    and may grow :data:`CAPACITY` bytes from there (kept bytes move to the front
    only once they start past half; pipelined answers come in one read).
    """

    __slots__ = ("_buf", "_end", "_limit", "_next", "_recv_into", "_view")

    def __init__(self) -> None:
        self._recv_into: Callable[[memoryview], int] = _closed
        self._buf = bytearray(2 * CAPACITY)
        self._view = memoryview(self._buf)
        self._end = 0
        #: Where the answer being read must end at the latest.
        self._limit = CAPACITY
        #: Where the bytes after the last answer start (kept for a pipelined next one).
        self._next = _NOTHING_KEPT

    def _more(self) -> None:
        if self._end >= self._limit:
            raise BrokenAnswer("answer too large")
        n = self._recv_into(self._view[self._end : self._limit])
        if not n:
            raise _Eof
        self._end += n

    def read(
        self, recv_into: Callable[[memoryview], int], more: bool = False, *, tunnel: bool = False
    ) -> Answer:
        """The next final answer (interim ``1xx`` skipped).

        :param recv_into: fills a memoryview, returns the byte count, 0 at end of
            stream; its ``OSError`` (timeouts included) propagates while the head is
            read, and becomes a :class:`BrokenAnswer` carrying the status after.
        :param tunnel: the answer to a ``CONNECT``, whose 2xx has no body.
        :param more: more answers are owed (pipelined requests): bytes after this
            answer are the next one's start, kept for the next ``read``. Without it,
            bytes nobody asked for make the connection unusable (``keep_alive`` false).
        :raises BrokenAnswer: malformed, oversized, or cut short.
        """
        self._recv_into = recv_into
        pos = self._next
        if pos >= self._end:  # nothing kept: from the front
            pos = self._end = 0
        elif pos > CAPACITY:  # kept, far in: moved to the front (rare)
            left = self._end - pos
            self._buf[:left] = self._view[pos : self._end]
            pos, self._end = 0, left
        self._limit = pos + CAPACITY
        self._next = _NOTHING_KEPT  # nothing kept unless an answer is read whole
        interim = 0
        try:
            while True:
                status, headers, version_10, head_end = self._head(pos)
                if status >= 200:
                    try:
                        return self._answer(
                            status, headers, head_end, version_10, tunnel=tunnel, more=more
                        )
                    except BrokenAnswer as exc:
                        raise BrokenAnswer(str(exc), status, headers) from None
                    except _Eof:
                        raise BrokenAnswer(
                            "connection closed in the body", status, headers
                        ) from None
                    except OSError as exc:
                        raise BrokenAnswer(f"body: {type(exc).__name__}", status, headers) from None
                if status == 101:
                    raise BrokenAnswer("unexpected 101 Switching Protocols")
                interim += 1
                if interim > MAX_INTERIM:
                    raise BrokenAnswer("too many interim answers")
                pos = head_end
        finally:
            self._recv_into = _closed  # no reference cycle through a bound method

    def _head(self, pos: int) -> tuple[int, dict[str, str], bool, int]:
        """Status, wanted headers, whether HTTP/1.0, and the end of the head at ``pos``."""
        buf = self._buf
        # One match checks the head against the grammar (anything else is broken:
        # nothing about it is unambiguous) and picks out the headers the library reads;
        # tried on what came (a whole head, usually), then once the head's end is in.
        match = _HEAD.match(buf, pos, self._end) if self._end > pos else None
        if match is None:
            end = self._head_end(pos) + 4
            match = _HEAD.fullmatch(buf, pos, end)
            if match is None:
                raise BrokenAnswer(_malformed(bytes(buf[pos:end])))
        end = match.end()
        if end - pos > MAX_HEAD + 4:
            raise BrokenAnswer("answer head too large")
        _, code, _, length_again, length, coding_again, coding, connection, retry_after, dropped = (
            match.groups()
        )
        if length_again is not None or coding_again is not None:
            raise BrokenAnswer("repeated content-length or transfer-encoding")
        headers: dict[str, str] = {}
        if length is not None:
            headers["content-length"] = length.strip(b" \t").decode("latin-1")
        if connection is not None:
            headers["connection"] = connection.strip(b" \t").decode("latin-1")
        if coding is not None:
            headers["transfer-encoding"] = coding.strip(b" \t").decode("latin-1")
        if retry_after is not None:
            headers["retry-after"] = retry_after.strip(b" \t").decode("latin-1")
        if dropped is not None:
            headers["x-plausible-dropped"] = dropped.strip(b" \t").decode("latin-1")
        return int(code), headers, buf[pos + 7] == 48, end  # 48: "0" of HTTP/1.0

    def _head_end(self, pos: int) -> int:
        """Where the head at ``pos`` ends (its blank line), once read whole."""
        buf = self._buf
        while True:
            # Nothing to search before the first read of an answer.
            end = buf.find(b"\r\n\r\n", pos, self._end) if self._end > pos else -1
            if end >= 0:
                return end
            if self._end - pos > MAX_HEAD:
                raise BrokenAnswer("answer head too large")
            try:
                self._more()
            except _Eof:
                what = "in the answer head" if self._end > pos else "before any answer"
                raise BrokenAnswer(f"connection closed {what}") from None

    # 16 branches: RFC 9112 6.3's framing rules in one place, and the sized body of
    # the usual answer read without another call.
    def _answer(
        self,
        status: int,
        headers: dict[str, str],
        pos: int,
        version_10: bool,
        *,
        tunnel: bool,
        more: bool,
    ) -> Answer:
        connection = headers.get("connection")
        if connection is None:
            keep_alive = not version_10
        elif connection in _PLAIN_CONNECTION:  # what servers send, whatever the version
            keep_alive = _PLAIN_CONNECTION[connection]
        else:
            tokens = connection.lower().replace(" ", "").split(",")
            keep_alive = "keep-alive" in tokens if version_10 else "close" not in tokens
        closing = not keep_alive
        length = headers.get("content-length")
        if status in _NO_BODY_STATUSES or (tunnel and status < 300):
            body, end = b"", pos
        elif "transfer-encoding" in headers:
            if length is not None or headers["transfer-encoding"].strip().lower() != "chunked":
                raise BrokenAnswer("unsupported transfer coding")
            body, end = self._chunked(pos)
        elif length is not None:
            if not (length.isdigit() and length.isascii()) or len(length) > 12:
                raise BrokenAnswer("bad Content-Length")
            end = pos + int(length)
            if end - pos > MAX_BODY:
                raise BrokenAnswer("answer body too large")
            while self._end < end:
                self._more()
            body = bytes(self._buf[pos:end])
        else:
            body, end, keep_alive = self._until_close(pos), self._end, False
        if end != self._end and not (more and keep_alive):
            keep_alive = False  # bytes nobody asked for: never reuse this connection
            end = self._end
        self._next = end
        return Answer(status, headers, body, keep_alive, closing)

    def _until_close(self, pos: int) -> bytes:
        while True:
            try:
                self._more()
            except _Eof:
                return bytes(self._view[pos : self._end])
            if self._end - pos > MAX_BODY:
                raise BrokenAnswer("answer body too large")

    def _line(self, pos: int) -> int:
        """The index of the CRLF ending the line at ``pos``."""
        while True:
            end = self._buf.find(b"\r\n", pos, self._end)
            if end >= 0:
                return end
            if self._end - pos > 256:
                raise BrokenAnswer("chunk line too long")
            self._more()

    def _chunked(self, pos: int) -> tuple[bytes, int]:
        buf = self._buf
        body = b""
        while True:
            line_end = self._line(pos)
            size_field = bytes(buf[pos:line_end]).split(b";", 1)[0].strip(b" \t")
            if not size_field or len(size_field) > 8 or size_field.strip(_HEX):
                raise BrokenAnswer("bad chunk size")
            size = int(size_field, 16)
            pos = line_end + 2
            if size == 0:
                break
            if len(body) + size > MAX_BODY:
                raise BrokenAnswer("answer body too large")
            while self._end < pos + size + 2:
                self._more()
            if buf[pos + size : pos + size + 2] != b"\r\n":
                raise BrokenAnswer("bad chunk framing")
            body += buf[pos : pos + size]
            pos += size + 2
        # Trailer fields until an empty line; read and ignored.
        while True:
            line_end = self._line(pos)
            if line_end == pos:
                return body, pos + 2
            pos = line_end + 2


_HEX = b"0123456789abcdefABCDEF"
# A byte of a field but NUL, LF, CR: ranges, one step each for sre.
_FIELD = rb"[\x01-\t\x0b\x0c\x0e-\xff]"
# A value with the whitespace around it (stripped after): one way to match it.
_VALUE = rb"(%s*)\r\n" % _FIELD
# The lines the library reads. A framing header (the first two) seen before (its
# value group set) sets "again" (the group before it).
_WANTED = b"|".join(
    b"(?i:%s):%s%s" % (name, b"(?(%d)())" % (5 + 2 * i) if i < 2 else b"", _VALUE)
    for i, name in enumerate(
        b"content-length transfer-encoding connection retry-after x-plausible-dropped".split()
    )
)
#: An answer head and its blank line, as RFC 9112 writes it: the status line, then
#: ``token ":" value`` lines (no whitespace before the colon, so no folded line; no CR,
#: LF or NUL in a value or the reason phrase), the values the library reads captured:
#: one pass (a regex call costs ~2k instructions, its work ~35 a byte). The header lines
#: are matched inside a lookahead and consumed by its backreference: an atomic group
#: (Python < 3.11 has none, nor possessive quantifiers), so a head that fails, or is
#: not whole yet, is never searched again line by line for another reading. Groups:
#: version, status, the header lines, ``Content-Length`` again and its value, the same
#: for ``Transfer-Encoding``, then ``Connection``, ``Retry-After``, ``x-plausible-dropped``.
_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: %s*)?\r\n"
    rb"(?=((?:%s|[!#$%%&'*+\-.^_`|~0-9A-Za-z]+:%s*\r\n)*))\3\r\n" % (_FIELD, _WANTED, _FIELD)
)
#: ``Connection`` values that need no tokenising: keep-alive or not, for 1.0 and 1.1.
_PLAIN_CONNECTION = {"keep-alive": True, "Keep-Alive": True, "close": False, "Close": False}


def _malformed(head: bytes) -> str:
    """What is wrong with a head the grammar refused (for the log)."""
    if not re.match(rb"HTTP/1\.[01] [1-5][0-9][0-9][ \r]", head):
        return "not an HTTP/1.x status line"
    return "folded header line" if b"\n " in head or b"\n\t" in head else "malformed header"
