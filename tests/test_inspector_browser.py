"""The inspector page in headless Chromium: events appear live, filters work.

The page is opened *before* any event is sent, so what is asserted is the live
arrival through the polled feed, not a static render. Chromium is driven over the
DevTools protocol with ``websocket-client``; a screenshot is written to
``test-artifacts/inspector.png``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from plausible_wsgi.receiver import PlausibleReceiver

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
XSS_NAME = '<img src=x onerror="window.__pwned=1">'
LAUNCH_TIMEOUT = 90.0  # a first launch on a loaded machine: fonts, profile
PAGE_TIMEOUT_MS = 15_000


def _require(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed (CI installs it)")


class DevTools:
    """A minimal Chrome DevTools Protocol client: one websocket, blocking calls."""

    def __init__(self, url: str) -> None:
        import websocket

        # Chromium refuses websocket clients sending an Origin it does not allow.
        self._socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page, awaiting promises; return the value."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(details.get("exception", {}).get("description", details))
        return result["result"].get("value")

    def wait_until(self, condition: str, what: str) -> Any:
        """Wait, in the page, until ``condition`` (a JS expression) is truthy."""
        return self.evaluate(
            f"""new Promise((resolve, reject) => {{
                const deadline = Date.now() + {PAGE_TIMEOUT_MS};
                const check = () => {{
                    let value;
                    try {{ value = ({condition}); }} catch (error) {{ value = undefined; }}
                    if (value) resolve(value);
                    else if (Date.now() > deadline) reject(new Error({json.dumps(what)}));
                    else setTimeout(check, 25);
                }};
                check();
            }})"""
        )

    def close(self) -> None:
        self._socket.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One headless Chromium for the module (a launch costs seconds on a loaded
    machine); its DevTools port. Each test gets a tab of its own (``page``)."""
    if not CHROMIUM.exists():
        _require(str(CHROMIUM))
    try:
        import websocket  # noqa: F401
    except ImportError:
        _require("websocket-client")
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1360,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield _devtools_port(process, profile / "DevToolsActivePort")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def page(browser: int) -> Iterator[DevTools]:
    """A new tab, closed after the test."""
    devtools_url = f"http://127.0.0.1:{browser}/json"
    target = requests.put(f"{devtools_url}/new?about:blank", timeout=30).json()
    devtools = DevTools(target["webSocketDebuggerUrl"])
    try:
        yield devtools
    finally:
        devtools.close()
        requests.get(f"{devtools_url}/close/{target['id']}", timeout=30)


def _devtools_port(process: subprocess.Popen[bytes], active_port: Path) -> int:
    """Chromium writes its DevTools port to a file once it listens."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline:
        if active_port.exists():
            first_line = active_port.read_text().split("\n", 1)[0]
            if first_line.isdigit():
                return int(first_line)
        try:
            code = process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"chromium exited with {code} before opening DevTools")
    pytest.fail(f"chromium wrote no {active_port.name} within {LAUNCH_TIMEOUT}s")


def _send(receiver: PlausibleReceiver, payload: dict[str, Any], user_agent: str) -> int:
    response = requests.post(
        f"{receiver.url}/api/event",
        json=payload,
        headers={"User-Agent": user_agent, "X-Forwarded-For": "93.184.216.34"},
        timeout=5,
    )
    return response.status_code


def _rows(page: DevTools, selector: str = "#events tbody tr:not([hidden])") -> list[str]:
    rows: list[str] = page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(r => r.innerText)"
    )
    return rows


def _select(page: DevTools, control: str, value: str) -> None:
    page.evaluate(
        f"""(() => {{
            const control = document.getElementById({json.dumps(control)});
            control.value = {json.dumps(value)};
            control.dispatchEvent(new Event("input", {{ bubbles: true }}));
        }})()"""
    )


def test_events_arrive_live_and_filters_work(page: DevTools) -> None:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=1360,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        page.call("Page.navigate", url=f"{receiver.url}/")
        page.wait_until(
            "document.getElementById('status').dataset.state === 'live'", "the feed went live"
        )
        assert _rows(page, "#events tbody tr") == []
        assert page.evaluate("document.getElementById('empty').hidden") is False

        site = "https://example.com"
        sent = [
            ({"name": "pageview", "url": f"{site}/", "domain": "example.com"}, BROWSER_UA),
            ({"name": "pageview", "url": f"{site}/pricing", "domain": "example.com"}, BROWSER_UA),
            (
                {"name": "pageview", "url": f"{site}/docs/install", "domain": "example.com"},
                BROWSER_UA,
            ),
            (
                {
                    "name": "Signup",
                    "url": f"{site}/join",
                    "domain": "example.com",
                    "props": {"plan": "pro", "seats": 3},
                    "revenue": {"currency": "EUR", "amount": "49.00"},
                },
                BROWSER_UA,
            ),
            (
                {
                    "name": "Download",
                    "url": f"{site}/get",
                    "domain": "example.com",
                    "interactive": False,
                },
                BROWSER_UA,
            ),
            ({"name": "pageview", "url": f"{site}/blog/ai", "domain": "example.com"}, GPTBOT),
            ({"name": "pageview", "url": "https://other.org/", "domain": "other.org"}, BROWSER_UA),
            (
                {
                    "name": XSS_NAME,
                    "url": f"{site}/x",
                    "domain": "example.com",
                    "props": {"<b>key</b>": "<script>window.__pwned=2</script>"},
                },
                BROWSER_UA,
            ),
            ({"url": f"{site}/broken", "domain": "example.com"}, BROWSER_UA),
        ]
        statuses = [_send(receiver, payload, agent) for payload, agent in sent]
        assert statuses == [202] * 8 + [400]

        page.wait_until(
            f"document.querySelectorAll('#events tbody tr').length === {len(sent)}",
            "every event reached the page",
        )
        rows = _rows(page)
        assert len(rows) == len(sent)
        assert "/docs/install" in rows[-3]  # newest first
        assert page.evaluate("document.getElementById('total-accepted').textContent") == "6"
        assert page.evaluate("document.getElementById('total-dropped').textContent") == "2"
        assert page.evaluate("document.getElementById('total-rejected').textContent") == "1"

        # Attacker-controlled strings are shown as text, never run.
        assert any(XSS_NAME in row for row in rows)
        assert page.evaluate("window.__pwned === undefined") is True
        assert page.evaluate("document.querySelectorAll('#events img, #events script').length") == 0

        _select(page, "filter-kind", "bot")
        [bot] = _rows(page)
        assert "ai_training" in bot
        assert "GPTBot" in bot
        assert "OpenAI" in bot
        assert "bot" in bot.split()  # the drop reason

        _select(page, "filter-kind", "ai_training")
        assert len(_rows(page)) == 1
        _select(page, "filter-kind", "search_engine")
        assert _rows(page) == []
        assert page.evaluate("document.getElementById('no-match').hidden") is False

        _select(page, "filter-kind", "")
        _select(page, "filter-outcome", "rejected")
        [rejected] = _rows(page)
        assert "event_name: can't be blank" in rejected

        _select(page, "filter-outcome", "dropped")
        dropped = _rows(page)
        assert len(dropped) == 2
        assert any("unknown_domain" in row for row in dropped)

        _select(page, "filter-outcome", "")
        _select(page, "filter-name", "signup")
        [signup] = _rows(page)
        assert "49.00 EUR" in signup
        assert "plan: pro" in signup
        assert "seats: 3" in signup

        # A later event arrives while the filter is on.
        _send(
            receiver,
            {"name": "Signup", "url": f"{site}/join?utm_source=hn", "domain": "example.com"},
            BROWSER_UA,
        )
        page.wait_until(
            "document.querySelectorAll('#events tbody tr:not([hidden])').length === 2",
            "the new Signup showed up under the filter",
        )
        page.evaluate("document.getElementById('filters').reset()")
        page.wait_until(
            f"document.querySelectorAll('#events tbody tr:not([hidden])').length === "
            f"{len(sent) + 1}",
            "resetting the filters shows every event",
        )
        legend = page.evaluate("document.getElementById('legend').innerText")
        assert "pageview" in legend
        assert "Signup" in legend

        page.evaluate("Promise.all(document.getAnimations().map(a => a.finished))")
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "inspector.png").write_bytes(base64.b64decode(shot["data"]))


def test_page_reports_an_unreachable_receiver(page: DevTools) -> None:
    with PlausibleReceiver() as receiver:
        page.call("Page.navigate", url=f"{receiver.url}/")
        page.wait_until(
            "document.getElementById('status').dataset.state === 'live'", "the feed went live"
        )
        receiver.down()
        page.wait_until(
            "document.getElementById('status').dataset.state === 'offline'",
            "the page noticed the outage",
        )
        receiver.up()
        page.wait_until(
            "document.getElementById('status').dataset.state === 'live'", "the page recovered"
        )


def test_page_starts_over_for_a_new_receiver_on_the_same_port(page: DevTools) -> None:
    payload = {"name": "pageview", "url": "https://example.com/old", "domain": "example.com"}
    with PlausibleReceiver() as first:
        page.call("Page.navigate", url=f"{first.url}/")
        for _ in range(3):
            assert _send(first, payload, BROWSER_UA) == 202
        page.wait_until(
            "document.querySelectorAll('#events tbody tr').length === 3", "the first events"
        )
        port = first.port
    with PlausibleReceiver(port=port) as second:
        assert _send(second, {**payload, "url": "https://example.com/new"}, BROWSER_UA) == 202
        page.wait_until(
            "document.querySelectorAll('#events tbody tr').length === 1 && "
            "document.querySelector('#events tbody tr').innerText.includes('/new')",
            "the page showed only the new receiver's event",
        )
