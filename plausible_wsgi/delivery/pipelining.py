"""HTTP/1.1 pipelining of a batch: several requests in one write on one keep-alive
connection, their answers read in order (RFC 9112 9.3.2), each judged as if alone.

:class:`Pipeliner` is :class:`~plausible_wsgi.delivery.transport.HttpTransport`'s
``send_many`` behind the rendering: which connection, what each answer leaves for the
requests written after it, and when to stop pipelining.

- An answer saying the server closes (``Connection: close``, HTTP/1.0 without
  keep-alive) leaves the later requests **unsent**: the server must not process them
  (RFC 9112 9.6). They are sent again alone, not counted as retries.
- A cut, a timeout or a broken answer leaves every request still owed an answer **in
  doubt** (``cut``, ``read_timeout``): the server may have recorded them, and a reset
  can even destroy answers already in this side's socket buffer. The retry policy
  judges each, exactly as for one event.
- A new connection carries one request alone; the others follow once it was answered
  keep-alive, so a server closing or resetting after every request leaves them unsent
  rather than in doubt.
- One deadline (the transport's ``timeout``) for the whole batch.
- Each batch that got two or more answers (and no unreadable one) leaves
  :attr:`Pipeliner.gap`, the mean time between consecutive answers (monotonic, taken
  at the first and the last answer only): about one service time of the server, with
  the round trip paid once before the first answer. A far but fast server answers a
  batch close together; a slow one (pipelined requests served one after the other)
  far apart. The engine's ramp judges it.
- A batch failing with two or more answers owed (a server mishandling pipelining, or
  going down) makes the transport send one request at a time for :data:`SERIAL_FOR`
  seconds, for good after :data:`STRIKES` times; logged at INFO.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Callable, Generic, Optional, TypeVar, Union

from .._log import logger
from .connection import Connection, ConnectionPool, SendFailed, reason
from .failure import AttemptError, FailureKind, NothingSent
from .http11 import Answer, BrokenAnswer

__all__ = ["MAX_PIPELINE_DEPTH", "SERIAL_FOR", "STRIKES", "Pipeliner", "read_failure"]

#: The most requests written at once on one connection.
MAX_PIPELINE_DEPTH = 32
#: Seconds of one request at a time after a batch failed with answers owed ...
SERIAL_FOR = 60.0
#: ... and for good after this many such batches.
STRIKES = 3

R = TypeVar("R")


Judge = Callable[[Answer], Union[R, AttemptError]]
Results = list[Union[R, AttemptError, None]]


class Pipeliner(Generic[R]):
    """Writes a batch of rendered requests at once and reads their answers."""

    def __init__(self, pool: ConnectionPool, timeout: float, depth: int) -> None:
        self._pool = pool
        self._timeout = timeout
        self._depth = depth
        self.reset()

    def reset(self) -> None:
        """Pipeline again (after ``fork()``)."""
        #: Seconds between consecutive answers of the last batch that got two or more
        #: (None: none yet); written by any worker thread, read by any.
        self.gap: Optional[float] = None
        self._strikes = 0
        #: Monotonic time until which one request at a time.
        self._serial_until = 0.0

    @property
    def depth(self) -> int:
        """Requests to write at once now (1: one at a time)."""
        if self._serial_until and (
            self._strikes >= STRIKES or time.monotonic() < self._serial_until
        ):
            return 1
        return self._depth

    def send(
        self,
        wire: list[bytes],
        where: list[int],
        results: Results[R],
        judge: Judge[R],
        exchange: Callable[[Connection, bytes, float, bool], R],
    ) -> None:
        """Send the requests ``wire``; the result of ``wire[k]`` goes to
        ``results[where[k]]`` (left None: not sent).

        :param judge: an answer's meaning (``R``), or the :class:`AttemptError` it is.
        :param exchange: one request alone on a fresh connection (the transport's).
            (Both passed per call: held here, they would tie the transport in a cycle
            and leave its sockets to the garbage collector.)
        """
        now = time.monotonic()
        deadline = now + self._timeout
        conn = self._pool.reusable(now)
        if conn is not None:
            try:
                self._pipeline(conn, wire, where, results, deadline, judge=judge)
                return
            except NothingSent:
                pass  # not one byte left: the same requests on a fresh connection
        try:
            conn = self._pool.connect(deadline)
            results[where[0]] = exchange(conn, wire[0], deadline, True)
        except AttemptError as exc:
            results[where[0]] = exc  # the others were not sent: each goes alone
        kept = self._pool.current()
        if kept is not None and len(wire) > 1:
            with contextlib.suppress(NothingSent):  # unsent: each goes alone
                self._pipeline(kept, wire[1:], where[1:], results, deadline, judge=judge)

    def _pipeline(
        self,
        conn: Connection,
        wire: list[bytes],
        where: list[int],
        results: Results[R],
        deadline: float,
        *,
        judge: Judge[R],
    ) -> None:
        conn.deadline = deadline
        try:
            conn.send_all(b"".join(wire))
        except SendFailed as exc:
            self._pool.discard(conn)
            if exc.sent == 0:
                raise NothingSent from None
            # Some went out, maybe whole: each in doubt.
            _in_doubt(where, results, FailureKind.CUT, f"write cut: {reason(exc.error)}")
            return
        last = len(where) - 1
        read = conn.reader.read
        recv_into = conn.recv_into
        first = 0.0
        for k, i in enumerate(where):
            try:
                answer = read(recv_into, k < last)
            except (BrokenAnswer, OSError) as exc:
                self._pool.discard(conn)
                self._unread(exc, where[k:], results, judge)
                if last - k >= 1:
                    self._mishandled()
                return  # the gap is left as it was: this batch's answers stopped
            if k == 0:
                first = time.monotonic()
            results[i] = judge(answer)
            if not answer.keep_alive:
                self._pool.discard(conn)
                if k < last and not answer.closing:
                    _in_doubt(where[k + 1 :], results, FailureKind.CUT, "closed early")
                self._gauge(first, k)
                return  # after a declared close: the later ones unsent (None)
        conn.idle_since = now = time.monotonic()
        if last:
            self.gap = (now - first) / last

    def _gauge(self, first: float, k: int) -> None:
        """The gap, from the first answer to answer ``k`` (read just now)."""
        if k >= 1:
            self.gap = (time.monotonic() - first) / k

    def _unread(
        self, exc: BaseException, owed: list[int], results: Results[R], judge: Judge[R]
    ) -> None:
        """Settle ``owed`` after reading the first of them failed."""
        if isinstance(exc, BrokenAnswer) and exc.status is not None:
            # The status is the server's answer; only the body was cut or unreadable.
            results[owed[0]] = judge(Answer(exc.status, exc.headers, b"", False))
            _in_doubt(owed[1:], results, FailureKind.CUT, "no answer")
        else:
            failure = read_failure(exc, self._timeout)
            _in_doubt(owed, results, failure.kind, str(failure))

    def _mishandled(self) -> None:
        self._strikes += 1
        self._serial_until = time.monotonic() + SERIAL_FOR
        logger.info(
            "pipelined requests failed with answers still owed: one request at a time %s",
            "from now on" if self._strikes >= STRIKES else f"for {SERIAL_FOR:.0f}s",
        )


def read_failure(exc: BaseException, timeout: float) -> AttemptError:
    """What an answer that could not be read means for its request, which went out whole
    (the server may have recorded it): a :class:`BrokenAnswer` without a status, no
    answer within ``timeout``, or a cut connection."""
    if isinstance(exc, BrokenAnswer):
        return AttemptError(FailureKind.CUT, f"no readable answer: {exc}")
    if isinstance(exc, (socket.timeout, BlockingIOError)):  # BlockingIOError: SO_RCVTIMEO
        return AttemptError(FailureKind.READ_TIMEOUT, f"no answer within {timeout}s")
    return AttemptError(FailureKind.CUT, f"connection cut before the answer: {reason(exc)}")


def _in_doubt(owed: list[int], results: Results[R], kind: FailureKind, what: str) -> None:
    for i in owed:
        results[i] = AttemptError(kind, what)
