"""plausible_wsgi.django: settings-driven middleware, track() in views, WSGI wrapping.

Runs the example project (examples/django_app/shop.py) with Django's test Client;
each test swaps ``settings.PLAUSIBLE`` with ``override_settings``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import Client, override_settings
from django.urls import include, path
from settings_hooks import STALL_OPTIONS, SettingsHooks
from sink import Sink, dead_endpoint, wait_until
from werkzeug.test import Client as WSGIClient

import plausible_wsgi as pw
import plausible_wsgi.django as pw_django
from plausible_wsgi.middleware import PlausibleMiddleware
from plausible_wsgi.receiver import PlausibleReceiver
from plausible_wsgi.testing import MemoryCollector

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop")
django.setup()

import shop  # noqa: E402

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
VISITOR = {"HTTP_USER_AGENT": BROWSER, "HTTP_X_FORWARDED_FOR": "10.1.1.1, 203.0.113.50"}


# -- URLs for the tests that need more than the example's views ------------------------


def review(request: HttpRequest, pk: int) -> HttpResponse:
    pw_django.track("Review", props={"item": pk})
    return HttpResponse("thanks", content_type="text/plain")


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"<p>one</p>", b"<p>two</p>"]), content_type="text/html")


urlpatterns = [
    path("shop/items/<int:pk>/reviews", review),
    path("broken", broken),
    path("stream", stream),
    path("", include(shop.urlpatterns)),
]


@pytest.fixture
def memory() -> Iterator[MemoryCollector]:
    collector = MemoryCollector()
    settings = {"COLLECTOR": collector, "TRACK_ACTIONS": True, "TRUSTED_PROXIES": 1}
    with override_settings(PLAUSIBLE=settings):
        yield collector


def test_example_project_records_pages_and_goals(memory: MemoryCollector) -> None:
    client = Client(**VISITOR)
    for url in ("/", "/items/2/", "/api/items", "/healthz"):
        assert client.get(url).status_code == 200, url
    assert client.get("/items/99/").status_code == 404
    assert client.post("/signup", {"plan": "pro"}).status_code == 303

    events = memory.events
    assert [e.url for e in events if e.name == "pageview"] == [
        "http://testserver/",
        "http://testserver/items/2/",
    ]
    [signup] = [e for e in events if e.name == "Signup"]
    assert signup.props == {"plan": "pro"}
    assert signup.url == "http://testserver/signup"
    # track() in the view picked up the visitor; the left XFF entry was not trusted.
    assert (signup.user_agent, signup.client_ip) == (BROWSER, "203.0.113.50")
    assert [e.name for e in events if e.kind is pw.EventKind.ACTION] == ["POST /signup"]


def test_actions_are_named_after_the_route(memory: MemoryCollector) -> None:
    with override_settings(ROOT_URLCONF=__name__):
        response = Client(**VISITOR).post("/shop/items/7/reviews")
    assert response.status_code == 200
    assert [(e.name, e.props) for e in memory.events] == [
        ("Review", {"item": "7"}),
        ("POST /shop/items/<int:pk>/reviews", None),
    ]


def test_errors_and_streaming(memory: MemoryCollector) -> None:
    client = Client(raise_request_exception=False, **VISITOR)
    with override_settings(ROOT_URLCONF=__name__):
        assert client.get("/broken").status_code == 500
        response = client.get("/stream")
        assert b"".join(response.streaming_content) == b"<p>one</p><p>two</p>"  # type: ignore[attr-defined]
    assert [e.url for e in memory.events] == ["http://testserver/stream"]


def test_settings_build_a_collector_that_delivers() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        settings = {
            "DOMAIN": "example.com",
            "ENDPOINT": receiver.url,
            "TRUSTED_PROXIES": 1,
            "RETRY": {"max_retries": 1},
        }
        with override_settings(PLAUSIBLE=settings):
            collector = pw_django.collector()
            assert isinstance(collector, pw.PlausibleCollector)
            assert collector.endpoint == receiver.url
            Client(**VISITOR).get("/items/1/", {"utm_campaign": "launch", "token": "x"})
        # Leaving override_settings closed the collector: everything was flushed.
        [event] = receiver.wait_for(1)
        assert len(receiver.events) == 1
    assert event.url == "http://testserver/items/1/?utm_campaign=launch"
    assert (event.user_agent, event.client_ip) == (BROWSER, "203.0.113.50")
    assert collector.stats().sent == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "PLAUSIBLE is missing", id="missing"),
        pytest.param(["example.com"], "must be a dict", id="not-a-dict"),
        pytest.param({}, "domain is required", id="no-domain"),
        pytest.param({"DOMAIN": "example.com", "DOMIAN": "x"}, "DOMIAN", id="unknown-key"),
        pytest.param({"DOMAIN": "example.com", "BATCH_SIZE": -1}, "batch_size", id="bad-value"),
        pytest.param({"DOMAIN": "example.com", "BOTS": "maybe"}, "bots", id="bad-middleware"),
    ],
)
def test_bad_settings_are_improperly_configured(value: object, message: str) -> None:
    with override_settings(PLAUSIBLE=value), pytest.raises(ImproperlyConfigured, match=message):
        pw_django.PlausibleMiddleware(lambda request: HttpResponse())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BEFORE_SEND", 42),
        ("ON_ERROR", "print"),
        ("ON_DROP", "log"),
        ("STALL_WARNING_AFTER", "5 minutes"),
    ],
)
def test_a_bad_hook_or_stall_setting_raises_at_setup(key: str, value: object) -> None:
    settings = {"DOMAIN": "example.com", key: value}
    with override_settings(PLAUSIBLE=settings), pytest.raises(pw.ConfigurationError) as raised:
        pw_django.PlausibleMiddleware(lambda request: HttpResponse())
    assert isinstance(raised.value, ImproperlyConfigured)
    assert key.lower() in str(raised.value)


def test_hooks_from_settings_reach_the_collector(http_sink: Sink) -> None:
    """``BEFORE_SEND`` rewrites and vetoes, ``ON_DROP`` hears the veto, ``ON_ERROR`` a
    rejection: each as given to the collector."""
    hooks = SettingsHooks(("/items/1/", "/items/2/", "/"))
    settings = {"DOMAIN": "example.com", "ENDPOINT": http_sink.url, **hooks.options()}
    client = Client(**VISITOR)
    with override_settings(PLAUSIBLE=settings):
        hooks.visit(http_sink, client.get, pw_django.collector().flush)
    # Leaving override_settings closed the collector: everything was flushed.
    hooks.check(http_sink, "http://testserver")


def test_stall_warning_after_from_settings_reaches_the_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A threshold far under the default (5 minutes) warns while the endpoint is dead."""
    caplog.set_level(logging.WARNING, logger="plausible_wsgi")
    settings = {"DOMAIN": "example.com", "ENDPOINT": dead_endpoint(), **STALL_OPTIONS}
    with override_settings(PLAUSIBLE=settings):
        Client(**VISITOR).get("/")
        wait_until(lambda: "nothing delivered for" in caplog.text)


def test_misspelt_setting_is_a_configuration_error_naming_the_key() -> None:
    """The same mistake raises the same error as in Flask (and Django's own)."""
    settings = {"DOMAIN": "example.com", "TRUSTED_PROXY": 1}
    with override_settings(PLAUSIBLE=settings), pytest.raises(pw.ConfigurationError) as raised:
        pw_django.PlausibleMiddleware(lambda request: HttpResponse())
    assert isinstance(raised.value, ImproperlyConfigured)
    assert "did you mean settings.PLAUSIBLE['TRUSTED_PROXIES']?" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "check_id", "text"),
    [
        pytest.param({"DOMAIN": "example.com", "TRUSTED_PROXY": 1}, "E001", "TRUSTED_PROXIES"),
        pytest.param({"DOMAIN": "https://example.com/"}, "E001", "'example.com'"),
        pytest.param(
            {"DOMAIN": "example.com", "ENDPOINT": "https://plausible.io/js/script.js"},
            "E001",
            "'https://plausible.io'",
        ),
        pytest.param(None, "W001", "PLAUSIBLE is missing"),
    ],
)
def test_manage_py_check_reports_bad_settings(value: object, check_id: str, text: str) -> None:
    from django.core import checks

    pw_django.reset()
    with override_settings(PLAUSIBLE=value):
        messages = [m for m in checks.run_checks() if m.id.startswith("plausible_wsgi.")]
    assert [m.id for m in messages] == [f"plausible_wsgi.{check_id}"]
    assert text in messages[0].msg


def test_manage_py_check_passes_good_settings(memory: MemoryCollector) -> None:
    from django.core import checks

    assert [m for m in checks.run_checks() if m.id.startswith("plausible_wsgi.")] == []


def test_app_config_loads() -> None:
    from django.apps import apps

    config = pw_django.PlausibleConfig.create("plausible_wsgi.django.PlausibleConfig")
    assert config.label == "plausible_wsgi"
    assert apps.ready


def test_wrapped_wsgi_application(monkeypatch: pytest.MonkeyPatch, memory: MemoryCollector) -> None:
    """The other setup: get_wsgi_application() wrapped in PlausibleMiddleware."""
    monkeypatch.setenv("SHOP_WRAPPED_WSGI", "1")
    monkeypatch.delitem(sys.modules, "wrapped_wsgi", raising=False)
    with override_settings(MIDDLEWARE=["plausible_wsgi.django.RouteMiddleware"]):
        wrapped_wsgi = importlib.import_module("wrapped_wsgi")
        application = wrapped_wsgi.application
        assert isinstance(application, PlausibleMiddleware)
        assert application.collectors == (memory,)
        client = WSGIClient(application)
        headers = {"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.51"}
        client.get("/items/1/", headers=headers, buffered=True)
        client.post("/signup", data={"plan": "team"}, headers=headers, buffered=True)
    assert [(e.name, e.url) for e in memory.events] == [
        ("pageview", "http://localhost/items/1/"),
        ("Signup", "http://localhost/signup"),
        ("POST /signup", "http://localhost/signup"),
    ]


def test_plain_get_wsgi_application_wrapping(memory: MemoryCollector) -> None:
    """Wrapping works without any Django middleware of ours, routes aside."""
    with override_settings(MIDDLEWARE=[]):
        application = PlausibleMiddleware(get_wsgi_application(), memory, track_actions=True)
        client = WSGIClient(application)
        client.get("/", headers={"User-Agent": BROWSER}, buffered=True)
        client.post(
            "/signup", data={"plan": "free"}, headers={"User-Agent": BROWSER}, buffered=True
        )
    assert [e.name for e in memory.events] == ["pageview", "Signup", "POST /signup"]


def test_track_outside_a_request(memory: MemoryCollector) -> None:
    assert pw_django.track("Nightly report", url="https://example.com/reports", interactive=False)
    assert pw_django.track_action("Cache purge", url="https://example.com/admin")
    assert [(e.name, e.interactive) for e in memory.events] == [
        ("Nightly report", False),
        ("Cache purge", False),
    ]
    assert pw_django.collector() is memory
