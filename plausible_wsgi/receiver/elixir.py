"""The Elixir/Erlang library behaviour Plausible's ingestion code leans on.

Plausible reads an event with Elixir's ``URI.parse``, ``URI.decode``,
``URI.decode_query``, ``String.trim*`` and ``to_string``; each differs from its
closest Python counterpart (``URI.parse`` never fails, ``URI.decode`` raises on a bad
``%`` escape, ``to_string(1000.0)`` is ``"1.0e3"``...). The receiver uses these so it
stores what Plausible would store. Sources are cited next to each function.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import NamedTuple, Optional

from .._plausible import WHITESPACE

__all__ = [
    "MalformedURI",
    "ParsedURI",
    "decode_query",
    "float_to_string",
    "to_string",
    "trim",
    "trim_leading",
    "trim_trailing",
    "uri_decode",
    "uri_parse",
]


# Elixir's URI.parse/1: the RFC 3986 appendix B expression (case-insensitive scheme);
# it matches every string, so URI.parse never fails.
_URI = re.compile(r"^(([a-z][a-z0-9+\-.]*):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?", re.I)
_AUTHORITY = re.compile(r"(^(.*)@)?(\[[a-zA-Z0-9:.]*\]|[^:]*)(:(\d*))?")
_HEX = frozenset("0123456789abcdefABCDEF")


class MalformedURI(ValueError):
    """``URI.decode`` raised ``ArgumentError``: Plausible answers ``500``."""


class ParsedURI(NamedTuple):
    """The fields of an Elixir ``%URI{}`` that ingestion reads (``None`` is ``nil``)."""

    scheme: Optional[str]
    host: Optional[str]
    path: Optional[str]
    query: Optional[str]
    fragment: Optional[str]


def trim(text: str) -> str:
    return text.strip(WHITESPACE)


def trim_leading(text: str) -> str:
    return text.lstrip(WHITESPACE)


def trim_trailing(text: str) -> str:
    return text.rstrip(WHITESPACE)


def uri_parse(url: str) -> ParsedURI:
    """``URI.parse/1``: empty parts are ``None``, the scheme lower-cased, brackets off
    the host; never raises."""
    match = _URI.match(url)
    assert match is not None  # every group is optional
    scheme, authority, path, query, fragment = match.group(2, 3, 5, 7, 9)
    host: Optional[str] = None
    if authority == "//":
        host = ""
    elif authority:
        parts = _AUTHORITY.match(authority[2:])
        raw_host = parts.group(3) if parts else ""
        host = raw_host.lstrip("[").rstrip("]") if raw_host else None
    return ParsedURI(
        scheme=scheme.lower() if scheme else None,
        host=host,
        path=path or None,
        query=query if match.group(6) else None,
        fragment=fragment or None,
    )


def uri_decode(text: str, *, plus_as_space: bool = False) -> str:
    """``URI.decode/1`` (or ``decode_www_form/1`` with ``plus_as_space``).

    :raises MalformedURI: a ``%`` not followed by two hex digits, as Elixir raises.
    Decoded bytes that are not UTF-8 are stored with U+FFFD here.
    """
    if "%" not in text and not (plus_as_space and "+" in text):
        return text
    out = bytearray()
    raw = text.encode("utf-8", "surrogatepass")
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # %
            pair = raw[i + 1 : i + 3].decode("latin-1")
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise MalformedURI(f"malformed URI {text[:80]!r}")
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(0x20 if plus_as_space and byte == 0x2B else byte)
        i += 1
    return out.decode("utf-8", "replace")


def decode_query(query: str) -> dict[str, str]:
    """``URI.decode_query/1``: ``+`` is a space, a repeated key keeps its last value."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        found[uri_decode(key, plus_as_space=True)] = uri_decode(value, plus_as_space=True)
    return found


def float_to_string(value: float) -> str:
    """Elixir's ``to_string/1`` of a float: the shortest round-trip digits, written
    in fixed or exponent notation, whichever is shorter (Erlang's
    ``io_lib_format:fwrite_g``): ``100.0``, ``1.0e3``, ``0.0001``, ``1.0e-5``."""
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign, digits_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digits_tuple)).rstrip("0")
    exponent += len(digits_tuple) - len(digits)
    place = len(digits) + exponent  # digits before the decimal point
    prefix = "-" if sign else ""
    length = len(digits)
    if 0 < place < length:
        return f"{prefix}{digits[:place]}.{digits[place:]}"
    if place == 0:
        return f"{prefix}0.{digits}"
    exp_text = str(place - 1)
    exp_cost = len(exp_text) + 1 + (2 if length == 1 else 1)
    if place < 0 and 2 - place <= exp_cost:
        return f"{prefix}0.{'0' * -place}{digits}"
    if place >= length and place - length + 2 <= exp_cost:
        return f"{prefix}{digits}{'0' * (place - length)}.0"
    mantissa = f"{digits[0]}.{digits[1:] or '0'}"
    return f"{prefix}{mantissa}e{exp_text}"


def to_string(value: object) -> str:
    """Elixir's ``to_string/1`` for a decoded JSON scalar (``nil`` is ``""``)."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return float_to_string(value)
    return str(value)
