"""The app ``bench/asgi.py`` serves under uvicorn: Starlette hello, middleware on/off.

``BENCH_PLAUSIBLE=off`` serves the bare app; otherwise the ASGI middleware wraps it
with a ``PlausibleCollector`` configured from ``PLAUSIBLE_DOMAIN``,
``PLAUSIBLE_ENDPOINT`` and, when set, ``PLAUSIBLE_BATCH_SIZE``,
``PLAUSIBLE_MAX_QUEUE_SIZE``, ``PLAUSIBLE_FLUSH_INTERVAL``,
``PLAUSIBLE_SHUTDOWN_TIMEOUT`` (``bench.e2e.MODES``).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

import plausible_wsgi as pw
from plausible_wsgi.asgi import PlausibleMiddleware

BODY = "<!doctype html><title>Hello</title><p>Hello, world</p>"


async def hello(request: Request) -> HTMLResponse:
    return HTMLResponse(BODY)


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", hello), Route("/pricing", hello), Route("/healthz", healthz)])
if os.environ.get("BENCH_PLAUSIBLE", "on") != "off":
    numbers: dict[str, float] = {
        name.lower(): float(os.environ[f"PLAUSIBLE_{name}"])
        for name in ("BATCH_SIZE", "MAX_QUEUE_SIZE", "FLUSH_INTERVAL", "SHUTDOWN_TIMEOUT")
        if f"PLAUSIBLE_{name}" in os.environ
    }
    for name in ("batch_size", "max_queue_size"):
        if name in numbers:
            numbers[name] = int(numbers[name])
    collector = pw.PlausibleCollector(
        os.environ.get("PLAUSIBLE_DOMAIN", "example.com"),
        endpoint=os.environ["PLAUSIBLE_ENDPOINT"],
        **numbers,  # type: ignore[arg-type]
    )
    app.add_middleware(PlausibleMiddleware, collectors=collector, exclude_paths=("/healthz",))
