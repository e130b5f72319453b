"""The shop the ``demo`` command serves when the Flask example is not at hand.

``python -m plausible_wsgi demo`` prefers ``examples/flask_app.py`` from a clone of the
repository. That file is not part of the installed package, and Flask is an optional
dependency, so this module carries a plain-WSGI twin (werkzeug only, a runtime
dependency): the same routes, the same goals, the same prices. The demo's traffic and
its expectations are written once and hold for both. :func:`asgi_shop` serves the same
shop over ASGI (``demo --asgi``), with no framework either.

Routes:

- ``GET /``, ``/pricing``, ``/about``, ``/items/<id>``, ``/welcome``: HTML pages.
- ``GET /api/items`` (JSON), ``/static/style.css``, ``/healthz``: not pages.
- ``POST /signup``: a ``Signup`` goal with the plan as a prop, then ``303`` to ``/welcome``.
- ``POST /checkout``: a ``Purchase`` goal with the item, quantity and revenue in USD.
"""

from __future__ import annotations

import html
import io
import json
import typing as t
from collections.abc import Awaitable, Iterable, MutableMapping
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from .events import Revenue
from .tracking import Tracker

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ITEMS", "PLANS", "ShopApp", "asgi_shop"]

#: The same catalogue as the Flask example.
ITEMS = {
    1: {"name": "Starter kit", "price": "19.00"},
    2: {"name": "Pro kit", "price": "49.00"},
}
PLANS = ("free", "pro", "team")

_STYLE = b"body { font-family: sans-serif; margin: 2rem; } nav a { margin-right: 1rem; }\n"


def _page(title: str, body: str) -> Response:
    document = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · Example shop</title>"
        "<link rel='stylesheet' href='/static/style.css'></head><body>"
        "<nav><a href='/'>Home</a><a href='/pricing'>Pricing</a><a href='/about'>About</a></nav>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
    return Response(document, mimetype="text/html")


class ShopApp:
    """A tiny shop as a plain WSGI app; ``tracker`` records its two goals.

    Wrap it in :class:`~plausible_wsgi.PlausibleMiddleware` for page views; the goals
    are recorded with ``tracker.track()``, which takes the visitor's URL, User-Agent
    and IP from the request the middleware is handling.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.url_map = Map(
            [
                Rule("/", endpoint="home", methods=["GET"]),
                Rule("/pricing", endpoint="pricing", methods=["GET"]),
                Rule("/about", endpoint="about", methods=["GET"]),
                Rule("/items/<int:item_id>", endpoint="item", methods=["GET"]),
                Rule("/welcome", endpoint="welcome", methods=["GET"]),
                Rule("/api/items", endpoint="api_items", methods=["GET"]),
                Rule("/healthz", endpoint="healthz", methods=["GET"]),
                Rule("/static/style.css", endpoint="style", methods=["GET"]),
                Rule("/signup", endpoint="signup", methods=["POST"]),
                Rule("/checkout", endpoint="checkout", methods=["POST"]),
            ]
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.respond(environ)(environ, start_response)

    def respond(self, environ: WSGIEnvironment) -> Response:
        """The response to the request ``environ`` describes."""
        request = Request(environ)
        try:
            endpoint, values = self.url_map.bind_to_environ(environ).match()
            return t.cast(Response, getattr(self, f"on_{endpoint}")(request, **values))
        except HTTPException as exc:
            return exc.get_response(environ)

    def on_home(self, request: Request) -> Response:
        links = "".join(
            f"<li><a href='/items/{i}'>{html.escape(item['name'])}</a></li>"
            for i, item in ITEMS.items()
        )
        return _page("Welcome", f"<ul>{links}</ul>")

    def on_pricing(self, request: Request) -> Response:
        options = "".join(f"<option>{plan}</option>" for plan in PLANS)
        return _page(
            "Pricing",
            "<form method='post' action='/signup'>"
            f"<select name='plan'>{options}</select><button>Sign up</button></form>",
        )

    def on_about(self, request: Request) -> Response:
        return _page("About", "<p>We sell kits.</p>")

    def on_item(self, request: Request, item_id: int) -> Response:
        found = ITEMS.get(item_id)
        if found is None:
            raise NotFound()
        return _page(
            found["name"],
            "<form method='post' action='/checkout'>"
            f"<input type='hidden' name='item' value='{item_id}'><button>Buy</button></form>",
        )

    def on_welcome(self, request: Request) -> Response:
        plan = request.args.get("plan", "free")
        return _page("Welcome aboard", f"<p>Your plan: {html.escape(plan)}</p>")

    def on_api_items(self, request: Request) -> Response:
        body = json.dumps([{"id": i, **item} for i, item in ITEMS.items()])
        return Response(body, mimetype="application/json")

    def on_healthz(self, request: Request) -> Response:
        return Response("ok", mimetype="text/plain")

    def on_style(self, request: Request) -> Response:
        return Response(_STYLE, mimetype="text/css")

    def on_signup(self, request: Request) -> Response:
        plan = request.form.get("plan", "free")
        if plan not in PLANS:
            raise BadRequest()
        self.tracker.track("Signup", props={"plan": plan})
        return redirect("/welcome?" + urlencode({"plan": plan}), code=303)

    def on_checkout(self, request: Request) -> Response:
        try:
            item_id = int(request.form.get("item", ""))
            quantity = int(request.form.get("quantity", "1"))
        except ValueError:
            raise BadRequest() from None
        found = ITEMS.get(item_id)
        if found is None:
            raise NotFound()
        try:
            amount = Decimal(found["price"]) * quantity
        except InvalidOperation:
            raise BadRequest() from None
        self.tracker.track(
            "Purchase",
            props={"item": found["name"], "quantity": quantity},
            revenue=Revenue("USD", amount),
        )
        return _page("Thank you", f"<p>Paid {amount} USD.</p>")


# -- the same shop over ASGI -------------------------------------------------------------

_Scope = MutableMapping[str, t.Any]
_Receive = t.Callable[[], Awaitable[MutableMapping[str, t.Any]]]
_Send = t.Callable[[MutableMapping[str, t.Any]], Awaitable[None]]
AsgiApp = t.Callable[[_Scope, _Receive, _Send], Awaitable[None]]


def asgi_shop(tracker: Tracker) -> AsgiApp:
    """:class:`ShopApp` as an ASGI 3 application (lifespan answered, websockets refused).

    Wrap it in :class:`plausible_wsgi.asgi.PlausibleMiddleware`; the goals are tracked
    inside the request's coroutine, where the middleware has bound the visitor.
    """
    shop = ShopApp(tracker)

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = str(message["type"]).rsplit(".", 1)[-1]  # startup or shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        response = shop.respond(_environ(scope, bytes(body)))
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
        ]
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.get_data()})

    return app


def _environ(scope: _Scope, body: bytes) -> WSGIEnvironment:
    """A WSGI environ for an ASGI HTTP scope, enough for werkzeug's Request."""
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, t.Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": str(len(body)),
    }
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = (
            raw_name.decode("latin-1").upper().replace("-", "_"),
            raw_value.decode("latin-1"),
        )
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        environ[key] = (
            f"{environ[key]},{value}" if key.startswith("HTTP_") and key in environ else value
        )
    return environ
