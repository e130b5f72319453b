"""Middleware overhead per request, in process.

A bare WSGI app and a Flask hello app, each called directly with a prepared environ
(a browser ``GET /`` answered ``200 text/html``: a page view), the response iterated
and closed, with and without :class:`~plausible_wsgi.PlausibleMiddleware`. The
collector buffers without sending: a ``PlausibleCollector`` pointed at a closed port,
its batch size, flush interval and queue bound too large to be reached. So the
figure covers reading the request, deciding, building the event and ``track``-level
queueing; delivery is ``bench/delivery.py``'s.

    python -m bench.middleware [--quick]
"""

from __future__ import annotations

import collections
import contextvars
import io
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, UA, best_us_per_call, buffering_collector, row, section_main

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: µs added per request.
TARGET_US = 10.0
BODY = b"<!doctype html><title>Hello</title><p>Hello, world</p>"

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/pricing",
    "QUERY_STRING": "utm_source=newsletter&session=abc",
    "SERVER_NAME": "example.com",
    "SERVER_PORT": "443",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": IP,
    "HTTP_HOST": "example.com",
    "HTTP_USER_AGENT": UA,
    "HTTP_REFERER": "https://news.example.org/",
    "HTTP_ACCEPT": "text/html",
    "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "https",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "55")]
    )
    return [BODY]


def flask_app() -> WSGIApplication:
    from flask import Flask

    app = Flask("hello")

    @app.get("/pricing")
    def hello() -> str:
        return "<!doctype html><title>Hello</title><p>Hello, world</p>"

    return app


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def requests_loop(app: WSGIApplication) -> Callable[[int], None]:
    environ = ENVIRON

    def loop(calls: int) -> None:
        for _ in range(calls):
            env = environ.copy()
            env["wsgi.input"] = io.BytesIO(b"")
            response = app(env, _start_response)
            for _chunk in response:
                pass
            close = getattr(response, "close", None)
            if close is not None:
                close()

    return loop


def wrapped_app(app: WSGIApplication, calls: int) -> Any:
    """``app`` in a middleware with its own fresh, buffering collector."""
    import plausible_wsgi as pw

    return pw.PlausibleMiddleware(app, buffering_collector(calls))


class CountingCollector:
    """A collector that only counts: the middleware's share of the figure, apart
    from the collector's (which has its own rows in ``bench/enqueue.py``)."""

    name = "counting"

    def __init__(self) -> None:
        self.events = 0

    def collect(self, event: Any) -> bool:
        self.events += 1
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def close(self, timeout: Optional[float] = None) -> None:
        return None

    def stats(self) -> Any:
        return None


class PassThrough:
    """The least a recording middleware does: wrap ``start_response`` and return an
    iterable whose ``close()`` closes the app's. The floor of the middleware figure."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return _Closing(self.app(environ, start))


class _Closing:
    __slots__ = ("iterable",)

    def __init__(self, iterable: Iterable[bytes]) -> None:
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def close(self) -> None:
        close = getattr(self.iterable, "close", None)
        if close is not None:
            close()


_visitor: contextvars.ContextVar[Optional[tuple[Any, ...]]] = contextvars.ContextVar(
    "bench.visitor", default=None
)


class MinimalRecorder:
    """The least any middleware of this kind must do per request: the second floor.

    Reads the visitor's fields from the environ; makes them current (a context
    variable) around the application call, every chunk of a non-list response and
    ``close()``, as ``track()`` inside a handler or a streaming response needs;
    captures the status and headers; and at ``close()`` keeps a page view -- a
    ``2xx`` ``text/html`` response -- as one tuple in a locked buffer. No URL
    building, scrubbing, bot test, validation or counting: what it leaves out is
    what the library adds on top of this floor.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.buffer: collections.deque[tuple[Any, ...]] = collections.deque()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        get = environ.get
        visitor = (
            get("wsgi.url_scheme"),
            get("HTTP_HOST"),
            get("PATH_INFO"),
            get("QUERY_STRING"),
            get("HTTP_REFERER"),
            get("HTTP_USER_AGENT"),
            get("REMOTE_ADDR"),
        )
        response = _Recorded(self, visitor, start_response)
        token = _visitor.set(visitor)
        try:
            response.iterable = self.app(environ, response.start_response)
        finally:
            _visitor.reset(token)
        return response


class _Recorded:
    __slots__ = ("headers", "iterable", "recorder", "server_start_response", "status", "visitor")

    def __init__(
        self, recorder: MinimalRecorder, visitor: tuple[Any, ...], start_response: StartResponse
    ) -> None:
        self.recorder = recorder
        self.visitor = visitor
        self.server_start_response = start_response
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.iterable: Iterable[bytes] = ()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        self.status = status
        self.headers = headers
        return self.server_start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        iterable = self.iterable
        if type(iterable) is list:
            return iter(iterable)
        return self._chunks(iter(iterable))

    def _chunks(self, iterator: Iterator[bytes]) -> Iterator[bytes]:
        while True:
            token = _visitor.set(self.visitor)
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                _visitor.reset(token)
            yield chunk

    def close(self) -> None:
        close = getattr(self.iterable, "close", None)
        if close is not None:
            token = _visitor.set(self.visitor)
            try:
                close()
            finally:
                _visitor.reset(token)
        if not self.status.startswith("2"):
            return
        for name, value in self.headers:
            if name.lower() == "content-type" and value.startswith("text/html"):
                recorder = self.recorder
                with recorder.lock:
                    recorder.buffer.append((*self.visitor, self.status))
                return


def measure(calls: int, repeat: int) -> dict[str, dict[str, float]]:
    """``{app: {figure: µs per request}}``, best of ``repeat`` interleaved rounds of
    ``calls``: ``plain`` (the app alone), ``with`` (the middleware and a buffering
    collector), ``alone`` (the middleware and a collector that only counts), ``floor``
    (a pass-through wrapper) and ``minimal`` (the minimal recorder).

    Each round gets a fresh middleware and collector (outside the timing), and the
    minimal recorder an emptied buffer, so each buffer holds at most one round of
    page views.
    """
    import plausible_wsgi as pw

    results: dict[str, dict[str, float]] = {}
    for name, app in (("bare WSGI app", bare_app), ("Flask hello app", flask_app())):
        loops = {
            "plain": requests_loop(app),
            "floor": requests_loop(PassThrough(app)),
        }
        recorder = MinimalRecorder(app)
        loops["minimal"] = requests_loop(recorder)
        for loop in loops.values():
            loop(1000)
        best = dict.fromkeys(("plain", "with", "alone", "floor", "minimal"), float("inf"))
        # Interleave the rounds so drift (frequency, other load) hits all alike.
        for _ in range(repeat):
            recorder.buffer.clear()
            wrapped = wrapped_app(app, calls)
            counting = CountingCollector()
            alone = pw.PlausibleMiddleware(app, counting)
            rounds = {**loops, "with": requests_loop(wrapped), "alone": requests_loop(alone)}
            for figure, loop in rounds.items():
                best[figure] = min(best[figure], best_us_per_call(loop, calls, 1))
            if len(recorder.buffer) != calls:
                raise RuntimeError(f"the minimal recorder kept {len(recorder.buffer)} of {calls}")
            for middleware, events in ((wrapped, None), (alone, counting.events)):
                stats = middleware.stats()
                if stats.tracked.get("pageview") != stats.requests or stats.requests != calls:
                    raise RuntimeError(f"not every request was a page view: {stats}")
                if events is not None and events != calls:
                    raise RuntimeError(f"the counting collector got {events} of {calls}")
            wrapped.close(0.01)
        results[name] = best
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    calls, repeat = (5_000, 4) if quick else (10_000, 12)
    results = measure(calls, repeat)
    rows = []
    for name, best in results.items():
        plain, wrapped = best["plain"], best["with"]
        added = wrapped - plain
        rows.append(
            row(
                f"middleware: µs added per request, {name}",
                round(added, 2),
                "µs",
                f"without {plain:.2f} µs, with {wrapped:.2f} µs; the middleware alone (a "
                f"collector that only counts) {best['alone'] - plain:.2f} µs; floors: a "
                f"pass-through wrapper adds {best['floor'] - plain:.2f} µs, a minimal "
                f"recorder {best['minimal'] - plain:.2f} µs",
                wrapped / plain,
                target=f"≤ {TARGET_US:.0f} µs added",
                passed=added <= TARGET_US,
                collector="PlausibleCollector (buffering, closed port)",
                middleware_alone_us=round(best["alone"] - plain, 2),
                floor_us=round(best["floor"] - plain, 2),
                minimal_recorder_us=round(best["minimal"] - plain, 2),
            )
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
