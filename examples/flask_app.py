"""A small Flask shop that reports to Plausible from the server.

What gets recorded:

- ``GET /``, ``/pricing``, ``/about``, ``/items/<id>``: page views (HTML, 2xx).
- ``GET /api/items`` (JSON), ``/static/style.css``, ``/healthz``: nothing — not pages.
- ``POST /signup``: a ``Signup`` goal with the chosen plan as a prop.
- ``POST /checkout``: a ``Purchase`` goal with revenue.

Configuration comes from ``PLAUSIBLE_*`` environment variables, read like Flask's
``from_prefixed_env``: values are parsed as JSON when they can be
(``PLAUSIBLE_TRUSTED_PROXIES=1`` is the number 1), else kept as text. Every
``PLAUSIBLE_<OPTION>`` of :mod:`plausible_wsgi.flask` works. Try it against the local
receiver::

    python -m plausible_wsgi serve --port 8765 &
    PLAUSIBLE_DOMAIN=example.com PLAUSIBLE_ENDPOINT=http://127.0.0.1:8765 \\
        flask --app examples/flask_app.py run

or under gunicorn with ``examples/gunicorn.conf.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Optional

from flask import Flask, abort, jsonify, redirect, render_template_string, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import plausible_wsgi as pw
from plausible_wsgi.flask import Plausible

plausible = Plausible()

ITEMS = {
    1: {"name": "Starter kit", "price": "19.00"},
    2: {"name": "Pro kit", "price": "49.00"},
}
PLANS = ("free", "pro", "team")

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }} · Example shop</title>
  <link rel="stylesheet" href="{{ url_for('static', filename='style.css') }}">
</head>
<body>
  <nav>
    <a href="{{ url_for('home') }}">Home</a>
    <a href="{{ url_for('pricing') }}">Pricing</a>
    <a href="{{ url_for('about') }}">About</a>
  </nav>
  <h1>{{ title }}</h1>
  {{ body }}
</body>
</html>
"""


def page(title: str, body: Markup) -> str:
    return render_template_string(PAGE, title=title, body=body)


def env_config(environ: Mapping[str, str]) -> dict[str, object]:
    """The ``PLAUSIBLE_*`` variables of ``environ``, JSON-parsed where possible."""
    config: dict[str, object] = {}
    for key, text in environ.items():
        if key.startswith("PLAUSIBLE_"):
            try:
                config[key] = json.loads(text)
            except ValueError:
                config[key] = text
    return config


def create_app(config: Optional[Mapping[str, object]] = None) -> Flask:
    """Build the app from ``config``, or else from the ``PLAUSIBLE_*`` environment.

    Tests pass ``config`` (e.g. ``{"PLAUSIBLE_COLLECTOR": MemoryCollector()}``), so
    the shell's environment cannot change what they check.
    """
    app = Flask(__name__)
    app.config["PLAUSIBLE_DOMAIN"] = "example.com"
    app.config.update(env_config(os.environ) if config is None else config)
    if "PLAUSIBLE_COLLECTOR" in app.config:
        # A ready collector replaces the one built from domain, endpoint, ...
        app.config.pop("PLAUSIBLE_DOMAIN")

    @app.get("/")
    def home() -> ResponseReturnValue:
        items = Markup("").join(
            Markup('<li><a href="{}">{}</a></li>').format(url_for("item", item_id=i), item["name"])
            for i, item in ITEMS.items()
        )
        return page("Welcome", Markup("<ul>{}</ul>").format(items))

    @app.get("/pricing")
    def pricing() -> ResponseReturnValue:
        options = Markup("").join(Markup("<option>{}</option>").format(p) for p in PLANS)
        return page(
            "Pricing",
            Markup(
                '<form method="post" action="{}">'
                '<select name="plan">{}</select><button>Sign up</button></form>'
            ).format(url_for("signup"), options),
        )

    @app.get("/about")
    def about() -> ResponseReturnValue:
        return page("About", Markup("<p>We sell kits.</p>"))

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> ResponseReturnValue:
        found = ITEMS.get(item_id)
        if found is None:
            abort(404)
        return page(
            found["name"],
            Markup(
                '<form method="post" action="{}">'
                '<input type="hidden" name="item" value="{}"><button>Buy</button></form>'
            ).format(url_for("checkout"), item_id),
        )

    @app.get("/api/items")
    def api_items() -> ResponseReturnValue:
        return jsonify([{"id": i, **item} for i, item in ITEMS.items()])

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return "ok", 200, {"Content-Type": "text/plain"}

    @app.post("/signup")
    def signup() -> ResponseReturnValue:
        plan = request.form.get("plan", "free")
        if plan not in PLANS:
            abort(400)
        plausible.track("Signup", props={"plan": plan})
        return redirect(url_for("welcome", plan=plan), code=303)

    @app.get("/welcome")
    def welcome() -> ResponseReturnValue:
        plan = request.args.get("plan", "free")
        return page("Welcome aboard", Markup("<p>Your plan: {}</p>").format(plan))

    @app.post("/checkout")
    def checkout() -> ResponseReturnValue:
        try:
            item_id = int(request.form.get("item", ""))
        except ValueError:
            abort(400)
        found = ITEMS.get(item_id)
        if found is None:
            abort(404)
        quantity = request.form.get("quantity", "1")
        try:
            amount = Decimal(found["price"]) * int(quantity)
        except (ValueError, InvalidOperation):
            abort(400)
        plausible.track(
            "Purchase",
            props={"item": found["name"], "quantity": int(quantity)},
            revenue=pw.Revenue("USD", amount),
        )
        return page("Thank you", Markup("<p>Paid {} USD.</p>").format(amount))

    plausible.init_app(app)
    return app


app = create_app()

if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "5000")))
