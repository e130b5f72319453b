"""Property tests over ``track()`` arguments: bad input fails early, good input is never
rejected by Plausible.

For any arguments, ``track``/``track_pageview``/``track_action`` either queue the event
or raise :class:`~plausible_wsgi.InvalidEventError` naming a field -- nothing else. And
every event they accept is delivered to a :class:`PlausibleReceiver` (which mirrors
Plausible's validation) without a single ``400``: nothing Plausible would reject
leaves the process. (Environ properties of the middleware are in
tests/test_middleware_properties.py.)
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from faults import UA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plausible_wsgi as pw
from plausible_wsgi.receiver import PlausibleReceiver

FIELDS = {"name", "url", "referrer", "props", "revenue", "user_agent", "client_ip"}

# A latin-1 User-Agent without control characters: what a WSGI server can hand over.
visible_latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` five times out of six, else ``other``: enough events get through."""
    return st.integers(0, 5).flatmap(lambda n: other if n == 0 else valid)


valid_hosts = st.one_of(
    st.sampled_from(["example.com", "www.example.com", "127.0.0.1", "[::1]", "xn--bcher-kva.ch"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True),
)
names = mostly(
    st.text(min_size=1, max_size=120).filter(lambda s: not s.isspace()),
    st.one_of(
        st.text(max_size=130),
        st.sampled_from(["pageview", "engagement", "", " ", "x" * 121]),
        st.integers(),
        st.none(),
    ),
)
urls = mostly(
    st.builds(
        lambda scheme, host, path: f"{scheme}{host}{path}",
        st.sampled_from(["https://", "http://", "HTTPS://"]),
        valid_hosts,
        st.one_of(st.just(""), st.text(max_size=60).map(lambda p: "/" + p)),
    ),
    st.one_of(
        st.builds(
            lambda scheme, host, path: f"{scheme}{host}{path}",
            st.sampled_from(["https://", "http://", "ftp://", "//", ""]),
            st.one_of(valid_hosts, st.text(max_size=10)),
            st.one_of(st.text(max_size=40), st.text(min_size=1990, max_size=2100)),
        ),
        st.text(max_size=50),
        st.integers(),
        st.none(),
    ),
)
valid_values = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
props = mostly(
    st.one_of(
        st.none(),
        st.dictionaries(
            st.text(min_size=1, max_size=20).filter(lambda s: not s.isspace()),
            valid_values,
            max_size=30,
        ),
    ),
    st.one_of(
        st.dictionaries(
            st.one_of(st.text(max_size=20), st.text(min_size=70, max_size=310), st.integers()),
            st.one_of(
                valid_values,
                st.text(min_size=490, max_size=2010),
                st.floats(),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
            ),
            max_size=33,
        ),
        st.lists(st.integers(), max_size=2),
        st.text(max_size=5),
    ),
)
revenues = mostly(
    st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from(["USD", "eur", "JPY"]),
            st.one_of(
                st.decimals(allow_nan=False, allow_infinity=False),
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(),
            ),
        ),
    ),
    st.one_of(
        st.tuples(
            st.sampled_from(["USD", "XXX", "usd ", "", "BTC"]),
            st.one_of(
                st.decimals(), st.floats(), st.integers(), st.text(max_size=10), st.booleans()
            ),
        ),
        st.integers(),
        st.text(max_size=5),
    ),
)
referrers = mostly(
    st.one_of(st.none(), st.text(max_size=40), st.text(min_size=1990, max_size=2100)),
    st.integers(),
)
user_agents = st.one_of(st.none(), st.just(UA), st.text(alphabet=visible_latin1, max_size=200))
client_ips = mostly(
    st.one_of(st.none(), st.ip_addresses().map(str)),
    st.one_of(
        st.text(alphabet=string.ascii_letters + string.digits + ".:[]", max_size=40),
        st.integers(),
    ),
)
methods = st.sampled_from(["track", "track_pageview", "track_action"])


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver() as receiver:
        yield receiver


def _call(collector: pw.PlausibleCollector, method: str, args: dict[str, Any]) -> bool:
    revenue = args.pop("revenue")
    if isinstance(revenue, tuple):
        revenue = pw.Revenue(*revenue)  # may raise InvalidEventError itself
    if method == "track":
        return collector.track(args.pop("name"), revenue=revenue, **args)
    args.pop("interactive")
    if method == "track_action":
        args.pop("referrer")
        return collector.track_action(args.pop("name"), **args)
    args.pop("name")
    return collector.track_pageview(**args)  # no revenue on page views


def test_track_raises_only_invalid_event_error_and_nothing_rejected_leaves(
    receiver: PlausibleReceiver,
) -> None:
    collector = pw.PlausibleCollector(
        "example.com",
        endpoint=receiver.url,
        batch_size=50,
        max_workers=4,
        shutdown_timeout=5,
        retry=pw.RetryConfig(initial_backoff=0.01, max_backoff=0.05),
    )
    accepted = 0
    refused: dict[str, int] = {}

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=methods,
        name=names,
        url=urls,
        props=props,
        revenue=revenues,
        referrer=referrers,
        user_agent=user_agents,
        client_ip=client_ips,
        interactive=st.one_of(st.booleans(), st.integers(), st.none()),
    )
    def check(method: str, **args: Any) -> None:
        nonlocal accepted
        error: pw.InvalidEventError | None = None
        try:
            ok = _call(collector, method, dict(args))
        except pw.InvalidEventError as exc:
            error = exc
        if error is not None:
            assert error.field in FIELDS, error
            assert str(error).startswith(error.field + ":")
            refused[error.field] = refused.get(error.field, 0) + 1
            return
        assert ok is True
        accepted += 1

    try:
        check()
        assert collector.flush(30)
        stats = collector.stats()
    finally:
        collector.close()
    receiver.wait_for_attempts(accepted, timeout=10)
    print(f"FIGURE track-properties: accepted={accepted} refused={refused} stats={stats}")
    assert accepted > 20  # the strategies do produce valid events
    rejected = [(r.errors, r.body) for r in receiver.rejected]
    assert rejected == []
    assert receiver.request_count == accepted
    assert stats.failed == 0
    assert stats.sent + stats.dropped.get("server_dropped", 0) == accepted


@pytest.mark.parametrize(
    "user_agent",
    [
        pytest.param("Mozilla/5.0 SECRET-UA\r\nX-Injected: 1", id="crlf"),
        pytest.param("Mozilla/5.0 SECRET-UA \u2603", id="not-latin-1"),
    ],
)
def test_user_agent_that_cannot_be_a_header_is_refused_by_track(
    receiver: PlausibleReceiver, user_agent: str
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    try:
        with pytest.raises(pw.InvalidEventError, match="user_agent"):
            collector.track("E", url="https://example.com/", user_agent=user_agent)
    finally:
        collector.close()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://a]b/", id="bracket"),
        pytest.param("https://[::1/", id="open-ipv6"),
        pytest.param("https://a\uff03b/", id="nfkc-hash"),
    ],
)
def test_url_plausible_cannot_parse_is_refused_by_track(
    receiver: PlausibleReceiver, url: str
) -> None:
    collector = pw.PlausibleCollector("example.com", endpoint=receiver.url, shutdown_timeout=2)
    try:
        with pytest.raises(pw.InvalidEventError, match="url"):
            collector.track("E", url=url, user_agent=UA)
        assert collector.flush(5)
    finally:
        collector.close()
    assert receiver.rejected == []


def test_revenue_amounts_that_plausible_accepts() -> None:
    # Decimal, int, float (shortest repr) and numeric strings all become decimal strings.
    assert pw.Revenue("usd", 29.99).to_json() == {"currency": "USD", "amount": "29.99"}
    assert pw.Revenue("EUR", Decimal("1E+2")).to_json()["currency"] == "EUR"
    for bad in (float("nan"), float("inf"), "abc", True):
        with pytest.raises(pw.InvalidEventError, match="revenue"):
            pw.Revenue("USD", bad)
