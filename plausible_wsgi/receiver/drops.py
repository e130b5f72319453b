"""What Plausible reads from the headers: the visitor IP, which requests it answers
``202`` but does not count, and which it refuses before ingestion (``406``).

Sources (plausible/analytics, stored versions read for docs/plausible-rules.md):
``lib/plausible/ingestion/event.ex`` (``spam_referrer?``, ``drop_verification_agent``,
``drop_datacenter_ip``, ``put_user_agent``, ``register_session``) and
``lib/plausible/verification/installation_support.ex`` (the verification agent),
``lib/plausible_web/remote_ip.ex`` (the visitor IP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..agents import AgentMatch

__all__ = [
    "SPAM_REFERRERS",
    "VERIFICATION_AGENTS",
    "acceptable",
    "plausible_drops_agent",
    "read_client_ip",
    "spam_referrer",
]

#: The User-Agents of Plausible's own installation checks, dropped as
#: ``verification_agent`` (installation_support.ex:14 and :25).
VERIFICATION_AGENTS = frozenset(
    {
        "Plausible Verification Agent - if abused, contact support@plausible.io",
        "Plausible Community Edition",
    }
)

#: Referrer hosts whose events are dropped as ``spam_referrer``. Plausible checks
#: the ``referrer_blocklist`` package (Matomo's referrer spam list, ~2,000 hosts,
#: updated upstream); that list is not shipped here. This default holds the host
#: Plausible's own tests use; pass ``spam_referrers=`` to the receiver for more.
SPAM_REFERRERS = frozenset({"1-best-seo.com"})

# What this library's classifier calls a bot but Plausible's UAInspector calls a
# client (an HTTP library or tool): Plausible counts these. "unknown" is a missing
# or empty User-Agent, which Plausible counts too (event.ex put_user_agent).
_COUNTED_AGENTS = frozenset(
    {
        "unknown",
        "curl",
        "Wget",
        "python-requests",
        "Python-urllib",
        "aiohttp",
        "python-httpx",
        "Go-http-client",
        "okhttp",
        "Apache-HttpClient",
        "Java",
        "libwww-perl",
        "GuzzleHttp",
        "axios",
        "node-fetch",
        "undici",
        "Dart",
        "PostmanRuntime",
        "Insomnia",
        "HTTPie",
    }
)
# Validators UAInspector's bot list knows and this library's classifier does not.
_VALIDATORS = re.compile(r"w3c[_-]|validator\.nu|link-?validator|linkchecker", re.I)


def plausible_drops_agent(user_agent: str, agent: AgentMatch | None) -> bool:
    """Whether Plausible drops this User-Agent as a bot (``put_user_agent``:
    UAInspector's bots and Headless Chrome), given this library's classification."""
    if _VALIDATORS.search(user_agent):
        return True
    return agent is not None and agent.agent not in _COUNTED_AGENTS


def spam_referrer(host: str | None, spam_hosts: Iterable[str]) -> bool:
    """Whether the referrer host (``www.`` stripped) is on the spam list."""
    return host is not None and host in spam_hosts


def acceptable(accept: str | None, query_format: str | None) -> bool:
    """Phoenix's ``accepts(["json"])`` on the API pipeline: ``?_format=`` other than
    ``json``, or an ``Accept`` header naming no JSON-compatible type, is a ``406``."""
    if query_format is not None:
        return query_format == "json"
    if not accept or not accept.strip():
        return True
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("*/*", "application/*", "application/json", "*"):
            return True
    return False


def read_client_ip(headers: Mapping[str, str], remote_addr: str) -> str:
    """The visitor IP, as ``PlausibleWeb.RemoteIP.get/1`` (remote_ip.ex:6-34) picks it.

    ``headers`` maps lower-case header names to values. The first non-empty of
    ``x-plausible-ip``, ``cf-connecting-ip`` (port and brackets cleaned),
    ``b-forwarded-for``, ``x-forwarded-for`` (first element, cleaned), ``forwarded``
    (the first ``for=``), else the socket address. Nothing is validated.
    """
    for header in ("x-plausible-ip", "cf-connecting-ip"):
        if headers.get(header):
            return _clean_ip(headers[header])
    for header in ("b-forwarded-for", "x-forwarded-for"):
        if headers.get(header):
            return _clean_ip(headers[header].split(",", 1)[0].strip())
    forwarded = headers.get("forwarded")
    if forwarded:
        start = forwarded.find("for=")
        if start != -1:
            value = forwarded[start + 4 :]
            end = min(
                (i for i in (value.find(";"), value.find(",")) if i != -1), default=len(value)
            )
            if end > 0:
                return _clean_ip(value[:end].strip('"'))
    return remote_addr


def _clean_ip(ip_and_port: str) -> str:
    # remote_ip.ex:40-51: a ":port" after an IPv4 address or "]" is cut, then the
    # brackets of an IPv6 address.
    head, colon, port = ip_and_port.rpartition(":")
    if colon and port.isascii() and port.isdigit():
        before = head[-1:]
        if before == "]" or (
            before.isdigit() and "." in head and head.rpartition(".")[2].isdigit()
        ):
            ip_and_port = head
    return ip_and_port.lstrip("[").rstrip("]")
