"""The command line: ``python -m plausible_wsgi`` and the ``plausible-wsgi`` script.

Commands:

``demo``
    The whole path on loopback: a local Plausible receiver, the example shop under a
    real WSGI server (werkzeug's, threaded) wrapped in
    :class:`~plausible_wsgi.PlausibleMiddleware`, simulated traffic through it (people,
    goals with props and revenue, AI agents and crawlers, an excluded path), and a
    table of what was expected against what the receiver got. Exit status 0 when
    everything expected arrived.
``serve``
    The receiver alone, in the foreground: one line per event as it arrives, and the
    live inspector page at ``/``.
``send``
    One event to any endpoint (Plausible Cloud by default), checked by the package's
    own validation, sent the way the collector sends it; prints the answer and what
    it means.

Exit status: ``0`` success (event accepted, demo complete), ``1`` failure (event
dropped or rejected, server unreachable, demo incomplete), ``2`` usage errors,
``130`` interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import ipaddress
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import typing as t
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import __version__
from ._demo import ShopApp
from .agents import classify_user_agent
from .collector import PlausibleCollector, _check_domain, _check_endpoint
from .errors import ConfigurationError, InvalidEventError
from .events import EventKind, Revenue, encode_event, make_event
from .middleware import DEFAULT_BOT_USER_AGENT, PlausibleMiddleware
from .receiver import PlausibleReceiver, ReceivedEvent
from .relay import add_relay_command
from .resilience import AttemptError
from .transport import Outcome, classify

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["build_parser", "main"]

_logger = logging.getLogger(__name__)

#: The site the demo's collector records on (and the only site its receiver knows).
DEMO_DOMAIN = "example.com"
#: Sent by ``send`` when no ``--user-agent`` is given: an ordinary desktop browser, so
#: that Plausible's bot filter does not drop the test event.
BROWSER_USER_AGENT = DEFAULT_BOT_USER_AGENT
CLOUD_ENDPOINT = "https://plausible.io"

_EXIT_OK, _EXIT_FAILED, _EXIT_USAGE, _EXIT_INTERRUPTED = 0, 1, 2, 130


# -- terminal output -----------------------------------------------------------------


class _Terminal:
    """Line output with ANSI colour only on a terminal, and ASCII marks when needed."""

    def __init__(self, out: t.TextIO, err: t.TextIO) -> None:
        self.out = out
        self.err = err
        self.color = (
            _is_tty(out) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        )
        fancy = _can_encode(out, "✓✗→·")
        self.ok = "✓" if fancy else "OK"
        self.bad = "✗" if fancy else "!!"
        self.arrow = "→" if fancy else "->"
        self.dot = "·" if fancy else "-"

    def print(self, text: str = "") -> None:
        try:
            print(text, file=self.out, flush=True)
        except UnicodeEncodeError:  # URLs, props or marks the terminal cannot show
            encoding = getattr(self.out, "encoding", None) or "ascii"
            print(text.encode(encoding, "replace").decode(encoding), file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(f"plausible-wsgi: error: {text}", file=self.err, flush=True)

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def green(self, text: str) -> str:
        return self.paint(text, "32")

    def yellow(self, text: str) -> str:
        return self.paint(text, "33")

    def red(self, text: str) -> str:
        return self.paint(text, "31")

    def mark(self, ok: bool) -> str:
        return self.green(self.ok) if ok else self.red(self.bad)


def _is_tty(stream: t.TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _can_encode(stream: t.TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _configure_logging(verbose: bool) -> None:
    """Library warnings (a rejected event, a collector error) go to stderr."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose:
        logging.getLogger("plausible_wsgi").setLevel(logging.DEBUG)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM stop the foreground commands as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# -- arguments -----------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0 = any free port), got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("seconds must be > 0")
    return value


_HELP = argparse.RawDescriptionHelpFormatter


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every command (``prog`` names the program in help)."""
    parser = argparse.ArgumentParser(
        prog=prog or "plausible-wsgi",
        formatter_class=_HELP,
        description="Server-side Plausible Analytics for WSGI apps: try it, test it, debug it.",
        epilog=(
            "Start with:  %(prog)s demo\n"
            "Help on a command:  %(prog)s COMMAND --help\n\n"
            "Exit status: 0 success, 1 failure (event not counted, demo incomplete),\n"
            "2 usage error, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the library's debug messages to stderr"
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="receiver + example app + traffic, end to end on loopback",
        formatter_class=_HELP,
        description=(
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
        ),
        epilog="Exit status 0 when every expected event arrived, 1 otherwise.",
    )
    demo.add_argument(
        "--port",
        type=_port,
        default=0,
        help="receiver port (default: 0, any free port)",
    )
    demo.add_argument(
        "--app-port", type=_port, default=0, help="example app port (default: 0, any free port)"
    )
    demo.add_argument(
        "--duration",
        type=_seconds,
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
    demo.set_defaults(handler=_cmd_demo)

    serve = commands.add_parser(
        "serve",
        help="run the local Plausible receiver, logging each event",
        formatter_class=_HELP,
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
        "--port", type=_port, default=8765, help="port (default: %(default)s; 0 = any free port)"
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
    serve.set_defaults(handler=_cmd_serve)

    send = commands.add_parser(
        "send",
        help="send one event to an endpoint and explain the answer",
        formatter_class=_HELP,
        description=(
            "Send one event, checked by the package's own validation and sent the way\n"
            "the collector sends it (JSON body, the visitor's User-Agent and\n"
            "X-Forwarded-For), then print the status, the body and what they mean:\n"
            "accepted, accepted but dropped (with the likely reasons), or rejected\n"
            "(with the field errors)."
        ),
        epilog=(
            "Examples:\n"
            "  %(prog)s --domain example.com\n"
            '  %(prog)s --domain example.com --name Signup --props \'{"plan": "pro"}\'\n'
            "  %(prog)s --domain example.com --name Purchase --revenue USD:9.99 \\\n"
            "      --endpoint http://127.0.0.1:8765 --ip 203.0.113.7\n\n"
            "Exit status: 0 accepted, 1 dropped, rejected or unreachable, 2 usage error."
        ),
    )
    send.add_argument("--domain", required=True, help="the site as registered in Plausible")
    send.add_argument("--name", default="pageview", help="event name (default: %(default)s)")
    send.add_argument("--url", help="page URL (default: https://DOMAIN/)")
    send.add_argument(
        "--endpoint",
        default=CLOUD_ENDPOINT,
        help="base URL of the Plausible instance, without /api/event (default: %(default)s)",
    )
    send.add_argument("--referrer", help="referrer URL")
    send.add_argument(
        "--props", metavar="JSON", help='custom props, a JSON object: \'{"plan": "pro"}\''
    )
    send.add_argument(
        "--revenue", metavar="CUR:AMOUNT", help="revenue of a custom event, e.g. USD:9.99"
    )
    send.add_argument(
        "--non-interactive",
        action="store_true",
        help="send interactive: false (the event does not affect the bounce rate)",
    )
    send.add_argument(
        "--user-agent",
        metavar="UA",
        help="the visitor's User-Agent (default: a desktop Chrome; a bot's is dropped)",
    )
    send.add_argument("--ip", help="the visitor's IP, sent as X-Forwarded-For (default: none)")
    send.add_argument(
        "--timeout", type=_positive_seconds, default=10.0, help="seconds (default: %(default)s)"
    )
    send.add_argument("--ca-bundle", metavar="PATH", help="CA bundle for a private CA")
    send.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the client-side checks and send the fields as given "
        "(to see what the server says about them)",
    )
    send.set_defaults(handler=_cmd_send)
    add_relay_command(commands)  # the relay's own module holds its options and logic
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run a command; return the exit status (``--help`` and usage errors included)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return _EXIT_USAGE
    _configure_logging(args.verbose)
    term = _Terminal(sys.stdout, sys.stderr)
    handler: t.Callable[[argparse.Namespace, _Terminal], int] = args.handler
    with _sigterm_as_interrupt():
        try:
            return handler(args, term)
        except KeyboardInterrupt:
            term.print("\ninterrupted")
            return _EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, and keep the interpreter
            # from complaining when it flushes stdout at exit.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return _EXIT_FAILED


# -- send ----------------------------------------------------------------------------


class _UsageError(Exception):
    pass


def _parse_props(text: str | None, *, strict: bool) -> object:
    if text is None:
        return None
    try:
        props = json.loads(text)
    except ValueError as exc:
        raise _UsageError(f"--props is not valid JSON: {exc}") from None
    if strict and not isinstance(props, dict):
        raise _UsageError(f'--props must be a JSON object such as {{"plan": "pro"}}, got {text!r}')
    return props


def _parse_revenue(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    currency, sep, amount = text.partition(":")
    if not sep or not currency.strip() or not amount.strip():
        raise _UsageError(f"--revenue is CURRENCY:AMOUNT, e.g. USD:9.99, got {text!r}")
    return currency.strip(), amount.strip()


def _build_body(args: argparse.Namespace, user_agent: str) -> tuple[str, bytes]:
    """The endpoint and the JSON body; raises for input the user must fix."""
    try:
        endpoint = _check_endpoint(args.endpoint)
    except ConfigurationError as exc:
        raise _UsageError(f"--endpoint: {exc}") from None
    url = args.url if args.url is not None else f"https://{args.domain.strip()}/"
    revenue = _parse_revenue(args.revenue)
    if args.no_validate:
        props = _parse_props(args.props, strict=False)
        body: dict[str, object] = {"domain": args.domain, "name": args.name, "url": url}
        if args.referrer is not None:
            body["referrer"] = args.referrer
        if props is not None:
            body["props"] = props
        if revenue is not None:
            body["revenue"] = {"currency": revenue[0], "amount": revenue[1]}
        if args.non_interactive:
            body["interactive"] = False
        return endpoint, json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        domain = _check_domain(args.domain)
    except ConfigurationError as exc:
        raise _UsageError(f"--domain: {exc}") from None
    if args.ip is not None:
        try:
            ipaddress.ip_address(args.ip)
        except ValueError:
            raise _UsageError(f"--ip is not an IP address: {args.ip!r}") from None
    props = _parse_props(args.props, strict=True)
    if args.name == "engagement":
        raise InvalidEventError(
            "name", "'engagement' needs the tracker's engagement fields; do not send it"
        )
    event = make_event(
        EventKind.PAGEVIEW if args.name == "pageview" else EventKind.CUSTOM,
        args.name,
        url=url,
        referrer=args.referrer,
        props=props,
        revenue=None if revenue is None else Revenue(*revenue),
        interactive=not args.non_interactive,
        user_agent=user_agent,
        client_ip=args.ip,
    )
    return endpoint, encode_event(event, domain)


def _cmd_send(args: argparse.Namespace, term: _Terminal) -> int:
    user_agent = BROWSER_USER_AGENT if args.user_agent is None else args.user_agent
    try:
        endpoint, body = _build_body(args, user_agent)
    except _UsageError as exc:
        term.error(str(exc))
        return _EXIT_USAGE
    except InvalidEventError as exc:
        term.error(f"invalid event: {exc} (--no-validate sends it anyway)")
        return _EXIT_USAGE

    target = endpoint + "/api/event"
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    if args.ip:
        headers["X-Forwarded-For"] = args.ip
    term.print(term.bold(f"POST {target}"))
    ua_note = term.dim("  (default: a desktop browser; --user-agent to change)")
    term.print(f"  User-Agent       {user_agent}{ua_note if args.user_agent is None else ''}")
    if args.ip:
        term.print(f"  X-Forwarded-For  {args.ip}")
    else:
        term.print(
            "  X-Forwarded-For  "
            + term.dim("(not sent: the server sees this machine's address; --ip to set)")
        )
    term.print(f"  body             {body.decode('utf-8', 'replace')}")
    term.print()

    session = requests.Session()
    # Like the collector: no proxies or netrc from the environment.
    session.trust_env = False
    try:
        response = session.post(
            target,
            data=body,
            headers=headers,
            timeout=args.timeout,
            allow_redirects=False,
            verify=args.ca_bundle or True,
        )
    except requests.exceptions.SSLError as exc:
        term.print(term.red(f"{term.bad} TLS failed: {_short_reason(exc)}"))
        term.print("  For a self-hosted instance with a private CA, pass --ca-bundle PATH.")
        return _EXIT_FAILED
    except requests.exceptions.ConnectTimeout:
        term.print(term.red(f"{term.bad} no connection to {target} within {args.timeout:g}s"))
        return _EXIT_FAILED
    except requests.exceptions.ReadTimeout:
        term.print(
            term.red(f"{term.bad} connected, but no answer within {args.timeout:g}s.")
            + " The server may have recorded the event anyway (sending it again could"
            " count it twice)."
        )
        return _EXIT_FAILED
    except requests.exceptions.ConnectionError as exc:
        term.print(term.red(f"{term.bad} cannot connect to {target}: {_short_reason(exc)}"))
        term.print("  Check --endpoint; is the server running and reachable from here?")
        return _EXIT_FAILED
    except requests.exceptions.RequestException as exc:
        term.print(term.red(f"{term.bad} the request failed: {_short_reason(exc)}"))
        return _EXIT_FAILED
    finally:
        session.close()
    return _explain(response, args, endpoint, user_agent, term)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _short_reason(exc: BaseException) -> str:
    """``Connection refused`` rather than urllib3's three nested reprs."""
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip()
    text = str(exc)
    return text if len(text) <= 200 else type(exc).__name__


def _explain(
    response: requests.Response,
    args: argparse.Namespace,
    endpoint: str,
    user_agent: str,
    term: _Terminal,
) -> int:
    status = response.status_code
    term.print(term.bold(f"HTTP {status} {response.reason or ''}".rstrip()))
    for name in ("x-plausible-dropped", "retry-after", "location", "content-type"):
        value = response.headers.get(name)
        if value is not None:
            term.print(f"  {name}: {value}")
    text = response.content.decode("utf-8", "replace")
    shown = text if len(text) <= 1000 else text[:1000] + " ..."
    term.print(f"  body: {shown if shown else term.dim('(empty)')}")
    term.print()

    if 300 <= status < 400:
        term.print(
            term.red(f"{term.bad} redirected")
            + f" to {response.headers.get('location', '?')}: Plausible does not redirect"
            " /api/event. Is --endpoint the base URL of the instance (https, no path)?"
        )
        return _EXIT_FAILED
    try:
        verdict = classify(status, response.headers, response.content, 3600.0)
    except AttemptError as exc:
        wait = f", Retry-After {exc.retry_after:g}s" if exc.retry_after is not None else ""
        term.print(
            term.yellow(f"{term.bad} temporary failure (HTTP {status}{wait})")
            + ": not recorded. The collector would retry it later; try again."
        )
        return _EXIT_FAILED
    if verdict.outcome is Outcome.SENT:
        what = "a page view" if args.name == "pageview" else f"the custom event {args.name!r}"
        term.print(term.green(f"{term.ok} accepted: Plausible will count it") + f" ({what}).")
        if status != 202:
            term.print(
                f"  Note: Plausible answers 202; HTTP {status} suggests {endpoint} "
                "is not a Plausible instance."
            )
        return _EXIT_OK
    if verdict.outcome is Outcome.SERVER_DROPPED:
        term.print(
            term.yellow(f"{term.bad} accepted but DROPPED")
            + f" (x-plausible-dropped: {verdict.dropped}): the server took it but will"
            " not count it."
        )
        term.print("  Likely reasons:")
        for reason in _drop_reasons(args, user_agent):
            term.print(f"  - {reason}")
        return _EXIT_FAILED
    term.print(
        term.red(f"{term.bad} rejected (HTTP {status})") + ": sending it again will not help."
    )
    errors = _field_errors(response.content)
    if errors:
        term.print("  Field errors:")
        for field_name, messages in errors:
            term.print(f"  - {field_name}: {'; '.join(messages)}")
    elif status == 404:
        term.print(f"  {endpoint} has no /api/event: is it the base URL of a Plausible instance?")
    elif status == 413:
        term.print("  The body is too large for the server.")
    return _EXIT_FAILED


def _field_errors(body: bytes) -> list[tuple[str, list[str]]]:
    try:
        decoded = json.loads(body)
    except ValueError:
        return []
    errors = decoded.get("errors") if isinstance(decoded, dict) else None
    if not isinstance(errors, dict):
        return []
    out = []
    for name, messages in errors.items():
        if isinstance(messages, list):
            out.append((str(name), [str(message) for message in messages]))
        else:
            out.append((str(name), [str(messages)]))
    return out


def _drop_reasons(args: argparse.Namespace, user_agent: str) -> list[str]:
    """What makes Plausible answer 202 and drop the event, most likely first."""
    reasons = []
    agent = classify_user_agent(user_agent)
    if agent is not None:
        reasons.append(
            f"the User-Agent is a bot's ({agent.agent}, {agent.kind}): Plausible drops "
            "bot traffic (send a browser's User-Agent, or leave --user-agent out)"
        )
    reasons.append(
        f"the site {args.domain.strip()!r} is not registered on this Plausible instance "
        "(check the spelling, 'www.' and subdomains)"
    )
    if args.ip is None:
        reasons.append(
            "no X-Forwarded-For (--ip): the server takes this machine's address as the "
            "visitor's, and drops server and datacenter IPs"
        )
    else:
        try:
            address = ipaddress.ip_address(args.ip)
        except ValueError:
            reasons.append(f"the IP {args.ip!r} is not an IP address")
        else:
            if not address.is_global:
                reasons.append(
                    f"the IP {args.ip} is private, loopback or reserved, not a visitor's "
                    "public address"
                )
            else:
                reasons.append(f"the IP {args.ip} may be in a datacenter range Plausible drops")
    if args.referrer:
        reasons.append("the referrer's host may be on Plausible's referrer spam list")
    reasons.append(
        "the site may be over its plan's limits (throttled), or its shields block this "
        "IP, country, page or hostname"
    )
    return reasons


# -- serve ---------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, term: _Terminal) -> int:
    receiver = PlausibleReceiver(
        host=args.host,
        port=args.port,
        domains=args.domain,
        drop_private_ips=args.drop_private_ips,
    )
    try:
        receiver.start()
    except OSError as exc:
        hint = " (try --port 0 for any free port)" if args.port else ""
        term.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return _EXIT_FAILED
    try:
        term.print(term.bold("plausible-wsgi receiver: a local Plausible Events API"))
        term.print(f"  endpoint   {receiver.url}   (PlausibleCollector(..., endpoint=this))")
        term.print(f"  events     POST {receiver.url}/api/event")
        term.print(f"  inspector  {receiver.url}/")
        sites = ", ".join(args.domain) if args.domain else "any domain"
        term.print(f"  sites      {sites}")
        term.print(
            "Waiting for events; Ctrl-C to stop.",
        )
        _follow_events(receiver, term)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    records = receiver.all
    counts = {
        outcome: sum(r.outcome == outcome for r in records)
        for outcome in ("accepted", "dropped", "rejected")
    }
    term.print(
        f"\nStopped: {counts['accepted']} accepted, {counts['dropped']} dropped, "
        f"{counts['rejected']} rejected."
    )
    return _EXIT_OK


def _follow_events(receiver: PlausibleReceiver, term: _Terminal, after: int = 0) -> None:
    """Print every event as it arrives, until interrupted."""
    last = after
    while True:
        for record in receiver.all:
            if record.id > last:
                term.print(_event_line(record, term))
                last = record.id
        time.sleep(0.1)


def _event_line(record: ReceivedEvent, term: _Terminal) -> str:
    clock = datetime.fromtimestamp(record.received_at).strftime("%H:%M:%S")
    outcome = f"{record.outcome:<8}"
    if record.outcome == "accepted":
        outcome = term.green(outcome)
    elif record.outcome == "dropped":
        outcome = term.yellow(outcome)
    else:
        outcome = term.red(outcome)
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


# -- demo: the servers ---------------------------------------------------------------


#: Where :class:`_Finished` leaves the response's ``close`` for :class:`_QuietHandler`.
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


class _Finished:
    """Counts requests whose response the server has closed.

    The middleware records an event when the server closes the response, which may
    be a moment after the client has read the last byte; waiting for this count
    means every event of the traffic sent so far is queued in the collector.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self._changed = threading.Condition()
        self._count = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            self._done()
            raise
        response = _Closing(iterable, self._done)
        environ[_CLOSE_KEY] = response.close
        return response

    def _done(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= n, timeout)


class _AppServer:
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

_EXCLUDE_PATHS = ("/static/", "/healthz")
_EXAMPLE_MODULE = "plausible_wsgi_demo_flask_example"


@dataclass
class _DemoApp:
    wsgi: WSGIApplication
    middleware: PlausibleMiddleware | None
    description: str


class _Unavailable(Exception):
    pass


def _flask_example(collector: PlausibleCollector) -> _DemoApp:
    """``examples/flask_app.py`` of the clone this package runs from, loaded by path."""
    root = Path(__file__).resolve().parent.parent
    path = root / "examples" / "flask_app.py"
    if not (path.is_file() and (root / "setup.py").is_file()):
        raise _Unavailable("examples/flask_app.py is not here (an installed package, not a clone)")
    if importlib.util.find_spec("flask") is None:
        raise _Unavailable("Flask is not installed (pip install 'plausible-wsgi[flask]')")
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
                "PLAUSIBLE_EXCLUDE_PATHS": list(_EXCLUDE_PATHS),
            }
        )
    except Exception as exc:
        raise _Unavailable(
            f"examples/flask_app.py could not be used ({type(exc).__name__}: {exc})"
        ) from exc
    middleware = getattr(app, "wsgi_app", None)
    return _DemoApp(
        t.cast("WSGIApplication", app),
        middleware if isinstance(middleware, PlausibleMiddleware) else None,
        "the Flask example shop (examples/flask_app.py)",
    )


def _builtin_app(collector: PlausibleCollector) -> _DemoApp:
    middleware = PlausibleMiddleware(
        ShopApp(collector),
        collector,
        trusted_proxies=1,
        bots="event",
        exclude_paths=_EXCLUDE_PATHS,
    )
    return _DemoApp(middleware, middleware, "the built-in example shop (plausible_wsgi._demo)")


# -- demo: the traffic ---------------------------------------------------------------


@dataclass(frozen=True)
class _Visitor:
    label: str
    #: "Firefox on Windows", or the bot's name.
    kind: str
    user_agent: str
    ip: str


@dataclass(frozen=True)
class _Step:
    visitor: _Visitor
    method: str
    path: str
    #: The status the app should answer.
    status: int
    #: What it should record: a key of the summary (see ``_key``), or None.
    expect: str | None
    form: dict[str, str] | None = None
    referrer: str | None = None


_FIREFOX_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
_SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
_CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
_CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36"
)
_EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"
)
_BROWSERS = (
    ("Firefox on Windows", _FIREFOX_WINDOWS),
    ("Safari on iPhone", _SAFARI_IPHONE),
    ("Chrome on macOS", _CHROME_MAC),
    ("Chrome on Android", _CHROME_ANDROID),
    ("Edge on Windows", _EDGE_WINDOWS),
)

# Documentation addresses (RFC 5737): they look public and belong to nobody.
_ALICE = _Visitor("visitor 1", "Firefox on Windows", _FIREFOX_WINDOWS, "203.0.113.10")
_BOB = _Visitor("visitor 2", "Safari on iPhone", _SAFARI_IPHONE, "198.51.100.23")
_CAROL = _Visitor("visitor 3", "Chrome on macOS", _CHROME_MAC, "192.0.2.44")
_MONITOR = _Visitor(
    "monitor",
    "UptimeRobot",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "192.0.2.200",
)
_BOTS = (
    _Visitor(
        "ChatGPT-User",
        "AI assistant",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; "
        "ChatGPT-User/1.0; +https://openai.com/bot",
        "192.0.2.101",
    ),
    _Visitor(
        "GPTBot",
        "AI training crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; "
        "GPTBot/1.2; +https://openai.com/gptbot",
        "192.0.2.102",
    ),
    _Visitor(
        "PerplexityBot",
        "AI search crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
        "PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "192.0.2.103",
    ),
    _Visitor(
        "Googlebot",
        "search crawler",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "192.0.2.104",
    ),
)


def _bot_key(visitor: _Visitor) -> str:
    agent = classify_user_agent(visitor.user_agent)
    if agent is None:  # pragma: no cover - the table above is of bots
        raise RuntimeError(f"{visitor.label} is not classified as a bot")
    return f"bot:{agent.agent}:{agent.kind}:{agent.operator}"


def _script() -> list[_Step]:
    """The scripted visits and what each should record."""
    chatgpt_user, gptbot, perplexity, googlebot = _BOTS
    return [
        _Step(_ALICE, "GET", "/", 200, "pageview", referrer="https://www.google.com/"),
        _Step(_ALICE, "GET", "/pricing", 200, "pageview", referrer=f"http://{DEMO_DOMAIN}/"),
        _Step(_ALICE, "POST", "/signup", 303, "Signup", form={"plan": "pro"}),
        _Step(_ALICE, "GET", "/welcome?plan=pro", 200, "pageview"),
        _Step(_BOB, "GET", "/?utm_source=newsletter&utm_campaign=spring", 200, "pageview"),
        _Step(_BOB, "GET", "/items/1", 200, "pageview"),
        _Step(_BOB, "POST", "/checkout", 200, "Purchase", form={"item": "1", "quantity": "2"}),
        _Step(_CAROL, "GET", "/about", 200, "pageview", referrer="https://news.ycombinator.com/"),
        _Step(_CAROL, "GET", "/static/style.css", 200, "excluded"),
        _Step(_CAROL, "GET", "/api/items", 200, "not_page"),
        _Step(_MONITOR, "GET", "/healthz", 200, "excluded"),
        _Step(chatgpt_user, "GET", "/pricing", 200, _bot_key(chatgpt_user)),
        _Step(gptbot, "GET", "/robots.txt", 404, _bot_key(gptbot)),
        _Step(perplexity, "GET", "/about", 200, _bot_key(perplexity)),
        _Step(googlebot, "GET", "/", 200, _bot_key(googlebot)),
    ]


_LIGHT_PAGES = ("/", "/pricing", "/about", "/items/1", "/items/2")
_LIGHT_REFERRERS = (
    None,
    None,
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
)


def _light_step(rng: random.Random) -> _Step:
    number = rng.randrange(20)
    kind, user_agent = _BROWSERS[number % len(_BROWSERS)]
    visitor = _Visitor(f"visitor {4 + number}", kind, user_agent, f"203.0.113.{100 + number}")
    return _Step(
        visitor,
        "GET",
        rng.choice(_LIGHT_PAGES),
        200,
        "pageview",
        referrer=rng.choice(_LIGHT_REFERRERS),
    )


_EXPECT_LABELS = {
    "pageview": "page view",
    "Signup": "Signup goal",
    "Purchase": "Purchase goal",
    "excluded": "excluded path",
    "not_page": "not a page",
}


def _request(port: int, step: _Step) -> int:
    """Send one step to the app as the visitor, behind a proxy; the status or 0."""
    headers = {
        "Host": DEMO_DOMAIN,
        "User-Agent": step.visitor.user_agent,
        "X-Forwarded-For": step.visitor.ip,
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    }
    body = None
    if step.form is not None:
        body = urlencode(step.form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if step.referrer:
        headers["Referer"] = step.referrer
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(step.method, step.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        _logger.warning("demo: %s %s failed: %s", step.method, step.path, exc)
        return 0
    finally:
        conn.close()


class _Traffic:
    """Sends steps, prints them, and keeps the expected counts."""

    def __init__(self, port: int, term: _Terminal) -> None:
        self.port = port
        self.term = term
        self.expected: dict[str, int] = {}
        self.visitors: set[tuple[str, str]] = set()
        self.answered = 0
        self.wrong_status = 0

    def run(self, step: _Step) -> None:
        status = _request(self.port, step)
        if status:
            self.answered += 1
        if step.expect is not None:
            self.expected[step.expect] = self.expected.get(step.expect, 0) + 1
        if step.expect == "pageview":
            self.visitors.add((step.visitor.user_agent, step.visitor.ip))
        ok = status == step.status
        if not ok:
            self.wrong_status += 1
        term = self.term
        visitor = step.visitor
        if step.expect is None:
            what = "nothing"
        elif step.expect.startswith("bot:"):
            what = "Bot Visit event"
        else:
            what = _EXPECT_LABELS.get(step.expect, step.expect)
        target = step.path + (" " + urlencode(step.form) if step.form else "")
        shown_status = str(status) if status else "ERR"
        status_text = shown_status if ok else term.red(f"{shown_status} (expected {step.status})")
        term.print(
            f"  {visitor.label:<13} {visitor.kind:<19} {visitor.ip:<14} "
            f"{step.method:<4} {target:<44} {status_text}  {term.dim(term.arrow + ' ' + what)}"
        )


# -- demo: the summary ---------------------------------------------------------------


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
    traffic: _Traffic, receiver: PlausibleReceiver, middleware: PlausibleMiddleware | None
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
    for bot in _BOTS:
        key = _bot_key(bot)
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


def _print_table(rows: list[_Row], term: _Terminal) -> None:
    width = max(len(row.label) for row in rows)
    term.print(term.bold(f"  {'':{len(term.ok)}} {'':{width}}  {'expected':>8}  {'received':>8}"))
    for row in rows:
        received = f"{row.received:>8}"
        term.print(
            f"  {term.mark(row.ok)} {row.label:<{width}}  {row.expected:>8}  "
            f"{received if row.ok else term.red(received)}"
        )


# -- demo: the command ---------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, term: _Terminal) -> int:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        receiver = PlausibleReceiver(host="127.0.0.1", port=args.port, domains=[DEMO_DOMAIN])
        try:
            receiver.start()
        except OSError as exc:
            term.error(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
            return _EXIT_FAILED
        stack.callback(receiver.stop)
        collector = PlausibleCollector(
            DEMO_DOMAIN, endpoint=receiver.url, flush_interval=0.5, shutdown_timeout=5.0
        )
        stack.callback(collector.close)

        note = None
        demo_app: _DemoApp | None = None
        if args.app in ("auto", "flask"):
            try:
                demo_app = _flask_example(collector)
            except _Unavailable as exc:
                if args.app == "flask":
                    term.error(str(exc))
                    return _EXIT_FAILED
                note = str(exc)
        if demo_app is None:
            demo_app = _builtin_app(collector)
        if demo_app.middleware is not None:
            stack.callback(demo_app.middleware.close)
        finished = _Finished(demo_app.wsgi)
        try:
            server = _AppServer(finished, "127.0.0.1", args.app_port)
        except OSError as exc:
            term.error(f"cannot listen on 127.0.0.1:{args.app_port}: {exc.strerror or exc}")
            return _EXIT_FAILED
        stack.callback(server.stop)

        term.print(term.bold("plausible-wsgi demo: server-side Plausible Analytics, end to end"))
        term.print(f"  receiver   {receiver.url}  a local Plausible Events API, site {DEMO_DOMAIN}")
        term.print(f"  app        {demo_app.description} on {server.url}/")
        if note:
            term.print(term.dim(f"             (not the Flask example: {note})"))
        term.print(
            '  middleware PlausibleMiddleware(trusted_proxies=1, bots="event", '
            f"exclude_paths={json.dumps(_EXCLUDE_PATHS)})"
        )
        term.print(f'  collector  PlausibleCollector("{DEMO_DOMAIN}", endpoint="{receiver.url}")')
        term.print()
        term.print(
            term.bold("Traffic")
            + ": simulated visitors behind one proxy"
            + f" (X-Forwarded-For: their IP, Host: {DEMO_DOMAIN})"
        )
        traffic = _Traffic(server.port, term)
        for step in _script():
            traffic.run(step)
        if args.duration > 0:
            term.print(
                term.bold("Light traffic") + f" for {args.duration:g}s (Ctrl-C ends it early)"
            )
            rng = random.Random(20240601)
            deadline = time.monotonic() + args.duration
            try:
                while time.monotonic() < deadline:
                    traffic.run(_light_step(rng))
                    time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
            except KeyboardInterrupt:
                term.print("  (stopped)")

        term.print()
        settled = finished.wait(traffic.answered, 10.0) and collector.flush(10.0)
        stats = collector.stats()
        dropped = sum(stats.dropped.values())
        term.print(
            term.bold("Delivery")
            + f": {stats.sent} events delivered by the collector ({dropped} dropped, "
            f"{stats.failed} failed, {stats.retried} retried)"
            + ("" if settled else term.red(" - not everything was delivered within 10s"))
        )
        term.print()
        rows = _summary_rows(traffic, receiver, demo_app.middleware)
        term.print(term.bold("Summary"))
        _print_table(rows, term)
        term.print()
        ok = all(row.ok for row in rows) and traffic.wrong_status == 0 and settled
        if ok:
            term.print(
                term.green(f"{term.ok} Every expected event arrived")
                + f" ({len(receiver.events)} accepted) in {time.monotonic() - started:.1f}s."
            )
        else:
            problems = []
            differ = sum(not row.ok for row in rows)
            if differ:
                problems.append(f"{differ} of {len(rows)} checks differ")
            if traffic.wrong_status:
                problems.append(f"{traffic.wrong_status} requests answered an unexpected status")
            if not settled:
                problems.append("delivery did not finish within 10s")
            term.print(term.red(f"{term.bad} Not as expected: ") + ", ".join(problems) + ".")
        term.print(f"Inspector: {receiver.url}/")
        if args.keep_running:
            term.print(
                f"\nThe receiver and the app keep running: open the inspector at {receiver.url}/"
                f"\nand browse the shop at {server.url}/ - your visits are listed below."
                "\nCtrl-C to stop."
            )
            last = max((record.id for record in receiver.all), default=0)
            try:
                _follow_events(receiver, term, after=last)
            except KeyboardInterrupt:
                term.print("\nStopping.")
        else:
            term.print(term.dim("(--keep-running keeps it up to look at in a browser)"))
    return _EXIT_OK if ok else _EXIT_FAILED
