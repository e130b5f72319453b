"""From a WSGI environ to what an event needs: URL, referrer, host check.

Pure functions and small precompiled policies, used by
:class:`~plausible_wsgi.PlausibleMiddleware` on every request, so everything that can
be computed once (regexes, sets, caches) is computed when the middleware is built.

- **URL**: scheme and host as :func:`werkzeug.sansio.utils.get_host` validates them
  (``Host`` header, else ``SERVER_NAME``/``SERVER_PORT``, default ports dropped), then
  ``SCRIPT_NAME + PATH_INFO`` decoded the WSGI way (the server hands us UTF-8 bytes as
  latin-1 text) and the query string. The result is an IRI, like Flask's
  ``request.url``: readable non-ASCII, unsafe ASCII percent-encoded, undecodable bytes
  kept as ``%XX``. (:func:`werkzeug.wsgi.get_current_url` is not used directly: it
  skips the latin-1 → UTF-8 step for the path and costs about 10 µs a call.)
- **Privacy**: the query string keeps only the parameters Plausible reads
  (:data:`PLAUSIBLE_QUERY_PARAMS`) unless told otherwise, and URL masks replace ids in
  paths before anything leaves the process.
- **Client IP**: in :mod:`plausible_wsgi.proxies`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, Optional, Union
from urllib.parse import unquote

from werkzeug.sansio.utils import get_host

from ._plausible import MAX_REFERRER_LENGTH, MAX_URL_BYTES, TRACKED_QUERY_PARAMS
from .errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "PLAUSIBLE_QUERY_PARAMS",
    "HostPolicy",
    "PathRules",
    "QueryPolicy",
    "decode_path",
    "escape_path",
    "fit_url",
    "referrer_origin",
    "request_host",
    "sendable_user_agent",
    "valid_host",
]

#: Query parameters Plausible reads from a page URL (sources, UTM tags, click ids).
#: Everything else in the query string is ignored by Plausible, so by default it is
#: not sent: query strings often carry emails, tokens and search terms.
PLAUSIBLE_QUERY_PARAMS = frozenset(TRACKED_QUERY_PARAMS)

# ASCII characters that may stand unescaped in a path: RFC 3986 unreserved and
# sub-delims plus ":" and "@" and "/". PATH_INFO arrives percent-*decoded*, so a
# literal "%" there was "%25" on the wire and is escaped again. Non-ASCII text stays
# readable (an IRI); lone surrogates, which stand for undecodable bytes, are escaped.
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/\u0080-\ud7ff\ue000-\U0010ffff]")
# QUERY_STRING arrives raw (still percent-encoded): "%" is kept as is, but for a "%"
# no two hex digits follow, which Plausible's URI.decode_query fails on with a 500:
# it was a literal "%" ("?q=100%"), sent as "%25".
_QUERY_UNSAFE = re.compile(
    r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%\u0080-\ud7ff\ue000-\U0010ffff]|%(?![0-9A-Fa-f]{2})"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # surrogateescape: the original, undecodable byte.
        code -= 0xDC00
    elif code > 0x7F:
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return f"%{code:02X}"


def _decode_wsgi(value: str) -> str:
    """Undo PEP 3333's latin-1 transport encoding: the bytes are UTF-8 (usually)."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Not a latin-1 string after all (a server that decoded already): keep it.
        return value


def decode_path(script_name: str, path_info: str) -> str:
    """``SCRIPT_NAME + PATH_INFO`` as text: UTF-8, undecodable bytes as surrogates."""
    path = script_name.rstrip("/") + path_info if script_name else path_info
    if not path.isascii():
        path = _decode_wsgi(path)
    return path if path.startswith("/") else "/" + path


def escape_path(path: str) -> str:
    """``path`` (from :func:`decode_path`) as it appears in a URL (an IRI path)."""
    if _PATH_UNSAFE.search(path) is not None:
        path = _PATH_UNSAFE.sub(_escape, path)
    return path


def _escape_query(query: str) -> str:
    # Raw bytes a client sent unencoded arrive as latin-1 text; re-encode them as the
    # bytes they were rather than as UTF-8 of their latin-1 reading.
    if not query.isascii():
        query = _decode_wsgi(query)
    if _QUERY_UNSAFE.search(query) is not None:
        query = _QUERY_UNSAFE.sub(_escape, query)
    return query


class QueryPolicy:
    """Which query parameters a tracked URL keeps.

    :param keep: parameter names kept in addition to :data:`PLAUSIBLE_QUERY_PARAMS`;
        ``"*"`` keeps the whole query string.
    """

    __slots__ = ("keep", "keep_all")

    def __init__(self, keep: Iterable[str] = ()) -> None:
        if isinstance(keep, str):
            raise ConfigurationError(
                f"keep_query_params must be an iterable of names, not a string: {keep!r}"
            )
        names = set(keep)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(
                    f"keep_query_params must hold non-empty strings, got {name!r}"
                )
        self.keep_all = "*" in names
        self.keep = frozenset(names | PLAUSIBLE_QUERY_PARAMS)

    def scrub(self, query: str) -> str:
        """``query`` (raw ``QUERY_STRING``) with only the kept parameters, in order."""
        if not query:
            return ""
        if not self.keep_all:
            keep = self.keep
            kept: list[str] = []
            for pair in query.split("&"):
                key = pair.partition("=")[0]
                if key not in keep and ("%" in key or "+" in key):
                    key = unquote(key.replace("+", " "))
                if key in keep:
                    kept.append(pair)
            query = "&".join(kept)
        return _escape_query(query) if query else ""


PathPattern = Union[str, "re.Pattern[str]"]


def _compile(name: str, pattern: object) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise ConfigurationError(f"{name} patterns must be str or re.Pattern, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigurationError(f"{name}: invalid regular expression {pattern!r}: {exc}") from None


class PathRules:
    """Excluded paths and URL masks, compiled once.

    :param exclude: a ``str`` is a literal path prefix (``"/static/"``), a compiled
        pattern is searched anywhere in the path (``re.compile(r"\\.css$")``).
    :param masks: ``(pattern, replacement)`` pairs applied in order with
        :func:`re.sub`, e.g. ``(r"/users/\\d+", "/users/:id")``; a ``str`` pattern is a
        regular expression here.
    """

    __slots__ = ("masks", "patterns", "prefixes")

    def __init__(
        self,
        exclude: Iterable[PathPattern] = (),
        masks: Iterable[tuple[PathPattern, str]] = (),
    ) -> None:
        if isinstance(exclude, (str, re.Pattern)):
            exclude = (exclude,)
        prefixes: list[str] = []
        patterns: list[re.Pattern[str]] = []
        for item in exclude:
            if isinstance(item, str):
                if not item:
                    raise ConfigurationError("exclude_paths: an empty prefix would exclude all")
                prefixes.append(item)
            elif isinstance(item, re.Pattern):
                patterns.append(item)
            else:
                raise ConfigurationError(
                    f"exclude_paths items must be str prefixes or re.Pattern, got {item!r}"
                )
        self.prefixes = tuple(prefixes)
        self.patterns = tuple(patterns)
        compiled: list[tuple[re.Pattern[str], str]] = []
        for mask in masks:
            if not isinstance(mask, tuple) or len(mask) != 2 or not isinstance(mask[1], str):
                raise ConfigurationError(
                    f"url_masks items must be (pattern, replacement) pairs, got {mask!r}"
                )
            compiled.append((_compile("url_masks", mask[0]), mask[1]))
        self.masks = tuple(compiled)

    def excluded(self, path: str) -> bool:
        if self.prefixes and path.startswith(self.prefixes):
            return True
        return any(pattern.search(path) is not None for pattern in self.patterns)

    def mask(self, path: str) -> str:
        for pattern, replacement in self.masks:
            path = pattern.sub(replacement, path)
        return path


# A DNS name is at most 253 characters; add a port and IPv6 brackets.
_MAX_HOST_LENGTH = 270


@functools.lru_cache(maxsize=512)
def _valid_host(scheme: str, host_header: Optional[str], server: Optional[tuple[str, int]]) -> str:
    # werkzeug validates the characters and drops default ports; hosts repeat, so
    # the regex runs once per distinct value.
    return get_host(scheme, host_header, server).lower()


def request_host(environ: WSGIEnvironment) -> str:
    """``host[:port]`` of the request, lower-cased and validated; ``""`` when unusable."""
    host_header = environ.get("HTTP_HOST")
    server: Optional[tuple[str, int]] = None
    if host_header is None:
        name = environ.get("SERVER_NAME")
        try:
            port = int(environ.get("SERVER_PORT", ""))
        except (TypeError, ValueError):
            port = 0
        if name and port:
            server = (name, port)
    return valid_host(environ.get("wsgi.url_scheme", "http"), host_header, server)


def valid_host(scheme: str, host_header: Optional[str], server: Optional[tuple[str, int]]) -> str:
    """``host[:port]`` from the ``Host`` header, else the server's address; lower-cased
    and validated, ``""`` when unusable. Shared by WSGI and ASGI."""
    if host_header is not None and len(host_header) > _MAX_HOST_LENGTH:
        return ""
    try:
        return _valid_host(scheme, host_header, server)
    except TypeError:
        # An unhashable or otherwise odd value from a broken server.
        return ""


def _hostname(host: str) -> str:
    """``host`` without its port; IPv6 literals keep their brackets."""
    if host.endswith("]"):
        return host
    return host.rpartition(":")[0] if ":" in host else host


class HostPolicy:
    """Which ``Host`` values are tracked.

    :param allowed: exact host names (``"example.com"``), or a leading dot for a
        domain and all its subdomains (``".example.com"`` matches ``example.com`` and
        ``www.example.com``); ports are ignored. ``None`` allows every valid host.
    """

    __slots__ = ("check",)

    def __init__(self, allowed: Optional[Iterable[str]] = None) -> None:
        if allowed is None:
            self.check: Callable[[str], bool] = bool
            return
        if isinstance(allowed, str):
            raise ConfigurationError(
                f"allowed_hosts must be an iterable of host names, not a string: {allowed!r}"
            )
        exact: set[str] = set()
        suffixes: list[str] = []
        for item in allowed:
            if not isinstance(item, str) or not item.strip(". "):
                raise ConfigurationError(f"allowed_hosts must hold host names, got {item!r}")
            name = item.strip().lower()
            try:
                name = name if name.isascii() else name.encode("idna").decode("ascii")
            except UnicodeError:
                raise ConfigurationError(f"allowed_hosts: invalid host name {item!r}") from None
            if name.startswith("."):
                exact.add(name[1:])
                suffixes.append(name)
            else:
                exact.add(name)
        if not exact:
            raise ConfigurationError(
                "allowed_hosts is empty, so nothing would be tracked; pass None to track every host"
            )
        frozen = frozenset(exact)
        ends = tuple(suffixes)

        @functools.lru_cache(maxsize=256)
        def check(host: str) -> bool:
            name = _hostname(host)
            return name in frozen or (bool(ends) and name.endswith(ends))

        self.check = check


def referrer_origin(referrer: object) -> Optional[str]:
    """The ``Referer`` without its query and fragment, at most 2000 characters.

    Plausible keeps the referrer's host and path; the query of another site's URL
    (search terms, tokens) is nothing it uses and nothing to send.
    """
    if not referrer or not isinstance(referrer, str):
        return None
    if "?" not in referrer and "#" not in referrer and len(referrer) <= MAX_REFERRER_LENGTH:
        return referrer
    end = len(referrer)
    for mark in ("?", "#"):
        found = referrer.find(mark, 0, end)
        if found != -1:
            end = found
    return referrer[: min(end, MAX_REFERRER_LENGTH)] or None


_HEADER_BREAKS = re.compile(r"[\r\n\0]")


def sendable_user_agent(value: object) -> Optional[str]:
    """A ``User-Agent`` environ value as something that can be sent on as a header.

    A conforming server gives latin-1 text without line breaks (PEP 3333); from any
    other, non-latin-1 text is re-encoded the way such a server would have passed the
    bytes on, and line breaks become spaces, instead of losing the page view.
    """
    if not isinstance(value, str):
        return None
    if "\r" in value or "\n" in value or "\0" in value:
        value = _HEADER_BREAKS.sub(" ", value)
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("latin-1")
    return value


def fit_url(url: str, query_start: int) -> str:
    """``url`` cut to Plausible's 2000-byte limit: the query goes first, then the path.

    ``query_start`` is the index of ``"?"`` in ``url`` or ``-1``.
    """
    if len(url) <= MAX_URL_BYTES // 4 or len(url.encode("utf-8")) <= MAX_URL_BYTES:
        return url
    if query_start >= 0:
        url = url[:query_start]
        if len(url.encode("utf-8")) <= MAX_URL_BYTES:
            return url
    cut = url.encode("utf-8")[:MAX_URL_BYTES].decode("utf-8", "ignore")
    # Never end in half an escape ("%4" or "%").
    tail = cut[-2:]
    if tail.endswith("%"):
        cut = cut[:-1]
    elif tail.startswith("%"):
        cut = cut[:-2]
    return cut
