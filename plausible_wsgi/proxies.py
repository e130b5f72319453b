"""The visitor's IP address, trusted-proxy aware.

``REMOTE_ADDR``, or with ``trusted_proxies=N`` the N-th ``X-Forwarded-For`` entry
from the right, as werkzeug's :class:`~werkzeug.middleware.proxy_fix.ProxyFix` does.
Everything left of it was written by the client and is never trusted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["client_ip", "forwarded_ip", "normalize_ip"]


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: An IPv4 address already in its canonical form (no leading zeros): what
#: ``REMOTE_ADDR`` holds on nearly every request.
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


@functools.lru_cache(maxsize=2048)
def normalize_ip(value: str) -> Optional[str]:
    """A canonical IP address from a header value, or ``None`` for anything else.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:443`` and
    IPv4-mapped IPv6 (returned as IPv4); rejects names, garbage and ``unknown``.
    """
    text = value.strip()
    if _CANONICAL_IPV4.fullmatch(text):
        # A visitor not in the cache: ~0.3 µs instead of ipaddress's ~2.5 µs.
        return text
    if text.startswith("["):
        text, bracket, _ = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    if not text or len(text) > 64:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_ip(environ: WSGIEnvironment, trusted_proxies: int = 0) -> Optional[str]:
    """The visitor's IP address, or ``None`` when none can be told.

    - ``trusted_proxies=0``: ``REMOTE_ADDR``.
    - ``trusted_proxies=N``: the N-th ``X-Forwarded-For`` entry from the right (the one
      the outermost trusted proxy saw); with fewer than N entries, or an entry that
      is not an IP address, ``REMOTE_ADDR`` as ProxyFix does.
    - With werkzeug's ``ProxyFix`` in front (``werkzeug.proxy_fix.orig`` in the
      environ and ``REMOTE_ADDR`` rewritten), ``REMOTE_ADDR`` already is the client:
      ``trusted_proxies`` is not applied a second time.
    """
    remote = environ.get("REMOTE_ADDR")
    if not trusted_proxies:  # the common case, on every request: no header to read
        return normalize_ip(remote) if isinstance(remote, str) else None
    original = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, dict) and original.get("REMOTE_ADDR") != remote:
        trusted_proxies = 0
    return forwarded_ip(remote, environ.get("HTTP_X_FORWARDED_FOR"), trusted_proxies)


def forwarded_ip(remote: object, forwarded: object, trusted_proxies: int) -> Optional[str]:
    """The client's IP from the peer address ``remote`` and the ``X-Forwarded-For``
    value, trusting ``trusted_proxies`` proxies (see :func:`client_ip`)."""
    if trusted_proxies and forwarded and isinstance(forwarded, str):
        entries = forwarded.split(",")
        if len(entries) >= trusted_proxies:
            found = normalize_ip(entries[-trusted_proxies])
            if found is not None:
                return found
    return normalize_ip(remote) if isinstance(remote, str) else None
