"""Bots through the middleware to a Plausible-rules receiver, with the real UA table.

``bots="event"``: every agent's visit arrives as a ``Bot Visit`` custom event that
the receiver (which drops bot User-Agents as Plausible does) keeps. Default
``bots="skip"``: no POST at all, every visit counted by kind.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from agent_samples import BOTS, HUMANS
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import plausible_wsgi as pw
from plausible_wsgi.receiver import PlausibleReceiver


def page(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<!doctype html><title>Docs</title>"]


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


def visit(app: pw.PlausibleMiddleware, user_agent: str, n: int) -> None:
    client = Client(LintMiddleware(app))
    response = client.get(
        f"/docs/{n}",
        headers={"User-Agent": user_agent, "Host": "example.com"},
        environ_overrides={"REMOTE_ADDR": f"203.0.113.{n % 250 + 1}", "wsgi.url_scheme": "https"},
    )
    assert response.status_code == 200
    response.close()


def test_bot_visits_reach_plausible_as_events_it_keeps(receiver: PlausibleReceiver) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    app = pw.PlausibleMiddleware(page, collector, bots="event")
    try:
        for n, (_, header, *_rest) in enumerate(BOTS):
            visit(app, header, n)
        assert collector.flush(10)
    finally:
        app.close(2)
    assert len(BOTS) >= 40
    assert receiver.dropped == []
    assert receiver.rejected == []
    events = receiver.wait_for(len(BOTS))
    assert {e.name for e in events} == {"Bot Visit"}
    got = sorted((e.props["path"], e.props["kind"], e.props["agent"]) for e in events)
    want = sorted((f"/docs/{n}", kind, agent) for n, (_, _, kind, agent, _) in enumerate(BOTS))
    assert got == want
    operators = {e.props["path"]: e.props.get("operator", "") for e in events}
    for n, (_, _, _, _, operator) in enumerate(BOTS):
        assert operators[f"/docs/{n}"] == operator
    # Sent with a neutral browser User-Agent, so Plausible does not drop it as a bot.
    assert all(e.agent_kind is None for e in events)


def test_by_default_bots_cost_no_post_and_are_counted_by_kind(
    receiver: PlausibleReceiver,
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    app = pw.PlausibleMiddleware(page, collector)
    try:
        for n, (_, header, *_rest) in enumerate(BOTS):
            visit(app, header, n)
        for n, (_, header) in enumerate(HUMANS):
            visit(app, header, n)
        assert collector.flush(10)
    finally:
        app.close(2)
    events = receiver.wait_for(len(HUMANS))
    assert len(receiver.attempts) == len(HUMANS)  # not one POST for a bot
    assert {e.name for e in events} == {"pageview"}
    assert receiver.dropped == []
    by_kind = collections.Counter(f"bot:{kind}" for _, _, kind, _, _ in BOTS)
    skipped = app.stats().skipped
    assert {k: v for k, v in skipped.items() if k.startswith("bot:")} == dict(by_kind)
