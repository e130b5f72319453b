"""How Plausible's endpoint turns a request body into the map ingestion reads.

Two readers run, as on the real server:

- Plug's body parsers first (``PlausibleWeb.Endpoint``: ``Plug.Parsers`` with
  ``[:urlencoded, :multipart, :json]`` and ``pass: ["*/*"]``). A JSON media type
  (``application/json``, ``application/*+json``) is decoded by Jason with Plug's
  8,000,000-byte limit (``413`` past it); an empty body is ``{}``, a non-object is
  wrapped as ``{"_json": value}``, a malformed one is Plug's ``400``. A form body is
  decoded as form fields (1,000,000 bytes). No ``Content-Type`` at all (or one that
  is not ``type/subtype``): the body is never read and the map is ``{}``.
- Any other type (``text/plain``, what Plausible's own script sends) passes through
  unread, and ``Plausible.Ingestion.Request.parse_body/1`` reads at most 1,000,000
  bytes and needs a JSON *object*; anything else is ``400 {"request": [...]}``.

Jason is stricter than :mod:`json`: a lone surrogate escape, a number that overflows
a double, ``NaN``/``Infinity`` are errors, and with duplicate keys the first wins.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Union
from urllib.parse import unquote_plus

__all__ = [
    "FORM_LIMIT",
    "JSON_LIMIT",
    "RAW_LIMIT",
    "BodyError",
    "jason_decode",
    "media_type",
    "parse",
]

#: Plug's JSON parser limit (``:length`` default): larger bodies are a ``413``.
JSON_LIMIT = 8_000_000
#: ``Request.parse_body/1``'s ``read_body`` limit for bodies Plug passed through.
RAW_LIMIT = 1_000_000
#: Plug's urlencoded parser limit (``:length`` default).
FORM_LIMIT = 1_000_000

_REQUEST_ERROR = "Unable to parse request body as json"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


class BodyError(Exception):
    """The body cannot become a request map: ``status`` and the ``request`` error."""

    def __init__(self, status: int, message: str = _REQUEST_ERROR) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> tuple[str, str] | None:
    """``(type, subtype)`` lower-cased, like ``Plug.Conn.Utils.content_type/1``;
    ``None`` when the header is absent or not ``type/subtype`` (Plug.Parsers then
    leaves the body unread and the request map empty)."""
    if content_type is None:
        return None
    essence = content_type.split(";", 1)[0].strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not (slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype)):
        return None
    return kind, subtype


def body_limit(content_type: str | None) -> int:
    """How many bytes the server reads for this Content-Type (0: it reads none)."""
    kind = media_type(content_type)
    if kind is None:
        return 0
    if _is_json(kind):
        return JSON_LIMIT
    if kind == ("application", "x-www-form-urlencoded"):
        return FORM_LIMIT
    return RAW_LIMIT


def parse(content_type: str | None, body: bytes, truncated: bool) -> Mapping[str, Any]:
    """The request map Plausible's ``Request.build/1`` would read.

    :param truncated: the body was longer than :func:`body_limit` allows.
    :raises BodyError: ``413`` for an oversized JSON or form body, ``400`` otherwise.
    """
    kind = media_type(content_type)
    if kind is None:
        return {}  # Plug.Parsers: no content-type, no body read
    if _is_json(kind):
        if truncated:
            raise BodyError(413, f"body larger than {JSON_LIMIT} bytes")
        if not body:
            return {}
        try:
            value = jason_decode(body)
        except ValueError:
            raise BodyError(400) from None
        return value if isinstance(value, dict) else {"_json": value}
    if kind == ("application", "x-www-form-urlencoded"):
        if truncated:
            raise BodyError(413, f"body larger than {FORM_LIMIT} bytes")
        return _decode_form(body)
    if kind[0] == "multipart":
        return {}  # form-data fields are not reproduced; nothing reads files here
    if truncated:
        raise BodyError(400)  # read_body answered {:more, ...}
    try:
        value = jason_decode(body)
    except ValueError:
        raise BodyError(400) from None
    if not isinstance(value, dict):
        raise BodyError(400)
    return value


def jason_decode(body: bytes) -> Any:
    """Decode like ``Jason.decode/1``.

    :raises ValueError: invalid UTF-8 or JSON, ``NaN``/``Infinity``, a number out of
        a double's range, or a lone surrogate escape.
    """
    text = body.decode("utf-8")
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_first_wins,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if "\\u" in text and _has_surrogate(value):
        raise ValueError("lone surrogate in a \\u escape")
    return value


def _is_json(kind: tuple[str, str]) -> bool:
    # Plug.Parsers.JSON.parse/5: "application/json" or any "application/*+json".
    return kind[0] == "application" and (kind[1] == "json" or kind[1].endswith("+json"))


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        found.setdefault(key, value)
    return found


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


FormValue = Union[str, list[str], dict[str, str]]


def _decode_form(body: bytes) -> dict[str, FormValue]:
    """``Plug.Conn.Query.decode/1`` for the shapes an event body can take: ``k=v``,
    ``k[]=v`` (a list) and ``k[sub]=v`` (a map); a repeated plain key keeps the last."""
    found: dict[str, FormValue] = {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "invalid urlencoded params") from None
    for pair in text.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key, value = unquote_plus(raw_key), unquote_plus(raw_value)
        name, bracket, rest = key.partition("[")
        if not bracket:
            found[key] = value
        elif rest == "]":
            listed = found.setdefault(name, [])
            if isinstance(listed, list):
                listed.append(value)
        else:
            nested = found.setdefault(name, {})
            if isinstance(nested, dict):
                nested[rest.partition("]")[0]] = value
    return found
