"""plausible_wsgi.flask: config mapping, init_app, route names, track() in views."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from settings_hooks import STALL_OPTIONS, SettingsHooks
from sink import Sink, dead_endpoint, wait_until
from werkzeug.test import Client, TestResponse

import plausible_wsgi as pw
from plausible_wsgi import PlausibleCollector
from plausible_wsgi._options import collector_options, middleware_options
from plausible_wsgi.flask import Plausible, config_keys
from plausible_wsgi.middleware import PlausibleMiddleware
from plausible_wsgi.receiver import PlausibleReceiver
from plausible_wsgi.testing import MemoryCollector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import flask_app

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HEADERS = {"User-Agent": BROWSER}


def request(client: Client, method: str, path: str, **kwargs: Any) -> TestResponse:
    """A request whose response is closed (the middleware records at close)."""
    kwargs.setdefault("headers", HEADERS)
    return client.open(path, method=method, buffered=True, **kwargs)


@pytest.fixture
def memory() -> Iterator[MemoryCollector]:
    collector = MemoryCollector()
    yield collector
    collector.close()


@pytest.fixture
def shop(memory: MemoryCollector) -> flask.Flask:
    return flask_app.create_app({"PLAUSIBLE_COLLECTOR": memory, "PLAUSIBLE_TRACK_ACTIONS": True})


def test_example_records_pages_goals_and_revenue(
    shop: flask.Flask, memory: MemoryCollector
) -> None:
    client = shop.test_client()
    for path in ("/", "/pricing", "/items/2", "/api/items", "/healthz", "/static/style.css"):
        assert request(client, "GET", path).status_code == 200, path
    assert request(client, "GET", "/items/99").status_code == 404
    response = request(client, "POST", "/signup", data={"plan": "pro"})
    assert response.status_code == 303
    assert (
        request(client, "POST", "/checkout", data={"item": "2", "quantity": "2"}).status_code == 200
    )

    events = memory.events
    pageviews = [e.url for e in events if e.name == "pageview"]
    assert pageviews == [
        "http://localhost/",
        "http://localhost/pricing",
        "http://localhost/items/2",
    ]
    [signup] = [e for e in events if e.name == "Signup"]
    assert signup.props == {"plan": "pro"}
    assert signup.url == "http://localhost/signup"
    assert signup.user_agent == BROWSER
    assert signup.client_ip == "127.0.0.1"
    [purchase] = [e for e in events if e.name == "Purchase"]
    assert purchase.revenue == pw.Revenue("USD", "98.00")
    assert purchase.props == {"item": "Pro kit", "quantity": "2"}
    actions = [e.name for e in events if e.kind is pw.EventKind.ACTION]
    assert actions == ["POST /signup", "POST /checkout"]


def test_action_names_come_from_the_url_rule(memory: MemoryCollector) -> None:
    app = flask.Flask(__name__)
    app.config.update(PLAUSIBLE_COLLECTOR=memory, PLAUSIBLE_TRACK_ACTIONS=True)

    @app.post("/items/<int:item_id>/reviews")
    def review(item_id: int) -> str:
        return "thanks"

    @app.delete("/users/<name>")
    def remove(name: str) -> tuple[str, int]:
        return "", 204

    Plausible(app)
    client = app.test_client()
    request(client, "POST", "/items/7/reviews")
    request(client, "DELETE", "/users/ann")
    request(client, "POST", "/nowhere")  # 404: no rule, no action
    assert [e.name for e in memory.events] == [
        "POST /items/<int:item_id>/reviews",
        "DELETE /users/<name>",
    ]


def test_the_route_is_looked_up_only_for_action_names(memory: MemoryCollector) -> None:
    """Without ``track_actions`` nothing reads the route: no signal runs per request."""
    quiet, naming = flask.Flask("quiet"), flask.Flask("naming")
    quiet.config.update(PLAUSIBLE_COLLECTOR=memory)
    naming.config.update(PLAUSIBLE_COLLECTOR=memory, PLAUSIBLE_TRACK_ACTIONS=True)
    for app in (quiet, naming):
        Plausible(app)
    assert not flask.request_started.has_receivers_for(quiet)
    assert flask.request_started.has_receivers_for(naming)


def test_init_app_reads_every_option_from_config() -> None:
    app = flask.Flask(__name__)
    app.config.update(
        PLAUSIBLE_DOMAIN="shop.example.com",
        PLAUSIBLE_ENDPOINT="https://stats.example.org/",
        PLAUSIBLE_BATCH_SIZE=3,
        PLAUSIBLE_SHUTDOWN_TIMEOUT=1.5,
        PLAUSIBLE_RETRY={"max_retries": 1},
        PLAUSIBLE_CIRCUIT_BREAKER=None,
        PLAUSIBLE_TRUSTED_PROXIES=2,
        PLAUSIBLE_METHODS=["GET", "HEAD"],
        PLAUSIBLE_TRACK_404=True,
    )
    plausible = Plausible()
    plausible.init_app(app)
    try:
        assert app.extensions["plausible"] is plausible
        collector = plausible.collector
        assert isinstance(collector, PlausibleCollector)
        assert collector.domain == "shop.example.com"
        assert collector.endpoint == "https://stats.example.org"
        assert collector._settings["batch_size"] == 3
        assert collector._settings["retry"] == pw.RetryConfig(max_retries=1)
        assert collector._settings["circuit_breaker"] is None
        middleware = plausible.middleware
        assert app.wsgi_app is middleware
        assert isinstance(middleware, PlausibleMiddleware)
        assert middleware.options.trusted_proxies == 2
        assert middleware.options.methods == {"GET", "HEAD"}
        assert middleware.options.track_404 is True
        assert middleware.collectors == (collector,)
    finally:
        plausible.middleware.close(0)


def test_config_keys_cover_every_collector_and_middleware_argument() -> None:
    keys = config_keys()
    for name in (*collector_options(), *middleware_options()):
        assert keys[f"PLAUSIBLE_{name.upper()}"] == name
    assert keys["PLAUSIBLE_COLLECTOR"] == "collector"
    # The documented table names the options a reader looks for first.
    doc = sys.modules["plausible_wsgi.flask"].__doc__ or ""
    for key in ("PLAUSIBLE_DOMAIN", "PLAUSIBLE_ENDPOINT", "PLAUSIBLE_TRUSTED_PROXIES"):
        assert key in doc


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({}, "domain is required", id="no-domain"),
        pytest.param({"PLAUSIBLE_DOMAIN": "https://x.com"}, "not a URL", id="url-as-domain"),
        pytest.param(
            {"PLAUSIBLE_DOMAIN": "x.com", "PLAUSIBLE_BATCH_SIZE": 0}, "batch_size", id="batch"
        ),
        pytest.param(
            {"PLAUSIBLE_DOMAIN": "x.com", "PLAUSIBLE_RETRY": {"retries": 2}}, "retry", id="retry"
        ),
        pytest.param(
            {"PLAUSIBLE_DOMAIN": "x.com", "PLAUSIBLE_TRUSTED_PROXIES": -1},
            "trusted_proxies",
            id="middleware-option",
        ),
        pytest.param(
            {"PLAUSIBLE_DOMAIN": "x.com", "PLAUSIBLE_COLLECTOR": MemoryCollector()},
            "not both",
            id="collector-and-domain",
        ),
        pytest.param({"PLAUSIBLE_COLLECTOR": "nope"}, "must be a collector", id="not-a-collector"),
        *(
            pytest.param({"PLAUSIBLE_DOMAIN": "x.com", key: value}, name, id=name)
            for key, name, value in [
                ("PLAUSIBLE_BEFORE_SEND", "before_send", 42),
                ("PLAUSIBLE_ON_ERROR", "on_error", "print"),
                ("PLAUSIBLE_ON_DROP", "on_drop", "log"),
                ("PLAUSIBLE_STALL_WARNING_AFTER", "stall_warning_after", "5 minutes"),
            ]
        ),
    ],
)
def test_invalid_config_names_the_setting(config: dict[str, object], message: str) -> None:
    app = flask.Flask(__name__)
    app.config.update(config)
    with pytest.raises(pw.ConfigurationError, match=message) as raised:
        Plausible(app)
    assert "PLAUSIBLE_" in str(raised.value)
    assert "plausible" not in app.extensions


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("PLAUSIBLE_TRUSTED_PROXY", "PLAUSIBLE_TRUSTED_PROXIES"),
        ("PLAUSIBLE_TRACK_ACTOINS", "PLAUSIBLE_TRACK_ACTIONS"),
    ],
)
def test_unknown_key_raises_naming_the_closest_key(
    memory: MemoryCollector, key: str, meant: str
) -> None:
    """A typo would silently keep a default (every visitor gets the proxy's IP)."""
    app = flask.Flask(__name__)
    app.config.update({"PLAUSIBLE_COLLECTOR": memory, key: 1})
    with pytest.raises(pw.ConfigurationError, match=rf"did you mean app.config\['{meant}'\]"):
        Plausible(app)
    assert "plausible" not in app.extensions


def test_init_app_twice_is_an_error(memory: MemoryCollector) -> None:
    app = flask.Flask(__name__)
    app.config["PLAUSIBLE_COLLECTOR"] = memory
    plausible = Plausible(app)
    with pytest.raises(RuntimeError, match="already"):
        plausible.init_app(app)
    with pytest.raises(RuntimeError, match="already"):
        Plausible(app)


def test_one_extension_serves_several_apps() -> None:
    plausible = Plausible()
    first, second = MemoryCollector("first"), MemoryCollector("second")
    apps = []
    for collector in (first, second):
        app = flask.Flask(__name__)
        app.config["PLAUSIBLE_COLLECTOR"] = collector

        @app.post("/go")
        def go() -> str:
            assert plausible.collector is flask.current_app.config["PLAUSIBLE_COLLECTOR"]
            plausible.track("Go", props={"app": flask.current_app.config["NAME"]})
            return "ok"

        app.config["NAME"] = collector.name
        plausible.init_app(app)
        apps.append(app)

    for app in apps:
        assert request(app.test_client(), "POST", "/go").status_code == 200
    assert [e.props for e in first.events] == [{"app": "first"}]
    assert [e.props for e in second.events] == [{"app": "second"}]
    with pytest.raises(RuntimeError, match="several apps"):
        plausible.collector  # noqa: B018
    with apps[1].app_context():
        assert plausible.collector is second


def test_track_outside_a_request(memory: MemoryCollector) -> None:
    plausible = Plausible()
    with pytest.raises(RuntimeError, match="init_app"):
        plausible.track("Cron", url="https://example.com/cron")
    app = flask.Flask(__name__)
    app.config["PLAUSIBLE_COLLECTOR"] = [memory, MemoryCollector("copy")]
    plausible.init_app(app)
    assert plausible.track("Cron", url="https://example.com/cron", interactive=False)
    assert plausible.track_action("Rebuild", url="https://example.com/admin")
    assert [(e.name, e.interactive) for e in memory.events] == [("Cron", False), ("Rebuild", False)]
    assert len(plausible.collectors[1].events) == 2  # type: ignore[attr-defined]
    with pytest.raises(pw.InvalidEventError):
        plausible.track("pageview", url="https://example.com/")


def test_events_reach_a_receiver() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        app = flask_app.create_app(
            {
                "PLAUSIBLE_ENDPOINT": receiver.url,
                "PLAUSIBLE_SHUTDOWN_TIMEOUT": 5.0,
                "PLAUSIBLE_TRUSTED_PROXIES": 1,
            }
        )
        client = app.test_client()
        headers = {**HEADERS, "X-Forwarded-For": "198.51.100.7", "Referer": "https://news.example/"}
        request(client, "GET", "/about?utm_source=news&session=secret", headers=headers)
        request(client, "POST", "/signup", data={"plan": "team"}, headers=headers)
        with app.app_context():
            app.extensions["plausible"].middleware.close()
        by_name = {e.name: e for e in receiver.wait_for(2)}
    pageview, signup = by_name["pageview"], by_name["Signup"]
    assert pageview.url == "http://localhost/about?utm_source=news"
    assert pageview.query_params == {"utm_source": "news"}
    assert pageview.referrer == "https://news.example/"
    assert signup.props == {"plan": "team"}
    for event in (pageview, signup):
        assert event.user_agent == BROWSER
        assert event.client_ip == "198.51.100.7"
        assert event.domain == "example.com"


def test_hooks_from_config_reach_the_collector(http_sink: Sink) -> None:
    """``PLAUSIBLE_BEFORE_SEND`` rewrites and vetoes, ``PLAUSIBLE_ON_DROP`` hears the
    veto, ``PLAUSIBLE_ON_ERROR`` a rejection: each as given to the collector."""
    hooks = SettingsHooks(("/pricing", "/items/2", "/"))
    config = {f"PLAUSIBLE_{key}": value for key, value in hooks.options().items()}
    app = flask_app.create_app({"PLAUSIBLE_ENDPOINT": http_sink.url, **config})
    client = app.test_client()
    with app.app_context():
        plausible = app.extensions["plausible"]
        hooks.visit(http_sink, lambda path: request(client, "GET", path), plausible.collector.flush)
        plausible.middleware.close()
    hooks.check(http_sink, "http://localhost")


def test_stall_warning_after_from_config_reaches_the_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A threshold far under the default (5 minutes) warns while the endpoint is dead."""
    caplog.set_level(logging.WARNING, logger="plausible_wsgi")
    config = {f"PLAUSIBLE_{key}": value for key, value in STALL_OPTIONS.items()}
    app = flask_app.create_app({"PLAUSIBLE_ENDPOINT": dead_endpoint(), **config})
    try:
        request(app.test_client(), "GET", "/")
        wait_until(lambda: "nothing delivered for" in caplog.text)
    finally:
        with app.app_context():
            app.extensions["plausible"].middleware.close()
