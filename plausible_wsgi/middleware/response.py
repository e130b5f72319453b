"""The WSGI response as the middleware sees it: its start and its body.

:class:`ResponseBody` passes the application's chunks through unchanged, binds the
request around every step (so ``track()`` works in streaming responses) and calls
its ``finish`` exactly once, at ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..context import bind_request, unbind_request
from .exchange import Exchange

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse

__all__ = ["Finish", "ResponseBody", "SizedResponseBody", "WSGIExchange"]

#: What ``next()`` gives back at the end of the application's chunks.
_END: Any = object()
#: Called once when the response ends (:meth:`~.recorder.Recorder.finish`).
Finish = Callable[[Exchange], None]


class WSGIExchange(Exchange):
    """An :class:`~.exchange.Exchange` that notes the status and headers the
    application starts its response with."""

    __slots__ = ()
    #: The server's ``start_response``.
    server: StartResponse

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Optional[OptExcInfo] = None,
        /,
    ) -> Callable[[bytes], object]:
        self.status = status
        self.headers = headers
        if exc_info is None:
            return self.server(status, headers)
        return self.server(status, headers, exc_info)


class ResponseBody:
    """The application's response as the server iterates and closes it.

    The request context is bound around every step so that ``track()`` works inside
    streaming responses too; the request is recorded exactly once, at ``close()``.
    """

    __slots__ = ("_iterator", "closed", "exchange", "finish", "iterable")

    def __init__(self, finish: Finish, exchange: Exchange, iterable: Iterable[bytes]) -> None:
        self.finish = finish
        self.exchange = exchange
        self.iterable = iterable
        self.closed = False
        self._iterator: Optional[Iterator[bytes]] = None

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:
            iterable = self.iterable
            if type(iterable) in (list, tuple):
                # No application code runs while a list is iterated: skip the wrapper.
                self._iterator = iter(iterable)
            else:
                self._iterator = self._chunks(iterable)
        return self._iterator

    def __next__(self) -> bytes:
        """For a server that calls ``next()`` on the response itself."""
        return next(iter(self))

    def _chunks(self, iterable: Iterable[bytes]) -> Iterator[bytes]:
        """The application's chunks, each made with the request bound (and its
        ``iter()``, at the first). A generator: resuming one costs less than a method
        call per chunk, and its end reaches the server's loop without a StopIteration
        raised through our frames."""
        exchange = self.exchange
        visitor = exchange.visitor
        iterator: Optional[Iterator[bytes]] = None
        while True:
            token = bind_request(exchange) if visitor else None
            try:
                if iterator is None:
                    iterator = iter(iterable)
                # A default instead of catching StopIteration: no exception object
                # made and caught at the end of every streamed response (~2k
                # instructions).
                chunk = next(iterator, _END)
            except BaseException:
                exchange.failed = True
                raise
            finally:
                if token is not None:
                    unbind_request(token)
            if chunk is _END:
                return
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                exchange = self.exchange
                token = bind_request(exchange) if exchange.visitor else None
                try:
                    close()
                finally:
                    if token is not None:
                        unbind_request(token)
        finally:
            self.finish(self.exchange)


class SizedResponseBody(ResponseBody):
    """For iterables with a length: servers use ``len() == 1`` to set Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]
