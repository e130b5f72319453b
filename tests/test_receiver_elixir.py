"""The Elixir library behaviour the receiver reproduces, and grapheme counting."""

from __future__ import annotations

import pytest

from plausible_wsgi import graphemes
from plausible_wsgi.receiver.elixir import (
    MalformedURI,
    ParsedURI,
    decode_query,
    float_to_string,
    uri_decode,
    uri_parse,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (100.0, "100.0"),
        (1000.0, "1.0e3"),
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (1e-05, "1.0e-5"),
        (12.5, "12.5"),
        (123456789.0, "123456789.0"),
        (1e16, "1.0e16"),
        (1.5e300, "1.5e300"),
        (-2.5e20, "-2.5e20"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
    ],
)
def test_float_to_string_writes_floats_as_erlang_does(value: float, text: str) -> None:
    assert float_to_string(value) == text


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://[::1]:8080/x", ParsedURI("http", "::1", "/x", None, None)),
        ("about:config", ParsedURI("about", None, "config", None, None)),
        ("/no/hostname", ParsedURI(None, None, "/no/hostname", None, None)),
        ("HTTP://a.com", ParsedURI("http", "a.com", None, None, None)),
        ("http://a.com?", ParsedURI("http", "a.com", None, "", None)),
        ("http://a.com/#", ParsedURI("http", "a.com", "/", None, None)),
        ("http://u@a.com:x/p", ParsedURI("http", "a.com", "/p", None, None)),
        ("http://[::1/x", ParsedURI("http", "", "/x", None, None)),
        ("   ", ParsedURI(None, None, "   ", None, None)),
    ],
)
def test_uri_parse_never_fails(url: str, parsed: ParsedURI) -> None:
    assert uri_parse(url) == parsed


def test_uri_decode_raises_on_a_bad_escape_like_elixir() -> None:
    assert uri_decode("/caf%C3%A9+x") == "/café+x"
    assert uri_decode("a+b", plus_as_space=True) == "a b"
    for bad in ("/%zz", "/%4", "/%"):
        with pytest.raises(MalformedURI):
            uri_decode(bad)


def test_decode_query_keeps_the_last_value() -> None:
    assert decode_query("a=1&a=2&b&&c=x+y") == {"a": "2", "b": "", "c": "x y"}


FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
SAMPLES = [
    "plain",
    "e\u0301",
    FAMILY,
    "\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea",  # two flags
    "\U0001f44d\U0001f3fd",  # thumbs up, skin tone
    "\u1100\u1161\u11a8",  # Hangul jamo: one syllable
    "a\r\nb",
    "\u2764\ufe0f",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_grapheme_counts(text: str) -> None:
    expected = {"plain": 5, "a\r\nb": 3, "\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea": 2}
    assert graphemes.count(text) == expected.get(text, 1)
    assert graphemes.truncate(text * 3, graphemes.count(text)) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_the_fallback_agrees_with_regex_on_common_clusters(text: str) -> None:
    regex = pytest.importorskip("regex")
    assert graphemes._approximate(text) == regex.findall(r"\X", text)
