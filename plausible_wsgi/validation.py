"""The client-side rules: what ``track()`` and ``collect()`` accept.

Plausible's ``/api/event`` answers ``400`` for some input and *silently* changes
other input (nested prop values dropped, only 30 props kept, bad revenue ignored, a
long referrer cut). Both are programmer errors best reported where they are made, so
these raise :class:`~plausible_wsgi.InvalidEventError` naming the field, and accept
what Plausible keeps unchanged. docs/plausible-rules.md lists each rule with its
source in Plausible's code. Two rules are the library's own, stricter than Plausible:
URLs must be absolute ``http(s)`` URLs, and custom events may not use the names
Plausible gives a meaning (:data:`RESERVED_NAMES`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Optional, Union
from urllib.parse import urlsplit

from . import graphemes
from ._plausible import (
    MAX_NAME_LENGTH,
    MAX_PROP_KEY_BYTES,
    MAX_PROP_VALUE_BYTES,
    MAX_PROPS,
    MAX_REFERRER_LENGTH,
    MAX_URL_BYTES,
    WHITESPACE,
)
from .errors import InvalidEventError

__all__ = [
    "RESERVED_NAMES",
    "PropValue",
    "check_custom_name",
    "header_value",
    "url_parses",
    "validate_name",
    "validate_props",
    "validate_referrer",
    "validate_url",
]

#: A prop value ``track()`` accepts; ``None`` is omitted, as Plausible drops it.
PropValue = Union[str, int, float, bool, None]

#: Names Plausible gives a meaning of their own; a custom event must not use them
#: (the library's rule): ``pageview`` is a page view, ``engagement`` needs the
#: tracker's ``sd``/``e`` fields (a ``400`` without), ``pageleave`` is dropped
#: without an earlier event in the session.
RESERVED_NAMES = frozenset({"pageview", "engagement", "pageleave"})

_HEX = frozenset("0123456789abcdefABCDEF")


def check_custom_name(name: object) -> None:
    """Refuse a :data:`RESERVED_NAMES` name for a custom event or action."""
    if name in RESERVED_NAMES:
        hint = "; use track_pageview() for page views" if name == "pageview" else ""
        raise InvalidEventError("name", f"{name!r} is reserved by Plausible{hint}")


def validate_name(name: object) -> str:
    """A non-blank string of at most 120 characters, counted as Plausible counts them:
    grapheme clusters (``"e\\u0301"`` or a family emoji is one)."""
    if not isinstance(name, str):
        raise InvalidEventError("name", f"must be a string, got {type(name).__name__}")
    if not name.strip(WHITESPACE):
        raise InvalidEventError("name", "can't be blank")
    if len(name) > MAX_NAME_LENGTH and graphemes.count(name) > MAX_NAME_LENGTH:
        raise InvalidEventError(
            "name",
            f"must be at most {MAX_NAME_LENGTH} characters (grapheme clusters), "
            f"got {graphemes.count(name)}",
        )
    return name


def validate_url(url: object) -> str:
    """Check ``url`` is an absolute ``http``/``https`` URL Plausible stores unchanged.

    At most 2000 UTF-8 bytes in all; a host that is not blank once ``www.`` is
    stripped (else a ``400``); ``%`` escapes in the path and the query that decode
    (else a ``500`` at Plausible).
    """
    if not isinstance(url, str):
        raise InvalidEventError(
            "url",
            "is required outside a request handled by PlausibleMiddleware"
            if url is None
            else f"must be a string, got {type(url).__name__}",
        )
    head = url[:8].lower()
    if head.startswith("https://"):
        rest = 8
    elif head.startswith("http://"):
        rest = 7
    else:
        raise InvalidEventError("url", f"must be an absolute http(s) URL, got {url[:40]!r}")
    if len(url) <= rest or url[rest] in "/?#":
        raise InvalidEventError("url", "must have a host")
    # Fast path: a URL of at most 666 characters is at most 1998 UTF-8 bytes.
    if len(url) > MAX_URL_BYTES // 3 and len(url.encode("utf-8", "surrogatepass")) > MAX_URL_BYTES:
        raise InvalidEventError("url", f"must be at most {MAX_URL_BYTES} bytes (UTF-8) in all")
    problem = _url_problem(url)
    if problem:
        raise InvalidEventError("url", problem)
    return url


def url_parses(url: str) -> bool:
    """Whether the URL passes :func:`validate_url`'s structural checks (cached)."""
    return not _url_problem(url)


@functools.lru_cache(maxsize=4096)
def _url_problem(url: str) -> str:
    # Cached: page URLs repeat. "" means none.
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL this library can split (host or brackets)"
    host = (parts.hostname or "").strip(WHITESPACE)
    if not host or host == "www.":
        return "must have a host (Plausible answers 400 'hostname can't be blank')"
    path = parts.path
    if "%" in path and not _escapes_decode(path):
        return "has a malformed %-escape in its path (Plausible fails with a 500)"
    if "%" in parts.query and not _escapes_decode(parts.query):
        return "has a malformed %-escape in its query (Plausible fails with a 500)"
    # Plausible trims whitespace from the end of the decoded path (and drops the
    # fragment): documented normalisations, accepted here, so a page view of
    # "/a%20" is never lost for it.
    return ""


def _escapes_decode(text: str) -> bool:
    index = text.find("%")
    while index != -1:
        if len(text) < index + 3 or not set(text[index + 1 : index + 3]) <= _HEX:
            return False
        index = text.find("%", index + 3)
    return True


def _byte_length(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def validate_props(props: object) -> Optional[dict[str, str]]:
    """Convert ``props`` to the string mapping Plausible stores.

    ``None`` and blank-string values are omitted (Plausible drops them); nested values,
    more than 30 pairs and over-long keys or values raise.
    """
    if props is None:
        return None
    if not isinstance(props, Mapping):
        raise InvalidEventError("props", f"must be a mapping, got {type(props).__name__}")
    out: dict[str, str] = {}
    for key, value in props.items():
        if not isinstance(key, str) or not key.strip(WHITESPACE):
            raise InvalidEventError("props", f"keys must be non-blank strings, got {key!r}")
        if value is None:
            continue
        text = _prop_text(key, value)
        if not text.strip(WHITESPACE):
            continue
        if len(key) > MAX_PROP_KEY_BYTES // 4 and _byte_length(key) > MAX_PROP_KEY_BYTES:
            raise InvalidEventError(
                "props", f"key {key[:40]!r}... is longer than {MAX_PROP_KEY_BYTES} bytes"
            )
        if len(text) > MAX_PROP_VALUE_BYTES // 4 and _byte_length(text) > MAX_PROP_VALUE_BYTES:
            raise InvalidEventError(
                "props", f"value of {key!r} is longer than {MAX_PROP_VALUE_BYTES} bytes"
            )
        out[key] = text
    if len(out) > MAX_PROPS:
        raise InvalidEventError(
            "props", f"at most {MAX_PROPS} pairs are kept by Plausible, got {len(out)}"
        )
    return out or None


def _prop_text(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEventError("props", f"value of {key!r} must be finite, got {value!r}")
        return repr(value)
    raise InvalidEventError(
        "props",
        f"value of {key!r} must be str, int, float, bool or None, "
        f"got {type(value).__name__} (Plausible drops nested values)",
    )


def validate_referrer(referrer: object) -> Optional[str]:
    """A string of at most 2000 characters (grapheme clusters): Plausible cuts a
    longer one, so it raises here."""
    if referrer is None or referrer == "":
        return None
    if not isinstance(referrer, str):
        raise InvalidEventError("referrer", f"must be a string, got {type(referrer).__name__}")
    if len(referrer) > MAX_REFERRER_LENGTH and graphemes.count(referrer) > MAX_REFERRER_LENGTH:
        raise InvalidEventError(
            "referrer",
            f"must be at most {MAX_REFERRER_LENGTH} characters (grapheme clusters); "
            "Plausible cuts a longer one",
        )
    return referrer


def header_value(field: str, value: object) -> Optional[str]:
    """A visitor value sent as an HTTP header: latin-1 text without line breaks."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEventError(field, f"must be a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise InvalidEventError(field, "must not contain line breaks or NUL (sent as a header)")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidEventError(
                field, "must be latin-1 text (sent as an HTTP header)"
            ) from None
    return value
