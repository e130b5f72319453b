"""Driving an ASGI application the way a server does, without a framework."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, Optional

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

Message = dict[str, Any]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    query: bytes = b"",
    user_agent: Optional[str] = BROWSER_UA,
    client: Optional[tuple[str, int]] = ("203.0.113.9", 50000),
    headers: Optional[list[tuple[str, str]]] = None,
    host: Optional[str] = "example.com",
    scheme: str = "https",
) -> dict[str, Any]:
    """An ASGI 3 HTTP scope for ``https://example.com{path}``."""
    raw: list[tuple[bytes, bytes]] = []
    if host is not None:
        raw.append((b"host", host.encode("latin-1")))
    if user_agent is not None:
        raw.append((b"user-agent", user_agent.encode("latin-1")))
    for name, value in headers or ():
        raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("utf-8"),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": client,
        "server": ("example.com", 443),
    }


class Exchange:
    """What a server saw of one request: the messages the app sent."""

    def __init__(self, disconnect: Optional[asyncio.Event] = None) -> None:
        self.sent: list[Message] = []
        self.request_read = False
        self.disconnect = disconnect

    async def receive(self) -> Message:
        if not self.request_read:
            self.request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if self.disconnect is not None:
            await self.disconnect.wait()
        else:
            await asyncio.Event().wait()  # a live client: nothing more to read
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> Optional[int]:
        for message in self.sent:
            if message["type"] == "http.response.start":
                status: int = message["status"]
                return status
        return None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def request(app: Any, scope: dict[str, Any], exchange: Optional[Exchange] = None) -> Exchange:
    exchange = exchange or Exchange()
    await app(scope, exchange.receive, exchange.send)
    return exchange


def html_app(
    body: bytes = b"<p>hi</p>", status: int = 200, content_type: str = "text/html; charset=utf-8"
) -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@contextlib.contextmanager
def uvicorn_thread(app: Any, *, lifespan: str = "on") -> Iterator[tuple[int, Any]]:
    """``app`` served by uvicorn on a loopback port, in a thread; yields the port and
    the server. Stopping runs the lifespan shutdown, as a real server exit does."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan=lifespan, ws="none", http="h11", log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port, server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


def fetch(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Optional[dict[str, str]] = None,
    body: Optional[bytes] = None,
) -> tuple[int, bytes]:
    """One request over a real connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers={"User-Agent": BROWSER_UA, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
