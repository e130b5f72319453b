"""The demo's servers and app: the example shop under werkzeug's threaded server."""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import threading
import typing as t
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .._demo import ShopApp
from ..collector import PlausibleCollector
from ..middleware import MiddlewareStats, PlausibleMiddleware

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "EXCLUDE_PATHS",
    "AppServer",
    "DemoApp",
    "FinishCount",
    "Finished",
    "Recording",
    "Unavailable",
    "builtin_app",
    "flask_example",
]

_logger = logging.getLogger("plausible_wsgi.cli")

#: Where :class:`Finished` leaves the response's ``close`` for :class:`_QuietHandler`.
_CLOSE_KEY = "plausible_wsgi.demo.close"


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler, without a log line per request on stderr, closing every
    response."""

    def log(self, type: str, message: str, *args: t.Any) -> None:
        level = logging.WARNING if type == "error" else logging.DEBUG
        _logger.log(level, "app server: " + message, *args)

    def connection_dropped(
        self, error: BaseException, environ: WSGIEnvironment | None = None
    ) -> None:
        # Werkzeug's server does not call the response's close() when the client
        # resets the connection while the server discards the unread request (a
        # browser that gives up on a page): the middleware would never record that
        # request. WSGI requires close(), so it is called here.
        if environ is not None:
            close = environ.get(_CLOSE_KEY)
            if callable(close):
                close()


class _Closing:
    """A response iterable whose ``close()`` runs once, then calls ``on_close``."""

    def __init__(self, iterable: Iterable[bytes], on_close: t.Callable[[], None]) -> None:
        self._iterable = iterable
        self._on_close = on_close
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


class FinishCount:
    """A count of finished requests that a thread can wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    def done(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= n, timeout)


class Finished(FinishCount):
    """Counts requests whose response the server has closed.

    The middleware records an event when the server closes the response, which may
    be a moment after the client has read the last byte; waiting for this count
    means every event of the traffic sent so far is queued in the collector.
    """

    def __init__(self, app: WSGIApplication) -> None:
        super().__init__()
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            self.done()
            raise
        response = _Closing(iterable, self.done)
        environ[_CLOSE_KEY] = response.close
        return response


class AppServer:
    """A WSGI app under werkzeug's threaded server, in a daemon thread."""

    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Bound here: make_server() calls sys.exit() when the port is taken.
            listener.bind((host, port))
            listener.listen(128)
            self.server: BaseWSGIServer = make_server(
                host, port, app, threaded=True, request_handler=_QuietHandler, fd=listener.fileno()
            )
        finally:
            listener.close()
        self.port: int = self.server.port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"plausible-demo-app-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(5.0)
        self.server.server_close()


# -- demo: the app -------------------------------------------------------------------

EXCLUDE_PATHS = ("/static/", "/healthz")
_EXAMPLE_MODULE = "plausible_wsgi_demo_flask_example"


class Recording(t.Protocol):
    """What the demo reads of a middleware, WSGI or ASGI."""

    def stats(self) -> MiddlewareStats: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass
class DemoApp:
    #: ``None`` for the ASGI shop (see :mod:`.demo_asgi`).
    wsgi: WSGIApplication | None
    middleware: Recording | None
    description: str


class Unavailable(Exception):
    pass


def flask_example(collector: PlausibleCollector) -> DemoApp:
    """``examples/flask_app.py`` of the clone this package runs from, loaded by path."""
    root = Path(__file__).resolve().parents[2]
    path = root / "examples" / "flask_app.py"
    if not (path.is_file() and (root / "setup.py").is_file()):
        raise Unavailable("examples/flask_app.py is not here (an installed package, not a clone)")
    if importlib.util.find_spec("flask") is None:
        raise Unavailable("Flask is not installed (pip install 'plausible-wsgi[flask]')")
    try:
        spec = importlib.util.spec_from_file_location(_EXAMPLE_MODULE, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = sys.modules.get(_EXAMPLE_MODULE)
        if module is None:
            module = importlib.util.module_from_spec(spec)
            # Flask finds the app's static folder through sys.modules[import_name].
            sys.modules[_EXAMPLE_MODULE] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[_EXAMPLE_MODULE]
                raise
        app = module.create_app(
            {
                "PLAUSIBLE_COLLECTOR": collector,
                "PLAUSIBLE_TRUSTED_PROXIES": 1,
                "PLAUSIBLE_BOTS": "event",
                "PLAUSIBLE_EXCLUDE_PATHS": list(EXCLUDE_PATHS),
            }
        )
    except Exception as exc:
        raise Unavailable(
            f"examples/flask_app.py could not be used ({type(exc).__name__}: {exc})"
        ) from exc
    middleware = getattr(app, "wsgi_app", None)
    return DemoApp(
        t.cast("WSGIApplication", app),
        middleware if isinstance(middleware, PlausibleMiddleware) else None,
        "the Flask example shop (examples/flask_app.py)",
    )


def builtin_app(collector: PlausibleCollector) -> DemoApp:
    middleware = PlausibleMiddleware(
        ShopApp(collector),
        collector,
        trusted_proxies=1,
        bots="event",
        exclude_paths=EXCLUDE_PATHS,
    )
    return DemoApp(middleware, middleware, "the built-in example shop (plausible_wsgi._demo)")
