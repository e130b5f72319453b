"""The demo over ASGI (``demo --asgi``): the same shop under uvicorn, in a thread.

uvicorn comes with the ``asgi`` extra; without it the demo says what to install.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import typing as t

from .._demo import AsgiApp, asgi_shop
from ..asgi import PlausibleMiddleware
from ..collector import PlausibleCollector
from .demo_app import EXCLUDE_PATHS, DemoApp, FinishCount, Unavailable

__all__ = ["AsgiFinished", "AsgiServer", "asgi_app"]

_Scope = t.MutableMapping[str, t.Any]
_Receive = t.Callable[[], t.Awaitable[t.MutableMapping[str, t.Any]]]
_Send = t.Callable[[t.MutableMapping[str, t.Any]], t.Awaitable[None]]


class AsgiFinished(FinishCount):
    """Counts HTTP requests the app has finished, like :class:`demo_app.Finished`.

    The middleware records a page view before its call returns, so once this count
    reaches the number of answered requests every event is queued in the collector.
    """

    def __init__(self, app: AsgiApp) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.done()


class AsgiServer:
    """An ASGI app under uvicorn (lifespan on), in a daemon thread with its own loop."""

    def __init__(self, app: AsgiApp, host: str, port: int) -> None:
        try:
            import uvicorn  # noqa: PLC0415 (an optional extra, only for demo --asgi)
        except ImportError:
            raise Unavailable(
                "uvicorn is not installed (pip install 'plausible-wsgi[asgi]')"
            ) from None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError:
            listener.close()
            raise
        self.port: int = listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._listener = listener
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[listener])),
            name=f"plausible-demo-asgi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        # uvicorn accepts on the bound socket only once its startup has run.
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5.0)
        self._listener.close()


def asgi_app(collector: PlausibleCollector) -> tuple[DemoApp, AsgiApp]:
    """The built-in shop as ASGI, wrapped like the WSGI one; the collector stays ours."""
    middleware = PlausibleMiddleware(
        asgi_shop(collector),
        collector,
        close_collectors=False,
        trusted_proxies=1,
        bots="event",
        exclude_paths=EXCLUDE_PATHS,
    )
    description = "the built-in example shop over ASGI under uvicorn (plausible_wsgi._demo)"
    return DemoApp(None, middleware, description), middleware
