"""The shared decision core on its own, the options record, and collector ownership."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Optional

import flask
import pytest

import plausible_wsgi as pw
from plausible_wsgi.agents import AgentMatch
from plausible_wsgi.context import RequestInfo
from plausible_wsgi.events import ValidEvent
from plausible_wsgi.flask import Plausible
from plausible_wsgi.middleware import (
    DEFAULT_BOT_USER_AGENT,
    MiddlewareOptions,
    RequestFacts,
    ResponseFacts,
    Skip,
    Tracked,
    decide,
)
from plausible_wsgi.middleware.pages import Pages
from plausible_wsgi.testing import MemoryCollector

INFO = RequestInfo(
    url="https://example.com/a", referrer="https://r.example/", user_agent="UA", client_ip="1.2.3.4"
)
HTML = "text/html; charset=utf-8"
BOT = AgentMatch(agent="GPTBot", operator="OpenAI", kind="ai_training")


def decision(
    method: str = "GET",
    status: Optional[int] = 200,
    content_type: Optional[str] = HTML,
    *,
    path: str = "/a",
    agent: Optional[AgentMatch] = None,
    range_: Optional[str] = None,
    route: Optional[str] = None,
    disposition: Optional[str] = None,
    failed: bool = False,
    **options: Any,
) -> Any:
    checked = MiddlewareOptions(**options).check()
    request = RequestFacts(
        method=method,
        page=Pages(checked).build("https", "example.com", path, ""),
        agent=agent,
        range=range_,
        route=route,
    )
    response = ResponseFacts(
        status=status, content_type=content_type, content_disposition=disposition, failed=failed
    )
    return decide(request, response, checked)


def event_of(result: Any, info: RequestInfo = INFO) -> pw.Event:
    """The event a decision records for the visitor of ``info``."""
    assert result.plan is not None, result
    event: pw.Event = result.plan.event(info)
    return event


def test_a_page_view_carries_the_visitor() -> None:
    result = decision()
    assert result.tracked is Tracked.PAGEVIEW
    assert result.skip is None
    assert isinstance(event_of(result), ValidEvent)
    assert event_of(result) == pw.Event(
        kind=pw.EventKind.PAGEVIEW,
        name="pageview",
        url=INFO.url,
        referrer=INFO.referrer,
        user_agent="UA",
        client_ip="1.2.3.4",
    )
    assert result.counter == "pageview"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"failed": True, "status": None}, Skip.EXCEPTION),
        ({"status": None}, Skip.NO_STATUS),
        ({"exclude_paths": ("/a",)}, Skip.EXCLUDED),
        ({"method": "POST"}, Skip.METHOD),
        ({"agent": BOT}, Skip.BOT),
        ({"status": 500}, Skip.STATUS),
        ({"content_type": "application/json"}, Skip.CONTENT_TYPE),
        ({"content_type": None}, Skip.CONTENT_TYPE),
        ({"allowed_hosts": ["other.example"]}, Skip.HOST),
    ],
)
def test_skip_reasons(kwargs: dict[str, Any], reason: Skip) -> None:
    result = decision(**kwargs)
    assert result.skip is reason
    assert result.plan is None


def test_a_bot_is_counted_by_kind_or_recorded_as_an_event() -> None:
    assert decision(agent=BOT).counter == "bot:ai_training"
    event = event_of(decision(agent=BOT, bots="event", status=404, content_type=None))
    assert event.name == "Bot Visit"
    assert event.referrer is None
    assert event.user_agent == DEFAULT_BOT_USER_AGENT
    assert event.client_ip == INFO.client_ip
    assert event.props == {
        "agent": "GPTBot",
        "operator": "OpenAI",
        "kind": "ai_training",
        "path": "/a",
        "status": "404",
    }
    assert decision(agent=BOT, bots="pageview").tracked is Tracked.PAGEVIEW


def test_actions_downloads_and_404() -> None:
    action = decision("POST", 303, None, route="/items/<id>", track_actions=True)
    assert action.tracked is Tracked.ACTION
    assert event_of(action).name == "POST /items/<id>"
    assert event_of(action).interactive is False
    download = decision(path="/f.pdf", content_type="application/pdf", file_downloads=True)
    assert download.tracked is Tracked.FILE_DOWNLOAD
    assert event_of(download).props == {"url": "https://example.com/f.pdf"}
    partial = decision(path="/f.pdf", status=206, range_="bytes=10-", file_downloads=True)
    assert partial.skip is Skip.PARTIAL
    assert decision(status=404, track_404=True).tracked is Tracked.NOT_FOUND


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"agent": BOT, "bots": "event"},
        {"method": "POST", "status": 303, "track_actions": True},
        {"path": "/f.pdf", "file_downloads": True},
        {"status": 404, "track_404": True},
    ],
)
def test_a_plan_makes_the_event_field_by_field(kwargs: dict[str, Any]) -> None:
    """EventPlan.event builds events positionally: every field must land in its place,
    and each visitor gets their own event (and their own props to change)."""
    plan = decision(**kwargs).plan
    assert plan is not None
    other = RequestInfo(url=INFO.url, referrer=None, user_agent="UA 2", client_ip="5.6.7.8")
    first, second = plan.event(INFO), plan.event(other)
    bot = plan.user_agent is not None
    assert first == pw.Event(
        kind=plan.kind,
        name=plan.name,
        url=plan.url,
        referrer=None if bot else INFO.referrer,
        props=plan.props,
        interactive=plan.interactive,
        user_agent=plan.user_agent if bot else INFO.user_agent,
        client_ip=INFO.client_ip,
    )
    # The class says whether collect() re-validates.
    assert type(first) is (ValidEvent if plan.valid else pw.Event)
    assert (second.user_agent, second.client_ip) == (
        plan.user_agent if bot else "UA 2",
        "5.6.7.8",
    )
    assert second.referrer is None
    if plan.props is not None:
        assert first.props is not second.props
        assert first.props is not plan.props


def test_the_wsgi_signature_has_the_options_defaults() -> None:
    """The WSGI constructor spells every option out (for users' type checkers); its
    defaults must be the record's."""
    parameters = inspect.signature(pw.PlausibleMiddleware).parameters
    for field in dataclasses.fields(MiddlewareOptions):
        assert parameters[field.name].default == field.default, field.name
    extra = set(parameters) - {f.name for f in dataclasses.fields(MiddlewareOptions)}
    assert extra == {"app", "collectors", "close_collectors"}


def test_unknown_option_names_are_configuration_errors() -> None:
    with pytest.raises(pw.ConfigurationError, match="track_404"):
        MiddlewareOptions.from_keywords({"track_4040": True})


# -- ownership ---------------------------------------------------------------------------


def _app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"x"]


def test_the_middleware_closes_its_collectors_by_default() -> None:
    collector = MemoryCollector()
    pw.PlausibleMiddleware(_app, collector).close()
    assert collector.closed


def test_close_collectors_false_leaves_them_to_their_owner() -> None:
    collector = MemoryCollector()
    pw.PlausibleMiddleware(_app, collector, close_collectors=False).close()
    assert not collector.closed


def test_an_integration_leaves_a_user_collector_open() -> None:
    collector = MemoryCollector()
    app = flask.Flask(__name__)
    app.config["PLAUSIBLE_COLLECTOR"] = collector
    plausible = Plausible(app)
    plausible.middleware.close()
    assert not collector.closed
    collector.close()
