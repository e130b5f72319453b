"""The receiver's rules against every fact in Plausible's Events API notes.

Each row is a request body and what Plausible's server does with it: the ``400`` or
``413`` and its error fields, or the values it stores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from plausible_wsgi.receiver import rules
from plausible_wsgi.receiver.rules import NormalisedEvent, Rejection

_DROP = object()


def body(**changes: Any) -> dict[str, Any]:
    """A valid pageview body with ``changes`` applied (``_DROP`` removes a key)."""
    payload: dict[str, Any] = {
        "name": "pageview",
        "url": "https://example.com/",
        "domain": "example.com",
    }
    for key, value in changes.items():
        if value is _DROP:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def short(**values: Any) -> dict[str, Any]:
    """A body in the tracker's short keys (``n``, ``u``, ``d``) plus ``values``."""
    return {"n": "pageview", "u": "https://example.com/", "d": "example.com", **values}


def props(count: int, start: int = 0) -> dict[str, str]:
    return {f"k{i:02d}": f"v{i}" for i in range(start, start + count)}


def verdict(payload: Any) -> tuple[NormalisedEvent, ...] | Rejection:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return rules.evaluate(raw)


def accepted(payload: Any) -> tuple[NormalisedEvent, ...]:
    result = verdict(payload)
    assert not isinstance(result, Rejection), result
    return result


URL_BASE = "https://example.com/"
URL_2000 = URL_BASE + "a" * (2000 - len(URL_BASE))

ACCEPTED: list[Any] = [
    # -- name ------------------------------------------------------------------------
    pytest.param(body(), {"name": "pageview"}, id="name: pageview"),
    pytest.param(body(name="Signup"), {"name": "Signup"}, id="name: custom event"),
    pytest.param(body(name=42), {"name": "42"}, id="name: integer is cast to a string"),
    pytest.param(body(name="x" * 120), {"name": "x" * 120}, id="name: exactly 120 characters"),
    pytest.param(body(name="é" * 120), {"name": "é" * 120}, id="name: 120 characters, 240 bytes"),
    pytest.param(short(), {"name": "pageview"}, id="name: short key n"),
    pytest.param({**body(name="Long"), "n": None}, {"name": "Long"}, id="name: null n falls back"),
    pytest.param(
        {**body(name="Long"), "n": "Short"}, {"name": "Short"}, id="name: n wins over name"
    ),
    # -- url -------------------------------------------------------------------------
    pytest.param(
        short(u="https://example.com/x"), {"url": "https://example.com/x"}, id="url: short key u"
    ),
    pytest.param(body(url=URL_2000), {"url": URL_2000}, id="url: exactly 2000 bytes"),
    pytest.param(
        body(url="https://www.example.com/a"),
        {"hostname": "example.com"},
        id="url: hostname drops www.",
    ),
    pytest.param(
        body(url="https://shop.example.com/a"),
        {"hostname": "shop.example.com"},
        id="url: hostname keeps other subdomains",
    ),
    pytest.param(
        body(url="https://example.com:8443/a"),
        {"hostname": "example.com"},
        id="url: hostname without port",
    ),
    pytest.param(
        body(url="https://example.com/caf%C3%A9/a%20b"),
        {"pathname": "/café/a b"},
        id="url: pathname is URL-decoded",
    ),
    pytest.param(
        body(url="https://example.com/docs#install"),
        {"pathname": "/docs"},
        id="url: fragment dropped",
    ),
    pytest.param(
        body(url="https://example.com/search?q=secret&page=2"),
        {"pathname": "/search", "query_params": {}},
        id="url: untracked query ignored",
    ),
    pytest.param(body(url="https://example.com"), {"pathname": "/"}, id="url: empty path is /"),
    pytest.param(
        body(url="/relative/path"),
        {"hostname": "(none)", "pathname": "/relative/path", "domain": "example.com"},
        id="url: no host gives hostname (none)",
    ),
    pytest.param(
        body(
            url="https://example.com/?utm_source=news&utm_medium=email&utm_campaign=spring"
            "&utm_content=top&utm_term=shoes&other=1"
        ),
        {
            "query_params": {
                "utm_source": "news",
                "utm_medium": "email",
                "utm_campaign": "spring",
                "utm_content": "top",
                "utm_term": "shoes",
            }
        },
        id="url: utm tags read",
    ),
    pytest.param(
        body(url="https://example.com/?source=hn&ref=friend"),
        {"query_params": {"source": "hn", "ref": "friend"}},
        id="url: source and ref read",
    ),
    pytest.param(
        body(url="https://example.com/?gclid=1&gbraid=2&wbraid=3&msclkid=4&fbclid=5&twclid=6"),
        {
            "query_params": {
                "gclid": "1",
                "gbraid": "2",
                "wbraid": "3",
                "msclkid": "4",
                "fbclid": "5",
                "twclid": "6",
            }
        },
        id="url: click ids read",
    ),
    pytest.param(
        body(url="https://example.com/?utm_source=a&utm_source=b"),
        {"query_params": {"utm_source": "a"}},
        id="url: first value of a repeated param",
    ),
    # -- domain ----------------------------------------------------------------------
    pytest.param(short(d="example.org"), {"domain": "example.org"}, id="domain: short key d"),
    pytest.param(body(domain="  example.com  "), {"domain": "example.com"}, id="domain: trimmed"),
    pytest.param(
        body(domain=_DROP, url="https://www.example.net/a"),
        {"domain": "example.net"},
        id="domain: derived from the url host",
    ),
    pytest.param(
        body(domain="", url="https://example.net/a"),
        {"domain": "example.net"},
        id="domain: blank derives from the url host",
    ),
    # -- referrer ----------------------------------------------------------------------
    pytest.param(
        body(referrer="https://news.ycombinator.com/item?id=1"),
        {"referrer": "https://news.ycombinator.com/item?id=1", "referrer_ignored": False},
        id="referrer: external https",
    ),
    pytest.param(
        short(r="https://duckduckgo.com/"),
        {"referrer": "https://duckduckgo.com/"},
        id="referrer: short key r",
    ),
    pytest.param(
        body(referrer="https://google.com/" + "q" * 2500),
        {"referrer": ("https://google.com/" + "q" * 2500)[:2000]},
        id="referrer: truncated to 2000 characters",
    ),
    pytest.param(body(), {"referrer": None, "referrer_ignored": True}, id="referrer: absent"),
    pytest.param(body(referrer=""), {"referrer": None}, id="referrer: empty is none"),
    pytest.param(body(referrer=12), {"referrer": None}, id="referrer: non-string ignored"),
    pytest.param(
        body(referrer="https://www.example.com/pricing"),
        {"referrer": "https://www.example.com/pricing", "referrer_ignored": True},
        id="referrer: same host ignored",
    ),
    pytest.param(
        body(referrer="http://localhost:3000/"),
        {"referrer_ignored": True},
        id="referrer: localhost ignored",
    ),
    pytest.param(
        body(referrer="android-app://com.slack/"),
        {"referrer_ignored": True},
        id="referrer: non-http ignored",
    ),
    # -- props -------------------------------------------------------------------------
    pytest.param(
        body(props={"plan": "pro", "seats": "3"}),
        {"props": {"plan": "pro", "seats": "3"}},
        id="props: strings kept",
    ),
    pytest.param(short(p={"plan": "pro"}), {"props": {"plan": "pro"}}, id="props: short key p"),
    pytest.param(
        body(props={"n": 12, "f": 1.5, "yes": True, "no": False}),
        {"props": {"n": "12", "f": "1.5", "yes": "true", "no": "false"}},
        id="props: scalars become strings",
    ),
    pytest.param(
        body(props={"list": [1, 2], "obj": {"a": 1}, "ok": "1"}),
        {"props": {"ok": "1"}},
        id="props: list and object values dropped",
    ),
    pytest.param(
        body(props={"null": None, "blank": "", "ok": "1"}),
        {"props": {"ok": "1"}},
        id="props: null and blank values dropped",
    ),
    pytest.param(
        body(props={"space": " "}), {"props": {"space": " "}}, id="props: a space is not blank"
    ),
    pytest.param(body(props=props(30)), {"props": props(30)}, id="props: 30 kept"),
    pytest.param(body(props=props(31)), {"props": props(30)}, id="props: 31st dropped"),
    pytest.param(
        body(props={**{f"null{i}": None for i in range(5)}, **props(30)}),
        {"props": props(30)},
        id="props: dropped pairs do not count toward 30",
    ),
    pytest.param(
        body(props={"k" * 300: "v"}), {"props": {"k" * 300: "v"}}, id="props: 300-byte key"
    ),
    pytest.param(
        body(props={"é" * 150: "v"}),
        {"props": {"é" * 150: "v"}},
        id="props: 150 two-byte characters is 300 bytes",
    ),
    pytest.param(
        body(props={"k": "v" * 2000}), {"props": {"k": "v" * 2000}}, id="props: 2000-byte value"
    ),
    pytest.param(body(props=["a", "b"]), {"props": {}}, id="props: not an object ignored"),
    pytest.param(body(props="plan=pro"), {"props": {}}, id="props: string ignored"),
    # -- revenue -----------------------------------------------------------------------
    pytest.param(
        body(revenue={"currency": "USD", "amount": "1322.22"}),
        {"revenue": {"currency": "USD", "amount": "1322.22"}},
        id="revenue: decimal string amount",
    ),
    pytest.param(
        body(revenue={"currency": "EUR", "amount": 1322.22}),
        {"revenue": {"currency": "EUR", "amount": "1322.22"}},
        id="revenue: float amount",
    ),
    pytest.param(
        body(revenue={"currency": "JPY", "amount": 500}),
        {"revenue": {"currency": "JPY", "amount": "500"}},
        id="revenue: integer amount",
    ),
    pytest.param(
        short(**{"$": {"currency": "GBP", "amount": "9.99"}}),
        {"revenue": {"currency": "GBP", "amount": "9.99"}},
        id="revenue: short key $",
    ),
    pytest.param(
        body(revenue={"amount": "10"}), {"revenue": None}, id="revenue: no currency ignored"
    ),
    pytest.param(
        body(revenue={"currency": "USD"}), {"revenue": None}, id="revenue: no amount ignored"
    ),
    pytest.param(
        body(revenue={"currency": "XYZ", "amount": "10"}),
        {"revenue": None},
        id="revenue: unknown currency ignored",
    ),
    pytest.param(
        body(revenue={"currency": "usd", "amount": "10"}),
        {"revenue": None},
        id="revenue: lower-case code ignored",
    ),
    pytest.param(
        body(revenue={"currency": "USD", "amount": "ten"}),
        {"revenue": None},
        id="revenue: non-numeric amount ignored",
    ),
    pytest.param(
        body(revenue={"currency": "USD", "amount": "NaN"}),
        {"revenue": None},
        id="revenue: NaN amount ignored",
    ),
    pytest.param(
        body(revenue={"currency": "USD", "amount": True}),
        {"revenue": None},
        id="revenue: boolean amount ignored",
    ),
    pytest.param(body(revenue="USD 10"), {"revenue": None}, id="revenue: not an object ignored"),
    # -- interactive -------------------------------------------------------------------
    pytest.param(body(), {"interactive": True}, id="interactive: default true"),
    pytest.param(body(interactive=False), {"interactive": False}, id="interactive: long key false"),
    pytest.param(body(interactive=True), {"interactive": True}, id="interactive: long key true"),
    pytest.param(
        short(i=False), {"interactive": True}, id="interactive: bare short i false ignored"
    ),
    pytest.param(short(i=True), {"interactive": True}, id="interactive: short i true"),
    pytest.param(
        short(i=False, interactive=False),
        {"interactive": False},
        id="interactive: i false with long key false",
    ),
    pytest.param(
        body(interactive="false"), {"interactive": True}, id="interactive: string ignored"
    ),
]


@pytest.mark.parametrize(("payload", "expected"), ACCEPTED)
def test_accepted(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    [event] = accepted(payload)
    assert {field: getattr(event, field) for field in expected} == expected


REJECTED: list[Any] = [
    # -- body --------------------------------------------------------------------------
    pytest.param(b"{not json", 400, {"request": None}, id="body: malformed JSON"),
    pytest.param(b"", 400, {"request": None}, id="body: empty"),
    pytest.param(b'["pageview"]', 400, {"request": None}, id="body: array, not object"),
    pytest.param(
        b'{"name": "pageview", "n": NaN}', 400, {"request": None}, id="body: NaN is not JSON"
    ),
    pytest.param(b'{"name": "\xff"}', 400, {"request": None}, id="body: invalid UTF-8"),
    pytest.param(b"[" * 100_000, 400, {"request": None}, id="body: absurd nesting"),
    pytest.param(
        b" " * (rules.MAX_BODY_BYTES + 1), 413, {"request": None}, id="body: over 8 MB is 413"
    ),
    # -- name --------------------------------------------------------------------------
    pytest.param(body(name=_DROP), 400, {"event_name": "can't be blank"}, id="name: missing"),
    pytest.param(body(name=None), 400, {"event_name": "can't be blank"}, id="name: null"),
    pytest.param(body(name=""), 400, {"event_name": "can't be blank"}, id="name: empty"),
    pytest.param(body(name="   "), 400, {"event_name": "can't be blank"}, id="name: whitespace"),
    pytest.param(
        {**body(name="Long"), "n": ""},
        400,
        {"event_name": "can't be blank"},
        id="name: empty n does not fall back",
    ),
    pytest.param(
        body(name="x" * 121),
        400,
        {"event_name": "should be at most 120 character(s)"},
        id="name: 121 characters",
    ),
    pytest.param(body(name=True), 400, {"event_name": "is invalid"}, id="name: boolean"),
    pytest.param(body(name=["a"]), 400, {"event_name": "is invalid"}, id="name: list"),
    # -- url ---------------------------------------------------------------------------
    pytest.param(body(url=_DROP), 400, {"url": "is required"}, id="url: missing"),
    pytest.param(body(url=None), 400, {"url": "is required"}, id="url: null"),
    pytest.param(body(url=42), 400, {"url": "must be a valid url"}, id="url: not a string"),
    pytest.param(
        body(url=URL_2000 + "a"), 400, {"url": "must be a valid url"}, id="url: 2001 bytes"
    ),
    pytest.param(
        body(url=URL_BASE + "é" * 991),
        400,
        {"url": "must be a valid url"},
        id="url: 1011 characters but 2002 bytes",
    ),
    pytest.param(
        body(url="https://example.com/?q=" + "a" * 2000),
        400,
        {"url": "must be a valid url"},
        id="url: query counts toward the limit",
    ),
    pytest.param(
        body(url="http://[::1/"), 400, {"url": "must be a valid url"}, id="url: unparsable"
    ),
    pytest.param(body(url="data:text/html,<p>hi</p>"), 400, {"url": None}, id="url: data scheme"),
    pytest.param(body(url="DATA:text/plain,hi"), 400, {"url": None}, id="url: DATA upper case"),
    # -- domain ------------------------------------------------------------------------
    pytest.param(
        body(domain=_DROP, url="/no-host"),
        400,
        {"domain": "can't be blank"},
        id="domain: missing, url without host",
    ),
    pytest.param(
        body(domain=" , ", url="/no-host"),
        400,
        {"domain": "can't be blank"},
        id="domain: only commas and spaces",
    ),
    # -- props -------------------------------------------------------------------------
    pytest.param(body(props={"k" * 301: "v"}), 400, {"props": None}, id="props: 301-byte key"),
    pytest.param(
        body(props={"é" * 151: "v"}),
        400,
        {"props": None},
        id="props: 151 characters is 302 bytes",
    ),
    pytest.param(body(props={"k": "v" * 2001}), 400, {"props": None}, id="props: 2001-byte value"),
    pytest.param(
        body(props={"k": "€" * 667}),
        400,
        {"props": None},
        id="props: 667 characters is 2001 bytes",
    ),
    pytest.param(
        body(props={"n": 10**2000}), 400, {"props": None}, id="props: huge number is a long value"
    ),
    # -- several at once ----------------------------------------------------------------
    pytest.param(
        {},
        400,
        {"event_name": "can't be blank", "url": "is required", "domain": "can't be blank"},
        id="all: empty object",
    ),
]


@pytest.mark.parametrize(("payload", "status", "errors"), REJECTED)
def test_rejected(payload: Any, status: int, errors: dict[str, str | None]) -> None:
    result = verdict(payload)
    assert isinstance(result, Rejection), result
    assert result.status == status
    assert set(result.errors) == set(errors)
    for field, message in errors.items():
        assert result.errors[field], field
        if message is not None:
            assert result.errors[field] == [message]


def test_body_exactly_8_mb_is_read() -> None:
    payload = json.dumps(body()).encode()
    padded = payload + b" " * (rules.MAX_BODY_BYTES - len(payload))
    assert len(padded) == rules.MAX_BODY_BYTES
    assert len(accepted(padded)) == 1


def test_rejection_body_shape() -> None:
    result = verdict(body(name=None))
    assert isinstance(result, Rejection)
    assert result.body() == {"errors": {"event_name": ["can't be blank"]}}


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        pytest.param("a.com,b.com", ["a.com", "b.com"], id="two domains"),
        pytest.param(" a.com , www.b.com ", ["a.com", "b.com"], id="trimmed, www. stripped"),
        pytest.param("a.com,", ["a.com"], id="trailing comma"),
    ],
)
def test_comma_separated_domains_give_one_event_each(domain: str, expected: list[str]) -> None:
    events = accepted(body(domain=domain, props={"plan": "pro"}))
    assert [event.domain for event in events] == expected
    assert all(event.props == {"plan": "pro"} for event in events)


def test_events_of_one_request_do_not_share_dicts() -> None:
    first, second = accepted(body(domain="a.com,b.com", props={"plan": "pro"}))
    first.props["plan"] = "changed"
    assert second.props == {"plan": "pro"}


def test_normalised_event_is_hashable_and_frozen() -> None:
    [event] = accepted(body(props={"a": "1"}))
    assert hash(event) == hash(event)
    with pytest.raises(AttributeError):
        event.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        pytest.param(None, "10.0.0.5", id="no header: socket address"),
        pytest.param("", "10.0.0.5", id="empty header: socket address"),
        pytest.param("203.0.113.7", "203.0.113.7", id="single address"),
        pytest.param("203.0.113.7, 10.0.0.1, 10.0.0.2", "203.0.113.7", id="first element"),
        pytest.param("  203.0.113.7  ,10.0.0.1", "203.0.113.7", id="first element trimmed"),
        pytest.param("203.0.113.7:51234", "203.0.113.7", id="IPv4 port stripped"),
        pytest.param("[2001:db8::7]:443, 10.0.0.1", "2001:db8::7", id="IPv6 brackets and port"),
        pytest.param("[2001:db8::7]", "2001:db8::7", id="IPv6 brackets"),
        pytest.param("2001:db8::7", "2001:db8::7", id="bare IPv6 unchanged"),
        pytest.param("unknown", "unknown", id="not validated"),
    ],
)
def test_read_client_ip(forwarded_for: str | None, expected: str) -> None:
    assert rules.read_client_ip(forwarded_for, "10.0.0.5") == expected


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        pytest.param("example.com", "example.com", id="registrable domain"),
        pytest.param("a.b.example.com", "example.com", id="subdomains"),
        pytest.param("localhost", "localhost", id="single label"),
        pytest.param("192.168.1.10", "192.168.1.10", id="IPv4"),
        pytest.param("2001:db8::1", "2001:db8::1", id="IPv6"),
        pytest.param("(none)", "(none)", id="no host"),
    ],
)
def test_root_domain(hostname: str, expected: str) -> None:
    assert rules.root_domain(hostname) == expected


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "GBP", "CHF", "INR", "BRL", "XAF", "ZWG"])
def test_currencies_include_common_codes(code: str) -> None:
    assert code in rules.CURRENCIES


def test_currencies_are_three_upper_case_letters() -> None:
    assert len(rules.CURRENCIES) > 150
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in rules.CURRENCIES)
