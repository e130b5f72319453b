"""The app ``bench/e2e.py`` serves: the Flask example, or a hello app; middleware on/off.

- ``BENCH_APP=example`` (default): ``examples/flask_app.py`` as it is.
- ``BENCH_APP=hello``: a one-route Flask app set up the same way (the extension
  configured from the ``PLAUSIBLE_*`` environment), to see the cost per page when
  the page itself costs little.

``examples/flask_app.py`` always installs the extension; with
``BENCH_PLAUSIBLE=off`` this module unwraps it again (Flask's own ``wsgi_app`` back
in place, the route signal disconnected), so the bare run serves the very same app
without any plausible_wsgi code on the request path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import flask
import flask_app

from plausible_wsgi.flask import Plausible, _remember_route

ENABLED = os.environ.get("BENCH_PLAUSIBLE", "on") != "off"


def _hello() -> tuple[flask.Flask, Plausible]:
    hello = flask.Flask("hello")
    hello.config["PLAUSIBLE_DOMAIN"] = "example.com"
    hello.config.update(flask_app.env_config(os.environ))

    @hello.get("/")
    def home() -> str:
        return "<!doctype html><title>Hello</title><p>Hello, world</p>"

    @hello.get("/healthz")
    def healthz() -> tuple[str, int, dict[str, str]]:
        return "ok", 200, {"Content-Type": "text/plain"}

    extension = Plausible()
    extension.init_app(hello)
    return hello, extension


if os.environ.get("BENCH_APP", "example") == "hello":
    app, plausible = _hello()
else:
    app, plausible = flask_app.app, flask_app.plausible

if not ENABLED:
    app.wsgi_app = plausible.middleware.app  # type: ignore[method-assign,assignment]
    flask.request_started.disconnect(_remember_route, app)

__all__ = ["ENABLED", "app", "plausible"]
