"""A local stand-in for Plausible's ``/api/event``, recording what it receives.

:class:`ReceiverApp` answers the way the real server does (``202 ok``, ``202`` with
``x-plausible-dropped``, ``400`` with ``{"errors": ...}``, ``413``) and keeps every
request as a :class:`ReceivedEvent`, so tests can assert what Plausible would have
counted, and people can watch events arrive on the inspector page at ``/``.

It is a test and development tool, not an analytics server: records live in memory
(bounded), and the drop reasons it knows are the ones it can decide locally — an
unknown domain, a bot User-Agent and, optionally, a private visitor IP. Datacenter IPs,
spam referrers and rate limits are Plausible's business.

For delivery tests it can misbehave on purpose: :meth:`ReceiverApp.enqueue_faults`
scripts the next answers (``503`` with ``Retry-After``, a slow answer, a connection
reset) and :attr:`ReceiverApp.delay` slows every answer down.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import secrets
import socket
import struct
import threading
import time
import typing as t
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from werkzeug.wrappers import Request, Response

from ..agents import classify_user_agent
from ..errors import ConfigurationError
from . import rules

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Attempt", "Fault", "Outcome", "ReceivedEvent", "ReceiverApp"]

Outcome = t.Literal["accepted", "dropped", "rejected"]

#: How many records the inspector feed returns at most per poll (the newest ones).
FEED_LIMIT = 500
#: Bytes of a request body kept on an :class:`Attempt` (and, as text, on a rejected
#: :class:`ReceivedEvent`); the rest is cut so memory stays bounded.
KEPT_BODY_BYTES = 64 * 1024

_STATIC = Path(__file__).with_name("static")
_ASSETS = {
    "inspector.css": "text/css; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    ),
}


@dataclass(frozen=True)
class Fault:
    """A scripted answer to one ``POST /api/event``, given before normal processing.

    A faulted request is counted as an :class:`Attempt` but never recorded as an event.

    :param status: the HTTP status to answer with.
    :param headers: extra response headers, e.g. ``{"Retry-After": "2"}``.
    :param body: the response body (plain text).
    :param delay: seconds to wait before answering (or resetting). Cut short when the
        receiver stops or goes down.
    :param reset: close the connection abruptly instead of answering: the client sees
        a connection error and no HTTP response at all. Needs werkzeug's server (which
        :class:`~plausible_wsgi.receiver.PlausibleReceiver` uses).

    Usage::

        receiver.enqueue_faults(Fault(503, {"Retry-After": "1"}), Fault(reset=True))
    """

    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    body: str = ""
    delay: float = 0.0
    reset: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ConfigurationError(f"Fault status must be 100-599, got {self.status}")
        if self.delay < 0:
            raise ConfigurationError(f"Fault delay must be >= 0 seconds, got {self.delay}")


@dataclass(frozen=True)
class Attempt:
    """One ``POST /api/event`` as it arrived, faulted or not: what retry tests count."""

    #: 1 for the first request since start (or :meth:`ReceiverApp.clear`), then 2, 3...
    number: int
    #: Arrival time, seconds since the epoch.
    received_at: float
    #: The fault that answered it, or ``None`` when it was processed normally.
    fault: Fault | None
    #: The request body (at most :data:`KEPT_BODY_BYTES`; empty when over 8 MB).
    body: bytes = field(repr=False)
    #: The request headers.
    headers: dict[str, str] = field(hash=False, repr=False)
    #: The client's source port: requests sharing it shared a keep-alive connection.
    remote_port: int | None


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as the receiver judged it — one per domain of a request.

    A rejected request (``400``/``413``) gives one record with ``errors`` set and the
    event fields filled from the body as far as they could be read (``""`` otherwise).
    """

    #: Sequence number, unique per app, increasing in arrival order.
    id: int
    #: Arrival time, seconds since the epoch (Plausible stamps events on arrival too).
    received_at: float
    #: ``"accepted"`` (Plausible would count it), ``"dropped"`` (``202`` with
    #: ``x-plausible-dropped``) or ``"rejected"`` (``400``/``413``).
    outcome: Outcome
    #: The HTTP status answered: 202, 400 or 413.
    status: int
    #: ``"unknown_domain"``, ``"bot"`` or ``"private_ip"`` for a dropped event.
    drop_reason: str | None
    #: The ``errors`` object of a rejection.
    errors: dict[str, list[str]] | None = field(hash=False)
    name: str
    url: str
    #: The URL path, percent-decoded.
    pathname: str
    #: The URL host, ``www.`` stripped.
    hostname: str
    domain: str
    #: Cut to 2000 characters; ``None`` when not sent.
    referrer: str | None
    #: Whether Plausible would attribute no source to the referrer.
    referrer_ignored: bool
    #: Stringified props, blanks and nested values dropped, at most 30.
    props: dict[str, str] = field(hash=False)
    #: ``{"currency": ..., "amount": ...}`` when valid, else ``None``.
    revenue: dict[str, str] | None = field(hash=False)
    interactive: bool
    #: UTM tags, ``source``/``ref`` and click ids found in the URL.
    query_params: dict[str, str] = field(hash=False)
    user_agent: str
    #: The visitor IP: the first ``X-Forwarded-For`` element, else the socket address.
    client_ip: str
    #: A daily visitor hash (hex); ``""`` for a rejected request.
    visitor_id: str
    #: The bot kind (``"ai_training"``, ``"search_engine"``...) or ``None`` for a browser.
    #: A missing User-Agent counts as a bot (``"other_bot"``), like a script's.
    agent_kind: str | None
    #: The bot's name, e.g. ``"GPTBot"``.
    agent_name: str | None
    #: Who runs the bot, e.g. ``"OpenAI"`` (``""`` when unknown).
    agent_operator: str | None
    #: The request body as text, for rejected requests only (cut to 64 KiB).
    body: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, t.Any]:
        """The record as a JSON-ready dict (what the inspector feed serves)."""
        return asdict(self)


class ReceiverApp:
    """A WSGI app answering like Plausible's Events API and recording every event.

    - ``POST /api/event``: ``202 ok``; ``202 ok`` with ``x-plausible-dropped: N`` when
      N of the request's events are dropped; ``400 {"errors": ...}``; ``413``.
    - ``GET /api/health``: ``200`` JSON.
    - ``GET /``: the live inspector page; ``GET /static/<asset>``: its assets;
      ``GET /_inspector/events?after=<id>``: the JSON feed it polls.

    Thread-safe: records, counters and faults are guarded by one lock, and waiting is
    done on a :class:`threading.Condition` notified on every request.

    :param domains: the sites that exist; events for any other domain are dropped
        (``"unknown_domain"``). ``None`` accepts every domain.
    :param drop_private_ips: drop events whose visitor IP is loopback, private or
        link-local (``"private_ip"``). Off by default, since tests run on loopback.
    :param max_events: records (and attempts) kept; the oldest are forgotten first.

    Usage::

        app = ReceiverApp(domains=["example.com"])
        # serve it with any WSGI server, or use PlausibleReceiver for tests
        app.enqueue_faults(Fault(503), Fault(503))
        ...
        assert [e.name for e in app.events] == ["pageview"]
    """

    def __init__(
        self,
        *,
        domains: Iterable[str] | None = None,
        drop_private_ips: bool = False,
        max_events: int = 10_000,
    ) -> None:
        if max_events < 1:
            raise ConfigurationError(f"max_events must be >= 1, got {max_events}")
        #: The known sites, or ``None`` for any.
        self.domains = None if domains is None else frozenset(domains)
        self.drop_private_ips = drop_private_ips
        self.max_events = max_events
        #: Seconds to wait before every normal answer (slow-server tests); 0 for none.
        self.delay = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._records: deque[ReceivedEvent] = deque(maxlen=max_events)
        self._attempts: deque[Attempt] = deque(maxlen=max_events)
        self._faults: deque[Fault] = deque()
        self._next_id = 1
        self._request_count = 0
        self._accepted = 0
        self._totals: Counter[str] = Counter()
        self._salt_day = ""
        self._salt = b""

    # -- scripting -------------------------------------------------------------------

    def enqueue_faults(self, *faults: Fault) -> None:
        """Answer the next ``len(faults)`` event POSTs with these faults, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        """Faults enqueued and not used yet."""
        with self._lock:
            return len(self._faults)

    def interrupt_delays(self) -> None:
        """Cut short every :attr:`delay` and :attr:`Fault.delay` wait in progress.

        Called when the server stops or goes down, so no thread stays asleep.
        """
        with self._lock:
            wake, self._wake = self._wake, threading.Event()
        wake.set()

    def clear(self) -> None:
        """Forget every record and attempt (pending faults are kept)."""
        with self._lock:
            self._records.clear()
            self._attempts.clear()
            self._request_count = 0
            self._accepted = 0
            self._totals.clear()
            self._changed.notify_all()

    # -- reading ---------------------------------------------------------------------

    @property
    def records(self) -> list[ReceivedEvent]:
        """Every record kept, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def events(self) -> list[ReceivedEvent]:
        """The accepted events: what Plausible would count."""
        return [r for r in self.records if r.outcome == "accepted"]

    @property
    def dropped(self) -> list[ReceivedEvent]:
        """The events answered ``202`` with ``x-plausible-dropped``."""
        return [r for r in self.records if r.outcome == "dropped"]

    @property
    def rejected(self) -> list[ReceivedEvent]:
        """The requests answered ``400`` or ``413``."""
        return [r for r in self.records if r.outcome == "rejected"]

    @property
    def attempts(self) -> list[Attempt]:
        """Every ``POST /api/event`` kept, faulted ones included, oldest first."""
        with self._lock:
            return list(self._attempts)

    @property
    def totals(self) -> dict[str, int]:
        """Records made since start or :meth:`clear`, by outcome — every one, not only
        the ``max_events`` kept."""
        with self._lock:
            totals = dict(self._totals)
        return {outcome: totals.get(outcome, 0) for outcome in ("accepted", "dropped", "rejected")}

    @property
    def request_count(self) -> int:
        """``POST /api/event`` requests since start or :meth:`clear`, faulted included."""
        with self._lock:
            return self._request_count

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedEvent]:
        """Wait until at least ``n`` accepted events are kept; return them all.

        :raises TimeoutError: after ``timeout`` seconds, listing what did arrive.
        """
        with self._changed:
            if self._changed.wait_for(lambda: self._accepted >= n, timeout):
                return [r for r in self._records if r.outcome == "accepted"]
            records, attempts = list(self._records), list(self._attempts)
        raise TimeoutError(_describe_timeout(n, timeout, records, attempts))

    def wait_for_attempts(self, n: int, timeout: float = 5.0) -> list[Attempt]:
        """Wait until at least ``n`` ``POST /api/event`` requests arrived, faulted or not.

        :raises TimeoutError: after ``timeout`` seconds.
        """
        with self._changed:
            if self._changed.wait_for(lambda: self._request_count >= n, timeout):
                return list(self._attempts)
            count = self._request_count
        raise TimeoutError(f"expected {n} requests to /api/event within {timeout}s, got {count}")

    # -- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        path, method = request.path, request.method
        response: Response
        if path == "/api/event":
            if method == "POST":
                response = self._post_event(request)
            else:
                response = _text(405, "Method Not Allowed", {"Allow": "POST"})
        elif method not in ("GET", "HEAD"):
            response = _text(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
        elif path == "/api/health":
            response = _json(200, {"clickhouse": "ok", "postgres": "ok", "sites_cache": "ok"})
        elif path == "/":
            response = _asset("inspector.html", "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/") :] in _ASSETS:
            name = path[len("/static/") :]
            response = _asset(name, _ASSETS[name])
        elif path == "/_inspector/events":
            response = self._feed(request.args.get("after", ""))
        else:
            response = _text(404, "Not Found")
        return response(environ, start_response)

    def _post_event(self, request: Request) -> Response:
        body = _read_body(request)
        with self._lock:
            self._request_count += 1
            fault = self._faults.popleft() if self._faults else None
            self._attempts.append(
                Attempt(
                    number=self._request_count,
                    received_at=time.time(),
                    fault=fault,
                    body=(body or b"")[:KEPT_BODY_BYTES],
                    headers=dict(request.headers),
                    remote_port=_remote_port(request.environ),
                )
            )
            self._changed.notify_all()
        if fault is not None:
            self._pause(fault.delay)
            if fault.reset:
                _reset_connection(request.environ)
            return _text(fault.status, fault.body, fault.headers)

        self._pause(self.delay)
        return self._judge(request, body)

    def _judge(self, request: Request, body: bytes | None) -> Response:
        environ = request.environ
        received_at = time.time()
        user_agent = environ.get("HTTP_USER_AGENT", "")
        client_ip = rules.read_client_ip(
            environ.get("HTTP_X_FORWARDED_FOR"), environ.get("REMOTE_ADDR", "")
        )
        agent = classify_user_agent(user_agent)
        common: dict[str, t.Any] = {
            "received_at": received_at,
            "user_agent": user_agent,
            "client_ip": client_ip,
            "agent_kind": None if agent is None else agent.kind,
            "agent_name": None if agent is None else agent.agent,
            "agent_operator": None if agent is None else agent.operator,
        }

        if body is None:
            verdict: tuple[rules.NormalisedEvent, ...] | rules.Rejection = rules.Rejection(
                413, {"request": [f"body larger than {rules.MAX_BODY_BYTES} bytes"]}
            )
            payload: Mapping[str, t.Any] = {}
        else:
            decoded = rules.decode_body(body)
            payload = {} if isinstance(decoded, rules.Rejection) else decoded
            verdict = decoded if isinstance(decoded, rules.Rejection) else rules.normalise(decoded)

        if isinstance(verdict, rules.Rejection):
            text = (body or b"")[:KEPT_BODY_BYTES].decode("utf-8", "replace")
            self._record([_rejected_fields(verdict, payload, text)], common)
            return _json(verdict.status, verdict.body())

        drafts = []
        for event in verdict:
            reason = self._drop_reason(event.domain, agent is not None, client_ip)
            drafts.append(
                {
                    "outcome": "accepted" if reason is None else "dropped",
                    "status": 202,
                    "drop_reason": reason,
                    "errors": None,
                    **_event_fields(event),
                    "visitor_id": self._visitor_id(
                        user_agent, client_ip, event.domain, event.hostname
                    ),
                }
            )
        self._record(drafts, common)
        dropped = sum(1 for draft in drafts if draft["drop_reason"] is not None)
        headers = {"x-plausible-dropped": str(dropped)} if dropped else None
        if environ.get("HTTP_X_DEBUG_REQUEST", "").lower() == "true":
            return _debug_answer(common, drafts, headers)
        return _text(202, "ok", headers)

    def _drop_reason(self, domain: str, is_bot: bool, client_ip: str) -> str | None:
        if self.domains is not None and domain not in self.domains:
            return "unknown_domain"
        if is_bot:
            return "bot"
        if self.drop_private_ips and _is_private(client_ip):
            return "private_ip"
        return None

    def _visitor_id(self, user_agent: str, client_ip: str, domain: str, hostname: str) -> str:
        """A daily visitor hash, like Plausible's but not equal to it.

        Plausible hashes ``user_agent <> remote_ip <> domain <> root_domain(hostname)``
        with SipHash and a daily salt; we use keyed BLAKE2b (SipHash is not in
        :mod:`hashlib`) with a random salt drawn per app and per UTC day. So the same
        visitor keeps one id for a day, and ids mean nothing outside this app.
        """
        day = datetime.now(timezone.utc).date().isoformat()
        with self._lock:
            if day != self._salt_day:
                self._salt_day, self._salt = day, secrets.token_bytes(16)
            salt = self._salt
        material = user_agent + client_ip + domain + rules.root_domain(hostname)
        return hashlib.blake2b(material.encode("utf-8"), digest_size=8, key=salt).hexdigest()

    def _record(self, drafts: list[dict[str, t.Any]], common: Mapping[str, t.Any]) -> None:
        with self._lock:
            for draft in drafts:
                record = ReceivedEvent(id=self._next_id, **common, **draft)
                self._next_id += 1
                if len(self._records) == self._records.maxlen:
                    self._accepted -= self._records[0].outcome == "accepted"
                self._records.append(record)
                self._accepted += record.outcome == "accepted"
                self._totals[record.outcome] += 1
            self._changed.notify_all()

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                wake = self._wake
            wake.wait(seconds)

    def _feed(self, after: str) -> Response:
        try:
            after_id = int(after)
        except ValueError:
            after_id = 0
        with self._lock:
            newer: list[ReceivedEvent] = []
            for record in reversed(self._records):
                if record.id <= after_id or len(newer) == FEED_LIMIT:
                    break
                newer.append(record)
            totals = dict(self._totals)
            attempts, last_id = self._request_count, self._next_id - 1
            faulted = sum(1 for attempt in self._attempts if attempt.fault is not None)
        feed = {
            "now": time.time(),
            "last_id": last_id,
            "events": [record.to_json() for record in reversed(newer)],
            "totals": {
                "accepted": totals.get("accepted", 0),
                "dropped": totals.get("dropped", 0),
                "rejected": totals.get("rejected", 0),
                "requests": attempts,
                "faulted": faulted,
            },
        }
        response = _json(200, feed)
        response.headers["Cache-Control"] = "no-store"
        return response


def _debug_answer(
    common: Mapping[str, t.Any], drafts: list[dict[str, t.Any]], headers: dict[str, str] | None
) -> Response:
    """``X-Debug-Request: true``: what the server saw, as Plausible's docs describe the
    header (200 with the IP used), plus each event's outcome and drop reason, so
    ``python -m plausible_wsgi doctor`` can explain a drop."""
    seen = {
        "ip": common["client_ip"],
        "user_agent": common["user_agent"],
        "events": [
            {key: draft[key] for key in ("domain", "name", "outcome", "drop_reason")}
            for draft in drafts
        ],
    }
    response = _json(200, seen)
    response.headers.extend(headers or {})
    return response


def _read_body(request: Request) -> bytes | None:
    """The request body, or ``None`` when it is over the server's 8 MB limit."""
    length = request.content_length
    if length is not None and length > rules.MAX_BODY_BYTES:
        return None
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > rules.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)


def _reset_connection(environ: WSGIEnvironment) -> None:
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("Fault(reset=True) needs werkzeug's server (environ lacks a socket)")
    # Linger 0 makes the final close send RST; shutting down now means the client gets
    # no response at all, and werkzeug's attempt to write one fails as a dropped
    # connection, which it handles quietly.
    with contextlib.suppress(OSError):  # the client may be gone already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


def _remote_port(environ: WSGIEnvironment) -> int | None:
    # werkzeug gives an int, other servers a string or nothing.
    try:
        return int(environ["REMOTE_PORT"])
    except (KeyError, TypeError, ValueError):
        return None


def _is_private(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return (
        address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified
    )


def _event_fields(event: rules.NormalisedEvent) -> dict[str, t.Any]:
    return {
        "name": event.name,
        "url": event.url,
        "pathname": event.pathname,
        "hostname": event.hostname,
        "domain": event.domain,
        "referrer": event.referrer,
        "referrer_ignored": event.referrer_ignored,
        "props": event.props,
        "revenue": event.revenue,
        "interactive": event.interactive,
        "query_params": event.query_params,
    }


def _rejected_fields(
    rejection: rules.Rejection, payload: Mapping[str, t.Any], body: str
) -> dict[str, t.Any]:
    def loose(short: str, long: str) -> str:
        value = payload.get(short, payload.get(long))
        return str(value) if isinstance(value, (str, int)) else ""

    return {
        "outcome": "rejected",
        "status": rejection.status,
        "drop_reason": None,
        "errors": rejection.errors,
        "name": loose("n", "name"),
        "url": loose("u", "url"),
        "pathname": "",
        "hostname": "",
        "domain": loose("d", "domain"),
        "referrer": None,
        "referrer_ignored": True,
        "props": {},
        "revenue": None,
        "interactive": True,
        "query_params": {},
        "visitor_id": "",
        "body": body,
    }


def _describe_timeout(
    n: int, timeout: float, records: list[ReceivedEvent], attempts: list[Attempt]
) -> str:
    lines = [f"expected {n} accepted events within {timeout}s; received:"]
    for record in records:
        detail = record.drop_reason or (json.dumps(record.errors) if record.errors else "")
        lines.append(
            f"  #{record.id} {record.outcome} {record.status} {record.name!r}"
            f" {record.domain}{record.pathname} {detail}".rstrip()
        )
    faulted = sum(1 for attempt in attempts if attempt.fault is not None)
    if not records:
        lines.append("  nothing")
    lines.append(f"({len(attempts)} requests to /api/event, {faulted} answered by faults)")
    return "\n".join(lines)


def _text(status: int, body: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, status=status, headers=dict(headers or {}), mimetype="text/plain")


def _json(status: int, value: object) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


def _asset(name: str, content_type: str) -> Response:
    return Response((_STATIC / name).read_bytes(), content_type=content_type, headers=_PAGE_HEADERS)
