"""Helpers shared by the middleware test modules: an environ, a server-like driver."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, Callable, Optional

from werkzeug.middleware.lint import LintMiddleware

import plausible_wsgi as pw
from plausible_wsgi.middleware import MiddlewareStats, PlausibleMiddleware
from plausible_wsgi.testing import MemoryCollector

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HTML = [("Content-Type", "text/html; charset=utf-8")]

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_environ(path: str = "/", **overrides: Any) -> dict[str, Any]:
    """A complete WSGI environ for ``https://example.com{path}``; ``None`` deletes a key."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
        "HTTP_USER_AGENT": BROWSER_UA,
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for key, value in overrides.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


class Result:
    def __init__(self) -> None:
        self.status: Optional[str] = None
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None
        self.body = b""
        self.written: list[bytes] = []


def call(app: App, environ: dict[str, Any]) -> Result:
    """Drive ``app`` like a server: start_response, iterate, always close."""
    result = Result()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and result.status is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        result.status = status
        result.headers = headers
        result.exc_info = exc_info
        return result.written.append

    iterable = app(environ, start_response)
    try:
        result.body = b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return result


def linted(app: App, collectors: Any, **options: Any) -> tuple[App, PlausibleMiddleware]:
    """``Lint(PlausibleMiddleware(Lint(app)))`` and the middleware itself."""
    middleware = PlausibleMiddleware(LintMiddleware(app), collectors, **options)
    return LintMiddleware(middleware), middleware


def html_app(body: bytes = b"<p>hi</p>", status: str = "200 OK", headers: Any = None) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, list(HTML if headers is None else headers))
        return [body]

    return app


def track(
    environ: Optional[dict[str, Any]] = None,
    app: Optional[App] = None,
    **options: Any,
) -> tuple[list[pw.Event], MiddlewareStats, Result]:
    """One linted request; the events recorded, the stats and the response."""
    collector = MemoryCollector()
    wrapped, middleware = linted(app or html_app(), collector, **options)
    result = call(wrapped, environ if environ is not None else make_environ())
    return collector.events, middleware.stats(), result
