"""The receiver against Plausible's own ingestion tests and code, over HTTP.

Each case is a request (or a short sequence: a page view before a pageleave) sent to
a real :class:`PlausibleReceiver` on loopback, and what Plausible answers and stores.

- Cases whose id starts with ``request_test:``, ``event_test:`` or
  ``external_controller_test:`` translate the Plausible test of that name
  (``test/plausible/ingestion/request_test.exs``, ``.../event_test.exs``,
  ``test/plausible_web/controllers/api/external_controller_test.exs``). Tests about
  what the receiver does not model (geolocation, OS and browser parsing, referrer
  source names, acquisition channels, goals' currency conversion, shields, rate
  limits, timestamps) are not translated; ``TRANSLATED`` counts the ones that are.
- Cases whose id starts with a source file (``request.ex:...``) check a rule read in
  Plausible's code (or in Plug/Jason behind it) that its tests do not cover;
  docs/plausible-rules.md lists them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pytest
import requests

from plausible_wsgi.receiver import PlausibleReceiver, ReceivedEvent

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_4) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/70.0.3538.110 Safari/537.36"
)
JSON = "application/json"
TEXT = "text/plain"
SITE = "dummy.site"
#: The only domain the receiver knows in the ``unknown site`` cases.
KNOWN = ("dummy.site", "example.com", "test.com", "crash.site", "192.168.0.1")
Body = Union[bytes, Mapping[str, Any]]


@dataclass
class Req:
    body: Body
    content_type: Optional[str] = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    """The last request is judged; earlier ones only set the scene."""

    requests: list[Req]
    status: int = 202
    #: The exact ``errors`` object of a 4xx (``None``: not checked).
    errors: Optional[dict[str, list[str]]] = None
    #: ``x-plausible-dropped`` (``0``: no such header).
    dropped: int = 0
    #: Per record of the last request: the fields it must have.
    records: list[dict[str, Any]] = field(default_factory=list)


def ev(**fields: Any) -> dict[str, Any]:
    """A page view on dummy.site with ``fields`` added (``None`` values removed)."""
    body: dict[str, Any] = {"name": "pageview", "url": f"http://{SITE}/", "domain": SITE}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def one(body: Body, content_type: Optional[str] = JSON, **headers: str) -> list[Req]:
    return [Req(body, content_type, dict(headers))]


def ok(body: Body, content_type: Optional[str] = JSON, **stored: Any) -> Case:
    return Case(one(body, content_type), records=[stored])


def bad(body: Body, errors: Optional[dict[str, list[str]]], status: int = 400, **kw: Any) -> Case:
    return Case(one(body, kw.pop("content_type", JSON)), status=status, errors=errors)


def drop(reqs: list[Req], reason: str, count: int = 1) -> Case:
    return Case(reqs, dropped=count, records=[{"drop_reason": reason}] * count)


XFF = "x-forwarded-for"
PROPS_ERROR = {"props": ["keys should have at most 300 bytes and values 2000 bytes"]}
LONG_NAME = {"event_name": ["should be at most 120 character(s)"]}
REQUEST_ERROR = {"request": ["Unable to parse request body as json"]}
#: The answer to a request map without fields (an empty or unread body).
EMPTY_MAP = {"event_name": ["can't be blank"], "url": ["is required"], "domain": ["can't be blank"]}

# -- Plausible's own tests -------------------------------------------------------------

TRANSLATED_CASES: list[Any] = [
    # test/plausible/ingestion/request_test.exs
    pytest.param(
        bad(
            {},
            EMPTY_MAP,
        ),
        id="request_test: request cannot be built from conn without payload",
    ),
    pytest.param(
        bad(b"defnotjson", REQUEST_ERROR, content_type=TEXT),
        id="request_test: request cannot be built from non-json payload",
    ),
    pytest.param(
        Case(
            one({"name": "pageview", "url": "http://dummy.site"}, **{"User-Agent": ""}),
            records=[
                {
                    "domain": SITE,
                    "name": "pageview",
                    "pathname": "/",
                    "client_ip": "127.0.0.1",
                    "user_agent": "",
                    "hostname": SITE,
                    "props": {},
                }
            ],
        ),
        id="request_test: request can be built from URL alone",
    ),
    pytest.param(
        ok(ev(url="http://dummy.site/index"), domain=SITE, hostname=SITE),
        id="request_test: request can be built with domain",
    ),
    pytest.param(
        ok({"n": "pageview", "d": SITE, "u": "http://dummy.site/index"}, domain=SITE),
        id="request_test: request can be built with domain using shorthands",
    ),
    pytest.param(
        Case(
            one({"n": "pageview", "d": "dummy.site,crash.site", "u": "http://dummy.site/index"}),
            records=[{"domain": SITE}, {"domain": "crash.site"}],
        ),
        id="request_test: request can be built for multiple domains",
    ),
    pytest.param(
        ok({"n": 404, "d": SITE, "u": "http://dummy.site/index"}, name="404"),
        id="request_test: request can be built with numeric event name",
    ),
    pytest.param(
        ok(ev(url="about:config"), hostname="(none)"),
        id="request_test: hostname is (none) if host-less uri provided",
    ),
    pytest.param(
        ok(ev(url="http://dummy.site/index.html"), hostname=SITE),
        id="request_test: hostname is set",
    ),
    pytest.param(
        Case(
            one(ev(url="http://dummy.site/index.html"), **{"User-Agent": "Mozilla"}),
            records=[{"user_agent": "Mozilla", "outcome": "accepted"}],
        ),
        id="request_test: user agent is set as-is",
    ),
    pytest.param(
        ok(
            ev(
                url="http://dummy.site/index.html",
                referrer="https://example.com",
                hashMode=1,
                props={"custom1": "property1", "custom2": "property2"},
                v=137,
            ),
            referrer="https://example.com",
            props={"custom1": "property1", "custom2": "property2"},
        ),
        id="request_test: request params are set",
    ),
    pytest.param(
        ok(
            ev(revenue='{"amount":20.2,"currency":"EUR"}'),
            revenue={"currency": "EUR", "amount": "20.2"},
        ),
        id="request_test: parses revenue source field from a json string",
    ),
    pytest.param(
        ok(
            ev(revenue={"amount": 20, "currency": "USD"}),
            revenue={"currency": "USD", "amount": "20"},
        ),
        id="request_test: sets revenue source with integer amount",
    ),
    pytest.param(
        ok(
            ev(revenue={"amount": 20.1, "currency": "USD"}),
            revenue={"currency": "USD", "amount": "20.1"},
        ),
        id="request_test: sets revenue source with float amount",
    ),
    pytest.param(
        ok(
            ev(revenue={"amount": "12.3", "currency": "USD"}),
            revenue={"currency": "USD", "amount": "12.3"},
        ),
        id="request_test: parses string amounts into money structs",
    ),
    pytest.param(
        ok(ev(revenue={"amount": 1233.2, "currency": "EEEE"}), revenue=None),
        id="request_test: ignores revenue data when currency is invalid",
    ),
    pytest.param(
        ok(ev(url="http://dummy.site/pictures/index.html#foo"), pathname="/pictures/index.html"),
        id="request_test: pathname is set",
    ),
    pytest.param(
        ok(
            ev(url="http://dummy.site/pictures/index.html#foo", hashMode=1),
            pathname="/pictures/index.html#foo",
        ),
        id="request_test: pathname is set with hashMode",
    ),
    pytest.param(
        bad(
            ev(url="data:text/html,%3Cscript%3Ealert%28%27hi%27%29%3B%3C%2Fscript%3E"),
            {"url": ["scheme is not allowed"]},
        ),
        id="request_test: returns validation error when using data uris",
    ),
    pytest.param(
        bad(ev(url="https://dummy.site/" + "a" * 5000), {"url": ["must be a valid url"]}),
        id="request_test: returns validation error when url is too long",
    ),
    pytest.param(
        bad(ev(name="a" * 500), LONG_NAME),
        id="request_test: returns validation error when event name is too long",
    ),
    pytest.param(
        bad(
            {"name": None, "domain": SITE, "url": "https://dummy.site/"},
            {"event_name": ["can't be blank"]},
        ),
        id="request_test: returns validation error when event name is blank",
    ),
    pytest.param(
        bad(ev(name=["list", "of", "things"]), {"event_name": ["is invalid"]}),
        id="request_test: returns validation error when event name cannot be cast to string",
    ),
    pytest.param(
        ok(ev(referrer="a" * 2500), referrer="a" * 2000),
        id="request_test: truncates referrer when too long",
    ),
    pytest.param(
        bad(ev(props={"a" * 500: "abc"}), PROPS_ERROR),
        id="request_test: returns validation error when props keys are too long",
    ),
    pytest.param(
        bad(ev(props={"abc": "a" * 2500}), PROPS_ERROR),
        id="request_test: returns validation error when props values are too long",
    ),
    pytest.param(
        ok(ev(props={str(i): "foo" for i in range(1, 51)}), props_count=30),
        id="request_test: trims prop list to 30 items when sending too many items",
    ),
    pytest.param(
        bad(b'"<script>"', REQUEST_ERROR, content_type=TEXT),
        id="request_test: malicious input, technically valid json",
    ),
    pytest.param(
        ok(
            json.dumps({"name": "pageview", "domain": SITE, "url": "a" * 1000}).encode(),
            TEXT,
            hostname="(none)",
        ),
        id="request_test: long body length",
    ),
    # test/plausible/ingestion/event_test.exs
    pytest.param(
        ok({"name": "pageview", "url": "http://dummy.site"}, outcome="accepted"),
        id="event_test: processes a request into an event",
    ),
    pytest.param(
        Case(
            one(
                ev(),
                **{
                    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 13_2_1) AppleWebKit/537.3666 (KHTML, like Gecko) Chrome/110.0.0.0.0 Safari/537.3666"  # noqa: E501
                },
            ),
            records=[{"outcome": "accepted"}],
        ),
        id="event_test: processes user agents known to cause problems parsing in the past (case 0)",
    ),
    pytest.param(
        Case(
            one(
                ev(),
                **{
                    "User-Agent": "Mozilla/5.0 (Linux; arm_64; Android 10; Mi Note 10) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/115.0.5765.05 Mobile Safari/537.36"  # noqa: E501
                },
            ),
            records=[{"outcome": "accepted"}],
        ),
        id="event_test: processes user agents known to cause problems parsing in the past (case 1)",
    ),
    pytest.param(
        Case(one(ev(), **{"User-Agent": "a" * 8192}), records=[{"outcome": "accepted"}]),
        id="event_test: times out parsing user agent",
    ),
    pytest.param(
        drop(
            one(
                ev(),
                **{
                    "User-Agent": "Plausible Verification Agent - if abused, contact support@plausible.io"  # noqa: E501
                },
            ),
            "verification_agent",
        ),
        id="event_test: drops installation support user agent",
    ),
    pytest.param(
        drop(one({"name": "pageview", "url": "http://nosuch.site"}), "unknown_domain"),
        id="event_test: drops a request when site does not exists",
    ),
    pytest.param(
        drop(one(ev(referrer="https://www.1-best-seo.com")), "spam_referrer"),
        id="event_test: drops a request when referrer is spam",
    ),
    pytest.param(
        drop(
            one(ev(domain=None, d="dummy.site,dummy.site", referrer="https://www.1-best-seo.com")),
            "spam_referrer",
            2,
        ),
        id="event_test: drops a request when referrer is spam for multiple domains",
    ),
    pytest.param(
        Case(
            one(ev(domain=None, d="dummy.site,thisdoesnotexist.com")),
            dropped=1,
            records=[{"outcome": "accepted"}, {"drop_reason": "unknown_domain"}],
        ),
        id="event_test: selectively drops an event for multiple domains",
    ),
    pytest.param(
        drop(one(ev(), **{"x-plausible-ip-type": "dc_ip"}), "dc_ip"),
        id="event_test: drops a request when header x-plausible-ip-type is dc_ip",
    ),
    pytest.param(
        drop(
            one(
                ev(
                    name="engagement",
                    url="https://dummy.site/123",
                    domain=None,
                    d=SITE,
                    sd=25,
                    et=1000,
                )
            ),
            "no_session",
        ),
        id="event_test: drops engagement event when no session found from cache",
    ),
    pytest.param(
        ok(
            {
                "name": "checkout",
                "url": "http://dummy.site",
                "revenue": {"amount": 10.2, "currency": "USD"},
            },
            revenue={"currency": "USD", "amount": "10.2"},
        ),
        id="event_test: saves revenue amount",
    ),
    pytest.param(
        ok(
            {"name": "checkout", "url": "http://192.168.0.1"},
            hostname="192.168.0.1",
            domain="192.168.0.1",
        ),
        id="event_test: IPv4 hostname is stored without public suffix processing",
    ),
    pytest.param(
        ok({"name": "checkout", "url": "http://foo.netlify.app"}, hostname="foo.netlify.app"),
        id="event_test: Hostname is stored with public suffix processing",
    ),
    pytest.param(
        ok(ev(url="/no/hostname"), hostname="(none)"),
        id="event_test: hostname is (none) when no hostname can be derived from the url",
    ),
]

CONTROLLER = "external_controller_test"
TRANSLATED_CASES += [
    pytest.param(
        ok(
            ev(url="http://example.com/", referrer="http://m.facebook.com/"),
            hostname="example.com",
            pathname="/",
        ),
        id=f"{CONTROLLER}: records the event and session",
    ),
    pytest.param(
        ok(
            json.dumps(ev(url="http://example.com/")).encode(),
            TEXT,
            hostname="example.com",
            pathname="/",
        ),
        id=f"{CONTROLLER}: works with Content-Type: text/plain",
    ),
    pytest.param(
        bad(b"", None, content_type=TEXT),
        id=f"{CONTROLLER}: returns error if JSON cannot be parsed",
    ),
    pytest.param(
        Case(
            one(
                ev(
                    url="http://example.com/",
                    referrer="http://m.facebook.com/",
                    domain="dummy.site,crash.site",
                )
            ),
            records=[
                {"domain": SITE, "outcome": "accepted"},
                {"domain": "crash.site", "outcome": "accepted"},
            ],
        ),
        id=f"{CONTROLLER}: can send to multiple dashboards by listing multiple domains - same timestamp",  # noqa: E501
    ),
    pytest.param(
        ok(ev(name="custom event", url="http://example.com/"), domain=SITE, outcome="accepted"),
        id=f"{CONTROLLER}: www. is stripped from domain",
    ),
    pytest.param(
        ok(ev(url="http://www.example.com/"), hostname="example.com"),
        id=f"{CONTROLLER}: www. is stripped from hostname",
    ),
    pytest.param(
        ok(ev(url="http://www.example.com"), pathname="/"),
        id=f"{CONTROLLER}: empty path defaults to /",
    ),
    pytest.param(
        ok(ev(url="http://www.example.com/path "), pathname="/path"),
        id=f"{CONTROLLER}: trailing whitespace is removed",
    ),
    pytest.param(
        drop(one(ev(), **{"User-Agent": "generic crawler"}), "bot"),
        id=f"{CONTROLLER}: bots and crawlers are ignored",
    ),
    pytest.param(
        drop(
            one(
                ev(),
                **{
                    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/85.0.4183.83 Safari/537.36"  # noqa: E501
                },
            ),
            "bot",
        ),
        id=f"{CONTROLLER}: Headless Chrome is ignored",
    ),
    pytest.param(
        drop(
            one(ev(url="http://example.com/", referrer="https://www.1-best-seo.com")),
            "spam_referrer",
        ),
        id=f"{CONTROLLER}: ignores event when referrer is a spammer",
    ),
    pytest.param(
        ok(ev(url="http://example.com/", referrer="https://example.com"), referrer_ignored=True),
        id=f"{CONTROLLER}: ignores when referrer is internal",
    ),
    pytest.param(
        ok(ev(url="http://example.com/", referrer="http://localhost:4000/"), referrer_ignored=True),
        id=f"{CONTROLLER}: ignores localhost referrer",
    ),
    pytest.param(
        ok(
            ev(url="http://example.com/", referrer="https://blog.example.com"),
            referrer_ignored=False,
        ),
        id=f"{CONTROLLER}: parses subdomain referrer",
    ),
    pytest.param(
        ok(
            ev(
                url="http://www.example.com/?utm_medium=ads&utm_source=instagram&utm_campaign=video_story"
            ),
            query_params={
                "utm_medium": "ads",
                "utm_source": "instagram",
                "utm_campaign": "video_story",
            },
        ),
        id=f"{CONTROLLER}: utm tags are stored",
    ),
    pytest.param(
        ok(ev(url="http://www.example.com/?ref=betalist"), query_params={"ref": "betalist"}),
        id=f"{CONTROLLER}: ?ref param behaves like ?utm_source",
    ),
    pytest.param(
        ok(ev(url="http://www.example.com/?source=betalist"), query_params={"source": "betalist"}),
        id=f"{CONTROLLER}: ?source param behaves like ?utm_source",
    ),
    pytest.param(
        ok(ev(url="http://example.com/", referrer="ftp://wat"), referrer_ignored=True),
        id=f"{CONTROLLER}: if the referrer is not http, https, or android it is ignored",
    ),
    pytest.param(
        ok(
            ev(url="http://example.com/", referrer="android-app://some.android.app"),
            referrer="android-app://some.android.app",
            referrer_ignored=False,
        ),
        id=f"{CONTROLLER}: stores referrer from android app",
    ),
    pytest.param(
        ok(ev(name="custom event", url="http://example.com/"), name="custom event"),
        id=f"{CONTROLLER}: can trigger a custom event",
    ),
    pytest.param(
        ok(
            ev(name="Signup", props={"bool_test": True, "number_test": 12}),
            props={"bool_test": "true", "number_test": "12"},
        ),
        id=f"{CONTROLLER}: casts custom props to string",
    ),
    pytest.param(
        Case(
            [
                Req({"n": "pageview", "u": "https://ab.cd", "d": SITE}),
                Req(
                    ev(
                        name="pageleave",
                        url="http://ab.cd/",
                        props={"bool_test": True, "number_test": 12},
                    )
                ),
            ],
            records=[{"outcome": "accepted", "props": {"bool_test": "true", "number_test": "12"}}],
        ),
        id=f"{CONTROLLER}: records custom props for a pageleave event",
    ),
    pytest.param(
        ok(
            ev(
                name="Signup",
                props={
                    "false": None,
                    "": False,
                    "good": True,
                    "      ": "    ",
                    "    ": "value",
                    "key": "    ",
                },
            ),
            props={"good": "true"},
        ),
        id=f"{CONTROLLER}: filters out bad props",
    ),
    pytest.param(
        ok(ev(name="Signup", props='"show-more:button"'), props={}),
        id=f"{CONTROLLER}: ignores malformed custom props",
    ),
    pytest.param(
        ok(ev(name="Signup", props=json.dumps({"number_test": 12})), props={"number_test": "12"}),
        id=f"{CONTROLLER}: can send props stringified",
    ),
    pytest.param(
        ok(
            ev(name="Signup", props=json.dumps({"wat": ["some-thing"], "other": "key"})),
            props={"other": "key"},
        ),
        id=f"{CONTROLLER}: ignores custom prop with array value",
    ),
    pytest.param(
        ok(
            ev(name="Signup", props=json.dumps({"foo": {"bar": "baz"}, "other_key": 1})),
            props={"other_key": "1"},
        ),
        id=f"{CONTROLLER}: ignores custom prop with map value",
    ),
    pytest.param(
        ok(
            ev(name="Signup", props=json.dumps({"foo": "", "other_key": True})),
            props={"other_key": "true"},
        ),
        id=f"{CONTROLLER}: ignores custom prop with empty string value",
    ),
    pytest.param(
        ok(
            ev(name="Signup", props=json.dumps({"foo": None, "other_key": True})),
            props={"other_key": "true"},
        ),
        id=f"{CONTROLLER}: ignores custom prop with nil value",
    ),
    pytest.param(
        ok(
            {
                "n": "Payment",
                "u": "http://example.com/",
                "d": SITE,
                "$": json.dumps({"amount": 10.2, "currency": "USD"}),
            },
            revenue={"currency": "USD", "amount": "10.2"},
        ),
        id=f"{CONTROLLER}: revenue values can be sent with minified keys",
    ),
    pytest.param(
        ok(
            ev(name="Payment", revenue={"amount": 10, "currency": "BRL"}),
            revenue={"currency": "BRL", "amount": "10"},
        ),
        id=f"{CONTROLLER}: saves the exact same amount when goal currency is the same as the event",
    ),
    pytest.param(
        ok(
            ev(name="Payment", revenue={"amount": "1831d", "currency": "ADSIE"}),
            revenue=None,
            outcome="accepted",
        ),
        id=f"{CONTROLLER}: does not fail when revenue value is invalid",
    ),
    pytest.param(
        ok(ev(name="Add to Cart", revenue={"amount": 10.2, "currency": "USD"}), outcome="accepted"),
        id=f"{CONTROLLER}: does not fail when sending revenue without a matching goal",
    ),
    pytest.param(
        ok(ev(url="http://example.com/", referrer="https:://twitter.com"), referrer_ignored=True),
        id=f"{CONTROLLER}: ignores a malformed referrer URL",
    ),
    pytest.param(
        Case(one(ev(), **{XFF: "2.125.160.216"}), records=[{"client_ip": "2.125.160.216"}]),
        id=f"{CONTROLLER}: looks up location data from the ip address",
    ),
    pytest.param(
        Case(one(ev(), **{XFF: "216.160.83.56:123"}), records=[{"client_ip": "216.160.83.56"}]),
        id=f"{CONTROLLER}: scrubs port from x-forwarded-for",
    ),
    pytest.param(
        Case(
            one(ev(), **{XFF: "2001:218:1:1:1:1:1:1"}),
            records=[{"client_ip": "2001:218:1:1:1:1:1:1"}],
        ),
        id=f"{CONTROLLER}: works with ipv6 without port in x-forwarded-for",
    ),
    pytest.param(
        Case(
            one(ev(), **{XFF: "[2001:218:1:1:1:1:1:1]:123"}),
            records=[{"client_ip": "2001:218:1:1:1:1:1:1"}],
        ),
        id=f"{CONTROLLER}: works with ipv6 with a port number in x-forwarded-for",
    ),
    pytest.param(
        Case(
            one(ev(), **{XFF: "0.0.0.0", "cf-connecting-ip": "216.160.83.56"}),
            records=[{"client_ip": "216.160.83.56"}],
        ),
        id=f"{CONTROLLER}: uses cloudflare's special header for client IP address if present",
    ),
    pytest.param(
        Case(
            one(ev(), **{XFF: "0.0.0.0", "b-forwarded-for": "216.160.83.56,9.9.9.9"}),
            records=[{"client_ip": "216.160.83.56"}],
        ),
        id=f"{CONTROLLER}: uses BunnyCDN's custom header for client IP address if present",
    ),
    pytest.param(
        Case(
            one(
                ev(),
                **{
                    "cf-connecting-ip": "0.0.0.0",
                    "b-forwarded-for": "0.0.0.0",
                    XFF: "0.0.0.0",
                    "forwarded": "for=0.0.0.0;host=dashboard.site.com;proto=https",
                    "x-plausible-ip": "216.160.83.56",
                },
            ),
            records=[{"client_ip": "216.160.83.56"}],
        ),
        id=f"{CONTROLLER}: prioritizes x-plausible-ip header over everything else",
    ),
    pytest.param(
        Case(
            one(ev(), forwarded="by=0.0.0.0;for=216.160.83.56;host=somehost.com;proto=https"),
            records=[{"client_ip": "216.160.83.56"}],
        ),
        id=f"{CONTROLLER}: Uses the Forwarded header when cf-connecting-ip and x-forwarded-for are missing",  # noqa: E501
    ),
    pytest.param(
        Case(
            one(
                ev(),
                forwarded='by=0.0.0.0;for="[2001:218:1:1:1:1:1:1]",for=0.0.0.0;host=somehost.com;proto=https',
            ),
            records=[{"client_ip": "2001:218:1:1:1:1:1:1"}],
        ),
        id=f"{CONTROLLER}: Forwarded header can parse ipv6",
    ),
    pytest.param(
        ok(
            ev(
                url="http://www.example.com/opportunity/category/%D8%AC%D9%88%D8%A7%D8%A6%D8%B2-%D9%88%D9%85%D8%B3%D8%A7%D8%A8%D9%82%D8%A7%D8%AA"
            ),
            pathname="/opportunity/category/جوائز-ومسابقات",
        ),
        id=f"{CONTROLLER}: URL is decoded",
    ),
    pytest.param(
        ok(
            {
                "n": "pageview",
                "u": "http://www.example.com/opportunity",
                "d": SITE,
                "r": "https://facebook.com/page",
            },
            pathname="/opportunity",
            referrer="https://facebook.com/page",
            referrer_ignored=False,
        ),
        id=f"{CONTROLLER}: accepts shorthand map keys",
    ),
    pytest.param(
        ok(
            {"n": "pageview", "u": "http://www.example.com/#page-a", "d": SITE, "h": 1},
            pathname="/#page-a",
        ),
        id=f"{CONTROLLER}: records hash when in hash mode",
    ),
    pytest.param(
        ok(
            {"n": "pageview", "u": "http://www.example.com/#page-a", "d": SITE, "h": 0},
            pathname="/",
        ),
        id=f"{CONTROLLER}: does not record hash when hash mode is 0",
    ),
    pytest.param(
        ok(
            {
                "n": "pageview",
                "d": SITE,
                "h": 1,
                "u": "https://test.com/%EF%BA%9D%EF%BB%AD%EF%BA%8E%EF%BA%8B%EF%BA%AF-%EF%BB%AE%EF%BB%A4%EF%BA%B3%EF%BA%8E%EF%BA%92%EF%BB%97%EF%BA%8E%EF%BA%97?utm_source=%25balle%25",
            },
            hostname="test.com",
            pathname="/ﺝﻭﺎﺋﺯ-ﻮﻤﺳﺎﺒﻗﺎﺗ",
            query_params={"utm_source": "%balle%"},
        ),
        id=f"{CONTROLLER}: decodes URL pathname, fragment and search",
    ),
    pytest.param(
        ok(
            {
                "n": "pageview",
                "d": SITE,
                "h": 1,
                "u": "https://test.com/?utm_source=Something+%22quoted%22",
            },
            query_params={"utm_source": 'Something "quoted"'},
        ),
        id=f"{CONTROLLER}: can use double quotes in query params",
    ),
    pytest.param(
        bad({"domain": SITE, "name": "pageview"}, {"url": ["is required"]}),
        id=f"{CONTROLLER}: responds 400 when required fields are missing",
    ),
    pytest.param(
        bad(
            {"domain": None, "url": "about:config", "name": "pageview"},
            {"domain": ["can't be blank"]},
        ),
        id=f"{CONTROLLER}: responds 400 with errors when domain is missing",
    ),
    pytest.param(
        Case(
            [
                Req({"n": "pageview", "u": "https://test.com", "d": SITE}),
                Req({"n": "engagement", "u": "https://test.com", "d": SITE, "sd": 25}),
            ],
            records=[{"outcome": "accepted", "name": "engagement"}],
        ),
        id=f"{CONTROLLER}: ingests valid scroll_depth for a engagement event",
    ),
    pytest.param(
        ok(
            json.dumps(ev(url="file:///android_asset/www/index.html")).encode(),
            TEXT,
            hostname="(none)",
        ),
        id=f"{CONTROLLER}: defaults hostname to (none) when missing",
    ),
    pytest.param(
        ok(
            json.dumps(
                ev(url="chrome-extension://liipgellkffekalgefpjolodblggkmjg/popup.html")
            ).encode(),
            TEXT,
            hostname="liipgellkffekalgefpjolodblggkmjg",
        ),
        id=f"{CONTROLLER}: accepts chrome extension URLs",
    ),
]

# -- rules read in the code (docs/plausible-rules.md) ----------------------------------

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, five code points
SOURCE_CASES: list[Any] = [
    # Body parsing: Plug.Parsers (endpoint.ex), Plug.Parsers.JSON, Request.parse_body
    pytest.param(
        bad(
            json.dumps(ev()).encode(),
            EMPTY_MAP,
            content_type=None,
        ),
        id="endpoint.ex Plug.Parsers: no Content-Type, the body is never read",
    ),
    pytest.param(
        bad(
            json.dumps(ev()).encode(),
            EMPTY_MAP,
            content_type="garbage",
        ),
        id="plug parsers.ex call: a Content-Type that is not type/subtype, the body is never read",
    ),
    pytest.param(
        bad(
            b"",
            EMPTY_MAP,
        ),
        id="plug json.ex decode: an empty JSON body is an empty map",
    ),
    pytest.param(
        bad(
            b"[1, 2]",
            EMPTY_MAP,
        ),
        id="plug json.ex decode: a JSON array becomes _json",
    ),
    pytest.param(
        bad(
            b'"pageview"',
            EMPTY_MAP,
        ),
        id="plug json.ex decode: a JSON string becomes _json",
    ),
    pytest.param(
        bad(b"[1, 2]", REQUEST_ERROR, content_type=TEXT),
        id="request.ex:134 text/plain needs a JSON object",
    ),
    pytest.param(
        bad(b'{"name": "pageview",', None), id="plug json.ex decode: malformed JSON is a 400"
    ),
    pytest.param(
        ok(
            b"name=pageview&url=http%3A%2F%2Fdummy.site%2Fform&domain=dummy.site",
            "application/x-www-form-urlencoded",
            pathname="/form",
        ),
        id="endpoint.ex Plug.Parsers: a form body is read as fields",
    ),
    pytest.param(
        ok(
            json.dumps(ev(url="http://dummy.site/vnd")).encode(),
            "application/vnd.api+json",
            pathname="/vnd",
        ),
        id="plug json.ex parse: application/*+json is JSON",
    ),
    pytest.param(
        bad(
            b'{"name": "pageview", "url": "http://dummy.site/", "domain": "dummy.site", "r": "\\ud800"}',  # noqa: E501
            None,
        ),
        id="jason decoder.ex: a lone surrogate escape is an error",
    ),
    pytest.param(
        bad(
            b'{"name": "pageview", "url": "http://dummy.site/", "domain": "dummy.site", "x": 1e400}',  # noqa: E501
            None,
        ),
        id="jason decoder.ex: a number out of range is an error",
    ),
    pytest.param(
        bad(
            b'{"name": "pageview", "url": "http://dummy.site/", "domain": "dummy.site", "x": NaN}',
            None,
        ),
        id="jason decoder.ex: NaN is not JSON",
    ),
    pytest.param(
        ok(
            b'{"name": "first", "name": "second", "url": "http://dummy.site/", "domain": "dummy.site"}',  # noqa: E501
            name="first",
        ),
        id="jason decoder.ex: with duplicate keys the first wins",
    ),
    pytest.param(
        bad(json.dumps(ev(x="v" * 1_000_001)).encode(), REQUEST_ERROR, content_type=TEXT),
        id="request.ex:131 text/plain bodies over 1,000,000 bytes are refused",
    ),
    pytest.param(
        ok(json.dumps(ev(x="v" * 1_000_001)).encode(), JSON, outcome="accepted"),
        id="plug json.ex: JSON bodies up to 8,000,000 bytes are read",
    ),
    pytest.param(
        bad(json.dumps(ev(x="v" * 8_000_001)).encode(), None, status=413),
        id="plug json.ex: JSON bodies over 8,000,000 bytes are a 413",
    ),
    # URL
    pytest.param(
        ok(ev(url="http://[::1]:8080/x"), hostname="::1", pathname="/x"),
        id="request.ex:217 URI.parse never fails: a bracketed host",
    ),
    pytest.param(
        ok(ev(url="http://[::1/x"), hostname="(none)"),
        id="request.ex:217 URI.parse never fails: an unclosed bracket",
    ),
    pytest.param(
        bad(ev(url="   "), {"pathname": ["can't be blank"]}),
        id="request.ex:358 a whitespace-only URL leaves a blank pathname",
    ),
    pytest.param(
        bad(ev(url="DATA:text/plain,hi"), {"url": ["scheme is not allowed"]}),
        id="request.ex:221 the data scheme in any case",
    ),
    pytest.param(
        bad(ev(url=12), {"url": ["must be a valid url"]}), id="request.ex:222 a non-string URL"
    ),
    pytest.param(
        ok(ev(url="http://dummy.site/x#frag", hashMode="1"), pathname="/x#frag"),
        id="request.ex:150 hashMode is cast: an integer string counts",
    ),
    pytest.param(
        bad(ev(hashMode="yes"), {"hash_mode": ["is invalid"]}),
        id="request.ex:150 a non-integer hashMode",
    ),
    pytest.param(
        bad(ev(url="http://dummy.site/%zz"), None, status=500),
        id="request.ex:357 URI.decode raises on a bad escape",
    ),
    pytest.param(
        ok(
            ev(url="http://dummy.site/?utm_source=a&utm_source=b"), query_params={"utm_source": "b"}
        ),
        id="request.ex:327 URI.decode_query: the last value wins",
    ),
    # Name
    pytest.param(
        ok(ev(name=FAMILY * 120), outcome="accepted"), id="request.ex:108 120 graphemes are fine"
    ),
    pytest.param(
        bad(ev(name=FAMILY * 121), LONG_NAME), id="request.ex:108 121 graphemes are too long"
    ),
    pytest.param(
        bad(ev(name="   "), {"event_name": ["can't be blank"]}),
        id="request.ex:102 a whitespace name is blank",
    ),
    pytest.param(
        bad(ev(name=1.5), {"event_name": ["is invalid"]}),
        id="request.ex:13 a float name is invalid",
    ),
    pytest.param(
        bad(
            ev(name="engagement"),
            {
                "event_name": [
                    "engagement event requires a valid integer value for at least one of 'sd' or 'e' fields"  # noqa: E501
                ]
            },
        ),
        id="request.ex:297 engagement needs sd or e",
    ),
    pytest.param(
        bad(ev(name="engagement", sd=-1, e="12x"), None),
        id="request.ex:391 engagement with invalid sd and e",
    ),
    pytest.param(
        ok(ev(name="404", url="http://dummy.site/missing"), props={"path": "/missing"}),
        id="request.ex:180 a 404 gets a path prop",
    ),
    pytest.param(
        ok(ev(name="404", props={"path": "/sent"}), props={"path": "/sent"}),
        id="system_goals.ex: a sent path prop is kept",
    ),
    # Domain
    pytest.param(
        bad(ev(domain=""), {"domain": ["can't be blank"]}),
        id="request.ex:192 an empty domain is blank",
    ),
    pytest.param(
        bad(ev(domain="   "), {"domain": ["can't be blank"]}),
        id="request.ex:188 a whitespace domain is blank",
    ),
    pytest.param(
        Case(
            one(ev(domain="dummy.site,")),
            dropped=1,
            records=[{"outcome": "accepted"}, {"domain": "", "drop_reason": "unknown_domain"}],
        ),
        id="request.ex:197 an empty list element is an unknown site",
    ),
    pytest.param(
        ok(ev(domain=7, url="http://www.dummy.site/"), domain=SITE),
        id="request.ex:188 a non-string domain falls back to the URL host",
    ),
    # Props
    pytest.param(
        ok(ev(meta={"m": "1"}, props={"p": "1"}), props={"m": "1"}),
        id="request.ex:239 meta wins over props",
    ),
    pytest.param(
        ok(ev(m={"a": "1"}, p={"b": "1"}), props={"a": "1"}), id="request.ex:239 m wins over p"
    ),
    pytest.param(
        ok(ev(props={f"k{i:02d}": "v" for i in range(31)}), props_absent="k00", props_count=30),
        id="request.ex:243 the cut at 30 drops the smallest key",
    ),
    pytest.param(
        ok(
            ev(props={"a": 1000.0, "b": 0.1, "c": 1e-05, "d": 100.0, "e": -2.5e20}),
            props={"a": "1.0e3", "b": "0.1", "c": "1.0e-5", "d": "100.0", "e": "-2.5e20"},
        ),
        id="request.ex:265 floats are written as Elixir writes them",
    ),
    pytest.param(
        bad(
            ev(props={"k" * 31: "v", **{f"x{i:02d}": "v" for i in range(30)}, "a" * 400: "v"}),
            None,
            status=202,
        )
        if False
        else ok(
            ev(props={**{f"x{i:02d}": "v" for i in range(30)}, "a" * 400: "v"}),
            props_count=30,
            props_absent="a" * 400,
        ),
        id="request.ex:271 only the 30 kept props are size-checked",
    ),
    # Revenue
    pytest.param(
        ok(
            ev(
                revenue={"amount": "1", "currency": "USD"},
                **{"$": {"amount": "2", "currency": "EUR"}},
            ),
            revenue={"currency": "USD", "amount": "1"},
        ),
        id="revenue.ex:7 revenue wins over $",
    ),
    pytest.param(
        ok(
            ev(revenue={"amount": "12.5abc", "currency": "EUR"}),
            revenue={"currency": "EUR", "amount": "12.5"},
        ),
        id="revenue.ex:29 a string amount's numeric prefix is kept",
    ),
    pytest.param(
        ok(
            ev(revenue={"amount": "1", "currency": "XAU"}),
            revenue={"currency": "XAU", "amount": "1"},
        ),
        id="revenue.ex:18 ex_money knows XAU",
    ),
    pytest.param(
        ok(ev(revenue={"amount": "1", "currency": "usd"}), revenue=None),
        id="revenue.ex:18 currency codes are upper case",
    ),
    # Referrer
    pytest.param(
        ok(ev(referrer=FAMILY * 2001), referrer=FAMILY * 2000),
        id="request.ex:160 the referrer is cut by graphemes",
    ),
    pytest.param(
        ok(ev(referrer=42), referrer=None), id="request.ex:159 a non-string referrer is ignored"
    ),
    # Headers
    pytest.param(
        Case(one(ev(), **{"User-Agent": "curl/8.5.0"}), records=[{"outcome": "accepted"}]),
        id="event.ex put_user_agent: curl is a client, counted",
    ),
    pytest.param(
        Case(
            one(ev(), **{"User-Agent": "python-requests/2.32.3"}), records=[{"outcome": "accepted"}]
        ),
        id="event.ex put_user_agent: python-requests is a client, counted",
    ),
    pytest.param(
        Case(one(ev(), **{"User-Agent": ""}), records=[{"outcome": "accepted"}]),
        id="event.ex put_user_agent: an empty User-Agent is counted",
    ),
    pytest.param(
        drop(
            one(ev(), **{"User-Agent": "W3C_Validator/1.3 http://validator.w3.org/services"}), "bot"
        ),
        id="event.ex put_user_agent: W3C_Validator is a bot",
    ),
    pytest.param(
        drop(one(ev(), **{"User-Agent": "W3C-checklink/5.0.0 libwww-perl/6.77"}), "bot"),
        id="event.ex put_user_agent: the W3C link checker is a bot",
    ),
    pytest.param(
        drop(one(ev(), **{"User-Agent": "Plausible Community Edition"}), "verification_agent"),
        id="installation_support.ex:25 the CE verification agent",
    ),
    pytest.param(
        Case(
            one(ev(), **{"x-plausible-ip-type": "anonymous_vpn_ip"}),
            records=[{"outcome": "accepted"}],
        ),
        id="event.ex drop_datacenter_ip: only dc_ip drops",
    ),
    pytest.param(
        Case(
            one(ev(), **{"cf-connecting-ip": "[2001:db8::1]:443"}),
            records=[{"client_ip": "2001:db8::1"}],
        ),
        id="remote_ip.ex:40 a port and brackets are cleaned",
    ),
    # HTTP
    pytest.param(
        Case(one(ev(), Accept="text/html"), status=406),
        id="router api pipeline: Accept text/html is a 406",
    ),
    pytest.param(
        Case(one(ev(), Accept="text/html, */*"), records=[{"outcome": "accepted"}]),
        id="router api pipeline: Accept */* is fine",
    ),
]

TRANSLATED = len(TRANSLATED_CASES)


@pytest.fixture(scope="module")
def receiver() -> Iterator[PlausibleReceiver]:
    known = (*KNOWN, "foo.netlify.app")
    with PlausibleReceiver(domains=known) as running:
        yield running


def send(receiver: PlausibleReceiver, req: Req, path: str = "/api/event") -> requests.Response:
    headers = {"User-Agent": BROWSER, **req.headers}
    if req.content_type is not None:
        headers["Content-Type"] = req.content_type
    data = req.body if isinstance(req.body, bytes) else json.dumps(req.body).encode()
    return requests.post(receiver.url + path, data=data, headers=headers, timeout=30)


def check(receiver: PlausibleReceiver, case: Case) -> None:
    receiver.clear()
    for req in case.requests[:-1]:
        assert send(receiver, req).status_code == 202
    before = len(receiver.all)
    response = send(receiver, case.requests[-1])
    assert response.status_code == case.status, response.text[:300]
    if case.errors is not None:
        assert response.json() == {"errors": case.errors}
    assert response.headers.get("x-plausible-dropped", "0") == str(case.dropped)
    records = receiver.all[before:]
    if case.records:
        assert len(records) == len(case.records)
    for record, expected in zip(records, case.records):
        for key, value in expected.items():
            if key == "props_absent":
                assert value not in record.props
            else:
                assert _field(record, key) == value, (key, _field(record, key))


def _field(record: ReceivedEvent, key: str) -> Any:
    if key == "props_count":
        return len(record.props)
    return getattr(record, key)


@pytest.mark.parametrize("case", TRANSLATED_CASES)
def test_plausible_test_case(receiver: PlausibleReceiver, case: Case) -> None:
    check(receiver, case)


@pytest.mark.parametrize("case", SOURCE_CASES)
def test_plausible_code_rule(receiver: PlausibleReceiver, case: Case) -> None:
    check(receiver, case)


def test_get_api_event_is_404_and_format_html_is_406(receiver: PlausibleReceiver) -> None:
    assert requests.get(receiver.url + "/api/event", timeout=5).status_code == 404
    response = send(receiver, Req(ev()), path="/api/event?_format=html")
    assert response.status_code == 406


def test_health_returns_200(receiver: PlausibleReceiver) -> None:
    """external_controller_test: GET /api/health returns 200 OK."""
    payload = requests.get(receiver.url + "/api/health", timeout=5).json()
    assert (payload["postgres"], payload["clickhouse"], payload["sites_cache"]) == (
        "ok",
        "ok",
        "ok",
    )


# external_controller_test "user_id generation": (user agent, IP, domain, URL) pairs and
# whether Plausible gives both the same user id.
USER_ID_CASES = [
    pytest.param(
        (BROWSER, "127.0.0.1", SITE, "https://user-id-test-domain.com/"),
        True,
        id=f"{CONTROLLER}: with same IP address and user agent, the same user ID is generated",
    ),
    pytest.param(
        (BROWSER, "82.32.12.1", SITE, "https://user-id-test-domain.com/"),
        False,
        id=f"{CONTROLLER}: different IP address results in different user ID",
    ),
    pytest.param(
        (BROWSER + "!!", "127.0.0.1", SITE, "https://user-id-test-domain.com/"),
        False,
        id=f"{CONTROLLER}: different user agent results in different user ID",
    ),
    pytest.param(
        (BROWSER, "127.0.0.1", "crash.site", "https://user-id-test-domain.com/"),
        False,
        id=f"{CONTROLLER}: different domain value results in different user ID",
    ),
    pytest.param(
        (BROWSER, "127.0.0.1", SITE, "https://other-domain.com/"),
        False,
        id=f"{CONTROLLER}: different hostname results in different user ID",
    ),
    pytest.param(
        (BROWSER, "127.0.0.1", SITE, "https://app.user-id-test-domain.com/"),
        True,
        id=f"{CONTROLLER}: different hostname results in the same user ID when the root domain in the same",  # noqa: E501
    ),
]
TRANSLATED += len(USER_ID_CASES) + 1  # + the health check


@pytest.mark.parametrize(("second", "same"), USER_ID_CASES)
def test_plausible_user_id_case(
    receiver: PlausibleReceiver, second: tuple[str, str, str, str], same: bool
) -> None:
    receiver.clear()
    ids = []
    for user_agent, ip, domain, url in (
        (BROWSER, "127.0.0.1", SITE, "https://user-id-test-domain.com/"),
        second,
    ):
        req = Req(
            {"name": "pageview", "url": url, "domain": domain},
            JSON,
            {"User-Agent": user_agent, XFF: ip},
        )
        assert send(receiver, req).status_code == 202
        ids.append(receiver.all[-1].visitor_id)
    assert (ids[0] == ids[1]) is same


def test_translated_count() -> None:
    """The figure the issue asks for: Plausible test cases translated here."""
    assert TRANSLATED == 105, TRANSLATED
