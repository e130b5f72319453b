"""``doctor``: check a real setup end to end, one verdict per line.

1. The domain and endpoint pass the collector's own checks (a misspelt endpoint or a
   URL for a domain is named with the value probably meant).
2. The endpoint answers ``GET /api/health`` (Plausible's health route).
3. One test event is sent with ``X-Debug-Request: true``. Plausible's docs describe the
   header as making the server answer with the IP it used; the open-source server's
   code does not show it, so the echo is used when it comes and not required. The
   local receiver (``serve``) answers it with what it saw and each drop's reason.
4. Whether the site exists: an event answered ``x-plausible-dropped`` was not counted.
5. Whether the IP and User-Agent the server saw look like a visitor's.
6. The goals and props the app tracks (``--goal``/``--prop``): what Plausible needs
   before they show.

HTTP goes through :mod:`urllib.request` with the environment's proxies
(``HTTPS_PROXY``/``NO_PROXY``, as the collector's transport reads them; loopback is
never proxied), since the collector's transport sends no extra headers.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..agents import classify_user_agent
from ..checks import check_domain, check_endpoint
from ..collector import Tracker
from ..errors import ConfigurationError, InvalidEventError
from ..events import Event, EventKind, encode_event, make_event
from .args import EXIT_FAILED, EXIT_OK, HELP, add_connection_arguments
from .send import BROWSER_USER_AGENT, CLOUD_ENDPOINT, drop_reasons
from .terminal import Terminal

__all__ = ["TEST_EVENT", "add_parser", "run"]

#: The name of the test event: a custom event, shown only if a goal of that name exists.
TEST_EVENT = "plausible-wsgi doctor"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a real setup end to end: health, one debug event, the site, visitor data",
        formatter_class=HELP,
        description=(
            "Check a setup end to end: the domain and endpoint settings, the endpoint's\n"
            "/api/health, one test event sent with X-Debug-Request: true (a custom event\n"
            f"{TEST_EVENT!r}: it counts one visitor), whether the site exists, whether the\n"
            "IP and User-Agent look like a visitor's, and what the goals and props you\n"
            "track need in Plausible."
        ),
        epilog="Exit status: 0 every check passed, 1 a check failed, 2 usage error.",
    )
    doctor.add_argument("--domain", required=True, help="the site as configured in the app")
    doctor.add_argument(
        "--endpoint", default=CLOUD_ENDPOINT, help="as configured (default: %(default)s)"
    )
    doctor.add_argument(
        "--goal", action="append", default=[], metavar="NAME", help="a goal the app tracks"
    )
    doctor.add_argument(
        "--prop", action="append", default=[], metavar="KEY", help="a prop key the app sends"
    )
    doctor.add_argument("--ip", help="the visitor IP the app would send (X-Forwarded-For)")
    doctor.add_argument("--user-agent", metavar="UA", help="the User-Agent the app would send")
    add_connection_arguments(doctor)
    doctor.set_defaults(handler=run)


@dataclass
class _Report:
    term: Terminal
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.term.print(f"{self.term.mark(True)} {text}")

    def bad(self, text: str, *hints: str) -> None:
        self.failures += 1
        self.term.print(f"{self.term.mark(False)} {text}")
        for hint in hints:
            self.term.print(f"    {hint}")

    def warn(self, text: str, *hints: str) -> None:
        self.term.print(f"{self.term.yellow('!')} {text}")
        for hint in hints:
            self.term.print(f"    {hint}")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _fetch(
    url: str, args: argparse.Namespace, data: bytes | None = None, **headers: str
) -> _Answer:
    """One request with the environment's proxies (never for loopback); raises OSError."""
    host = urlsplit(url).hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler({} if loopback else None),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=args.ca_bundle)),
    ]
    request = urllib.request.Request(url, data=data, headers=headers)
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=args.timeout) as response:
            return _Answer(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return _Answer(exc.code, _lower(exc.headers), exc.read())


def _lower(headers: object) -> dict[str, str]:
    items = getattr(headers, "items", None)
    return {str(k).lower(): str(v) for k, v in items()} if items is not None else {}


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason or exc)


def run(args: argparse.Namespace, term: Terminal) -> int:
    report = _Report(term)
    term.print(term.bold(f"plausible-wsgi doctor: {args.domain} via {args.endpoint}"))
    try:
        domain = check_domain(args.domain)
        endpoint = check_endpoint(args.endpoint)
    except ConfigurationError as exc:
        report.bad(f"settings: {exc}")
        return EXIT_FAILED
    report.ok(f"settings: domain {domain!r}, endpoint {endpoint!r}")
    if _health(endpoint, args, report):
        seen = _debug_event(endpoint, domain, args, report)
        if seen is not None:
            _visitor(seen, args, report)
    _goals(args, report)
    term.print()
    if report.failures:
        term.print(term.red(f"{term.bad} {report.failures} check(s) failed."))
        return EXIT_FAILED
    term.print(term.green(f"{term.ok} Every check passed."))
    return EXIT_OK


def _health(endpoint: str, args: argparse.Namespace, report: _Report) -> bool:
    try:
        answer = _fetch(endpoint + "/api/health", args)
    except OSError as exc:
        report.bad(
            f"health: cannot reach {endpoint}: {_reason(exc)}",
            "Is the endpoint right, and reachable from this machine (proxy, firewall)?",
        )
        return False
    body = answer.json()
    if answer.status == 200 and isinstance(body, dict):
        parts = ", ".join(f"{key} {value}" for key, value in body.items())
        report.ok(f"health: {endpoint}/api/health answers 200 ({parts})")
        return True
    report.bad(
        f"health: {endpoint}/api/health answered HTTP {answer.status}, not Plausible's 200 JSON",
        "Is the endpoint the base URL of a Plausible instance?",
    )
    return answer.status < 500


def _debug_event(
    endpoint: str, domain: str, args: argparse.Namespace, report: _Report
) -> dict[str, object] | None:
    """Send the test event; what the server saw (echo, or what was sent) or None."""
    user_agent = BROWSER_USER_AGENT if args.user_agent is None else args.user_agent
    first = domain.split(",", 1)[0].split("/", 1)[0]
    event = make_event(EventKind.CUSTOM, TEST_EVENT, url=f"https://{first}/", user_agent=user_agent)
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    headers["X-Debug-Request"] = "true"
    if args.ip:
        # As the collector sends it (Plausible reads X-Plausible-IP first).
        headers["X-Forwarded-For"] = headers["X-Plausible-IP"] = args.ip
    try:
        answer = _fetch(endpoint + "/api/event", args, encode_event(event, domain), **headers)
    except OSError as exc:
        report.bad(f"event: POST {endpoint}/api/event failed: {_reason(exc)}")
        return None
    if not 200 <= answer.status < 300:
        report.bad(f"event: HTTP {answer.status}: {answer.body[:300].decode('utf-8', 'replace')}")
        return None
    echo = answer.json()
    seen: dict[str, object] = echo if isinstance(echo, dict) else {}
    report.ok(f"event: HTTP {answer.status}" + (" (the server echoed what it saw)" if seen else ""))
    _site(domain, answer, seen, report, user_agent=user_agent, ip=args.ip)
    seen.setdefault("user_agent", user_agent)
    seen.setdefault("ip", args.ip)
    return seen


#: What each drop reason the local receiver reports means, and its fix.
DROP_HINTS = {
    "unknown_domain": "the site {domain!r} does not exist on this instance "
    "(add it in Plausible, or fix the spelling)",
    "bot": "the User-Agent is a bot's: Plausible drops bot traffic",
    "private_ip": "the visitor IP is private or loopback: set trusted_proxies so the "
    "visitor's own address is sent",
    "spam_referrer": "the referrer's host is on Plausible's referrer spam list",
    "verification_agent": "the User-Agent is Plausible's own verification agent",
    "dc_ip": "the visitor IP was classified as a datacenter's (x-plausible-ip-type: dc_ip)",
    "no_session": "an engagement or pageleave event with no earlier event of the same "
    "visitor within 30 minutes",
}


def _site(
    domain: str,
    answer: _Answer,
    seen: dict[str, object],
    report: _Report,
    *,
    user_agent: str,
    ip: str | None,
) -> None:
    if "x-plausible-dropped" not in answer.headers:
        report.ok(f"site: {domain!r} exists and counted the test event")
        return
    events = seen.get("events")
    reasons = [
        str(item.get("drop_reason"))
        for item in (events if isinstance(events, list) else [])
        if isinstance(item, dict) and item.get("drop_reason")
    ]
    if reasons:  # the server said why
        hints = [DROP_HINTS.get(r, r).format(domain=domain) for r in reasons]
        report.bad("site: the test event was dropped (x-plausible-dropped)", *hints)
        return
    guesses = drop_reasons(domain, user_agent, ip, None)
    report.bad(
        "site: the test event was dropped (x-plausible-dropped); the server did not say why",
        *(f"[{evidence}] {reason}" for evidence, reason in guesses),
    )


def _visitor(seen: dict[str, object], args: argparse.Namespace, report: _Report) -> None:
    ip, user_agent = seen.get("ip"), str(seen.get("user_agent") or "")
    agent = classify_user_agent(user_agent) if user_agent else None
    if not user_agent:
        report.warn(
            "visitor: no User-Agent: each such event is a different visitor from the page "
            "views; track() outside a request needs user_agent= and client_ip="
        )
    elif agent is not None:
        report.bad(f"visitor: the User-Agent is a bot's ({agent.agent}): Plausible drops it")
    else:
        report.ok("visitor: the User-Agent is a browser's")
    if not ip:
        report.warn(
            "visitor: no IP sent (X-Forwarded-For): the server uses this machine's address",
            "In the app the middleware sends the visitor's; pass --ip to check one.",
        )
        return
    try:
        address = ipaddress.ip_address(str(ip))
    except ValueError:
        report.bad(f"visitor: the IP {ip!r} the server used is not an address")
        return
    if address.is_global:
        report.ok(f"visitor: the IP the server used ({ip}) is a public address")
    else:
        report.bad(
            f"visitor: the IP the server used ({ip}) is private, loopback or reserved, "
            "not a visitor's",
            "Behind a proxy, set trusted_proxies (PLAUSIBLE_TRUSTED_PROXIES) to its hops.",
        )


class _Validate(Tracker):
    """``track()``'s own checks (reserved names included), sending nothing."""

    def _accept(self, event: Event) -> bool:
        return True


def _goals(args: argparse.Namespace, report: _Report) -> None:
    for name in args.goal:
        try:
            _Validate().track(name, url="https://example.com/")
        except InvalidEventError as exc:
            report.bad(f"goal {name!r}: {exc}")
            continue
        report.warn(
            f"goal {name!r}: shows in Plausible only once a goal of exactly this name "
            "exists (Site settings > Goals > Custom event)"
        )
    if args.prop:
        report.warn(
            f"props {', '.join(args.prop)}: shown once each key is added under "
            "Site settings > Custom properties"
        )
