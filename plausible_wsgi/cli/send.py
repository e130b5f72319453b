"""``send``: one event to any endpoint, sent by the collector's own transport, explained.

The event goes through :class:`~plausible_wsgi.delivery.transport.HttpTransport`, as the
collector sends it: the same connection handling, TLS verification and outbound
proxy (``HTTPS_PROXY``/``NO_PROXY``), so what ``send`` reports is what the collector
would meet from this machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import json

from ..agents import classify_user_agent
from ..checks import check_domain, check_endpoint
from ..delivery.failure import AttemptError, FailureKind
from ..delivery.transport import HttpTransport, Outcome, Response
from ..errors import ConfigurationError, InvalidEventError
from ..events import EventKind, Revenue, encode_event, make_event
from ..middleware import DEFAULT_BOT_USER_AGENT
from .args import EXIT_FAILED, EXIT_OK, EXIT_USAGE, HELP, UsageError, add_connection_arguments
from .terminal import Terminal

__all__ = ["BROWSER_USER_AGENT", "CLOUD_ENDPOINT", "add_parser", "drop_reasons"]

#: Sent when no ``--user-agent`` is given: an ordinary desktop browser, so that
#: Plausible's bot filter does not drop the test event.
BROWSER_USER_AGENT = DEFAULT_BOT_USER_AGENT
CLOUD_ENDPOINT = "https://plausible.io"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser(
        "send",
        help="send one event to an endpoint and explain the answer",
        formatter_class=HELP,
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
    add_connection_arguments(send)
    send.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the client-side checks and send the fields as given "
        "(to see what the server says about them)",
    )
    send.set_defaults(handler=run)


def _parse_props(text: str | None, *, strict: bool) -> object:
    if text is None:
        return None
    try:
        props = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--props is not valid JSON: {exc}") from None
    if strict and not isinstance(props, dict):
        raise UsageError(f'--props must be a JSON object such as {{"plan": "pro"}}, got {text!r}')
    return props


def _parse_revenue(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    currency, sep, amount = text.partition(":")
    if not sep or not currency.strip() or not amount.strip():
        raise UsageError(f"--revenue is CURRENCY:AMOUNT, e.g. USD:9.99, got {text!r}")
    return currency.strip(), amount.strip()


def _raw_body(args: argparse.Namespace, url: str) -> bytes:
    """``--no-validate``: the fields as given, to see what the server says of them."""
    props = _parse_props(args.props, strict=False)
    revenue = _parse_revenue(args.revenue)
    body: dict[str, object] = {"domain": args.domain, "name": args.name, "url": url}
    if args.referrer is not None:
        body["referrer"] = args.referrer
    if props is not None:
        body["props"] = props
    if revenue is not None:
        body["revenue"] = {"currency": revenue[0], "amount": revenue[1]}
    if args.non_interactive:
        body["interactive"] = False
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _build_body(args: argparse.Namespace, user_agent: str) -> tuple[str, bytes]:
    """The endpoint and the JSON body; raises for input the user must fix."""
    try:
        endpoint = check_endpoint(args.endpoint)
    except ConfigurationError as exc:
        raise UsageError(f"--endpoint: {exc}") from None
    url = args.url if args.url is not None else f"https://{args.domain.strip()}/"
    if args.no_validate:
        return endpoint, _raw_body(args, url)
    try:
        domain = check_domain(args.domain)
    except ConfigurationError as exc:
        raise UsageError(f"--domain: {exc}") from None
    if args.ip is not None:
        try:
            ipaddress.ip_address(args.ip)
        except ValueError:
            raise UsageError(f"--ip is not an IP address: {args.ip!r}") from None
    props = _parse_props(args.props, strict=True)
    revenue = _parse_revenue(args.revenue)
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


def run(args: argparse.Namespace, term: Terminal) -> int:
    user_agent = BROWSER_USER_AGENT if args.user_agent is None else args.user_agent
    try:
        endpoint, body = _build_body(args, user_agent)
    except UsageError as exc:
        term.error(str(exc))
        return EXIT_USAGE
    except InvalidEventError as exc:
        term.error(f"invalid event: {exc} (--no-validate sends it anyway)")
        return EXIT_USAGE

    transport = HttpTransport(
        endpoint, timeout=args.timeout, ca_bundle=args.ca_bundle, max_retry_after=3600.0
    )
    _print_request(args, transport.url, user_agent, body, term)
    try:
        response = transport.send(body, user_agent, args.ip)
    except AttemptError as exc:
        return _explain_failure(exc, args, transport.url, term)
    finally:
        transport.close()
    return _explain(response, args, endpoint, user_agent, term)


def _print_request(
    args: argparse.Namespace, target: str, user_agent: str, body: bytes, term: Terminal
) -> None:
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


def _short_reason(exc: BaseException) -> str:
    """``Connection refused`` rather than an exception's class name, when known."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if cause is not None:
        return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return str(exc)


def _explain_failure(
    exc: AttemptError, args: argparse.Namespace, target: str, term: Terminal
) -> int:
    kind, status, bad = exc.kind, exc.status, term.bad
    if status is not None and 300 <= status < 400:
        term.print(
            term.red(f"{bad} redirected (HTTP {status})") + ": Plausible does not redirect"
            " /api/event. Is --endpoint the base URL of the instance (https, no path)?"
        )
    elif status is not None:
        wait = f", Retry-After {exc.retry_after:g}s" if exc.retry_after is not None else ""
        term.print(term.bold(f"HTTP {status}"))
        if exc.retry_after is not None:
            term.print(f"  retry-after: {exc.retry_after:g}")
        term.print()
        term.print(
            term.yellow(f"{bad} temporary failure (HTTP {status}{wait})")
            + ": not recorded. The collector would retry it later; try again."
        )
    elif kind == FailureKind.READ_TIMEOUT:
        term.print(
            term.red(f"{bad} connected, but no answer within {args.timeout:g}s.")
            + " The server may have recorded the event anyway (sending it again could"
            " count it twice)."
        )
    elif kind == FailureKind.TLS:
        term.print(term.red(f"{bad} TLS failed: {_short_reason(exc)}"))
        term.print("  For a self-hosted instance with a private CA, pass --ca-bundle PATH.")
    else:
        term.print(term.red(f"{bad} cannot connect to {target}: {_short_reason(exc)}"))
        term.print("  Check --endpoint; is the server running and reachable from here?")
    return EXIT_FAILED


def _explain(
    response: Response, args: argparse.Namespace, endpoint: str, user_agent: str, term: Terminal
) -> int:
    status = response.status
    term.print(term.bold(f"HTTP {status}"))
    if response.dropped is not None:
        term.print(f"  x-plausible-dropped: {response.dropped}")
    text = response.body.decode("utf-8", "replace")
    shown = text if len(text) <= 1000 else text[:1000] + " ..."
    term.print(f"  body: {shown if shown else term.dim('(empty)')}")
    term.print()
    if response.outcome is Outcome.SENT:
        what = "a page view" if args.name == "pageview" else f"the custom event {args.name!r}"
        term.print(term.green(f"{term.ok} accepted: Plausible will count it") + f" ({what}).")
        if status != 202:
            term.print(
                f"  Note: Plausible answers 202; HTTP {status} suggests {endpoint} "
                "is not a Plausible instance."
            )
        return EXIT_OK
    if response.outcome is Outcome.SERVER_DROPPED:
        term.print(
            term.yellow(f"{term.bad} accepted but DROPPED")
            + f" (x-plausible-dropped: {response.dropped}): the server took it but will"
            " not count it."
        )
        term.print("  Likely reasons, the best supported first:")
        for evidence, reason in drop_reasons(args.domain, user_agent, args.ip, args.referrer):
            term.print(f"  - [{evidence}] {reason}")
        term.print(
            f"  The server's own answer: python -m plausible_wsgi doctor --domain "
            f"{args.domain.strip()} --endpoint {endpoint}"
        )
        return EXIT_FAILED
    return _explain_rejection(response, endpoint, term)


def _explain_rejection(response: Response, endpoint: str, term: Terminal) -> int:
    status = response.status
    term.print(
        term.red(f"{term.bad} rejected (HTTP {status})") + ": sending it again will not help."
    )
    errors = field_errors(response.body)
    if errors:
        term.print("  Field errors:")
        for field_name, messages in errors:
            term.print(f"  - {field_name}: {'; '.join(messages)}")
    elif status == 404:
        term.print(f"  {endpoint} has no /api/event: is it the base URL of a Plausible instance?")
    elif status == 413:
        term.print("  The body is too large for the server.")
    return EXIT_FAILED


def field_errors(body: bytes) -> list[tuple[str, list[str]]]:
    """The ``{"errors": {field: [message, ...]}}`` of a 400, as pairs."""
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


#: How much the request itself supports a reason, strongest first.
CERTAIN, LIKELY, POSSIBLE, UNLIKELY = "certain", "likely", "possible", "unlikely"
_RANK = {CERTAIN: 0, LIKELY: 1, POSSIBLE: 2, UNLIKELY: 3}


def drop_reasons(
    domain: str, user_agent: str, ip: str | None, referrer: str | None
) -> list[tuple[str, str]]:
    """Why Plausible may have answered 202 and dropped the event, as (evidence, reason),
    the best supported first.

    Only a bot User-Agent is visible in the request itself; an unknown site is the most
    common cause otherwise. A private IP is not dropped by Plausible (only the local
    receiver's ``--drop-private-ips`` does that), so it comes last.
    """
    reasons: list[tuple[str, str]] = []
    agent = classify_user_agent(user_agent)
    if agent is not None:
        reasons.append(
            (
                CERTAIN,
                f"the User-Agent is a bot's ({agent.agent}, {agent.kind}): Plausible drops "
                "bot traffic (send a browser's User-Agent, or leave --user-agent out)",
            )
        )
    reasons.append(
        (
            LIKELY if agent is None else POSSIBLE,
            f"the site {domain.strip()!r} is not registered on this Plausible instance "
            "(check the spelling, 'www.' and subdomains)",
        )
    )
    reasons.extend(_ip_reasons(ip))
    if referrer:
        reasons.append((POSSIBLE, "the referrer's host may be on Plausible's referrer spam list"))
    reasons.append(
        (
            POSSIBLE,
            "the site may be over its plan's limits (throttled), or its shields block this "
            "IP, country, page or hostname",
        )
    )
    return sorted(reasons, key=lambda pair: _RANK[pair[0]])


def _ip_reasons(ip: str | None) -> list[tuple[str, str]]:
    if ip is None:
        return [
            (
                POSSIBLE,
                "no X-Forwarded-For (--ip): the server takes this machine's address as the "
                "visitor's, and Plausible Cloud drops server and datacenter IPs",
            )
        ]
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return [(POSSIBLE, f"the IP {ip!r} is not an IP address")]
    if address.is_global:
        return [(POSSIBLE, f"the IP {ip} may be in a datacenter range Plausible drops")]
    return [
        (
            UNLIKELY,
            f"the IP {ip} is private, loopback or reserved: Plausible does not drop it for "
            "that (it cannot place it in a country), but a local receiver started with "
            "--drop-private-ips does",
        )
    ]
