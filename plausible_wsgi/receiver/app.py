"""A local stand-in for Plausible's ``/api/event``, recording what it receives.

:class:`ReceiverApp` answers the way the real server does (``202 ok``, ``202`` with
``x-plausible-dropped``, ``400`` with ``{"errors": ...}``, ``413``) and keeps every
request as a :class:`ReceivedEvent`, so tests can assert what Plausible would have
counted, and people can watch events arrive on the inspector page at ``/``.

It is a test and development tool, not an analytics server: records live in memory,
bounded in number and in bytes. The rules are Plausible's (docs/plausible-rules.md
cites each): the body read by its Content-Type, the ``400`` fields, the values stored,
and the drops it can decide locally — spam referrer (a short list), unknown domain,
Plausible's verification agent, ``x-plausible-ip-type: dc_ip``, a bot User-Agent
(curl, python-requests and a missing User-Agent are *counted*, as Plausible does), an
``engagement``/``pageleave`` without an earlier event from that visitor and,
optionally, a private visitor IP. Rate limits and shields are Plausible's business.

For delivery tests it can misbehave on purpose: :meth:`ReceiverApp.enqueue_faults`
scripts the next answers (``503`` with ``Retry-After``, a slow answer, a connection
reset) and :attr:`ReceiverApp.delay` slows every answer down.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import typing as t
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from werkzeug.wrappers import Request, Response

from ..agents import AgentMatch, classify_user_agent
from ..errors import ConfigurationError
from . import body as parsing
from . import drops, rules
from .elixir import MalformedURI
from .http import (
    ASSETS,
    asset_response,
    debug_answer,
    json_response,
    read_body,
    remote_port,
    reset_connection,
    text_response,
)
from .records import (
    KEPT_BODY_BYTES,
    Attempt,
    Fault,
    ReceivedEvent,
    Verdict,
    describe_timeout,
    event_fields,
    kept_headers,
    record_size,
    rejected_fields,
)
from .visitors import Visitors

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Attempt", "Fault", "ReceivedEvent", "ReceiverApp", "Verdict"]

#: How many records the inspector feed returns at most per poll (the newest ones).
FEED_LIMIT = 500
#: Default bound on the bytes records and attempts hold (estimated); the oldest go.
MAX_BYTES = 64 * 1024 * 1024


# About 360 lines (the module 470), over the usual ~250 (~400): one lock guards the
# records, attempts and faults, and every public reader takes it; parsing, rules,
# drops, visitors and record shapes already live in their own modules.
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
        max_bytes: int = MAX_BYTES,
        spam_referrers: Iterable[str] = drops.SPAM_REFERRERS,
    ) -> None:
        if max_events < 1:
            raise ConfigurationError(f"max_events must be >= 1, got {max_events}")
        if max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be >= 1, got {max_bytes}")
        #: The known sites, or ``None`` for any.
        self.domains = None if domains is None else frozenset(domains)
        self.drop_private_ips = drop_private_ips
        self.max_events = max_events
        self.max_bytes = max_bytes
        #: Referrer hosts (``www.`` stripped) whose events are dropped as spam.
        self.spam_referrers = frozenset(spam_referrers)
        #: Seconds to wait before every normal answer (slow-server tests); 0 for none.
        self.delay = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._records: deque[ReceivedEvent] = deque()
        self._attempts: deque[Attempt] = deque()
        self._bytes = 0
        self._visitors = Visitors()
        self._faults: deque[Fault] = deque()
        self._next_id = 1
        self._request_count = 0
        self._accepted = 0
        self._totals: Counter[str] = Counter()

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
            self._visitors.clear()
            self._bytes = 0
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
        raise TimeoutError(describe_timeout(n, timeout, records, attempts))

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
            # Plausible routes only POST here: any other method is a 404.
            is_post = method == "POST"
            response = self._post_event(request) if is_post else text_response(404, "Not Found")
        elif method not in ("GET", "HEAD"):
            response = text_response(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
        elif path == "/api/health":
            response = json_response(
                200, {"clickhouse": "ok", "postgres": "ok", "sites_cache": "ok"}
            )
        elif path == "/":
            response = asset_response("inspector.html", "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/") :] in ASSETS:
            name = path[len("/static/") :]
            response = asset_response(name, ASSETS[name])
        elif path == "/_inspector/events":
            response = self._feed(request.args.get("after", ""))
        else:
            response = text_response(404, "Not Found")
        return response(environ, start_response)

    def _post_event(self, request: Request) -> Response:
        content_type = request.headers.get("Content-Type")
        try:
            body, truncated = read_body(request, parsing.body_limit(content_type))
        except (OSError, ValueError):
            # A malformed chunked body (werkzeug raises while de-chunking): the
            # request cannot be read, so it is a 400, never a 500 with a traceback.
            return text_response(400, "Bad Request", {"Connection": "close"})
        with self._lock:
            self._request_count += 1
            fault = self._faults.popleft() if self._faults else None
            self._keep(
                self._attempts,
                Attempt(
                    number=self._request_count,
                    received_at=time.time(),
                    fault=fault,
                    body=body[:KEPT_BODY_BYTES],
                    headers=kept_headers(request.headers.items()),
                    remote_port=remote_port(request.environ),
                ),
            )
            self._changed.notify_all()
        if fault is not None:
            self._pause(fault.delay)
            if fault.reset:
                reset_connection(request.environ)
            return text_response(fault.status, fault.body, fault.headers)

        self._pause(self.delay)
        return self._judge(request, content_type, body, truncated)

    def _judge(
        self, request: Request, content_type: str | None, raw: bytes, truncated: bool
    ) -> Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        user_agent = headers.get("user-agent", "")
        client_ip = drops.read_client_ip(headers, request.environ.get("REMOTE_ADDR", ""))
        agent = classify_user_agent(user_agent)
        common: dict[str, t.Any] = {
            "received_at": time.time(),
            "user_agent": user_agent,
            "client_ip": client_ip,
            "agent_kind": None if agent is None else agent.kind,
            "agent_name": None if agent is None else agent.agent,
            "agent_operator": None if agent is None else agent.operator,
        }
        payload, verdict = _verdict(request, headers, content_type, raw, truncated)
        if isinstance(verdict, rules.Rejection):
            text = raw[:KEPT_BODY_BYTES].decode("utf-8", "replace")
            self._record([rejected_fields(verdict, payload, text)], common)
            if verdict.status == 500:
                return text_response(500, "Internal Server Error")
            return json_response(verdict.status, verdict.body())

        spam = bool(verdict) and verdict[0].referrer is not None
        spam = spam and drops.spam_referrer(
            rules.referrer_host(verdict[0].referrer or ""), self.spam_referrers
        )
        drafts = []
        for event in verdict:
            visitor = self._visitors.id(user_agent, client_ip, event.domain, event.hostname)
            reason = "spam_referrer" if spam else self._drop_reason(event, headers, agent, visitor)
            reason = reason or self._drop_private(client_ip)
            drafts.append(
                {
                    "outcome": "accepted" if reason is None else "dropped",
                    "status": 202,
                    "drop_reason": reason,
                    "errors": None,
                    **event_fields(event),
                    "visitor_id": visitor,
                }
            )
        self._record(drafts, common)
        dropped = sum(1 for draft in drafts if draft["drop_reason"] is not None)
        answer_headers = {"x-plausible-dropped": str(dropped)} if dropped else None
        if headers.get("x-debug-request", "").lower() == "true":
            return debug_answer(common, drafts, answer_headers)
        return text_response(202, "ok", answer_headers)

    def _drop_reason(
        self,
        event: rules.NormalisedEvent,
        headers: Mapping[str, str],
        agent: AgentMatch | None,
        visitor: str,
    ) -> str | None:
        """event.ex's order: the site, the verification agent, a datacenter IP, a bot,
        then the session an engagement or pageleave needs."""
        if self.domains is not None and event.domain not in self.domains:
            return "unknown_domain"
        user_agent = headers.get("user-agent", "")
        if user_agent in drops.VERIFICATION_AGENTS:
            return "verification_agent"
        if headers.get("x-plausible-ip-type") == "dc_ip":
            return "dc_ip"
        if drops.plausible_drops_agent(user_agent, agent):
            return "bot"
        needs_session = event.name in ("engagement", "pageleave")
        if not self._visitors.visit(event.domain, visitor, needs_session=needs_session):
            return "no_session"
        return None

    def _drop_private(self, client_ip: str) -> str | None:
        return "private_ip" if self.drop_private_ips and _is_private(client_ip) else None

    def _record(self, drafts: list[dict[str, t.Any]], common: Mapping[str, t.Any]) -> None:
        with self._lock:
            for draft in drafts:
                record = ReceivedEvent(id=self._next_id, **common, **draft)
                self._next_id += 1
                self._keep(self._records, record)
                self._accepted += record.outcome == "accepted"
                self._totals[record.outcome] += 1
            self._changed.notify_all()

    def _keep(self, kept: deque[t.Any], item: ReceivedEvent | Attempt) -> None:
        """Append under the lock; forget the oldest past ``max_events`` or ``max_bytes``."""
        kept.append(item)
        self._bytes += record_size(item)
        while len(kept) > self.max_events:
            self._forget(kept)
        while self._bytes > self.max_bytes and (len(self._records) + len(self._attempts)) > 1:
            older = (
                self._records
                if self._records
                and (
                    not self._attempts
                    or self._records[0].received_at <= self._attempts[0].received_at
                )
                else self._attempts
            )
            self._forget(older)

    def _forget(self, kept: deque[t.Any]) -> None:
        old = kept.popleft()
        self._bytes -= record_size(old)
        if isinstance(old, ReceivedEvent):
            self._accepted -= old.outcome == "accepted"

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
        response = json_response(200, feed)
        response.headers["Cache-Control"] = "no-store"
        return response


def _verdict(
    request: Request,
    headers: Mapping[str, str],
    content_type: str | None,
    raw: bytes,
    truncated: bool,
) -> tuple[Mapping[str, t.Any], tuple[rules.NormalisedEvent, ...] | rules.Rejection]:
    """The body as read (``{}`` when unreadable) and the events it makes, or the refusal."""
    payload: Mapping[str, t.Any] = {}
    try:
        payload = parsing.parse(content_type, raw, truncated)
        if not drops.acceptable(headers.get("accept"), request.args.get("_format")):
            return payload, rules.Rejection(406, {"request": ["not acceptable: use JSON"]})
        return payload, rules.normalise(payload)
    except parsing.BodyError as error:
        return payload, rules.Rejection(error.status, {"request": [error.message]})
    except MalformedURI as error:
        # Elixir's URI.decode raises: Plausible's answer is a 500.
        return payload, rules.Rejection(500, {"url": [str(error)]})


def _is_private(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return (
        address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified
    )
