"""A small FastAPI shop that reports to Plausible from the server.

What gets recorded:

- ``GET /``, ``/pricing``, ``/items/{item_id}``, ``/stream``: page views (HTML, 2xx;
  the streamed page once its last chunk is sent).
- ``GET /api/items`` (JSON), ``/healthz``: nothing -- not pages.
- ``POST /signup``: a ``Signup`` goal (tracked in an async handler) and the
  server action ``POST /signup``; ``POST /newsletter`` (a plain ``def`` handler, run
  in FastAPI's thread pool) a ``Newsletter`` goal.

Configuration from the environment: ``PLAUSIBLE_DOMAIN``, ``PLAUSIBLE_ENDPOINT``,
``PLAUSIBLE_TRUSTED_PROXIES`` and, for the tests, ``PLAUSIBLE_FLUSH_INTERVAL`` and
``PLAUSIBLE_BATCH_SIZE``. Try it against the local receiver::

    python -m plausible_wsgi serve --port 8765 &
    PLAUSIBLE_DOMAIN=example.com PLAUSIBLE_ENDPOINT=http://127.0.0.1:8765 \\
        uvicorn --app-dir examples fastapi_app:app
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse

import plausible_wsgi as pw
from plausible_wsgi.asgi import PlausibleMiddleware

ITEMS = {1: "Starter kit", 2: "Pro kit"}

collector = pw.PlausibleCollector(
    os.environ.get("PLAUSIBLE_DOMAIN", "example.com"),
    endpoint=os.environ.get("PLAUSIBLE_ENDPOINT", "https://plausible.io"),
    flush_interval=float(os.environ.get("PLAUSIBLE_FLUSH_INTERVAL", "5")),
    batch_size=int(os.environ.get("PLAUSIBLE_BATCH_SIZE", "100")),
)

app = FastAPI()
app.add_middleware(
    PlausibleMiddleware,
    collectors=collector,
    trusted_proxies=int(os.environ.get("PLAUSIBLE_TRUSTED_PROXIES", "0")),
    exclude_paths=("/healthz",),
    track_actions=True,
)


def page(title: str, body: str = "") -> str:
    return f"<!doctype html><title>{title}</title><h1>{title}</h1>{body}"


@app.get("/", response_class=HTMLResponse)
async def home() -> str:
    return page("Home")


@app.get("/pricing", response_class=HTMLResponse)
async def pricing() -> str:
    return page("Pricing")


@app.get("/items/{item_id}", response_class=HTMLResponse)
async def item(item_id: int) -> str:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404)
    return page(ITEMS[item_id])


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for part in ("<!doctype html><title>Stream</title>", "<p>one</p>", "<p>two</p>"):
            await asyncio.sleep(0)
            yield part.encode()

    return StreamingResponse(chunks(), media_type="text/html")


@app.get("/api/items")
async def api_items() -> dict[int, str]:
    return ITEMS


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/signup")
async def signup() -> dict[str, bool]:
    # In a request the visitor's URL, referrer, User-Agent and IP are picked up.
    collector.track("Signup", props={"plan": "pro"})
    return {"ok": True}


@app.post("/newsletter")
def newsletter() -> dict[str, bool]:
    # A plain def handler runs in a worker thread; the visitor travels with it.
    collector.track("Newsletter")
    return {"ok": True}
