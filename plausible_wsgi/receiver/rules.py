"""What Plausible's ``/api/event`` does with a request map, as pure functions.

The receiver judges every request with these rules so a test against it sees what
the real server would do: the ``400`` bodies it would answer, and the values it would
store for an event it accepts. Each rule follows ``Plausible.Ingestion.Request.build/2``
(``lib/plausible/ingestion/request.ex``, cited as ``request.ex:LINE`` from the stored
version read for docs/plausible-rules.md, which lists every rule with its source).

Errors are keyed by the server's field names: ``event_name``, ``url``, ``domain``,
``props``, ``hash_mode``, ``hostname``, ``pathname``, ``request``.

The rules are deliberately written without :mod:`plausible_wsgi.events`: the client
validates what it sends, the receiver independently checks what arrives. The visitor
IP and the drops that read headers live in :mod:`plausible_wsgi.receiver.drops`, the
ones that need state (unknown site, session) in :mod:`plausible_wsgi.receiver.app`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from .. import graphemes
from .._plausible import (
    CURRENCIES,
    MAX_BODY_BYTES,
    MAX_NAME_LENGTH,
    MAX_PROP_KEY_BYTES,
    MAX_PROP_VALUE_BYTES,
    MAX_PROPS,
    MAX_REFERRER_LENGTH,
    MAX_URL_BYTES,
    TRACKED_QUERY_PARAMS,
)
from . import body as _body
from .elixir import (
    ParsedURI,
    decode_query,
    to_string,
    trim,
    trim_leading,
    trim_trailing,
    uri_decode,
    uri_parse,
)

__all__ = [
    "CURRENCIES",
    "GOALS_WITH_PATH",
    "MAX_BODY_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_PROPS",
    "MAX_PROP_KEY_BYTES",
    "MAX_PROP_VALUE_BYTES",
    "MAX_REFERRER_LENGTH",
    "MAX_URL_BYTES",
    "TRACKED_QUERY_PARAMS",
    "NormalisedEvent",
    "Rejection",
    "normalise",
    "referrer_host",
]

_BLANK = "can't be blank"
_INVALID = "is invalid"
_INVALID_URL = "must be a valid url"
_ENGAGEMENT = (
    "engagement event requires a valid integer value for at least one of 'sd' or 'e' fields"
)
#: Event names that get a ``path`` prop (the pathname) when they have none
#: (``lib/plausible/goals/system_goals.ex:10``, used at request.ex:175-180).
GOALS_WITH_PATH = frozenset({"404", "WP Form Completions", "Form: Submission"})
_MISSING_SCROLL_DEPTH = 255
_DECIMAL_PREFIX = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_TOO_LARGE_ENGAGEMENT_MS = 30 * 24 * 3600 * 1000  # request.ex:35


@dataclass(frozen=True)
class Rejection:
    """A request the server refuses: the status and the errors it answers with."""

    #: ``400`` for validation errors and unparsable bodies, ``413`` for oversized ones.
    status: int
    #: ``{field: [message, ...]}``, the value of ``"errors"`` in the response body.
    errors: dict[str, list[str]] = field(hash=False)

    def body(self) -> dict[str, dict[str, list[str]]]:
        """The JSON response body, ``{"errors": {...}}``."""
        return {"errors": self.errors}


@dataclass(frozen=True)
class NormalisedEvent:
    """An event as the server would store it, for one domain."""

    #: The event name (an integer name is cast to a string).
    name: str
    #: The URL as sent.
    url: str
    #: The URL path, percent-decoded, trailing whitespace trimmed; ``"/"`` when empty;
    #: ``#fragment`` appended in hash mode (``h``/``hashMode`` 1).
    pathname: str
    #: The URL host, trimmed, without ``www.``; ``"(none)"`` when the URL has none.
    hostname: str
    #: One site domain, trimmed, ``www.`` stripped (may be ``""`` from ``"a.com,"``).
    domain: str
    #: The referrer as sent, cut to 2000 graphemes; ``None`` when absent or not a string.
    referrer: str | None
    #: Whether Plausible would attribute no source to the referrer: same host as the
    #: URL, localhost, or not http(s)/android-app.
    referrer_ignored: bool
    #: At most :data:`MAX_PROPS` props, every value a string.
    props: dict[str, str] = field(hash=False)
    #: ``{"currency": "USD", "amount": "12.50"}`` or ``None`` when absent or invalid.
    revenue: dict[str, str] | None = field(hash=False)
    #: ``False`` when ``i`` or ``interactive`` is ``false``.
    interactive: bool
    #: The :data:`TRACKED_QUERY_PARAMS` found in the URL (last value of each).
    query_params: dict[str, str] = field(hash=False)


# 59 lines and 16 branches: it follows request.ex's order step by step, kept in one
# piece so that it reads side by side with Plausible's source.
def normalise(payload: Mapping[str, Any]) -> tuple[NormalisedEvent, ...] | Rejection:
    """Validate a request map and build one event per domain, or the ``400``.

    Short keys are read before long ones with Elixir's ``short || long``: only a
    ``null`` or ``false`` short value falls through to the long key.

    :raises MalformedURI: a bad ``%`` escape in the path, fragment or query, where
        Elixir's ``URI.decode`` raises and Plausible answers ``500``.
    """
    errors: dict[str, list[str]] = {}
    url, uri = _put_uri(_pick(payload, "u", "url"), errors)
    hostname = _hostname(uri)
    name = _cast_name(_pick(payload, "n", "name"), errors)
    hash_mode = _cast_hash_mode(_pick(payload, "h", "hashMode"), errors)
    referrer = _pick(payload, "r", "referrer")
    # request.ex:156-160: a string referrer is cut to 2000 graphemes.
    if isinstance(referrer, str):
        referrer = graphemes.truncate(referrer, MAX_REFERRER_LENGTH)
    else:
        referrer = None
    pathname = _pathname(uri, hash_mode)
    props = _props(payload, name, pathname, errors)
    if name == "engagement":
        _check_engagement(payload, errors)
    query = decode_query(uri.query) if uri is not None and uri.query is not None else {}
    revenue = _revenue(_pick(payload, "revenue", "$"))
    interactive = _pick(payload, "i", "interactive")
    domains = _map_domains(_pick(payload, "d", "domain"), uri, errors)
    # request.ex:102-108: required fields, then the name length in graphemes.
    if name is None and "event_name" not in errors:
        errors["event_name"] = [_BLANK]
    if not hostname:
        errors["hostname"] = [_BLANK]
    if not pathname:
        errors["pathname"] = [_BLANK]
    # (len() first: a string is never longer in graphemes than in code points)
    if name is not None and len(name) > MAX_NAME_LENGTH < graphemes.count(name):
        errors.setdefault("event_name", []).append(
            f"should be at most {MAX_NAME_LENGTH} character(s)"
        )
    if errors or name is None or url is None:
        return Rejection(400, errors)
    tracked = {key: query[key] for key in TRACKED_QUERY_PARAMS if key in query}
    return tuple(
        NormalisedEvent(
            name=name,
            url=url,
            pathname=pathname,
            hostname=hostname,
            domain=domain,
            referrer=referrer,
            referrer_ignored=referrer is None or _referrer_ignored(referrer, hostname),
            props=dict(props),
            revenue=None if revenue is None else dict(revenue),
            interactive=interactive if isinstance(interactive, bool) else True,
            query_params=dict(tracked),
        )
        for domain in domains
    )


def referrer_host(referrer: str) -> str | None:
    """The referrer's host as the spam check reads it (event.ex: ``spam_referrer?``):
    ``URI.parse(referrer).host``, trimmed and without ``www.``."""
    host = uri_parse(referrer).host
    return None if host is None else _sanitize_hostname(host)


def _pick(payload: Mapping[str, Any], first: str, second: str) -> Any:
    # Elixir's `payload["n"] || payload["name"]`: only nil and false fall through.
    value = payload.get(first)
    if value is None or value is False:
        return payload.get(second)
    return value


def _put_uri(value: Any, errors: dict[str, list[str]]) -> tuple[str | None, ParsedURI | None]:
    # request.ex:213-224: URI.parse never fails; only the type, the 2000-byte size and
    # the data: scheme are refused.
    if value is None:
        errors["url"] = ["is required"]
        return None, None
    if not isinstance(value, str) or len(value.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        errors["url"] = [_INVALID_URL]
        return None, None
    uri = uri_parse(value)
    if uri.scheme == "data":
        errors["url"] = ["scheme is not allowed"]
        return None, None
    return value, uri


def _sanitize_hostname(host: str) -> str:
    # request.ex:374-378: trim, then drop one leading "www.".
    host = trim(host)
    return host[4:] if host.startswith("www.") else host


def _hostname(uri: ParsedURI | None) -> str:
    # request.ex:226-234
    if uri is None or not uri.host:
        return "(none)"
    return _sanitize_hostname(uri.host)


def _cast_name(value: Any, errors: dict[str, list[str]]) -> str | None:
    # request.ex:1-16 (EventName: string or integer) and Ecto's cast: blank is nil.
    if isinstance(value, bool) or (not isinstance(value, (str, int)) and value is not None):
        errors["event_name"] = [_INVALID]
        return None
    if isinstance(value, int):
        return str(value)
    if value is None or not trim(value):
        return None
    return value


def _cast_hash_mode(value: Any, errors: dict[str, list[str]]) -> int | None:
    # request.ex:150 casts h/hashMode as an Ecto :integer: an integer or an
    # integer string; anything else is "is invalid".
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value[1:] if value[:1] in "+-" else value
        if text.isascii() and text.isdigit():
            return int(value)
    errors["hash_mode"] = [_INVALID]
    return None


def _pathname(uri: ParsedURI | None, hash_mode: int | None) -> str:
    # request.ex:352-365: decode, trim trailing whitespace, fragment in hash mode.
    if uri is None:
        return "/"
    pathname = trim_trailing(uri_decode(uri.path or "/"))
    if hash_mode == 1 and uri.fragment is not None:
        return f"{pathname}#{uri_decode(uri.fragment)}"
    return pathname


def _decode_or_fallback(raw: Any) -> dict[str, Any]:
    # lib/plausible/helpers/json.ex:6-13: a map, or a string holding a JSON object.
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            decoded = _body.jason_decode(raw.encode("utf-8", "surrogatepass"))
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def _props(
    payload: Mapping[str, Any], name: str | None, pathname: str, errors: dict[str, list[str]]
) -> dict[str, str]:
    # request.ex:236-249 and 261-267. m/meta win over p/props. The map is walked in
    # Erlang's order (keys sorted by bytes for up to 32 keys; beyond that Erlang's
    # hash order, not reproduced) and each kept pair is *prepended*, so the cut at 30
    # keeps the greatest keys.
    raw = _pick(payload, "m", "meta")
    if raw is None or raw is False:
        raw = _pick(payload, "p", "props")
    kept: list[tuple[str, str]] = []
    source = _decode_or_fallback(raw)
    for key in sorted(source, key=lambda k: k.encode("utf-8", "surrogatepass")):
        value = source[key]
        if isinstance(value, (list, dict)):
            continue
        if not trim_leading(key) or not trim_leading(to_string(value)):
            continue
        kept.append((key, to_string(value)))
    kept.reverse()
    if name in GOALS_WITH_PATH and not any(key == "path" for key, _ in kept):
        kept.insert(0, ("path", pathname))
    props = dict(kept[:MAX_PROPS])
    for key, text in props.items():
        if (
            len(key.encode("utf-8", "surrogatepass")) > MAX_PROP_KEY_BYTES
            or len(text.encode("utf-8", "surrogatepass")) > MAX_PROP_VALUE_BYTES
        ):
            errors["props"] = [
                f"keys should have at most {MAX_PROP_KEY_BYTES} bytes"
                f" and values {MAX_PROP_VALUE_BYTES} bytes"
            ]
            break
    return props


def _engagement_int(value: Any) -> Optional[int]:
    if isinstance(value, str):
        text = value[1:] if value[:1] in "+-" else value
        return int(value) if text.isascii() and text.isdigit() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _check_engagement(payload: Mapping[str, Any], errors: dict[str, list[str]]) -> None:
    # request.ex:291-312 and 383-406: sd in 0..100 (more is 100), e in [0, 30 days);
    # with neither valid (e = 0 counts as missing) the event is a 400.
    scroll = _engagement_int(payload.get("sd"))
    scroll_depth = _MISSING_SCROLL_DEPTH if scroll is None or scroll < 0 else min(scroll, 100)
    time_ms = _engagement_int(payload.get("e"))
    engagement = time_ms if time_ms is not None and 0 <= time_ms < _TOO_LARGE_ENGAGEMENT_MS else 0
    if scroll_depth == _MISSING_SCROLL_DEPTH and engagement == 0:
        errors.setdefault("event_name", []).append(_ENGAGEMENT)


def _revenue(raw: Any) -> dict[str, str] | None:
    # extra/lib/plausible/ingestion/request/revenue.ex:6-34: "revenue" wins over "$";
    # a JSON string is decoded; a known currency and a decimal (a string's numeric
    # prefix is enough) make it valid; anything else is ignored silently.
    source = _decode_or_fallback(raw)
    if "amount" not in source or "currency" not in source:
        return None
    currency, amount = source["currency"], source["amount"]
    if not isinstance(currency, str) or currency not in CURRENCIES:
        return None
    parsed = _parse_decimal(amount)
    if parsed is None or not parsed.is_finite():
        return None
    return {"currency": currency, "amount": str(parsed)}


def _parse_decimal(amount: Any) -> Decimal | None:
    if isinstance(amount, bool):
        return None
    if isinstance(amount, float):
        return Decimal(repr(amount))  # Decimal.from_float/1: the shortest digits
    if isinstance(amount, int):
        return Decimal(amount)
    if not isinstance(amount, str):
        return None
    # Decimal.parse/1 answers {decimal, rest}: the numeric prefix is what counts.
    prefix = _DECIMAL_PREFIX.match(amount)
    if prefix is None:
        return None
    try:
        return Decimal(prefix.group())
    except InvalidOperation:
        return None


def _map_domains(value: Any, uri: ParsedURI | None, errors: dict[str, list[str]]) -> list[str]:
    # request.ex:186-211: a string is trimmed ("" is a 400) and split on commas, every
    # element kept (an empty one is an unknown site); anything but a string falls
    # back to the URL's host.
    if isinstance(value, str):
        raw = trim(value)
        if not raw:
            errors["domain"] = [_BLANK]
            return []
        return [_sanitize_hostname(part) for part in raw.split(",")]
    if uri is None or uri.host is None:
        errors["domain"] = [_BLANK]
        return []
    return [_sanitize_hostname(uri.host)]


_LOCALHOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _referrer_ignored(referrer: str, hostname: str) -> bool:
    parts = uri_parse(referrer)
    host = _sanitize_hostname(parts.host or "")
    if parts.scheme == "android-app":
        return False
    return (
        parts.scheme not in ("http", "https")
        or not host
        or host == hostname
        or host in _LOCALHOSTS
        or host.endswith(".localhost")
    )
