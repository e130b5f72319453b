"""The receiver app served by a real PlausibleReceiver on loopback, driven by requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from plausible_wsgi.errors import ConfigurationError
from plausible_wsgi.receiver import Fault, PlausibleReceiver, ReceiverApp
from plausible_wsgi.receiver import app as app_module
from plausible_wsgi.receiver.rules import MAX_BODY_BYTES

BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
PAGEVIEW = {"name": "pageview", "url": "https://example.com/", "domain": "example.com"}


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver() as running:
        yield running


def post(
    target: PlausibleReceiver | requests.Session,
    payload: Any = None,
    *,
    url: str | None = None,
    timeout: float = 5.0,
    **headers: str,
) -> requests.Response:
    """POST ``payload`` as JSON to ``/api/event`` with a browser User-Agent."""
    headers = {"User-Agent": BROWSER, "Content-Type": "application/json", **headers}
    data = payload if isinstance(payload, bytes) else json.dumps(payload or PAGEVIEW)
    if isinstance(target, PlausibleReceiver):
        return requests.post(f"{target.url}/api/event", data=data, headers=headers, timeout=timeout)
    assert url is not None
    return target.post(f"{url}/api/event", data=data, headers=headers, timeout=timeout)


# -- answers ---------------------------------------------------------------------------


def test_accepted_event_is_202_ok_and_recorded(receiver: PlausibleReceiver) -> None:
    response = post(
        receiver,
        {
            "n": "Signup",
            "u": "https://www.example.com/join?utm_source=hn",
            "d": "example.com",
            "p": {"plan": "pro", "seats": 3},
            "$": {"currency": "EUR", "amount": "9.50"},
            "interactive": False,
        },
        Referer="https://example.com/",
    )
    assert response.status_code == 202
    assert response.text == "ok"
    assert "x-plausible-dropped" not in response.headers

    [event] = receiver.wait_for(1)
    assert event.id == 1
    assert event.outcome == "accepted"
    assert event.status == 202
    assert (event.name, event.pathname, event.hostname, event.domain) == (
        "Signup",
        "/join",
        "example.com",
        "example.com",
    )
    assert event.props == {"plan": "pro", "seats": "3"}
    assert event.revenue == {"currency": "EUR", "amount": "9.50"}
    assert event.interactive is False
    assert event.query_params == {"utm_source": "hn"}
    assert event.user_agent == BROWSER
    assert event.client_ip == "127.0.0.1"
    assert len(event.visitor_id) == 16
    int(event.visitor_id, 16)
    assert (event.agent_kind, event.agent_name, event.agent_operator) == (None, None, None)
    assert event.errors is None
    assert event.drop_reason is None
    assert abs(event.received_at - time.time()) < 60
    assert receiver.all == [event]
    assert receiver.dropped == []
    assert receiver.rejected == []


def test_text_plain_body_is_json_too(receiver: PlausibleReceiver) -> None:
    response = post(receiver, PAGEVIEW, **{"Content-Type": "text/plain"})
    assert response.status_code == 202
    assert receiver.wait_for(1)[0].name == "pageview"


def test_unknown_domain_is_dropped() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        response = post(receiver, {**PAGEVIEW, "domain": "other.org"})
        assert (response.status_code, response.text) == (202, "ok")
        assert response.headers["x-plausible-dropped"] == "1"
        [record] = receiver.dropped
        assert (record.outcome, record.drop_reason, record.domain) == (
            "dropped",
            "unknown_domain",
            "other.org",
        )
        assert receiver.events == []


def test_one_request_for_two_domains_drops_only_the_unknown_one() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        response = post(receiver, {**PAGEVIEW, "domain": "example.com,other.org"})
        assert response.headers["x-plausible-dropped"] == "1"
        [first, second] = receiver.all
        assert (first.domain, first.outcome) == ("example.com", "accepted")
        assert (second.domain, second.outcome) == ("other.org", "dropped")
        assert second.id == first.id + 1
        assert first.visitor_id != second.visitor_id


@pytest.mark.parametrize(
    ("user_agent", "kind", "agent", "operator"),
    [
        pytest.param(GPTBOT, "ai_training", "GPTBot", "OpenAI", id="GPTBot"),
        pytest.param(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/85.0.4183.83 Safari/537.36",
            "other_bot",
            "HeadlessChrome",
            "",
            id="Headless Chrome",
        ),
    ],
)
def test_bot_user_agent_is_dropped_with_its_kind(
    receiver: PlausibleReceiver,
    user_agent: str,
    kind: str,
    agent: str | None,
    operator: str | None,
) -> None:
    response = post(receiver, PAGEVIEW, **{"User-Agent": user_agent})
    assert response.status_code == 202
    assert response.headers["x-plausible-dropped"] == "1"
    [record] = receiver.dropped
    assert (record.drop_reason, record.agent_kind) == ("bot", kind)
    if agent is not None:
        assert (record.agent_name, record.agent_operator) == (agent, operator)


@pytest.mark.parametrize(
    "user_agent",
    [
        pytest.param("python-requests/2.32.3", id="python-requests"),
        pytest.param("curl/8.5.0", id="curl"),
        pytest.param("", id="empty User-Agent"),
    ],
)
def test_http_libraries_and_a_missing_user_agent_are_counted_like_plausible(
    receiver: PlausibleReceiver, user_agent: str
) -> None:
    # Plausible's UAInspector calls these clients, not bots (event.ex put_user_agent):
    # it counts them, so the receiver does too, while naming the agent.
    response = post(receiver, PAGEVIEW, **{"User-Agent": user_agent})
    assert response.status_code == 202
    assert "x-plausible-dropped" not in response.headers
    [record] = receiver.wait_for(1)
    assert record.agent_kind == "other_bot"


def test_private_ips_are_kept_by_default(receiver: PlausibleReceiver) -> None:
    post(receiver, PAGEVIEW)
    assert receiver.wait_for(1)[0].client_ip == "127.0.0.1"


def test_private_ips_are_dropped_when_asked() -> None:
    with PlausibleReceiver(drop_private_ips=True) as receiver:
        assert post(receiver, PAGEVIEW).headers["x-plausible-dropped"] == "1"
        assert (
            post(receiver, PAGEVIEW, **{"X-Forwarded-For": "192.168.1.9"}).headers[
                "x-plausible-dropped"
            ]
            == "1"
        )
        assert (
            "x-plausible-dropped"
            not in post(receiver, PAGEVIEW, **{"X-Forwarded-For": "93.184.216.34"}).headers
        )
        assert [r.drop_reason for r in receiver.all] == ["private_ip", "private_ip", None]


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        pytest.param("93.184.216.34, 10.0.0.1", "93.184.216.34", id="first element"),
        pytest.param("93.184.216.34:51000", "93.184.216.34", id="port stripped"),
        pytest.param("[2001:db8::7]:443, 10.0.0.1", "2001:db8::7", id="IPv6 brackets, port"),
        pytest.param(None, "127.0.0.1", id="socket address"),
    ],
)
def test_client_ip_is_read_like_plausible(
    receiver: PlausibleReceiver, forwarded_for: str | None, expected: str
) -> None:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    post(receiver, PAGEVIEW, **headers)
    assert receiver.wait_for(1)[0].client_ip == expected


def test_visitor_id_depends_on_user_agent_and_ip(receiver: PlausibleReceiver) -> None:
    post(receiver, PAGEVIEW, **{"X-Forwarded-For": "93.184.216.34"})
    post(
        receiver,
        {**PAGEVIEW, "url": "https://example.com/other"},
        **{"X-Forwarded-For": "93.184.216.34"},
    )
    post(receiver, PAGEVIEW, **{"X-Forwarded-For": "93.184.216.35"})
    post(receiver, PAGEVIEW, **{"X-Forwarded-For": "93.184.216.34", "User-Agent": BROWSER + "x"})
    first, same, other_ip, other_ua = (e.visitor_id for e in receiver.wait_for(4))
    assert first == same
    assert len({first, other_ip, other_ua}) == 3


def test_validation_error_is_400_with_error_fields(receiver: PlausibleReceiver) -> None:
    response = post(receiver, {"url": "https://example.com/", "domain": "example.com"})
    assert response.status_code == 400
    assert response.json() == {"errors": {"event_name": ["can't be blank"]}}
    [record] = receiver.rejected
    assert (record.outcome, record.status) == ("rejected", 400)
    assert record.errors == {"event_name": ["can't be blank"]}
    assert record.url == "https://example.com/"
    assert record.body is not None
    assert json.loads(record.body)["domain"] == "example.com"
    assert receiver.events == []


def test_malformed_json_is_400(receiver: PlausibleReceiver) -> None:
    response = post(receiver, b'{"name": "pageview",')
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["request"]
    assert receiver.rejected[0].body == '{"name": "pageview",'


def test_body_over_8_mb_is_413(receiver: PlausibleReceiver) -> None:
    response = post(receiver, b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    [record] = receiver.rejected
    assert record.status == 413
    # The connection survives: the next request on a fresh one is judged normally.
    assert post(receiver, PAGEVIEW).status_code == 202


def test_chunked_body_is_accepted(receiver: PlausibleReceiver) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "pageview", '
        yield b'"url": "https://example.com/chunked", "domain": "example.com"}'

    response = requests.post(
        f"{receiver.url}/api/event",
        data=chunks(),
        headers={"User-Agent": BROWSER, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 202
    assert receiver.wait_for(1)[0].pathname == "/chunked"


def test_health(receiver: PlausibleReceiver) -> None:
    response = requests.get(f"{receiver.url}/api/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert isinstance(response.json(), dict)


def test_other_methods_and_paths(receiver: PlausibleReceiver) -> None:
    # Plausible routes only POST to /api/event: anything else there is a 404.
    assert requests.get(f"{receiver.url}/api/event", timeout=5).status_code == 404
    assert requests.put(f"{receiver.url}/api/event", timeout=5).status_code == 404
    assert requests.post(f"{receiver.url}/api/health", timeout=5).status_code == 405
    assert requests.get(f"{receiver.url}/nope", timeout=5).status_code == 404
    assert receiver.request_count == 0


# -- connections -----------------------------------------------------------------------


def test_keep_alive_connection_is_reused(receiver: PlausibleReceiver) -> None:
    with requests.Session() as session:
        for _ in range(3):
            response = post(session, PAGEVIEW, url=receiver.url)
            assert response.status_code == 202
            assert response.headers.get("Connection", "").lower() != "close"
        post(session, {"name": ""}, url=receiver.url)
    ports = {attempt.remote_port for attempt in receiver.attempts}
    assert len(ports) == 1
    assert len(receiver.wait_for(3)) == 3


def test_connection_close_is_honoured(receiver: PlausibleReceiver) -> None:
    response = post(receiver, PAGEVIEW, Connection="close")
    assert response.headers["Connection"].lower() == "close"


def test_down_refuses_connections_and_up_accepts_on_the_same_port(
    receiver: PlausibleReceiver,
) -> None:
    url = receiver.url
    assert post(receiver, PAGEVIEW).status_code == 202
    receiver.down()
    assert not receiver.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", receiver.port), timeout=5).close()
    with pytest.raises(requests.ConnectionError):
        post(receiver, PAGEVIEW)
    receiver.up()
    assert receiver.url == url
    assert post(receiver, PAGEVIEW).status_code == 202
    assert len(receiver.wait_for(2)) == 2
    assert receiver.request_count == 2


def test_down_cuts_open_keep_alive_connections(receiver: PlausibleReceiver) -> None:
    with requests.Session() as session:
        assert post(session, PAGEVIEW, url=receiver.url).status_code == 202
        receiver.down()
        with pytest.raises(requests.ConnectionError):
            post(session, PAGEVIEW, url=receiver.url)
        receiver.up()
        assert post(session, PAGEVIEW, url=receiver.url).status_code == 202
    assert receiver.request_count == 2


def test_stop_is_idempotent_and_url_needs_a_port() -> None:
    receiver = PlausibleReceiver()
    with pytest.raises(RuntimeError, match="start"):
        _ = receiver.url
    receiver.stop()
    receiver.start()
    assert receiver.start() is receiver
    assert receiver.url == f"http://127.0.0.1:{receiver.port}"
    assert not receiver.url.endswith("/")
    receiver.stop()
    receiver.stop()


# -- faults ----------------------------------------------------------------------------


def test_faults_answer_in_order_then_normal_processing(receiver: PlausibleReceiver) -> None:
    receiver.enqueue_faults(
        Fault(503, {"Retry-After": "7"}, body="maintenance"),
        Fault(429),
    )
    first, second, third = (post(receiver, PAGEVIEW) for _ in range(3))
    assert (first.status_code, first.text, first.headers["Retry-After"]) == (
        503,
        "maintenance",
        "7",
    )
    assert second.status_code == 429
    assert (third.status_code, third.text) == (202, "ok")
    assert receiver.request_count == 3
    assert [a.fault.status if a.fault else None for a in receiver.attempts] == [503, 429, None]
    assert [a.number for a in receiver.attempts] == [1, 2, 3]
    assert len(receiver.events) == 1
    assert receiver.app.pending_faults == 0


def test_attempts_keep_the_request(receiver: PlausibleReceiver) -> None:
    receiver.enqueue_faults(Fault())
    post(receiver, PAGEVIEW)
    post(receiver, PAGEVIEW)
    first, second = receiver.wait_for_attempts(2)
    assert first.body == second.body == json.dumps(PAGEVIEW).encode()
    assert first.headers["User-Agent"] == BROWSER


def test_reset_fault_closes_the_connection_without_an_answer(
    receiver: PlausibleReceiver,
) -> None:
    receiver.enqueue_faults(Fault(reset=True))
    with pytest.raises(requests.ConnectionError):
        post(receiver, PAGEVIEW)
    assert post(receiver, PAGEVIEW).status_code == 202
    assert receiver.request_count == 2
    assert len(receiver.wait_for(1)) == 1


def test_reset_fault_on_a_keep_alive_connection(receiver: PlausibleReceiver) -> None:
    with requests.Session() as session:
        assert post(session, PAGEVIEW, url=receiver.url).status_code == 202
        receiver.enqueue_faults(Fault(reset=True))
        with pytest.raises(requests.ConnectionError):
            post(session, PAGEVIEW, url=receiver.url)
        assert post(session, PAGEVIEW, url=receiver.url).status_code == 202
    assert len(receiver.events) == 2


def test_fault_delay_then_answer(receiver: PlausibleReceiver) -> None:
    receiver.enqueue_faults(Fault(503, delay=0.3))
    started = time.monotonic()
    assert post(receiver, PAGEVIEW).status_code == 503
    assert time.monotonic() - started >= 0.3


def test_slow_server_delay(receiver: PlausibleReceiver) -> None:
    receiver.app.delay = 0.3
    started = time.monotonic()
    assert post(receiver, PAGEVIEW).status_code == 202
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.ReadTimeout):
        post(receiver, PAGEVIEW, timeout=0.05)


def test_a_long_delay_does_not_hold_up_stop() -> None:
    receiver = PlausibleReceiver().start()
    receiver.enqueue_faults(Fault(delay=60))
    with pytest.raises(requests.ReadTimeout):
        post(receiver, PAGEVIEW, timeout=0.2)
    receiver.app.delay = 60
    with pytest.raises(requests.ReadTimeout):
        post(receiver, PAGEVIEW, timeout=0.2)
    started = time.monotonic()
    receiver.stop()
    assert time.monotonic() - started < 30  # not the 60 s delays


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"status": 42}, id="status below 100"),
        pytest.param({"status": 600}, id="status above 599"),
        pytest.param({"delay": -1}, id="negative delay"),
    ],
)
def test_fault_arguments_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Fault(**kwargs)


def test_reset_needs_werkzeugs_server() -> None:
    app = ReceiverApp()
    app.enqueue_faults(Fault(reset=True))
    with pytest.raises(RuntimeError, match="werkzeug"):
        Client(app).post("/api/event", json=PAGEVIEW)


# -- waiting and memory ----------------------------------------------------------------


def test_wait_for_events_sent_from_another_thread(receiver: PlausibleReceiver) -> None:
    def send() -> None:
        for _ in range(3):
            post(receiver, PAGEVIEW)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert len(receiver.wait_for(3, timeout=10)) == 3
    finally:
        sender.join(10)


def test_wait_for_timeout_lists_what_arrived() -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        receiver.enqueue_faults(Fault(503))
        post(receiver, PAGEVIEW)
        post(receiver, {**PAGEVIEW, "name": "Signup"})
        post(receiver, {**PAGEVIEW, "domain": "other.org"})
        post(receiver, {"name": "pageview"})
        with pytest.raises(TimeoutError) as raised:
            receiver.wait_for(2, timeout=0.2)
    message = str(raised.value)
    assert "expected 2 accepted events within 0.2s" in message
    assert "accepted 202 'Signup'" in message
    assert "unknown_domain" in message
    assert "rejected 400" in message
    assert "can't be blank" in message
    assert "4 requests to /api/event, 1 answered by faults" in message


def test_wait_for_timeout_when_nothing_arrived(receiver: PlausibleReceiver) -> None:
    with pytest.raises(TimeoutError, match="nothing"):
        receiver.wait_for(1, timeout=0.05)
    with pytest.raises(TimeoutError, match="expected 1 requests"):
        receiver.wait_for_attempts(1, timeout=0.05)


def test_records_are_bounded() -> None:
    with PlausibleReceiver(max_events=5) as receiver, requests.Session() as session:
        for index in range(8):
            post(session, {**PAGEVIEW, "url": f"https://example.com/{index}"}, url=receiver.url)
        assert [e.pathname for e in receiver.all] == [f"/{i}" for i in range(3, 8)]
        assert [e.id for e in receiver.all] == [4, 5, 6, 7, 8]
        assert len(receiver.attempts) == 5
        assert receiver.request_count == 8
        assert len(receiver.wait_for(5, timeout=0.5)) == 5


def test_max_events_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        ReceiverApp(max_events=0)


def test_clear_forgets_records(receiver: PlausibleReceiver) -> None:
    post(receiver, PAGEVIEW)
    receiver.wait_for(1)
    receiver.clear()
    assert receiver.all == []
    assert receiver.request_count == 0
    post(receiver, PAGEVIEW)
    [event] = receiver.wait_for(1)
    assert event.id == 2


def test_concurrent_requests_are_all_recorded(receiver: PlausibleReceiver) -> None:
    def send(worker: int) -> None:
        with requests.Session() as session:
            for index in range(10):
                payload = {**PAGEVIEW, "url": f"https://example.com/{worker}/{index}"}
                assert post(session, payload, url=receiver.url).status_code == 202

    threads = [threading.Thread(target=send, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    events = receiver.wait_for(80)
    assert len({event.id for event in events}) == 80
    assert len({event.pathname for event in events}) == 80


# -- inspector -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        pytest.param("/", "text/html", b"static/inspector.js", id="page"),
        pytest.param("/static/inspector.js", "text/javascript", b"textContent", id="script"),
        pytest.param("/static/inspector.css", "text/css", b".pill", id="stylesheet"),
    ],
)
def test_inspector_assets_are_served(
    receiver: PlausibleReceiver, path: str, content_type: str, marker: bytes
) -> None:
    response = requests.get(receiver.url + path, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert marker in response.content


@pytest.mark.parametrize(
    "path", ["/static/app.py", "/static/../app.py", "/static/", "/static/inspector.html"]
)
def test_only_known_assets_are_served(receiver: PlausibleReceiver, path: str) -> None:
    assert requests.get(receiver.url + path, timeout=5).status_code == 404


def test_feed_returns_records_after_an_id(receiver: PlausibleReceiver) -> None:
    receiver.enqueue_faults(Fault())
    for name in ("a", "b", "c", "d"):
        post(receiver, {**PAGEVIEW, "name": name})
    post(receiver, {"name": ""})
    feed = requests.get(f"{receiver.url}/_inspector/events?after=1", timeout=5).json()
    assert [event["name"] for event in feed["events"]] == ["c", "d", ""]
    assert feed["last_id"] == 4
    assert feed["totals"] == {
        "accepted": 3,
        "dropped": 0,
        "rejected": 1,
        "requests": 5,
        "faulted": 1,
    }
    assert abs(feed["now"] - time.time()) < 60
    event = feed["events"][0]
    assert event["props"] == {}
    assert event["outcome"] == "accepted"
    assert feed["events"][-1]["errors"]["event_name"] == ["can't be blank"]
    later = requests.get(f"{receiver.url}/_inspector/events?after=4", timeout=5).json()
    assert later["events"] == []
    assert requests.get(f"{receiver.url}/_inspector/events?after=x", timeout=5).ok


def test_feed_returns_at_most_the_newest_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "FEED_LIMIT", 3)
    client = Client(ReceiverApp())
    for index in range(5):
        client.post(
            "/api/event",
            json={**PAGEVIEW, "name": str(index)},
            headers={"User-Agent": BROWSER},
        )
    feed = client.get("/_inspector/events?after=0").json
    assert feed is not None
    assert [event["id"] for event in feed["events"]] == [3, 4, 5]
    assert feed["last_id"] == 5
