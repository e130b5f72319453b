"""The demo shop over ASGI records what the WSGI shop records, for the same visits."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from asgi_helpers import BROWSER_UA, fetch, uvicorn_thread
from werkzeug.test import Client

import plausible_wsgi as pw
from plausible_wsgi._demo import ShopApp, asgi_shop
from plausible_wsgi.asgi import PlausibleMiddleware
from plausible_wsgi.testing import MemoryCollector

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
VISITS: list[tuple[str, str, str]] = [
    ("GET", "/", ""),
    ("GET", "/pricing", ""),
    ("GET", "/items/2", ""),
    ("GET", "/items/9", ""),
    ("GET", "/api/items", ""),
    ("GET", "/static/style.css", ""),
    ("POST", "/signup", "plan=team"),
    ("GET", "/welcome?plan=team", ""),
    ("POST", "/checkout", "item=2&quantity=3"),
    ("POST", "/signup", "plan=nope"),
]


def summary(events: list[pw.Event]) -> list[tuple[Any, ...]]:
    return [
        (e.name, urlsplit(e.url).path, e.props, e.revenue, e.user_agent, e.client_ip)
        for e in events
    ]


def test_asgi_shop_matches_the_wsgi_shop() -> None:
    options: dict[str, Any] = {"track_actions": True, "track_404": True}
    wsgi_collector = MemoryCollector()
    wsgi = pw.PlausibleMiddleware(ShopApp(wsgi_collector), wsgi_collector, **options)
    client = Client(wsgi)
    for method, path, body in VISITS:
        headers = {"User-Agent": BROWSER_UA, **(FORM if body else {})}
        environ = {"REMOTE_ADDR": "127.0.0.1"}
        response = client.open(
            path, method=method, data=body, headers=headers, environ_base=environ
        )
        response.close()

    asgi_collector = MemoryCollector()
    asgi = PlausibleMiddleware(asgi_shop(asgi_collector), asgi_collector, **options)
    statuses = []
    with uvicorn_thread(asgi) as (port, _):
        for method, path, body in VISITS:
            status, _ = fetch(
                port, path, method=method, headers=FORM if body else {}, body=body.encode()
            )
            statuses.append(status)
    assert statuses == [200, 200, 200, 404, 200, 200, 303, 200, 200, 400]
    assert summary(asgi_collector.events) == summary(wsgi_collector.events)
    names = [e.name for e in asgi_collector.events]
    assert names.count("pageview") == 4
    assert "Signup" in names
    assert "Purchase" in names
    assert "404" in names
