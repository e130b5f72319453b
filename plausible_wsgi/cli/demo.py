"""``demo``: receiver + example app + traffic, end to end on loopback, and a summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import tempfile
import time
import typing as t
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..collector import PlausibleCollector
from ..receiver import PlausibleReceiver, ReceivedEvent
from . import demo_app, demo_traffic
from .args import EXIT_FAILED, EXIT_OK, HELP, port, seconds
from .demo_traffic import BOTS, DEMO_DOMAIN, Traffic, bot_key
from .serve import follow_events
from .terminal import Terminal

if t.TYPE_CHECKING:
    from . import demo_asgi

__all__ = ["add_parser", "run"]


_DESCRIPTION = (
    "Start a local Plausible receiver and the example shop under a real WSGI\n"
    "server (werkzeug, threaded) wrapped in PlausibleMiddleware, drive traffic\n"
    "through it, and compare what the receiver got with what was expected:\n\n"
    "  - page views from several visitors (IP from X-Forwarded-For, browser UAs)\n"
    "  - a Signup goal with props, a Purchase goal with revenue\n"
    "  - AI agents and crawlers (ChatGPT-User, GPTBot, PerplexityBot, Googlebot),\n"
    '    recorded as "Bot Visit" events with agent/kind/operator props\n'
    "  - excluded paths and a JSON endpoint, which record nothing\n\n"
    "Uses examples/flask_app.py when run from a clone with Flask installed,\n"
    "else a built-in plain-WSGI twin of it."
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="receiver + example app + traffic, end to end on loopback",
        formatter_class=HELP,
        description=_DESCRIPTION,
        epilog="Exit status 0 when every expected event arrived, 1 otherwise.",
    )
    demo.add_argument(
        "--port",
        type=port,
        default=0,
        help="receiver port (default: 0, any free port)",
    )
    demo.add_argument(
        "--app-port", type=port, default=0, help="example app port (default: 0, any free port)"
    )
    demo.add_argument(
        "--duration",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="after the scripted visits, keep sending light traffic for this long (default: 0)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the receiver and the app up after the summary, until Ctrl-C, "
        "so you can open the inspector and browse the shop",
    )
    demo.add_argument(
        "--app",
        choices=("auto", "flask", "builtin"),
        default="auto",
        help="which app to serve: the Flask example, the built-in WSGI twin, "
        "or auto (Flask example when available; default)",
    )
    demo.add_argument(
        "--spool",
        action="store_true",
        help="durable mode: the app's collector commits every event to a SQLite spool "
        "(deliver=False) and a relay collector drains it, as with `relay`",
    )
    demo.add_argument(
        "--asgi",
        action="store_true",
        help="serve the built-in shop over ASGI under uvicorn, wrapped in "
        "plausible_wsgi.asgi.PlausibleMiddleware (needs the asgi extra)",
    )
    demo.set_defaults(handler=run)


def _key(record: ReceivedEvent) -> str:
    """Which expectation an accepted event fulfils."""
    path = record.pathname
    if path.startswith("/static/") or path == "/healthz":
        return "excluded"
    if path == "/api/items":
        return "not_page"
    props = record.props
    if record.name == "pageview" and not props:
        return "pageview"
    if record.name == "Signup" and props == {"plan": "pro"}:
        return "Signup"
    if (
        record.name == "Purchase"
        and props == {"item": "Starter kit", "quantity": "2"}
        and record.revenue is not None
        and record.revenue.get("currency") == "USD"
        and _decimal(record.revenue.get("amount")) == Decimal("38.00")
    ):
        return "Purchase"
    if record.name == "Bot Visit":
        return f"bot:{props.get('agent')}:{props.get('kind')}:{props.get('operator')}"
    return "other"


def _decimal(value: object) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class _Row:
    label: str
    expected: int
    received: int

    @property
    def ok(self) -> bool:
        return self.expected == self.received


def _summary_rows(
    traffic: Traffic, receiver: PlausibleReceiver, middleware: demo_app.Recording | None
) -> list[_Row]:
    records = receiver.all
    accepted = [r for r in records if r.outcome == "accepted"]
    received: dict[str, int] = {}
    visitor_ids: set[str] = set()
    for record in accepted:
        key = _key(record)
        received[key] = received.get(key, 0) + 1
        if key == "pageview":
            visitor_ids.add(record.visitor_id)
    expected = traffic.expected

    def row(label: str, key: str) -> _Row:
        return _Row(label, expected.get(key, 0), received.get(key, 0))

    rows = [
        row("page views", "pageview"),
        _Row("unique visitors", len(traffic.visitors), len(visitor_ids)),
        row("Signup goal, props plan=pro", "Signup"),
        row("Purchase goal, revenue 38.00 USD", "Purchase"),
    ]
    for bot in BOTS:
        key = bot_key(bot)
        _, agent, kind, operator = key.split(":", 3)
        rows.append(row(f"Bot Visit: {agent} ({kind}, {operator})", key))
    rows.append(_Row("events for /static/, /healthz (excluded)", 0, received.get("excluded", 0)))
    rows.append(_Row("events for /api/items (JSON, not a page)", 0, received.get("not_page", 0)))
    if middleware is not None:
        skipped = middleware.stats().skipped
        rows.append(
            _Row(
                "requests skipped as excluded paths",
                expected.get("excluded", 0),
                skipped.get("excluded", 0),
            )
        )
    rows.append(_Row("other events", 0, received.get("other", 0)))
    rows.append(
        _Row("dropped by the receiver (202 + x-plausible-dropped)", 0, len(receiver.dropped))
    )
    rows.append(_Row("rejected by the receiver (400)", 0, len(receiver.rejected)))
    return rows


def _print_table(rows: list[_Row], term: Terminal) -> None:
    width = max(len(row.label) for row in rows)
    term.print(term.bold(f"  {'':{len(term.ok)}} {'':{width}}  {'expected':>8}  {'received':>8}"))
    for row in rows:
        received = f"{row.received:>8}"
        term.print(
            f"  {term.mark(row.ok)} {row.label:<{width}}  {row.expected:>8}  "
            f"{received if row.ok else term.red(received)}"
        )


@dataclass
class _Setup:
    receiver: PlausibleReceiver
    collector: PlausibleCollector
    app: demo_app.DemoApp
    server: demo_app.AppServer | demo_asgi.AsgiServer
    finished: demo_app.Finished | demo_asgi.AsgiFinished
    note: str | None
    #: With ``--spool``: the file the app writes and the relay drains.
    spool: str | None = None


def _start(args: argparse.Namespace, term: Terminal, stack: contextlib.ExitStack) -> _Setup | None:
    """Receiver, collector, app and app server, each closed by ``stack``; None on error."""
    receiver = PlausibleReceiver(host="127.0.0.1", port=args.port, domains=[DEMO_DOMAIN])
    try:
        receiver.start()
    except OSError as exc:
        term.error(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
        return None
    stack.callback(receiver.stop)
    spool = None
    if args.spool:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="plausible-demo-"))
        spool = os.path.join(folder, "spool.sqlite3")
    # The collector that sends; with --spool it is the relay, draining the spool file.
    collector = PlausibleCollector(
        DEMO_DOMAIN, endpoint=receiver.url, flush_interval=0.5, shutdown_timeout=5.0, spool=spool
    )
    stack.callback(collector.close)
    if spool is not None:
        # The app's collector only commits each event to the spool (no threads, no
        # sockets), like a web worker beside `python -m plausible_wsgi relay`.
        writer = PlausibleCollector(DEMO_DOMAIN, endpoint=receiver.url, spool=spool, deliver=False)
        stack.callback(writer.close)
        collector.start()
        setup = _start_app(args, term, stack, receiver=receiver, collector=collector, writer=writer)
        if setup is not None:
            setup.spool = spool
        return setup
    return _start_app(args, term, stack, receiver=receiver, collector=collector, writer=collector)


def _start_app(
    args: argparse.Namespace,
    term: Terminal,
    stack: contextlib.ExitStack,
    *,
    receiver: PlausibleReceiver,
    collector: PlausibleCollector,
    writer: PlausibleCollector,
) -> _Setup | None:
    """The app, tracking into ``writer``, under its server; ``collector`` delivers."""
    if args.asgi:
        return _start_asgi(args, term, stack, receiver=receiver, collector=collector, writer=writer)
    note = None
    app: demo_app.DemoApp | None = None
    if args.app in ("auto", "flask"):
        try:
            app = demo_app.flask_example(writer)
        except demo_app.Unavailable as exc:
            if args.app == "flask":
                term.error(str(exc))
                return None
            note = str(exc)
    if app is None:
        app = demo_app.builtin_app(writer)
    if app.middleware is not None:
        stack.callback(app.middleware.close)
    assert app.wsgi is not None  # both WSGI choices have one
    finished = demo_app.Finished(app.wsgi)
    try:
        server = demo_app.AppServer(finished, "127.0.0.1", args.app_port)
    except OSError as exc:
        term.error(f"cannot listen on 127.0.0.1:{args.app_port}: {exc.strerror or exc}")
        return None
    stack.callback(server.stop)
    return _Setup(receiver, collector, app, server, finished, note)


def _start_asgi(
    args: argparse.Namespace,
    term: Terminal,
    stack: contextlib.ExitStack,
    *,
    receiver: PlausibleReceiver,
    collector: PlausibleCollector,
    writer: PlausibleCollector,
) -> _Setup | None:
    from . import demo_asgi  # noqa: PLC0415 (uvicorn and the ASGI side only when asked for)

    app, asgi = demo_asgi.asgi_app(writer)
    finished = demo_asgi.AsgiFinished(asgi)
    try:
        server = demo_asgi.AsgiServer(finished, "127.0.0.1", args.app_port)
    except demo_app.Unavailable as exc:
        term.error(str(exc))
        return None
    except OSError as exc:
        term.error(f"cannot listen on 127.0.0.1:{args.app_port}: {exc.strerror or exc}")
        return None
    stack.callback(server.stop)
    return _Setup(receiver, collector, app, server, finished, None)


def _print_setup(setup: _Setup, term: Terminal) -> None:
    url = setup.receiver.url
    term.print(term.bold("plausible-wsgi demo: server-side Plausible Analytics, end to end"))
    term.print(f"  receiver   {url}  a local Plausible Events API, site {DEMO_DOMAIN}")
    term.print(f"  app        {setup.app.description} on {setup.server.url}/")
    if setup.note:
        term.print(term.dim(f"             (not the Flask example: {setup.note})"))
    term.print(
        '  middleware PlausibleMiddleware(trusted_proxies=1, bots="event", '
        f"exclude_paths={json.dumps(demo_app.EXCLUDE_PATHS)})"
    )
    term.print(f'  collector  PlausibleCollector("{DEMO_DOMAIN}", endpoint="{url}")')
    if setup.spool is not None:
        term.print(
            f"  spool      {setup.spool}: the app's collector only writes it "
            "(deliver=False); a relay collector sends"
        )
    term.print()


def _drive(args: argparse.Namespace, setup: _Setup, term: Terminal) -> Traffic:
    term.print(
        term.bold("Traffic")
        + ": simulated visitors behind one proxy"
        + f" (X-Forwarded-For: their IP, Host: {DEMO_DOMAIN})"
    )
    traffic = Traffic(setup.server.port, term)
    for step in demo_traffic.script():
        traffic.run(step)
    if args.duration > 0:
        term.print(term.bold("Light traffic") + f" for {args.duration:g}s (Ctrl-C ends it early)")
        rng = random.Random(20240601)
        deadline = time.monotonic() + args.duration
        try:
            while time.monotonic() < deadline:
                traffic.run(demo_traffic.light_step(rng))
                time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
        except KeyboardInterrupt:
            term.print("  (stopped)")
    term.print()
    return traffic


def _delivered(collector: PlausibleCollector, timeout: float) -> bool:
    """``flush()``; with a spool, first until the relay has taken every row."""
    deadline = time.monotonic() + timeout
    while collector.stats().spool_backlog:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return collector.flush(max(0.0, deadline - time.monotonic()))


def _report(setup: _Setup, traffic: Traffic, started: float, term: Terminal) -> bool:
    """Delivery, the summary table and the verdict; True when everything arrived."""
    settled = setup.finished.wait(traffic.answered, 10.0) and _delivered(setup.collector, 10.0)
    stats = setup.collector.stats()
    dropped = sum(stats.dropped.values())
    term.print(
        term.bold("Delivery")
        + f": {stats.sent} events delivered by the collector ({dropped} dropped, "
        f"{stats.failed} failed, {stats.retried} retried)"
        + ("" if settled else term.red(" - not everything was delivered within 10s"))
    )
    term.print()
    rows = _summary_rows(traffic, setup.receiver, setup.app.middleware)
    term.print(term.bold("Summary"))
    _print_table(rows, term)
    term.print()
    ok = all(row.ok for row in rows) and traffic.wrong_status == 0 and settled
    if ok:
        term.print(
            term.green(f"{term.ok} Every expected event arrived")
            + f" ({setup.receiver.app.totals['accepted']} accepted)"
            + f" in {time.monotonic() - started:.1f}s."
        )
        return True
    problems = []
    differ = sum(not row.ok for row in rows)
    if differ:
        problems.append(f"{differ} of {len(rows)} checks differ")
    if traffic.wrong_status:
        problems.append(f"{traffic.wrong_status} requests answered an unexpected status")
    if not settled:
        problems.append("delivery did not finish within 10s")
    term.print(term.red(f"{term.bad} Not as expected: ") + ", ".join(problems) + ".")
    return False


def _keep_running(setup: _Setup, term: Terminal) -> None:
    url = setup.receiver.url
    term.print(
        f"\nThe receiver and the app keep running: open the inspector at {url}/"
        f"\nand browse the shop at {setup.server.url}/ - your visits are listed below."
        "\nCtrl-C to stop."
    )
    last = max((record.id for record in setup.receiver.all), default=0)
    try:
        follow_events(setup.receiver, term, after=last)
    except KeyboardInterrupt:
        term.print("\nStopping.")


def run(args: argparse.Namespace, term: Terminal) -> int:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        setup = _start(args, term, stack)
        if setup is None:
            return EXIT_FAILED
        _print_setup(setup, term)
        traffic = _drive(args, setup, term)
        ok = _report(setup, traffic, started, term)
        term.print(f"Inspector: {setup.receiver.url}/")
        if args.keep_running:
            _keep_running(setup, term)
        else:
            term.print(term.dim("(--keep-running keeps it up to look at in a browser)"))
    return EXIT_OK if ok else EXIT_FAILED
