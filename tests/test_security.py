"""Security properties: what a visitor can forge, what leaves the process, what is logged.

- ``X-Forwarded-For``: with ``trusted_proxies=N`` the visitor IP is the one the
  outermost trusted proxy saw; entries the client wrote are never used.
- ``Host``: never changes the Plausible site; with ``allowed_hosts`` a forged one is
  not tracked at all.
- TLS: an https endpoint is always verified; a private CA needs ``ca_bundle``.
- Only the visitor's User-Agent and IP leave the process, as two headers; cookies,
  ``Authorization`` and every other request header stay home; the query string is cut
  to the parameters Plausible reads.
- Logs at WARNING and above never hold a visitor IP, User-Agent or full URL.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import UA, TlsSink, make_self_signed_cert
from hypothesis import given, settings
from hypothesis import strategies as st
from sink import SilentServer, wait_until
from werkzeug.test import EnvironBuilder

import plausible_wsgi as pw
from plausible_wsgi.receiver import Fault, PlausibleReceiver
from plausible_wsgi.testing import MemoryCollector

RETRY = pw.RetryConfig(max_retries=1, initial_backoff=0.005, max_backoff=0.01)


def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<html>hello</html>"]


def drive(app: Any, **builder: Any) -> None:
    """Run one request through ``app`` like a WSGI server: iterate, then close."""
    environ = EnvironBuilder(**builder).get_environ()
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


# -- X-Forwarded-For ------------------------------------------------------------------------

public_v4 = st.builds(lambda n: f"203.0.113.{n}", st.integers(1, 254))
proxy_ips = st.builds(lambda n: f"192.0.2.{n}", st.integers(1, 254))
forged_entries = st.lists(
    st.one_of(
        st.ip_addresses().map(str),
        st.sampled_from(["127.0.0.1", "10.0.0.1", "unknown", "", " ", "1.2.3.4:80", "[::1]"]),
        st.text(alphabet="0123456789abcdef.:[] ", max_size=20),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    trusted=st.integers(0, 2),
    client=public_v4,
    forged=forged_entries,
    proxies=st.lists(proxy_ips, min_size=2, max_size=2),
)
def test_forged_forwarded_for_never_becomes_the_visitor_ip(
    trusted: int, client: str, forged: list[str], proxies: list[str]
) -> None:
    # The client writes `forged`; proxy 1 appends the client's address, proxy 2
    # appends proxy 1's. The app sees REMOTE_ADDR = the last proxy (or the client).
    if trusted == 0:
        chain, remote = forged, client
    else:
        chain = [*forged, client, *proxies[: trusted - 1]]
        remote = proxies[trusted - 1]
    collector = MemoryCollector()
    app = pw.PlausibleMiddleware(page, collector, trusted_proxies=trusted)
    headers = {"User-Agent": UA}
    if chain:
        headers["X-Forwarded-For"] = ", ".join(chain)
    drive(
        app,
        path="/",
        base_url="https://example.com",
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
    )
    [event] = collector.events
    assert event.client_ip == client


@pytest.mark.parametrize("trusted", [0, 1, 2])
def test_forwarded_for_end_to_end_only_the_trusted_hop_reaches_plausible(
    receiver: PlausibleReceiver, trusted: int
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    app = pw.PlausibleMiddleware(page, collector, trusted_proxies=trusted)
    forged = "198.51.100.66, 6.6.6.6"
    hops = {0: [], 1: ["203.0.113.10"], 2: ["203.0.113.10", "192.0.2.1"]}[trusted]
    remote = {0: "203.0.113.10", 1: "192.0.2.1", 2: "192.0.2.2"}[trusted]
    drive(
        app,
        path="/",
        base_url="https://example.com",
        headers={"User-Agent": UA, "X-Forwarded-For": ", ".join([forged, *hops])},
        environ_base={"REMOTE_ADDR": remote},
    )
    try:
        assert collector.flush(5)
    finally:
        app.close()
    [attempt] = receiver.attempts
    assert attempt.headers["X-Forwarded-For"] == "203.0.113.10"
    assert receiver.events[0].client_ip == "203.0.113.10"


# -- Host -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example.net", "example.com.evil.net", "localhost:8000"])
def test_forged_host_never_changes_the_site_and_is_not_tracked_when_hosts_are_listed(
    receiver: PlausibleReceiver, host: str
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    open_app = pw.PlausibleMiddleware(page, collector)
    strict_collector = MemoryCollector()
    strict_app = pw.PlausibleMiddleware(page, strict_collector, allowed_hosts=[".example.com"])
    for app in (open_app, strict_app):
        drive(app, path="/p", base_url=f"https://{host}", headers={"User-Agent": UA})
        drive(app, path="/q", base_url="https://www.example.com", headers={"User-Agent": UA})
    try:
        assert collector.flush(5)
    finally:
        open_app.close()
    # Without allowed_hosts: recorded, but always on the configured site.
    assert {json.loads(a.body)["domain"] for a in receiver.attempts} == {"example.com"}
    assert len(receiver.events) == 2
    # With allowed_hosts: the forged host is not tracked at all.
    assert [e.url for e in strict_collector.events] == ["https://www.example.com/q"]
    assert strict_app.stats().skipped == {"host": 1}


# -- TLS --------------------------------------------------------------------------------------


def test_tls_is_verified_and_ca_bundle_trusts_a_private_ca(tmp_path: Path) -> None:
    made = make_self_signed_cert(tmp_path)
    if made is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    cert, key = made
    sink = TlsSink(cert, key)
    try:
        untrusting = pw.PlausibleCollector(
            "example.com", endpoint=sink.url, retry=RETRY, circuit_breaker=None, shutdown_timeout=2
        )
        untrusting.track("E", url="https://example.com/", user_agent=UA)
        assert untrusting.flush(5)
        untrusting.close()
        stats = untrusting.stats()
        assert (stats.sent, stats.failed) == (0, 1)
        assert sink.bodies == []  # not one byte of the event crossed the wire
        wait_until(lambda: sink.handshake_failures >= 1, timeout=5)

        trusting = pw.PlausibleCollector(
            "example.com", endpoint=sink.url, ca_bundle=str(cert), shutdown_timeout=2
        )
        trusting.track("E", url="https://example.com/", user_agent=UA)
        assert trusting.flush(5)
        trusting.close()
        assert trusting.stats().sent == 1
        assert len(sink.bodies) == 1
    finally:
        sink.close()


def test_there_is_no_switch_to_turn_tls_verification_off() -> None:
    parameters = set(inspect.signature(pw.PlausibleCollector).parameters)
    assert not {"verify", "verify_tls", "insecure", "ssl_verify"} & parameters


# -- what leaves the process ---------------------------------------------------------------

SECRETS = (
    "SECRET-COOKIE",
    "SECRET-BEARER",
    "SECRET-APIKEY",
    "SECRET-QUERY",
    "de-CH",
    "SECRET-FRAG",
)
ALLOWED_HEADERS = {
    "host",
    "accept-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "x-forwarded-for",
    "x-plausible-ip",  # the same visitor IP: Plausible prefers it to CF-Connecting-IP
    "connection",
}


def test_only_user_agent_and_ip_leave_the_process(receiver: PlausibleReceiver) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)

    def signup(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        collector.track("Signup", props={"plan": "pro"})
        return page(environ, start_response)

    app = pw.PlausibleMiddleware(signup, collector)
    drive(
        app,
        path="/welcome",
        query_string="token=SECRET-QUERY&utm_source=newsletter&email=SECRET-QUERY",
        base_url="https://example.com",
        headers={
            "User-Agent": UA,
            "Cookie": "session=SECRET-COOKIE",
            "Authorization": "Bearer SECRET-BEARER",
            "X-Api-Key": "SECRET-APIKEY",
            "Accept-Language": "de-CH",
            "Referer": "https://news.example.org/issue/5",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.50"},
    )
    try:
        assert collector.flush(5)
    finally:
        app.close()
    attempts = receiver.attempts
    assert len(attempts) == 2  # the Signup goal and the page view
    for attempt in attempts:
        assert {name.lower() for name in attempt.headers} <= ALLOWED_HEADERS
        assert attempt.headers["User-Agent"] == UA
        assert attempt.headers["X-Forwarded-For"] == "203.0.113.50"
        raw = json.dumps(attempt.headers) + attempt.body.decode()
        for secret in SECRETS:
            assert secret not in raw
        body = json.loads(attempt.body)
        assert set(body) <= {"domain", "name", "url", "referrer", "props", "interactive"}
        assert body["url"] == "https://example.com/welcome?utm_source=newsletter"
        assert body["referrer"] == "https://news.example.org/issue/5"


def test_query_string_is_scrubbed_to_plausible_parameters_by_default() -> None:
    collector = MemoryCollector()
    app = pw.PlausibleMiddleware(page, collector)
    drive(
        app,
        path="/reset",
        query_string="reset_token=abc&ref=hn&utm_campaign=x&gclid=1&password=p",
        base_url="https://example.com",
        headers={"User-Agent": UA},
    )
    [event] = collector.events
    assert event.url == "https://example.com/reset?ref=hn&utm_campaign=x&gclid=1"


# -- logs ---------------------------------------------------------------------------------------

VISITOR_IP = "198.51.100.23"
VISITOR_UA = UA + " SECRET-UA-MARKER"
SECRET_PATH = "/account/secret-path-marker"
FULL_URL = "https://example.com" + SECRET_PATH


def _leaks(records: list[logging.LogRecord]) -> list[str]:
    leaks = []
    for record in records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info and not record.exc_text:
            text += logging.Formatter().formatException(record.exc_info)
        for marker in (VISITOR_IP, "SECRET-UA-MARKER", "secret-path-marker"):
            if marker in text:
                leaks.append(f"{record.name}: {marker} in {text[:300]!r}")
    return leaks


def test_logs_hold_no_visitor_ip_user_agent_or_url(
    receiver: PlausibleReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    def visit(collector: pw.PlausibleCollector, n: int = 1) -> None:
        for _ in range(n):
            collector.track("E", url=FULL_URL, user_agent=VISITOR_UA, client_ip=VISITOR_IP)

    kwargs: dict[str, Any] = {"batch_size": 1, "retry": RETRY, "shutdown_timeout": 1}
    with caplog.at_level(logging.WARNING):
        # Out of retries on a 503 storm, then 400 rejections (the body is logged).
        collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, **kwargs)
        receiver.enqueue_faults(*[Fault(503)] * 4)
        visit(collector, 2)
        assert collector.flush(5)
        receiver.enqueue_faults(Fault(400, body='{"errors":{"url":["is invalid"]}}'))
        visit(collector)
        assert collector.flush(5)
        # An answer after the client timeout.
        receiver.app.delay = 0.3
        slow = pw.PlausibleCollector("example.com", endpoint=receiver.url, timeout=0.05, **kwargs)
        visit(slow)
        assert slow.flush(5)
        receiver.app.delay = 0.0
        # A full buffer, then a shutdown with events left, against a dead server.
        receiver.down()
        full = pw.PlausibleCollector(
            "example.com",
            endpoint=receiver.url,
            max_queue_size=2,
            flush_interval=60,
            **{**kwargs, "batch_size": 100},
        )
        visit(full, 5)
        full.close(timeout=0.2)
        # Events still in flight at the close deadline, against a server that never answers.
        silent = SilentServer()
        try:
            hung = pw.PlausibleCollector("example.com", endpoint=silent.url, timeout=30, **kwargs)
            visit(hung, 3)
            hung.close(timeout=0.2)
        finally:
            silent.close()
        # A hand-built invalid event, and a collector that raises in the middleware.
        collector.collect(
            pw.Event(
                pw.EventKind.CUSTOM,
                "x" * 500,
                FULL_URL,
                None,
                None,
                None,
                True,
                VISITOR_UA,
                VISITOR_IP,
            )
        )

        class Broken(MemoryCollector):
            def collect(self, event: pw.Event) -> bool:
                raise RuntimeError("collector down")

        app = pw.PlausibleMiddleware(page, Broken())
        drive(
            app,
            path=SECRET_PATH,
            base_url="https://example.com",
            headers={"User-Agent": VISITOR_UA},
            environ_base={"REMOTE_ADDR": VISITOR_IP},
        )
        app.close()
        collector.close()
        slow.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    names = sorted({r.name for r in warnings})
    print(f"FIGURE log-hygiene: warning_records={len(warnings)} loggers={names}")
    assert len(warnings) >= 5  # the scenario did produce warnings
    assert _leaks(warnings) == []
    assert full.stats().dropped.get("queue_full") == 3
    wait_until(lambda: hung.stats().in_flight == 0, timeout=3)
    assert hung.stats().dropped.get("shutdown") == 3
    messages = " ".join(r.getMessage() for r in warnings)
    for expected in (
        "HTTP 503",
        "HTTP 400",
        "no answer",
        "buffer full",
        "field name",
        "error while",
    ):
        assert expected in messages
