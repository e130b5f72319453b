"""Argument checks shared by the collector, the policies, the integrations and the CLI.

Each check returns the value to use (normalised where that is safe) or raises
:class:`~plausible_wsgi.errors.ConfigurationError` naming the argument and, when the
mistake is a recognisable one, the value that was probably meant.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "check_collectors",
    "check_count",
    "check_domain",
    "check_endpoint",
    "check_number",
    "check_seconds",
]

CLOUD_HOST = "plausible.io"

# A site domain: a host, optionally a port and a sub-folder (Plausible accepts
# "example.com/blog" as a site).
_DOMAIN_PART = re.compile(r"[\w.-]+(?::\d+)?(?:/[\w.~%/-]*)?")
# First path segments of Plausible's own pages and routes: nothing under them is the
# base URL of an instance (a self-hosted instance behind a sub-path keeps its prefix).
_ROUTE_SEGMENTS = frozenset({"api", "js", "share", "sites", "login", "register", "settings"})


def check_domain(domain: object) -> str:
    """The site as Plausible stores it: a bare host (lower case), or several, comma-separated.

    Case is normalised (Plausible lower-cases a site's domain when it is created,
    so ``EXAMPLE.COM`` can only mean ``example.com``). A URL, a scheme or a trailing
    slash is refused with the bare domain in the message: something was pasted from
    an address bar, and its host may not be the site's either (``www.``, a
    subdomain), so the user should look rather than have it guessed.
    """
    if not isinstance(domain, str) or not domain.strip():
        raise ConfigurationError(f"domain must be a non-empty string, got {domain!r}")
    parts = [part.strip().lower() for part in domain.split(",")]
    for part in parts:
        bare = _bare_domain(part)
        if bare != part:
            raise ConfigurationError(
                f"domain is the site as registered in Plausible, a bare host such as "
                f"{bare!r}, not a URL: got {domain!r}; did you mean {bare!r}?"
            )
        if not _DOMAIN_PART.fullmatch(part):
            raise ConfigurationError(f"domain is not a valid site domain: {domain!r}")
    return ",".join(parts)


def _bare_domain(text: str) -> str:
    """``https://example.com/`` → ``example.com``; unchanged when already bare."""
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.rstrip("/")


def check_endpoint(endpoint: object) -> str:
    """The base URL of a Plausible instance, without a trailing slash.

    Refused, naming the base URL that was probably meant: the script URL from the
    install snippet (``https://plausible.io/js/script.js``), the API path
    (``.../api/event``), a dashboard page (``/sites/...``, ``/share/...``) and any path
    on Plausible Cloud, whose API is at the root. A self-hosted instance or a proxy
    under a sub-path (``https://example.com/stats``) is accepted as it is.
    """
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a string URL, got {endpoint!r}")
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"endpoint must be an http(s) URL such as 'https://plausible.io', got {endpoint!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"endpoint must not have a query or fragment: {endpoint!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    segments = [segment for segment in parts.path.split("/") if segment]
    prefix: list[str] = []
    for segment in segments:
        if segment.lower() in _ROUTE_SEGMENTS or segment.lower().endswith(".js"):
            break
        prefix.append(segment)
    if parts.hostname == CLOUD_HOST:
        prefix = []
    if prefix != segments:
        base = origin + "".join("/" + segment for segment in prefix)
        what = "the script URL" if parts.path.lower().endswith(".js") else "a page or API path"
        raise ConfigurationError(
            f"endpoint is the base URL of the Plausible instance; {endpoint!r} is {what}. "
            f"Did you mean {base!r}? (The events go to {base}/api/event.)"
        )
    return endpoint.strip().rstrip("/")


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """An ``int`` (not a ``bool``) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number (not a ``bool``), > 0 or, with ``allow_zero``, >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be finite and {bound}, got {value!r}")
    return float(value)


def check_seconds(name: str, value: object) -> float:
    """A finite number of seconds > 0."""
    return check_number(f"{name} (seconds)", value)


def check_collectors(name: str, value: object, kind: Any) -> tuple[Any, ...]:
    """One ``kind`` or a non-empty sequence of them, as a tuple.

    ``kind`` is the :class:`~plausible_wsgi.collector.Collector` protocol (passed in,
    so that this module depends on nothing of the package but its errors).
    """
    if isinstance(value, kind) or not isinstance(value, Sequence) or isinstance(value, str):
        items: tuple[object, ...] = (value,)
    else:
        items = tuple(value)
    if not items:
        raise ConfigurationError(f"{name}: an empty list records nothing")
    for item in items:
        if not isinstance(item, kind):
            raise ConfigurationError(
                f"{name} must be a collector (collect, flush, close, stats, name) or a list "
                f"of them, got {type(item).__name__}"
            )
    return items
