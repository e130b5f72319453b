"""The ASGI middleware around Starlette, FastAPI and Django ASGI, served by uvicorn."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import django
from asgi_helpers import BROWSER_UA, fetch, uvicorn_thread
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path as django_path
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

import plausible_wsgi.django as pw_django
from plausible_wsgi.asgi import PlausibleMiddleware
from plausible_wsgi.middleware import ROUTE_ENVIRON_KEY
from plausible_wsgi.testing import MemoryCollector

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop")
django.setup()

VISITOR = {"X-Forwarded-For": "10.1.1.1, 203.0.113.50"}


def starlette_app(collector: MemoryCollector) -> Starlette:
    async def home(request: Request) -> HTMLResponse:
        collector.track("Async")
        await run_in_threadpool(collector.track, "Threadpool")
        return HTMLResponse("<p>home</p>")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"<p>", b"one", b"</p>"):
                await asyncio.sleep(0)
                yield part

        return StreamingResponse(chunks(), media_type="text/html")

    def sync_page(request: Request) -> HTMLResponse:  # Starlette runs it in a thread
        collector.track("SyncEndpoint")
        return HTMLResponse("<p>sync</p>")

    app = Starlette(routes=[Route("/", home), Route("/stream", stream), Route("/sync", sync_page)])
    app.add_middleware(PlausibleMiddleware, collectors=collector, trusted_proxies=1)
    return app


def test_starlette_under_uvicorn() -> None:
    collector = MemoryCollector()
    with uvicorn_thread(starlette_app(collector)) as (port, _):
        for path in ("/", "/stream", "/sync", "/missing"):
            fetch(port, path, headers=VISITOR)
        assert not collector.closed
    # uvicorn's lifespan shutdown closed the collector the middleware owns.
    assert collector.closed
    events = collector.events
    assert [(e.name, e.url.rsplit("/", 1)[1]) for e in events] == [
        ("Async", ""),
        ("Threadpool", ""),
        ("pageview", ""),
        ("pageview", "stream"),
        ("SyncEndpoint", "sync"),
        ("pageview", "sync"),
    ]
    assert {(e.user_agent, e.client_ip) for e in events} == {(BROWSER_UA, "203.0.113.50")}


def test_fastapi_names_actions_after_the_route() -> None:
    # Imported here: FastAPI's import (pydantic models) is 0.4 s of CPU, paid at
    # collection by every xdist worker when at module level; only this test needs it.
    from fastapi import FastAPI

    collector = MemoryCollector()
    app = FastAPI()
    app.add_middleware(PlausibleMiddleware, collectors=collector, track_actions=True)

    @app.post("/items/{item_id}/buy")
    async def buy(item_id: int) -> dict[str, int]:
        collector.track("Buy", props={"item": item_id})
        return {"item": item_id}

    with uvicorn_thread(app) as (port, _):
        assert fetch(port, "/items/7/buy", method="POST")[0] == 200
    assert [e.name for e in collector.events] == ["Buy", "POST /items/{item_id}/buy"]


# -- Django ASGI ---------------------------------------------------------------------------


def buy(request: HttpRequest, pk: int) -> HttpResponse:
    pw_django.track("Buy", props={"item": pk})
    return HttpResponse("ok", content_type="text/plain")


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<p>page</p>", content_type="text/html")


urlpatterns = [django_path("items/<int:pk>/buy", buy), django_path("page", page)]


def test_django_asgi_application_wrapped() -> None:
    collector = MemoryCollector()
    settings = {
        "PLAUSIBLE": {"COLLECTOR": collector},
        "ROOT_URLCONF": __name__,
        "MIDDLEWARE": ["plausible_wsgi.django.RouteMiddleware"],
    }
    with override_settings(**settings):
        application = PlausibleMiddleware(
            get_asgi_application(), collector, trusted_proxies=1, track_actions=True
        )
        # Django answers the lifespan scope with an error: uvicorn then goes on without.
        with uvicorn_thread(application, lifespan="off") as (port, _):
            assert fetch(port, "/page", headers=VISITOR)[0] == 200
            assert fetch(port, "/items/3/buy", method="POST", headers=VISITOR)[0] == 200
        application.close()
    assert [(e.name, e.client_ip) for e in collector.events] == [
        ("pageview", "203.0.113.50"),
        ("Buy", "203.0.113.50"),
        ("POST /items/<int:pk>/buy", "203.0.113.50"),
    ]


def test_a_websocket_scope_is_passed_on_as_is() -> None:
    seen: list[object] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(scope)

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    middleware = PlausibleMiddleware(app, MemoryCollector())
    asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
    assert seen == [scope]
    assert seen[0] is scope


def test_plain_text_is_not_a_page() -> None:
    collector = MemoryCollector()

    async def text(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x")

    app = Starlette(routes=[Route("/t", text)])
    app.add_middleware(PlausibleMiddleware, collectors=collector)
    with uvicorn_thread(app) as (port, _):
        fetch(port, "/t")
    assert collector.events == []


# -- Quart ----------------------------------------------------------------------------------


def test_quart_app() -> None:
    import quart

    collector = MemoryCollector()
    app = quart.Quart(__name__)

    @app.before_request
    async def name_the_route() -> None:
        # Quart has no route in the scope: a hook can put the URL rule there.
        rule = quart.request.url_rule
        if rule is not None:
            quart.request.scope[ROUTE_ENVIRON_KEY] = rule.rule

    @app.get("/")
    async def home() -> str:
        collector.track("Visit")
        return "<p>home</p>"

    @app.post("/orders/<int:number>")
    async def order(number: int) -> tuple[str, int]:
        await asyncio.to_thread(collector.track, "Order", props={"number": number})
        return "ok", 201

    wrapped = PlausibleMiddleware(app, collector, track_actions=True, trusted_proxies=1)
    with uvicorn_thread(wrapped) as (port, _):
        assert fetch(port, "/", headers=VISITOR)[0] == 200
        assert fetch(port, "/orders/5", method="POST", headers=VISITOR)[0] == 201
    assert [(e.name, e.client_ip) for e in collector.events] == [
        ("Visit", "203.0.113.50"),
        ("pageview", "203.0.113.50"),
        ("Order", "203.0.113.50"),
        ("POST /orders/<int:number>", "203.0.113.50"),
    ]
    assert collector.closed  # Quart answers the lifespan scope: shutdown closed it
