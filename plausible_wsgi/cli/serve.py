"""``serve``: the local Plausible receiver in the foreground, one line per event."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from urllib.parse import urlsplit

from ..receiver import PlausibleReceiver, ReceivedEvent
from .args import EXIT_FAILED, EXIT_OK, HELP, port, positive_int
from .terminal import Terminal

__all__ = ["add_parser", "event_line", "follow_events", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the local Plausible receiver, logging each event",
        formatter_class=HELP,
        description=(
            "Run a local Plausible Events API in the foreground. It answers like\n"
            "Plausible's /api/event (202, 202 + x-plausible-dropped, 400 with field\n"
            "errors), prints one line per event, and serves a live inspector page at /.\n"
            "Point a collector at it:  PlausibleCollector(domain, endpoint=URL)\n"
            "Stop with Ctrl-C."
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=port, default=8765, help="port (default: %(default)s; 0 = any free port)"
    )
    serve.add_argument(
        "--domain",
        action="append",
        metavar="DOMAIN",
        help="a site that exists (repeatable); events for other domains are dropped "
        "like Plausible drops unknown sites (default: every domain exists)",
    )
    serve.add_argument(
        "--drop-private-ips",
        action="store_true",
        help="drop events whose visitor IP is loopback or private",
    )
    serve.add_argument(
        "--max-events",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="events kept in memory for the inspector (default: %(default)s); "
        "the counts at exit cover every event",
    )
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace, term: Terminal) -> int:
    receiver = PlausibleReceiver(
        host=args.host,
        port=args.port,
        domains=args.domain,
        drop_private_ips=args.drop_private_ips,
        max_events=args.max_events,
    )
    try:
        receiver.start()
    except OSError as exc:
        hint = " (try --port 0 for any free port)" if args.port else ""
        term.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return EXIT_FAILED
    try:
        term.print(term.bold("plausible-wsgi receiver: a local Plausible Events API"))
        term.print(f"  endpoint   {receiver.url}   (PlausibleCollector(..., endpoint=this))")
        term.print(f"  events     POST {receiver.url}/api/event")
        term.print(f"  inspector  {receiver.url}/")
        sites = ", ".join(args.domain) if args.domain else "any domain"
        term.print(f"  sites      {sites}")
        term.print("Waiting for events; Ctrl-C to stop.")
        follow_events(receiver, term)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    # Every event judged, not the records kept (the receiver keeps the last 10,000).
    counts = receiver.app.totals
    term.print(
        f"\nStopped: {counts['accepted']} accepted, {counts['dropped']} dropped, "
        f"{counts['rejected']} rejected."
    )
    return EXIT_OK


def follow_events(receiver: PlausibleReceiver, term: Terminal, after: int = 0) -> None:
    """Print every event as it arrives, until interrupted."""
    last = after
    while True:
        for record in receiver.all:
            if record.id > last:
                term.print(event_line(record, term))
                last = record.id
        time.sleep(0.1)


def event_line(record: ReceivedEvent, term: Terminal) -> str:
    clock = datetime.fromtimestamp(record.received_at).strftime("%H:%M:%S")
    colour = {"accepted": term.green, "dropped": term.yellow}.get(record.outcome, term.red)
    outcome = colour(f"{record.outcome:<8}")
    name = record.name or "?"
    where = f"{record.domain}{record.pathname}" if record.pathname else (record.url or "")
    parts = [f"{clock}  {outcome} {record.status}  {name:<12} {where}"]
    if record.props:
        parts.append("props " + ", ".join(f"{k}={v}" for k, v in record.props.items()))
    if record.revenue:
        parts.append(f"revenue {record.revenue['amount']} {record.revenue['currency']}")
    if record.query_params:
        parts.append(" ".join(f"{k}={v}" for k, v in record.query_params.items()))
    if record.referrer and not record.referrer_ignored:
        parts.append(f"from {urlsplit(record.referrer).hostname or record.referrer}")
    if record.outcome != "rejected":
        parts.append(f"ip {record.client_ip}")
    if record.drop_reason:
        detail = record.drop_reason
        if record.drop_reason == "bot" and record.agent_name:
            detail += f": {record.agent_name} ({record.agent_kind})"
        parts.append(term.yellow(f"[{detail}]"))
    if record.errors:
        errors = "; ".join(f"{k}: {', '.join(v)}" for k, v in record.errors.items())
        parts.append(term.red(f"[{errors}]"))
    return f"  {term.dot} ".join(parts)
