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

import io
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, UA, best_us_per_call, closed_endpoint, row, section_main

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


def _wrap(app: WSGIApplication, calls: int) -> Any:
    """``app`` in a middleware with its own fresh, buffering collector."""
    import plausible_wsgi as pw

    collector = pw.PlausibleCollector(
        "example.com",
        endpoint=closed_endpoint(),
        batch_size=10 * calls,
        flush_interval=3600.0,
        max_queue_size=10 * calls,
    )
    return pw.PlausibleMiddleware(app, collector)


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


def measure(calls: int, repeat: int) -> dict[str, tuple[float, float, float]]:
    """``{app: (µs without, µs with, µs with a pass-through wrapper)}``, best of
    ``repeat`` rounds of ``calls``.

    Each round gets a fresh middleware and collector (outside the timing), so the
    buffer holds at most one round of page views, as a drained buffer would.
    """
    results: dict[str, tuple[float, float]] = {}
    for name, app in (("bare WSGI app", bare_app), ("Flask hello app", flask_app())):
        plain_loop = requests_loop(app)
        plain_loop(1000)
        wrapped = _wrap(app, calls)
        requests_loop(wrapped)(1000)
        # Interleave the rounds so drift (frequency, other load) hits both alike.
        floor_loop = requests_loop(PassThrough(app))
        plain = wrapped_us = floor = float("inf")
        for _ in range(repeat):
            plain = min(plain, best_us_per_call(plain_loop, calls, 1))
            floor = min(floor, best_us_per_call(floor_loop, calls, 1))
            wrapped.close(0.01)
            wrapped = _wrap(app, calls)
            wrapped_us = min(wrapped_us, best_us_per_call(requests_loop(wrapped), calls, 1))
            stats = wrapped.stats()
            if stats.tracked.get("pageview") != stats.requests or stats.requests != calls:
                raise RuntimeError(f"not every request was a page view: {stats}")
        wrapped.close(0.01)
        results[name] = (plain, wrapped_us, floor)
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    calls, repeat = (5_000, 4) if quick else (10_000, 12)
    results = measure(calls, repeat)
    rows = []
    for name, (plain, wrapped, floor) in results.items():
        added = wrapped - plain
        rows.append(
            row(
                f"middleware: µs added per request, {name}",
                round(added, 2),
                "µs",
                f"without {plain:.2f} µs, with {wrapped:.2f} µs; "
                f"a pass-through wrapper adds {floor - plain:.2f} µs",
                wrapped / plain,
                target=f"≤ {TARGET_US:.0f} µs added",
                passed=added <= TARGET_US,
                collector="PlausibleCollector (buffering, closed port)",
            )
        )
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
