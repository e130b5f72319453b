"""What Plausible's ``/api/event`` does with a request body, as pure functions.

The receiver judges every request with these rules so a test against it sees what
the real server would do: the ``400`` bodies it would answer, and the values it would
store for an event it accepts (props stringified, blank props dropped, invalid revenue
ignored, one event per comma-separated domain...). They mirror the server code
(``lib/plausible/ingestion/request.ex`` and friends), which differs from the public docs
in a few places: byte limits rather than character limits, a ``400`` rather than
truncation for long props, and a bare short ``"i": false`` being ignored.

Errors are keyed by the server's field names, so a bad ``name`` is reported under
``event_name``; ``url``, ``domain`` and ``props`` keep their names.

The rules are deliberately written without :mod:`plausible_wsgi.events`: the client
validates what it sends, the receiver independently checks what arrives.

Out of scope: drop decisions that need server state (unknown site, bot User-Agent,
private IP) live in :mod:`plausible_wsgi.receiver.app`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Union
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

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

__all__ = [
    "CURRENCIES",
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
    "decode_body",
    "evaluate",
    "normalise",
    "read_client_ip",
    "root_domain",
]

_BLANK = "can't be blank"
_INVALID_URL = "must be a valid url"
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LOCALHOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


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
    #: The URL path, percent-decoded; ``"/"`` when empty. Query and fragment dropped.
    pathname: str
    #: The URL host without ``www.``; ``"(none)"`` when the URL has no host.
    hostname: str
    #: One site domain, trimmed, ``www.`` stripped.
    domain: str
    #: The referrer as sent, cut to :data:`MAX_REFERRER_LENGTH` characters; ``None``
    #: when absent, empty or not a string.
    referrer: str | None
    #: Whether Plausible would attribute no source to the referrer: same host as the
    #: URL, localhost, or not http(s).
    referrer_ignored: bool
    #: At most :data:`MAX_PROPS` props, every value a string.
    props: dict[str, str] = field(hash=False)
    #: ``{"currency": "USD", "amount": "12.50"}`` or ``None`` when absent or invalid.
    revenue: dict[str, str] | None = field(hash=False)
    #: ``False`` only when the long key ``interactive`` is ``false``.
    interactive: bool
    #: The :data:`TRACKED_QUERY_PARAMS` found in the URL (first value of each).
    query_params: dict[str, str] = field(hash=False)


def decode_body(body: bytes) -> Mapping[str, Any] | Rejection:
    """Parse a request body: a JSON object, whatever the Content-Type says.

    Bodies over :data:`MAX_BODY_BYTES` are a ``413``; anything that is not a JSON object
    (including ``NaN``/``Infinity``, which the server's parser refuses) is a ``400``.
    """
    if len(body) > MAX_BODY_BYTES:
        return Rejection(413, {"request": [f"body larger than {MAX_BODY_BYTES} bytes"]})
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return Rejection(400, {"request": ["Unable to parse request body as json"]})
    return payload


def normalise(payload: Mapping[str, Any]) -> tuple[NormalisedEvent, ...] | Rejection:
    """Validate a decoded body and build one event per domain, or the ``400``.

    Short keys (``n``, ``u``, ``d``, ``r``, ``p``, ``$``, ``i``) are read before long
    ones, with the server's ``short || long`` semantics: a ``null`` or ``false`` short
    value falls through to the long key. That is why ``"i": false`` alone is ignored.
    """
    errors: dict[str, list[str]] = {}

    name = _check_name(_pick(payload, "n", "name"), errors)
    url, parts = _check_url(_pick(payload, "u", "url"), errors)
    domains = _check_domains(_pick(payload, "d", "domain"), parts, errors)
    props = _check_props(_pick(payload, "p", "props"), errors)
    if errors or name is None or url is None or parts is None:
        return Rejection(400, errors)

    hostname = _strip_www(_host_of(parts.netloc)) or "(none)"
    sent_referrer = _pick(payload, "r", "referrer")
    referrer = None
    if isinstance(sent_referrer, str) and sent_referrer:
        referrer = sent_referrer[:MAX_REFERRER_LENGTH]
    interactive = _pick(payload, "i", "interactive")
    revenue = _revenue(_pick(payload, "$", "revenue"))
    query_params = _tracked_params(parts.query)
    return tuple(
        NormalisedEvent(
            name=name,
            url=url,
            pathname=unquote(parts.path) or "/",
            hostname=hostname,
            domain=domain,
            referrer=referrer,
            referrer_ignored=referrer is None or _referrer_ignored(referrer, hostname),
            props=dict(props),
            revenue=None if revenue is None else dict(revenue),
            interactive=interactive if isinstance(interactive, bool) else True,
            query_params=dict(query_params),
        )
        for domain in domains
    )


def evaluate(body: bytes) -> tuple[NormalisedEvent, ...] | Rejection:
    """:func:`decode_body` then :func:`normalise`: the whole verdict on a body."""
    payload = decode_body(body)
    if isinstance(payload, Rejection):
        return payload
    return normalise(payload)


def read_client_ip(forwarded_for: str | None, remote_addr: str) -> str:
    """The visitor IP the server uses: the first ``X-Forwarded-For`` element, else the
    socket address.

    The element is not validated, only cleaned of a port (``1.2.3.4:5678``) and of
    IPv6 brackets (``[::1]`` or ``[::1]:5678``), exactly as trusting as the server is.
    """
    if not forwarded_for:
        return remote_addr
    first = forwarded_for.split(",", 1)[0].strip()
    if first.startswith("["):
        closing = first.find("]")
        return first[1:closing] if closing != -1 else first[1:]
    if first.count(":") == 1:
        return first.split(":", 1)[0]
    return first


def root_domain(hostname: str) -> str:
    """The registrable domain of ``hostname``, approximated as its last two labels.

    The server asks the Public Suffix List, so ``shop.example.co.uk`` gives
    ``example.co.uk`` there and ``co.uk`` here; IP addresses and single labels are
    returned unchanged. Only the visitor id depends on it.
    """
    labels = hostname.split(".")
    if len(labels) <= 2 or ":" in hostname or labels[-1].isdigit():
        return hostname
    return ".".join(labels[-2:])


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _pick(payload: Mapping[str, Any], short: str, long: str) -> Any:
    # Elixir's `payload["n"] || payload["name"]`: only nil and false fall through.
    value = payload.get(short)
    if value is None or value is False:
        return payload.get(long)
    return value


def _check_name(value: Any, errors: dict[str, list[str]]) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors["event_name"] = [_BLANK]
        return None
    if not isinstance(value, str):
        errors["event_name"] = ["is invalid"]
        return None
    if len(value) > MAX_NAME_LENGTH:
        errors["event_name"] = [f"should be at most {MAX_NAME_LENGTH} character(s)"]
        return None
    return value


def _check_url(value: Any, errors: dict[str, list[str]]) -> tuple[str | None, SplitResult | None]:
    if value is None:
        errors["url"] = ["is required"]
        return None, None
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_URL_BYTES:
        errors["url"] = [_INVALID_URL]
        return None, None
    try:
        parts = urlsplit(value)
    except ValueError:
        errors["url"] = [_INVALID_URL]
        return None, None
    if parts.scheme == "data":
        errors["url"] = ["data URI not supported"]
        return None, None
    return value, parts


def _check_domains(
    value: Any, parts: SplitResult | None, errors: dict[str, list[str]]
) -> list[str]:
    if isinstance(value, str) and value.strip():
        domains = [_strip_www(part.strip()) for part in value.split(",")]
    elif parts is not None and _host_of(parts.netloc):
        domains = [_strip_www(_host_of(parts.netloc))]
    else:
        domains = []
    domains = [domain for domain in domains if domain]
    if not domains:
        errors["domain"] = [_BLANK]
    return domains


def _check_props(value: Any, errors: dict[str, list[str]]) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    kept: dict[str, str] = {}
    for key, raw in value.items():
        if len(kept) == MAX_PROPS:
            break
        if raw is None or raw == "" or isinstance(raw, (list, dict)):
            continue
        kept[key] = _prop_string(raw)
    for key, text in kept.items():
        if (
            len(key.encode("utf-8")) > MAX_PROP_KEY_BYTES
            or len(text.encode("utf-8")) > MAX_PROP_VALUE_BYTES
        ):
            errors["props"] = [
                f"keys should have at most {MAX_PROP_KEY_BYTES} bytes"
                f" and values {MAX_PROP_VALUE_BYTES} bytes"
            ]
            break
    return kept


def _prop_string(value: Union[str, int, float, bool]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _revenue(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    currency, amount = value.get("currency"), value.get("amount")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        return None
    if isinstance(amount, str):
        valid = _DECIMAL.fullmatch(amount) is not None
    elif isinstance(amount, float):
        valid = math.isfinite(amount)
    else:
        valid = isinstance(amount, int) and not isinstance(amount, bool)
    if not valid:
        return None
    try:
        parsed = Decimal(str(amount))
    except InvalidOperation:
        return None
    return {"currency": currency, "amount": str(parsed)}


def _host_of(netloc: str) -> str:
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.partition(":")[0]


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def _referrer_ignored(referrer: str, hostname: str) -> bool:
    try:
        parts = urlsplit(referrer)
    except ValueError:
        return True
    host = _strip_www(_host_of(parts.netloc))
    return (
        parts.scheme not in ("http", "https")
        or not host
        or host == hostname
        or host in _LOCALHOSTS
        or host.endswith(".localhost")
    )


def _tracked_params(query: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=False):
        if key in TRACKED_QUERY_PARAMS and key not in found:
            found[key] = value
    return found
