"""The ASGI middleware: overhead per request in process, and uvicorn end to end.

- In process: a Starlette hello app called directly on one event loop with a
  prepared scope (a browser ``GET /pricing`` answered ``200 text/html``: a page
  view), with and without :class:`plausible_wsgi.asgi.PlausibleMiddleware`; in the
  same interleaved rounds, the WSGI middleware around Flask hello (the target: the
  ASGI side adds no more than that). The collector buffers without sending, as in
  ``bench/middleware.py``.
- End to end: uvicorn (1 worker) serving ``bench/_asgi_app.py`` under ``wrk``, bare
  and with the middleware delivering every page view to the nginx sink; requests/s
  with the middleware as a fraction of bare, and the page views the sink received.
  Skipped without ``wrk`` (Debian package ``wrk``).

    python -m bench.asgi [--quick]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, UA, best_us_per_call, row, section_main, skipped
from bench._sink import Sink, free_port
from bench.middleware import BODY, buffering_collector, flask_app, requests_loop, wrapped_app

ROOT = Path(__file__).resolve().parent.parent
#: uvicorn requests/s with the middleware, as a fraction of bare.
TARGET_RATIO = 0.7

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "https",
    "path": "/pricing",
    "raw_path": b"/pricing",
    "query_string": b"utm_source=newsletter&session=abc",
    "root_path": "",
    "headers": [
        (b"host", b"example.com"),
        (b"user-agent", UA.encode()),
        (b"referer", b"https://news.example.org/"),
        (b"accept", b"text/html"),
        (b"accept-language", b"en-GB,en;q=0.9"),
    ],
    "client": (IP, 50000),
    "server": ("example.com", 443),
}


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def hello(request: Request) -> HTMLResponse:
        return HTMLResponse(BODY.decode())

    return Starlette(routes=[Route("/pricing", hello)])


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def asgi_loop(app: Any, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    """``calls`` requests to ``app``, one after the other, on ``loop``."""

    async def requests(calls: int) -> None:
        for _ in range(calls):
            await app(dict(SCOPE), _receive, _send)

    def run(calls: int) -> None:
        loop.run_until_complete(requests(calls))

    return run


def measure(calls: int, repeat: int) -> dict[str, tuple[float, float]]:
    """``{app: (µs without, µs with)}``, best of ``repeat`` interleaved rounds; each
    round gets fresh middlewares and collectors (outside the timing)."""
    from plausible_wsgi.asgi import PlausibleMiddleware

    loop = asyncio.new_event_loop()
    starlette, flask = starlette_app(), flask_app()
    plain_asgi, plain_wsgi = asgi_loop(starlette, loop), requests_loop(flask)
    best = {name: [float("inf"), float("inf")] for name in ("starlette", "flask")}
    try:
        for _ in range(repeat):
            asgi = PlausibleMiddleware(starlette, buffering_collector(calls))
            wsgi = wrapped_app(flask, calls)
            rounds: list[tuple[str, int, Callable[[int], None]]] = [
                ("starlette", 0, plain_asgi),
                ("starlette", 1, asgi_loop(asgi, loop)),
                ("flask", 0, plain_wsgi),
                ("flask", 1, requests_loop(wsgi)),
            ]
            for name, index, run in rounds:
                run(200)  # warm up
                best[name][index] = min(best[name][index], best_us_per_call(run, calls, 1))
            for middleware in (asgi, wsgi):
                stats = middleware.stats()
                if stats.tracked.get("pageview") != stats.requests:
                    raise RuntimeError(f"not every request was a page view: {stats}")
                middleware.close(0.01)
    finally:
        loop.close()
    return {name: (values[0], values[1]) for name, values in best.items()}


def _uvicorn_round(sink: Sink, mode: str, seconds: float) -> dict[str, Any]:
    """One uvicorn run of ``mode`` (``bench.e2e.MODES``: bare, on, buffered) under wrk."""
    from bench.e2e import MODES, load_then_stop

    port = free_port()
    settings = MODES[mode]
    env = {
        **os.environ,
        "PLAUSIBLE_DOMAIN": "example.com",
        "PLAUSIBLE_ENDPOINT": sink.url,
        "BENCH_PLAUSIBLE": "off" if settings is None else "on",
        **(settings or {}),
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench._asgi_app:app",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    before = sink.count_events()
    result = load_then_stop(subprocess.Popen(command, cwd=ROOT, env=env), port, seconds)
    result["sink"] = sink.count_events() - before
    return result


def uvicorn_rows(seconds: float, rounds: int) -> list[dict[str, Any]]:
    from bench.e2e import missing

    metric = "asgi: uvicorn requests/s with the middleware, {} (fraction of bare)"
    why = missing()  # nginx (the sink) and wrk
    if why is not None:
        return [skipped(metric.format("delivering"), why)]
    modes = ("bare", "on", "buffered")
    best = dict.fromkeys(modes, 0.0)
    pages = received = 0
    with Sink() as sink:
        for _ in range(rounds):
            for mode in modes:  # interleaved: drift in the load hits all alike
                result = _uvicorn_round(sink, mode, seconds)
                best[mode] = max(best[mode], result["requests"] / result["seconds"])
                if mode == "on":
                    pages += result["pages"]
                    received += result["sink"]
    bare = best["bare"]
    delivering = row(
        metric.format("delivering every page view"),
        round(best["on"]),
        "req/s",
        f"bare {bare:,.0f} req/s; the sink received {received:,} of {pages:,} page views "
        "(one worker: the delivery POSTs share its CPU with a ~0.2 ms hello app)",
        best["on"] / bare,
        target="every page view delivered",
        passed=received >= pages,
    )
    buffered = row(
        metric.format("buffering only"),
        round(best["buffered"]),
        "req/s",
        f"bare {bare:,.0f} req/s; the middleware and the queue, no delivery during the run",
        best["buffered"] / bare,
        target=f"≥ {TARGET_RATIO:.0%} of bare",
        passed=best["buffered"] / bare >= TARGET_RATIO,
    )
    return [delivering, buffered]


def run(quick: bool = False) -> list[dict[str, Any]]:
    calls, repeat = (2_000, 3) if quick else (10_000, 10)
    results = measure(calls, repeat)
    plain, wrapped = results["starlette"]
    flask_plain, flask_wrapped = results["flask"]
    added, flask_added = wrapped - plain, flask_wrapped - flask_plain
    rows = [
        row(
            "asgi: µs added per request, Starlette hello app",
            round(added, 2),
            "µs",
            f"without {plain:.2f} µs, with {wrapped:.2f} µs; the WSGI middleware adds "
            f"{flask_added:.2f} µs around Flask hello in the same rounds",
            wrapped / plain,
            target="≤ the WSGI middleware's µs around Flask hello",
            passed=None if quick else added <= max(flask_added, 0) + 1.0,
        )
    ]
    rows += uvicorn_rows(*((2.0, 1) if quick else (5.0, 3)))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return section_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
