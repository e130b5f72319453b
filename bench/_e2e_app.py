"""The Flask example for ``bench/e2e.py``, with the middleware on or off.

``examples/flask_app.py`` always installs the extension; with
``BENCH_PLAUSIBLE=off`` this module unwraps it again (Flask's own ``wsgi_app``
back in place, the route signal disconnected), so the bare run serves the very same
app without any plausible_wsgi code on the request path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import flask
from flask_app import app, plausible

from plausible_wsgi.flask import _remember_route

ENABLED = os.environ.get("BENCH_PLAUSIBLE", "on") != "off"

if not ENABLED:
    app.wsgi_app = plausible.middleware.app  # type: ignore[method-assign]
    flask.request_started.disconnect(_remember_route, app)

__all__ = ["ENABLED", "app", "plausible"]
