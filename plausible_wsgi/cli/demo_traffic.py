"""The demo's traffic: scripted visitors, goals, bots and excluded paths."""

from __future__ import annotations

import http.client
import logging
import random
from dataclasses import dataclass
from urllib.parse import urlencode

from ..agents import classify_user_agent
from .terminal import Terminal

__all__ = [
    "BOTS",
    "CAROL",
    "DEMO_DOMAIN",
    "Step",
    "Traffic",
    "Visitor",
    "bot_key",
    "light_step",
    "script",
]

_logger = logging.getLogger("plausible_wsgi.cli")

#: The site the demo's collector records on (and the only site its receiver knows).
DEMO_DOMAIN = "example.com"


@dataclass(frozen=True)
class Visitor:
    label: str
    #: "Firefox on Windows", or the bot's name.
    kind: str
    user_agent: str
    ip: str


@dataclass(frozen=True)
class Step:
    visitor: Visitor
    method: str
    path: str
    #: The status the app should answer.
    status: int
    #: What it should record: a key of the summary (see ``_key``), or None.
    expect: str | None
    form: dict[str, str] | None = None
    referrer: str | None = None


_FIREFOX_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
_SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
_CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
_CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36"
)
_EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"
)
_BROWSERS = (
    ("Firefox on Windows", _FIREFOX_WINDOWS),
    ("Safari on iPhone", _SAFARI_IPHONE),
    ("Chrome on macOS", _CHROME_MAC),
    ("Chrome on Android", _CHROME_ANDROID),
    ("Edge on Windows", _EDGE_WINDOWS),
)

# Documentation addresses (RFC 5737): they look public and belong to nobody.
_ALICE = Visitor("visitor 1", "Firefox on Windows", _FIREFOX_WINDOWS, "203.0.113.10")
_BOB = Visitor("visitor 2", "Safari on iPhone", _SAFARI_IPHONE, "198.51.100.23")
CAROL = Visitor("visitor 3", "Chrome on macOS", _CHROME_MAC, "192.0.2.44")
_MONITOR = Visitor(
    "monitor",
    "UptimeRobot",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "192.0.2.200",
)
BOTS = (
    Visitor(
        "ChatGPT-User",
        "AI assistant",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; "
        "ChatGPT-User/1.0; +https://openai.com/bot",
        "192.0.2.101",
    ),
    Visitor(
        "GPTBot",
        "AI training crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; "
        "GPTBot/1.2; +https://openai.com/gptbot",
        "192.0.2.102",
    ),
    Visitor(
        "PerplexityBot",
        "AI search crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
        "PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "192.0.2.103",
    ),
    Visitor(
        "Googlebot",
        "search crawler",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "192.0.2.104",
    ),
)


def bot_key(visitor: Visitor) -> str:
    agent = classify_user_agent(visitor.user_agent)
    if agent is None:  # pragma: no cover - the table above is of bots
        raise RuntimeError(f"{visitor.label} is not classified as a bot")
    return f"bot:{agent.agent}:{agent.kind}:{agent.operator}"


def script() -> list[Step]:
    """The scripted visits and what each should record."""
    chatgpt_user, gptbot, perplexity, googlebot = BOTS
    return [
        Step(_ALICE, "GET", "/", 200, "pageview", referrer="https://www.google.com/"),
        Step(_ALICE, "GET", "/pricing", 200, "pageview", referrer=f"http://{DEMO_DOMAIN}/"),
        Step(_ALICE, "POST", "/signup", 303, "Signup", form={"plan": "pro"}),
        Step(_ALICE, "GET", "/welcome?plan=pro", 200, "pageview"),
        Step(_BOB, "GET", "/?utm_source=newsletter&utm_campaign=spring", 200, "pageview"),
        Step(_BOB, "GET", "/items/1", 200, "pageview"),
        Step(_BOB, "POST", "/checkout", 200, "Purchase", form={"item": "1", "quantity": "2"}),
        Step(CAROL, "GET", "/about", 200, "pageview", referrer="https://news.ycombinator.com/"),
        Step(CAROL, "GET", "/static/style.css", 200, "excluded"),
        Step(CAROL, "GET", "/api/items", 200, "not_page"),
        Step(_MONITOR, "GET", "/healthz", 200, "excluded"),
        Step(chatgpt_user, "GET", "/pricing", 200, bot_key(chatgpt_user)),
        Step(gptbot, "GET", "/robots.txt", 404, bot_key(gptbot)),
        Step(perplexity, "GET", "/about", 200, bot_key(perplexity)),
        Step(googlebot, "GET", "/", 200, bot_key(googlebot)),
    ]


_LIGHT_PAGES = ("/", "/pricing", "/about", "/items/1", "/items/2")
_LIGHT_REFERRERS = (
    None,
    None,
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
)


def light_step(rng: random.Random) -> Step:
    number = rng.randrange(20)
    kind, user_agent = _BROWSERS[number % len(_BROWSERS)]
    visitor = Visitor(f"visitor {4 + number}", kind, user_agent, f"203.0.113.{100 + number}")
    return Step(
        visitor,
        "GET",
        rng.choice(_LIGHT_PAGES),
        200,
        "pageview",
        referrer=rng.choice(_LIGHT_REFERRERS),
    )


_EXPECT_LABELS = {
    "pageview": "page view",
    "Signup": "Signup goal",
    "Purchase": "Purchase goal",
    "excluded": "excluded path",
    "not_page": "not a page",
}


def _request(port: int, step: Step) -> int:
    """Send one step to the app as the visitor, behind a proxy; the status or 0."""
    headers = {
        "Host": DEMO_DOMAIN,
        "User-Agent": step.visitor.user_agent,
        "X-Forwarded-For": step.visitor.ip,
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    }
    body = None
    if step.form is not None:
        body = urlencode(step.form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if step.referrer:
        headers["Referer"] = step.referrer
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(step.method, step.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        _logger.warning("demo: %s %s failed: %s", step.method, step.path, exc)
        return 0
    finally:
        conn.close()


class Traffic:
    """Sends steps, prints them, and keeps the expected counts."""

    def __init__(self, port: int, term: Terminal) -> None:
        self.port = port
        self.term = term
        self.expected: dict[str, int] = {}
        self.visitors: set[tuple[str, str]] = set()
        self.answered = 0
        self.wrong_status = 0

    def run(self, step: Step) -> None:
        status = _request(self.port, step)
        if status:
            self.answered += 1
        if step.expect is not None:
            self.expected[step.expect] = self.expected.get(step.expect, 0) + 1
        if step.expect == "pageview":
            self.visitors.add((step.visitor.user_agent, step.visitor.ip))
        ok = status == step.status
        if not ok:
            self.wrong_status += 1
        term = self.term
        visitor = step.visitor
        if step.expect is None:
            what = "nothing"
        elif step.expect.startswith("bot:"):
            what = "Bot Visit event"
        else:
            what = _EXPECT_LABELS.get(step.expect, step.expect)
        target = step.path + (" " + urlencode(step.form) if step.form else "")
        shown_status = str(status) if status else "ERR"
        status_text = shown_status if ok else term.red(f"{shown_status} (expected {step.status})")
        term.print(
            f"  {visitor.label:<13} {visitor.kind:<19} {visitor.ip:<14} "
            f"{step.method:<4} {target:<44} {status_text}  {term.dim(term.arrow + ' ' + what)}"
        )
