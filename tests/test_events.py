"""Validation mirrors Plausible's ingestion rules: one case per rule."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

import plausible_wsgi as pw
from plausible_wsgi.events import encode_event, make_event

URL = "https://example.com/page"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, five code points


def custom(**kwargs: Any) -> pw.Event:
    kwargs.setdefault("url", URL)
    name = kwargs.pop("name", "Signup")
    return make_event(pw.EventKind.CUSTOM, name, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        pytest.param({"name": ""}, "name", "blank", id="name-empty"),
        pytest.param({"name": "   "}, "name", "blank", id="name-whitespace"),
        pytest.param({"name": "x" * 121}, "name", "120", id="name-121-chars"),
        pytest.param({"name": 12}, "name", "string", id="name-not-str"),
        pytest.param({"url": None}, "url", "required", id="url-missing"),
        pytest.param({"url": "/relative"}, "url", "absolute", id="url-relative"),
        pytest.param({"url": "data:text/html,hi"}, "url", "absolute", id="url-data-scheme"),
        pytest.param({"url": "ftp://example.com/"}, "url", "absolute", id="url-ftp"),
        pytest.param({"url": "https:///nohost"}, "url", "host", id="url-no-host"),
        pytest.param(
            {"url": "https://example.com/" + "a" * 1981}, "url", "2000 bytes", id="url-2001-bytes"
        ),
        pytest.param(
            {"url": "https://example.com/" + "é" * 991}, "url", "2000 bytes", id="url-utf8-bytes"
        ),
        pytest.param({"props": ["a"]}, "props", "mapping", id="props-not-mapping"),
        pytest.param(
            {"props": {f"k{i}": i for i in range(31)}}, "props", "30", id="props-31-pairs"
        ),
        pytest.param({"props": {"k": {"nested": 1}}}, "props", "nested", id="props-nested-dict"),
        pytest.param({"props": {"k": [1, 2]}}, "props", "nested", id="props-list-value"),
        pytest.param({"props": {1: "v"}}, "props", "keys", id="props-non-str-key"),
        pytest.param({"props": {"": "v"}}, "props", "keys", id="props-blank-key"),
        pytest.param({"props": {"k" * 301: "v"}}, "props", "300 bytes", id="props-key-301-bytes"),
        pytest.param(
            {"props": {"ключ" * 38: "v"}}, "props", "300 bytes", id="props-key-utf8-bytes"
        ),
        pytest.param({"props": {"k": "v" * 2001}}, "props", "2000 bytes", id="props-value-2001"),
        pytest.param(
            {"props": {"k": "€" * 667}}, "props", "2000 bytes", id="props-value-utf8-bytes"
        ),
        pytest.param({"props": {"k": math.nan}}, "props", "finite", id="props-nan"),
        pytest.param(
            {"revenue": {"currency": "USD", "amount": 1}}, "revenue", "Revenue", id="revenue-dict"
        ),
        pytest.param({"referrer": 42}, "referrer", "string", id="referrer-not-str"),
        pytest.param({"referrer": "r" * 2001}, "referrer", "2000", id="referrer-2001-chars"),
        pytest.param({"name": FAMILY * 121}, "name", "120", id="name-121-graphemes"),
        pytest.param({"name": "engagement"}, "name", "reserved", id="name-engagement"),
        pytest.param({"name": "pageleave"}, "name", "reserved", id="name-pageleave"),
        pytest.param({"url": "https://example.com/%zz"}, "url", "escape", id="url-bad-escape"),
        pytest.param(
            {"url": "https://example.com/?q=%"}, "url", "query", id="url-bad-escape-in-query"
        ),
        pytest.param({"url": "https://www./"}, "url", "host", id="url-www-only-host"),
        pytest.param({"user_agent": b"ua"}, "user_agent", "string", id="user-agent-bytes"),
    ],
)
def test_invalid_events_raise_naming_the_field(kwargs: Any, field: str, fragment: str) -> None:
    with pytest.raises(pw.InvalidEventError) as info:
        custom(**kwargs)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("currency", "amount", "fragment"),
    [
        pytest.param("XYZ", 1, "ISO 4217", id="unknown-currency"),
        pytest.param("US", 1, "ISO 4217", id="short-currency"),
        pytest.param(None, 1, "ISO 4217", id="no-currency"),
        pytest.param("USD", "abc", "not a number", id="amount-not-number"),
        pytest.param("USD", math.inf, "finite", id="amount-inf"),
        pytest.param("USD", "NaN", "finite", id="amount-nan-string"),
        pytest.param("USD", True, "Decimal", id="amount-bool"),
        pytest.param("USD", [1], "Decimal", id="amount-list"),
    ],
)
def test_invalid_revenue(currency: Any, amount: Any, fragment: str) -> None:
    with pytest.raises(pw.InvalidEventError) as info:
        pw.Revenue(currency, amount)
    assert info.value.field == "revenue"
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("amount", "sent"),
    [
        pytest.param(29.99, "29.99", id="float-shortest-repr"),
        pytest.param("1322.22", "1322.22", id="str"),
        pytest.param(Decimal("0.10"), "0.10", id="decimal-keeps-scale"),
        pytest.param(5, "5", id="int"),
        pytest.param(-3.5, "-3.5", id="refund-negative"),
    ],
)
def test_revenue_amount_is_sent_as_decimal_string(amount: Any, sent: str) -> None:
    revenue = pw.Revenue("eur", amount)
    assert revenue.to_json() == {"currency": "EUR", "amount": sent}


def test_revenue_is_immutable_and_comparable() -> None:
    revenue = pw.Revenue("USD", "1.50")
    with pytest.raises(AttributeError):
        revenue.amount = Decimal(2)  # type: ignore[misc]
    assert revenue == pw.Revenue("usd", Decimal("1.50"))
    assert len({revenue, pw.Revenue("USD", "1.50")}) == 1


def test_revenue_on_pageview_is_rejected() -> None:
    with pytest.raises(pw.InvalidEventError, match="revenue"):
        make_event(pw.EventKind.PAGEVIEW, "pageview", url=URL, revenue=pw.Revenue("USD", 1))


@pytest.mark.parametrize(
    ("props", "stored"),
    [
        pytest.param({"a": None}, None, id="none-omitted"),
        pytest.param({"a": ""}, None, id="blank-omitted"),
        pytest.param({"a": True, "b": False}, {"a": "true", "b": "false"}, id="bools"),
        pytest.param({"n": 12, "f": 1.5}, {"n": "12", "f": "1.5"}, id="numbers"),
        pytest.param(
            {f"k{i}": i for i in range(30)}, {f"k{i}": str(i) for i in range(30)}, id="30-pairs"
        ),
        pytest.param({"k" * 300: "v" * 2000}, {"k" * 300: "v" * 2000}, id="at-the-byte-limits"),
        pytest.param(
            {**{f"k{i}": i for i in range(30)}, "x": None},
            {f"k{i}": str(i) for i in range(30)},
            id="none-not-counted",
        ),
    ],
)
def test_props_are_stored_as_plausible_stores_them(props: Any, stored: Any) -> None:
    assert custom(props=props).props == stored


def test_limits_at_the_edge_are_accepted() -> None:
    url = "https://example.com/" + "a" * (2000 - len("https://example.com/"))
    assert len(url.encode()) == 2000
    event = custom(name="x" * 120, url=url, referrer="r" * 2000)
    assert event.url == url
    assert event.referrer == "r" * 2000


def test_encoded_body_uses_long_keys_and_omits_defaults() -> None:
    event = custom(
        props={"plan": "pro", "seats": 3},
        revenue=pw.Revenue("USD", "29.99"),
        referrer="https://news.ycombinator.com/",
    )
    assert json.loads(encode_event(event, "example.com")) == {
        "domain": "example.com",
        "name": "Signup",
        "url": URL,
        "referrer": "https://news.ycombinator.com/",
        "props": {"plan": "pro", "seats": "3"},
        "revenue": {"currency": "USD", "amount": "29.99"},
    }
    action = make_event(pw.EventKind.ACTION, "POST /login", url=URL, interactive=False)
    assert json.loads(encode_event(action, "example.com")) == {
        "domain": "example.com",
        "name": "POST /login",
        "url": URL,
        "interactive": False,
    }


@given(
    name=st.text(min_size=1),
    url=st.text(),
    referrer=st.one_of(st.none(), st.text()),
    props=st.one_of(st.none(), st.dictionaries(st.text(), st.text(), max_size=3)),
    revenue=st.booleans(),
    interactive=st.booleans(),
)
def test_encoded_body_is_the_json_encoding_of_its_dict(
    name: str,
    url: str,
    referrer: str | None,
    props: dict[str, str] | None,
    revenue: bool,
    interactive: bool,
) -> None:
    """The body assembled piece by piece is byte for byte the encoder's output."""
    money = pw.Revenue("EUR", "1.5") if revenue else None
    event = pw.Event(pw.EventKind.CUSTOM, name, url, referrer, props, money, interactive)
    expected: dict[str, object] = {"domain": 'exa\u00e9"mple', "name": name, "url": url}
    if referrer:
        expected["referrer"] = referrer
    if props:
        expected["props"] = props
    if money is not None:
        expected["revenue"] = money.to_json()
    if not interactive:
        expected["interactive"] = False
    reference = json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    assert encode_event(event, expected["domain"]) == reference.encode("utf-8", "replace")  # type: ignore[arg-type]


def test_lone_surrogates_do_not_break_the_body() -> None:
    event = custom(props={"k": "bad\udcff"})
    body = encode_event(event, "example.com")
    assert json.loads(body.decode("utf-8"))["props"]["k"] == "bad?"


def test_events_from_make_event_are_trusted_but_look_like_events() -> None:
    from plausible_wsgi.events import ValidEvent, validate_event

    event = custom(props={"a": 1})
    assert type(event) is ValidEvent
    assert validate_event(event) is event  # collect() does not check it twice
    assert repr(event).startswith("Event(")
    assert event == pw.Event(*event)
    changed = event._replace(name="x" * 500)
    assert type(changed) is pw.Event  # a replaced event is checked again
    with pytest.raises(pw.InvalidEventError):
        validate_event(changed)


def test_what_plausible_keeps_unchanged_is_accepted() -> None:
    # Counted as Plausible counts (grapheme clusters), and the currencies ex_money knows.
    assert custom(name=FAMILY * 120).name == FAMILY * 120
    assert custom(name="e\u0301" * 120).name == "e\u0301" * 120
    assert custom(referrer=FAMILY * 2000).referrer == FAMILY * 2000
    for code in ("XAU", "XDR", "XTS", "EUR"):
        assert custom(revenue=pw.Revenue(code, "1")).revenue == pw.Revenue(code, "1")


# track() against the receiver's rules (Plausible's): each input is either refused by
# the client, or stored by Plausible exactly as the client sent it.
AGREEMENT_INPUTS: list[Any] = [
    pytest.param({"name": "Signup"}, id="plain"),
    pytest.param({"name": "x" * 120}, id="name-120"),
    pytest.param({"name": "x" * 121}, id="name-121"),
    pytest.param({"name": FAMILY * 120}, id="name-120-graphemes"),
    pytest.param({"name": FAMILY * 121}, id="name-121-graphemes"),
    pytest.param({"name": "   "}, id="name-blank"),
    pytest.param({"name": "engagement"}, id="name-engagement"),
    pytest.param({"url": "https://example.com/a%20"}, id="url-trailing-space"),
    pytest.param({"url": "https://example.com/%zz"}, id="url-bad-escape"),
    pytest.param({"url": "https://example.com/?q=%"}, id="url-bad-escape-in-query"),
    pytest.param({"url": "https://example.com/?q=a%2&r=%zz"}, id="url-bad-escapes-in-query"),
    pytest.param({"url": "https://example.com/?q=100%25"}, id="url-escaped-percent-in-query"),
    pytest.param({"url": "https://www./"}, id="url-www-host"),
    pytest.param({"url": "https://example.com/" + "a" * 1981}, id="url-2001-bytes"),
    pytest.param({"url": "https://example.com/caf%C3%A9"}, id="url-escaped-path"),
    pytest.param({"referrer": "r" * 2000}, id="referrer-2000"),
    pytest.param({"referrer": "r" * 2001}, id="referrer-2001"),
    pytest.param({"referrer": FAMILY * 2000}, id="referrer-2000-graphemes"),
    pytest.param({"props": {"k": "v"}}, id="props"),
    pytest.param({"props": {"k": ""}}, id="props-empty-value"),
    pytest.param({"props": {"k": [1]}}, id="props-list"),
    pytest.param({"props": {f"k{i:02d}": "v" for i in range(31)}}, id="props-31"),
    pytest.param({"props": {f"k{i:02d}": "v" for i in range(30)}}, id="props-30"),
    pytest.param({"props": {"k" * 301: "v"}}, id="props-key-301"),
    pytest.param({"props": {"k": 1000.0}}, id="props-float"),
    pytest.param({"props": {"k": True, "n": 7}}, id="props-bool-int"),
    pytest.param({"revenue": ("XAU", "1.5")}, id="revenue-xau"),
    pytest.param({"revenue": ("USD", "29.99")}, id="revenue-usd"),
    pytest.param({"revenue": ("ZZZ", "1")}, id="revenue-unknown-currency"),
    pytest.param({"revenue": ("USD", "1e400")}, id="revenue-huge"),
    pytest.param({"revenue": ("USD", "-3")}, id="revenue-negative"),
]


@pytest.mark.parametrize("inputs", AGREEMENT_INPUTS)
def test_track_agrees_with_plausible(inputs: dict[str, Any]) -> None:
    from plausible_wsgi.receiver import body, rules

    def evaluate(raw: bytes) -> Any:  # the endpoint's reading of a JSON body
        return rules.normalise(body.parse("application/json", raw, truncated=False))

    name = inputs.get("name", "Signup")
    url = inputs.get("url", URL)
    revenue = inputs.get("revenue")
    raw: dict[str, Any] = {"name": name, "url": url, "domain": "example.com"}
    for key in ("referrer", "props"):
        if key in inputs:
            raw[key] = inputs[key]
    if revenue is not None:
        raw["revenue"] = {"currency": revenue[0], "amount": revenue[1]}
    try:
        verdict = evaluate(json.dumps(raw).encode())
    except ValueError:
        verdict = None  # Plausible's 500 (a bad %-escape)
    try:
        event = custom(
            name=name,
            url=url,
            referrer=inputs.get("referrer"),
            props=inputs.get("props"),
            revenue=None if revenue is None else pw.Revenue(*revenue),
        )
    except pw.InvalidEventError:
        # Refused: Plausible refuses it, changes it, or it is a stricter library rule.
        if isinstance(verdict, tuple):
            [stored] = verdict
            assert (
                stored.pathname,
                stored.name,
                stored.referrer,
                stored.props,
                stored.revenue,
            ) != (
                unquote(urlsplit(url).path) or "/",
                name,
                inputs.get("referrer"),
                {k: str(v) for k, v in (inputs.get("props") or {}).items()},
                None if revenue is None else {"currency": revenue[0], "amount": revenue[1]},
            ) or name in ("engagement", "pageleave")
        return
    assert isinstance(verdict, tuple), verdict
    [stored] = evaluate(encode_event(event, "example.com"))
    assert stored.name == event.name
    # Plausible trims whitespace from the end of the path: a documented normalisation.
    assert stored.pathname == (unquote(urlsplit(event.url).path) or "/").rstrip()
    assert stored.referrer == event.referrer
    assert stored.props == dict(event.props or {})
    assert stored.revenue == (None if event.revenue is None else event.revenue.to_json())
