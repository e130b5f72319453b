"""Plausible for a plain WSGI app: no framework, one wrapper.

Run it with any WSGI server, e.g. the standard library's::

    PLAUSIBLE_DOMAIN=example.com PLAUSIBLE_ENDPOINT=http://127.0.0.1:8765 \\
        python examples/wsgi_app.py

``GET /`` and ``GET /hello/<name>`` are HTML pages (recorded as page views);
``GET /healthz`` is plain text (not recorded); ``POST /subscribe`` records a
``Subscribe`` goal.
"""

from __future__ import annotations

import html
import os
import typing as t
from collections.abc import Iterable

import plausible_wsgi as pw
from plausible_wsgi.collector import Tracker

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HTML = [("Content-Type", "text/html; charset=utf-8")]
TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def make_hello_app(tracker: Tracker) -> WSGIApplication:
    """The app itself, unaware of analytics except for one goal."""

    def hello_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", TEXT)
            return [b"ok"]
        if method == "POST" and path == "/subscribe":
            tracker.track("Subscribe", props={"source": "wsgi example"})
            start_response("303 See Other", [("Location", "/"), *TEXT])
            return [b"subscribed"]
        if method == "GET" and path == "/":
            start_response("200 OK", HTML)
            return [b"<!doctype html><title>Home</title><h1>Hello, WSGI</h1>"]
        if method == "GET" and path.startswith("/hello/"):
            name = html.escape(path[len("/hello/") :] or "stranger")
            start_response("200 OK", HTML)
            return [f"<!doctype html><title>Hello</title><h1>Hello, {name}</h1>".encode()]
        start_response("404 Not Found", TEXT)
        return [b"not found"]

    return hello_app


def make_app(collector: Tracker, **options: t.Any) -> WSGIApplication:
    """The app wrapped in the middleware; tests pass a MemoryCollector."""
    return pw.PlausibleMiddleware(make_hello_app(collector), collector, **options)


app = make_app(
    pw.PlausibleCollector(
        os.environ.get("PLAUSIBLE_DOMAIN", "example.com"),
        endpoint=os.environ.get("PLAUSIBLE_ENDPOINT", "https://plausible.io"),
    ),
    trusted_proxies=int(os.environ.get("PLAUSIBLE_TRUSTED_PROXIES", "0")),
)

if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    with make_server("127.0.0.1", int(os.environ.get("PORT", "8000")), app) as server:
        print(f"Serving on http://127.0.0.1:{server.server_port}/")
        server.serve_forever()
